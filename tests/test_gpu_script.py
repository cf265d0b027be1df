"""benchmarks/gpu.sh's plan (what a device run would do, and within how long) and the merge of its
phases' results; `benchmarks.run --param`. The whole CPU path (`gpu.sh run --device cpu --tiny`) takes
about two minutes on a shared 2-core box, too long for the suite: it is run by hand (benchmarks/README.md)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.gpu_results import merge
from benchmarks.run import parse_params
from onnxplain.engine.errors import OnnxplainError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
DEVICE_LIMIT_S = 7 * 60  # the device run must end within 7 minutes


def plan(*args: str, **env: str) -> list[tuple[str, int, str]]:
    """`gpu.sh run --dry-run ARGS`: (phase, seconds allowed, command) per phase, in order."""
    done = subprocess.run(["bash", str(SCRIPT), "run", "--dry-run", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, check=True)
    rows = [line.split("\t") for line in done.stdout.splitlines() if line.strip()]
    return [(name, int(seconds), command) for name, seconds, command in rows]


def test_cuda_plan_runs_tests_then_every_model_within_the_time_limit() -> None:
    phases = plan()
    names = [p[0] for p in phases]
    assert names == ["install", "check", "tests", "o01", "o01-lime", "k01", "k01-lime", "k02", "k02-lime"]
    assert phases[2][2].endswith("-m pytest -m gpu tests/engine/test_cuda.py -p no:cacheprovider -q")
    for name, _, command in phases[3:]:
        model = name.removesuffix("-lime")
        assert f"-m benchmarks.run --models {model} --device cuda" in command and f"--out gpu-out/{name}" in command
        assert "--profile-missed" in command and "--no-floors" not in command
        assert ("--methods lime --images 1 " in command) == name.endswith("-lime")
    assert "--images 1,16" in phases[3][2] and "ig" in phases[3][2]
    # Each phase runs under `timeout` (+5 s to kill), and all of them within GPU_TOTAL_S (400 s).
    assert sum(p[1] for p in phases) <= 400 and 400 + 5 + 15 <= DEVICE_LIMIT_S


def test_cpu_tiny_plan_collects_the_gpu_tests_and_shrinks_every_run() -> None:
    phases = plan("--device", "cpu", "--tiny", "--out", "elsewhere", GPU_MODELS="o01")
    assert [p[0] for p in phases] == ["install", "check", "tests", "o01", "o01-lime"]
    assert phases[2][2].endswith("--collect-only")  # without CUDA the gpu tests can only fail
    for _, _, command in phases[3:]:
        assert "--device cpu" in command and "--images 1 --repeats 1 --warmup 0" in command
        assert "--no-floors" in command and "--out elsewhere/o01" in command
    assert "--param lime.samples=50" in phases[4][2]


@pytest.mark.parametrize("args, message", [
    (["run", "--device", "tpu"], "--device must be cuda or cpu"),
    (["run", "--frobnicate"], "unknown argument --frobnicate"),
    (["take"], "take wants a chunk folder"),
    ([], "give a command"),
])
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert message in done.stderr


def test_merge_keeps_every_phase_and_the_runs_that_finished(tmp_path: Path) -> None:
    (tmp_path / "phases.tsv").write_text("install\tok\t3\tgpu.sh install\n"
                                         "o01\tok\t41\tpython -m benchmarks.run --models o01\n"
                                         "k02\ttimed out after 50s\t55\tpython -m benchmarks.run --models k02\n")
    (tmp_path / "o01").mkdir()
    (tmp_path / "o01" / "cuda.json").write_text(json.dumps({"reports": [{"model": "o01"}]}))
    (tmp_path / "o01" / "cuda.md").write_text("### o01 on cuda\n\n| method |\n")
    doc_path, md_path = merge(tmp_path, "cuda")
    doc = json.loads(doc_path.read_text())
    assert [p["phase"] for p in doc["phases"]] == ["install", "o01", "k02"] and doc["seconds"] == 99
    assert doc["phases"][2]["status"] == "timed out after 50s"
    assert doc["runs"] == {"o01": {"reports": [{"model": "o01"}]}}
    md = md_path.read_text()
    assert "| k02 | timed out after 50s | 55 |" in md and md.index("| install |") < md.index("### o01 on cuda")
    assert not list((tmp_path / "o01").iterdir())  # merged files are gone: at most 8 files come back


def test_param_overrides_parse_as_json_or_text() -> None:
    assert parse_params(["lime.samples=50", "ig.baseline=noise", "occlusion.window=[4, 4]"]) == {
        "lime": {"samples": 50}, "ig": {"baseline": "noise"}, "occlusion": {"window": [4, 4]}}
    with pytest.raises(OnnxplainError, match="METHOD.NAME=VALUE"):
        parse_params(["samples=50"])
