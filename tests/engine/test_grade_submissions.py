"""`grade` on submissions as students hand them in, with no --arch-name and no --input-shape: each
student's class found in their own scripts, any extension recognised by content, per-student overrides
where inference cannot reach, and reasons that are whole sentences naming only grade's own flags."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from onnxplain.cli.app import app
from onnxplain.cli.flags import with_flags
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.grading import discover_submissions
from onnxplain.engine.grading.unit import for_grade
from tests.conftest import zoo_path
from tests.engine.test_grading import _data
from tests.exporters.student_scripts import TRAIN_PY, TWINS_PY, build, write_student

pytestmark = pytest.mark.slow


def _class(root: Path, marker: Path) -> Path:
    subs = root / "subs"
    subs.mkdir()
    torch.manual_seed(0)
    net = build(TRAIN_PY, "ConvNet", 7)
    # alice: a checkpoint dict beside her training script (and a layers.py it imports from)
    write_student(subs / "alice", marker)
    torch.save({"model_state": net.state_dict(), "epoch": 12}, subs / "alice" / "best.pth")
    # bob: fp16 weights in a file whose extension says nothing
    write_student(subs / "bob", marker)
    torch.save({k: v.half() for k, v in net.state_dict().items()}, subs / "bob" / "half-batch32.th")
    # carol: DataParallel keys, pre-1.6 serialization, a .bin
    write_student(subs / "carol", marker)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, subs / "carol" / "model.bin",
               _use_new_zipfile_serialization=False)
    # dave: two classes the weights fit equally; an override names his
    (subs / "dave").mkdir()
    (subs / "dave" / "twins.py").write_text(TWINS_PY)
    torch.save(build(TWINS_PY, "TwinB").state_dict(), subs / "dave" / "weights.pt")
    # erin: a state_dict and no code at all
    (subs / "erin").mkdir()
    torch.save(net.state_dict(), subs / "erin" / "weights.pth")
    # a Keras 1 file (2016), 10 CIFAR classes: graded, no accuracy on 7-class data
    shutil.copy(zoo_path("k06"), subs / "k06_keras1.h5")
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("grade13")
    marker = root / "MARKER.txt"
    subs = _class(root, marker)
    data = _data(root)
    (root / "overrides.csv").write_text("id,class,input_shape\ndave,TwinB,1x1x48x48\n")
    args = ["grade", str(subs), "--data", str(data), "--out", str(root / "out"), "--methods", "saliency",
            "--timeout", "60", "--trust", "--json", "--quiet"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    rows = {r["id"]: r for r in json.loads((root / "out" / "summary.json").read_text())["submissions"]}
    second = CliRunner().invoke(app, [*args, "--overrides", str(root / "overrides.csv")])
    assert second.exit_code == 0, second.output
    again = {r["id"]: r for r in json.loads((root / "out" / "summary.json").read_text())["submissions"]}
    return rows, again, json.loads(second.stdout), marker, root


def test_every_loadable_submission_is_graded(graded) -> None:
    rows, _, _, marker, root = graded
    print(json.dumps({k: (r["status"], r["reason"]) for k, r in rows.items()}, indent=1))
    for sid in ("alice", "bob", "carol", "k06_keras1"):
        assert rows[sid]["status"] == "ok", (sid, rows[sid]["reason"])
    assert rows["bob"]["model_file"].endswith("half-batch32.th")
    assert rows["alice"]["accuracy"] is not None and rows["k06_keras1"]["framework_version"] == "1.1.1"
    assert not marker.exists(), "a student's top level ran"


def test_the_others_say_exactly_why(graded) -> None:
    rows, *_ = graded
    assert rows["dave"]["status"] == "bad-input"
    assert re.search(r"fit several model classes \(TwinA \(twins\.py:\d+\), TwinB \(twins\.py:\d+\)\); name one with "
                     r"class in --overrides", rows["dave"]["reason"])
    assert rows["erin"]["status"] == "unsupported"
    assert "no .py file beside it; add the student's .py file that defines the class to their folder" in \
        rows["erin"]["reason"]


def test_overrides_reach_one_student_and_regrade_only_them(graded) -> None:
    rows, again, doc, *_ = graded
    assert again["dave"]["status"] == "ok", again["dave"]["reason"]
    assert doc["skipped"] == len(rows) - 1  # everyone else unchanged


def test_reasons_are_whole_sentences_naming_only_grades_flags(graded) -> None:
    rows, again, *_ = graded
    grade_flags = {opt for p in typer_command().params for opt in p.opts if opt.startswith("--")}
    for r in [*rows.values(), *again.values()]:
        reason = r["reason"]
        assert "\n" not in reason and "…" not in reason
        assert "`" not in reason and not re.search(r"\w='|=True", reason), reason  # API names became flags
        for flag in re.findall(r"--[a-z][a-z-]+", reason):
            assert flag in grade_flags, (r["id"], flag, reason)
    exported = BadInputError("x does not fit (`arch_args`); pick with weights_key='KEY' (pass allow_mismatch=True to "
                             "keep it anyway)", params=("arch_args", "weights_key", "allow_mismatch"))
    shown = with_flags(for_grade(str(exported)), [*exported.params, "overrides"])
    assert not re.search(r"--(arch-args|weights-key|allow-mismatch)\b", shown)
    assert shown == "x does not fit (arch_args in --overrides); pick with weights_key in --overrides"


def typer_command():
    import typer.main

    group = typer.main.get_command(app)
    return group.commands["grade"]  # type: ignore[attr-defined]


def test_submissions_are_recognised_by_content(tmp_path: Path) -> None:
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "notes.txt").write_text("my model is below")
    torch.save({"w": torch.zeros(2)}, tmp_path / "ann" / "final.model")
    torch.save({"w": torch.zeros(2)}, tmp_path / "ben.ckpt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "cat.weights")  # an extension nobody lists
    (tmp_path / "dan.dat").write_bytes(b"\x00" * 64)              # not a model, not a submission
    (tmp_path / "eve.pt").write_bytes(b"garbage")                 # a model's name: reported, not skipped
    found = {s.id: s for s in discover_submissions(tmp_path)}
    assert sorted(found) == ["ann", "ben", "cat", "eve"]
    assert found["ann"].model.name == "final.model"
