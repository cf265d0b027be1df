"""Benchmarks of onnxplain against Captum and the lime package; run with `python -m benchmarks.run`.

All timing goes through `onnxplain.engine.benchmark` (the one harness); see benchmarks/README.md.
"""
