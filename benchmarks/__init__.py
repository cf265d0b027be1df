"""Benchmarks of onnxplain against Captum and the lime package; see benchmarks/README.md.

This folder is two things at once. Installed, it is the package `onnxplain.benchmarks` (pyproject's
package-dir mapping, like engine/exporters/cli), the one timing harness that `onnxplain bench` and
every script here use:

    timing.py      Timing, time_call, time_calls (interleaved rounds), paired_ratios, profile_call
    memory.py      HostPeak, GpuPeak, Memory, measure_calls (probes around each call's first run)
    references.py  the Captum / lime adapters a method's registry entry names, map agreement
    floors.py      forward throughput, forward-pass floors, the torch-backend Model
    targets.py     the speed targets, read from targets.toml (each with the figure it comes from)
    results.py     BenchRow, Throughput, BenchReport
    runner.py      BenchConfig, run_benchmark
    output.py      markdown tables and the JSON document

From the repository root it is also the folder of scripts (`python -m benchmarks.run`,
`benchmarks.gradient_methods`, ...). So that the harness is loaded once, under one name, whichever
way the folder was entered: the harness modules import each other relatively and the engine as
`onnxplain.engine`; the scripts import the harness as `onnxplain.benchmarks.X` (never `benchmarks.X`)
and each other relatively. This file has no state, so that it can be imported under both names.
"""
