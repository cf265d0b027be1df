"""`grade --ray` on a local Ray instance (2 CPUs, one per module): the same rows as the local pool for a
small class with a broken and a hanging file, the resume rule, a Ray worker killed mid-task (retried, then
charged to its submission as `crashed`, and graded by the next run), and the one-line error without Ray."""
from __future__ import annotations

import csv
import json
import pickle
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from onnxplain.cli.app import app
from onnxplain.engine.grading import GradeOptions, discover_submissions

from tests.conftest import export_onnx, make_tiny_cnn
from tests.engine.test_grading import _data, _Sleeper

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One local Ray instance for the module: its start-up costs seconds."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _class(root: Path) -> Path:
    subs = root / "subs"
    subs.mkdir()
    export_onnx(make_tiny_cnn(channels=1, classes=7, seed=4), subs / "heidi.onnx", (2, 1, 48, 48))
    export_onnx(make_tiny_cnn(channels=1, classes=7, seed=5), subs / "ivan.onnx", (2, 1, 48, 48))
    (subs / "mallory_random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (subs / "zed_sleeps.pkl").write_bytes(pickle.dumps(_Sleeper()))  # last: its killed export child restarts
    return subs


def _grade(subs: Path, data: Path, out: Path, *extra: str) -> dict[str, dict[str, Any]]:
    args = ["grade", str(subs), "--data", str(data), "--out", str(out), "--methods", "saliency", "--workers", "2",
            "--timeout", "4", "--trust", "--json", "--quiet", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out / "summary.csv", newline="") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


COMPARED = ("status", "format", "framework", "parameters", "classes", "accuracy", "per_class_accuracy")


def test_ray_gives_the_local_pools_rows_and_resumes(tmp_path: Path, local_ray: Any) -> None:
    subs, data = _class(tmp_path), _data(tmp_path)
    pool = _grade(subs, data, tmp_path / "pool")
    on_ray = _grade(subs, data, tmp_path / "ray", "--ray")
    assert {k: r["status"] for k, r in on_ray.items()} == {"heidi": "ok", "ivan": "ok",
                                                          "mallory_random": "unsupported", "zed_sleeps": "timeout"}
    for sid, row in pool.items():
        assert {c: on_ray[sid][c] for c in COMPARED} == {c: row[c] for c in COMPARED}, sid
        assert on_ray[sid]["reason"] == row["reason"] and on_ray[sid]["reused"] == "False"
    for sid in ("heidi", "ivan"):  # the same maps, whoever computed them
        with np.load(tmp_path / "pool" / sid / "maps.npz") as a, np.load(tmp_path / "ray" / sid / "maps.npz") as b:
            np.testing.assert_allclose(a["saliency"], b["saliency"], rtol=1e-5, atol=1e-7)
    # Same files, same options: nothing is graded again, and summary.csv says so.
    again = _grade(subs, data, tmp_path / "ray", "--ray")
    assert {r["reused"] for r in again.values()} == {"True"}
    assert {k: r["status"] for k, r in again.items()} == {k: r["status"] for k, r in on_ray.items()}
    # --arch-name reaches PyTorch files only: the ONNX rows stay, the pickle and the unknown file are redone.
    arch = _grade(subs, data, tmp_path / "ray", "--ray", "--arch-name", "Net")
    assert {k: r["reused"] for k, r in arch.items()} == {"heidi": "True", "ivan": "True",
                                                         "mallory_random": "False", "zed_sleeps": "False"}
    assert (tmp_path / "ray" / "zed_sleeps" / "result.json").exists()  # a timeout row is kept, with its limits


def _kill_tasks(count: int, stop: threading.Event, killed: list[int]) -> None:
    """Kill the Ray worker process running `grade_task` (Ray titles it `ray::grade_task`), `count` times."""
    while len(killed) < count and not stop.is_set():
        for p in psutil.process_iter(["cmdline"]):
            if p.pid not in killed and "ray::grade_task" in " ".join(p.info["cmdline"] or []):
                p.kill()
                killed.append(p.pid)
                break
        time.sleep(0.01)


def _run_with_kills(subs: Path, data: Path, out: Path, kills: int, max_retries: int) -> tuple[dict[str, Any], int]:
    from onnxplain.engine.grading.ray_pool import run_ray

    options = GradeOptions(data=str(data), methods=("saliency", "lime"), method_params={"lime": {"samples": 400}})
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_tasks, args=(kills, stop, killed), daemon=True)
    killer.start()
    try:
        rows = run_ray(discover_submissions(subs), options, out, workers=1, max_retries=max_retries)
    finally:
        stop.set()
        killer.join()
    assert len(rows) == 1
    return rows[0], len(killed)


def test_a_worker_killed_mid_task_is_charged_then_retried(tmp_path: Path, local_ray: Any) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    export_onnx(make_tiny_cnn(channels=1, classes=7, seed=4), subs / "heidi.onnx", (2, 1, 48, 48))
    data = _data(tmp_path)
    out = tmp_path / "out"
    # Killed, no retries left: charged to the submission, not lost, and nothing half-written is kept.
    row, killed = _run_with_kills(subs, data, out, kills=1, max_retries=0)
    assert killed == 1 and row["status"] == "crashed" and "died 1 time(s)" in row["reason"], row
    assert not (out / "heidi" / "result.json").exists()
    # The next run grades it, even though its first try is killed too: Ray runs it again.
    row, killed = _run_with_kills(subs, data, out, kills=1, max_retries=1)
    assert killed == 1 and row["status"] == "ok" and not row["skipped"]
    assert (out / "heidi" / "result.json").exists() and (out / "heidi" / "maps.npz").exists()


def test_ray_missing_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a.onnx").write_bytes(b"x")
    result = CliRunner().invoke(app, ["grade", str(subs), "--data", str(subs), "--out", str(tmp_path / "o"),
                                      "--ray"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --ray needs Ray") and "onnxplain[ray]" in lines[0]


def test_the_key_follows_only_the_options_a_format_uses() -> None:
    base = GradeOptions(data="d")
    arch = GradeOptions(data="d", arch_name="Net", input_shape="1,1,48,48")
    assert base.key("keras") == arch.key("keras") and base.key("onnx") == arch.key("onnx")
    assert base.key("pytorch") != arch.key("pytorch")
    trusted = GradeOptions(data="d", trust=True)
    assert base.key("onnx") == trusted.key("onnx") and base.key("keras") != trusted.key("keras")
    for changed in (GradeOptions(data="e"), GradeOptions(data="d", methods=("lime",)), GradeOptions(data="d", seed=1)):
        assert all(base.key(f) != changed.key(f) for f in ("keras", "pytorch", "onnx"))
    assert base.key("onnx") == GradeOptions(data="d", timeout=5).key("onnx")  # limits: see previous_result


def test_a_row_that_ran_out_of_a_limit_is_redone_when_the_limit_changes(tmp_path: Path) -> None:
    from onnxplain.engine.grading.submissions import Submission
    from onnxplain.engine.grading.unit import previous_result

    sub = Submission(id="zed", root=tmp_path / "zed.pkl", model=tmp_path / "zed.pkl")
    (tmp_path / "zed").mkdir()
    for status, reused_under_new_limits in (("timeout", False), ("memory", False), ("unsupported", True), ("ok", True)):
        row = {"id": "zed", "status": status, "key": "k", "limits": {"timeout": 4.0, "memory_gb": 4.0}}
        (tmp_path / "zed" / "result.json").write_text(json.dumps(row))
        assert previous_result(tmp_path, sub, "k", {"timeout": 4.0, "memory_gb": 4.0})["skipped"]
        assert (previous_result(tmp_path, sub, "k", {"timeout": 9.0, "memory_gb": 4.0}) is not None) == \
            reused_under_new_limits, status
        assert previous_result(tmp_path, sub, "other key", {"timeout": 4.0, "memory_gb": 4.0}) is None


def test_cuda_on_a_cluster_without_gpus_says_so(tmp_path: Path, local_ray: Any) -> None:
    from onnxplain.engine.errors import BadInputError
    from onnxplain.engine.grading.ray_pool import run_ray

    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a.onnx").write_bytes(b"not a model")
    with pytest.raises(BadInputError, match="has no GPU"):
        run_ray(discover_submissions(subs), GradeOptions(data=str(tmp_path), device="cuda"), tmp_path / "out")
