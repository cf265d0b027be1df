"""Adding a method is one file plus its test: a toy method registered here, from the test file alone,
shows up in `explain --method` (help and a run through the CLI), in the report (its section, title and
paragraph) and in the benchmarks (a row with its reference and floor, and one without a reference).

The toy is removed from the registry after each test, so no other test sees it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from onnxplain.engine import Model, explain
from onnxplain.engine.explanation import Explanation, make_explanation
from onnxplain.engine.registry import get_method, method_names, register, unregister
from tests.cli.helpers import assert_json, assert_ok, invoke, write_png
from tests.conftest import faces_dataset

TOY = "toy_dim"
BARE = "toy_bare"
TITLE = "Toy dimming"
PARAGRAPH = "Each pixel gets the drop of the score when the whole image is dimmed, in proportion to its brightness."


def dimming_maps(model: Any, x: np.ndarray, targets: np.ndarray, scale: float) -> np.ndarray:
    """What the toy computes (and its reference recomputes): score drop x brightness."""
    rows = np.arange(len(x))
    drop = model.predict(x)[rows, targets] - model.predict(x * np.float32(scale))[rows, targets]
    return (drop[:, None, None] * x.mean(axis=model.spec.channel_axis)).astype(np.float32)


def toy_dim(model: Model, x: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int,
            scale: float = 0.5) -> Explanation:
    """Toy: the score drop when the image is dimmed, spread over the pixels by brightness."""
    return make_explanation(model, TOY, x, targets, dimming_maps(model, x, targets, scale), params={"scale": scale})


def toy_reference(refs: Any, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], **_: Any) -> dict:
    """The toy's own reference adapter: the same maps, computed again."""
    return {"": lambda: dimming_maps(refs.model, x, targets, float(params["scale"]))}


def toy_bare(model: Model, x: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int) -> Explanation:
    """Toy without a reference: the brightness itself."""
    return make_explanation(model, BARE, x, targets, x.mean(axis=model.spec.channel_axis), params={})


@pytest.fixture()
def toys() -> Iterator[None]:
    register(TOY, backend="onnxruntime", default_batch_size=8, title=TITLE, text=PARAGRAPH, signed=True,
             report_params={"scale": 0.25}, bench_params={"scale": 0.75}, reference=toy_reference,
             forward_passes=lambda params, spec: 2)(toy_dim)
    register(BARE, backend="onnxruntime")(toy_bare)
    try:
        yield
    finally:
        unregister(TOY)
        unregister(BARE)
    assert TOY not in method_names() and BARE not in method_names()


def test_the_registry_holds_every_fact_of_the_toy(toys: None) -> None:
    info = get_method(TOY)
    assert (info.title, info.text, info.signed, info.backend) == (TITLE, PARAGRAPH, True, "onnxruntime")
    assert info.params == {"scale": 0.5}
    bare = get_method(BARE)  # what is not given falls back: the name as title, the docstring's first line
    assert (bare.title, bare.text, bare.signed, bare.reference) == (BARE, bare.summary, False, None)
    with pytest.raises(ValueError, match="already registered"):
        register(TOY, backend="torch")(toy_dim)


def test_the_toy_is_an_explain_method_in_the_cli(toys: None, tiny_onnx, tmp_path: Path) -> None:
    wide = {"COLUMNS": "400"}  # help on one line per option, so a name is never wrapped
    help_text = assert_ok(invoke("explain", "--help", env=wide)).stdout
    assert f"One of: saliency, smoothgrad, lime, ig, occlusion, gradcam, {TOY}, {BARE}." in help_text
    assert f"occlusion,{TOY},{BARE})." in assert_ok(invoke("bench", "--help", env=wide)).stdout
    image = np.random.default_rng(7).integers(0, 256, size=(16, 16), dtype=np.uint8)
    png = write_png(tmp_path / "face.png", image)
    doc = assert_json(invoke("explain", tiny_onnx(), png, "--method", TOY, "--out", tmp_path / "toy", "--json"))
    assert doc["method"] == TOY and doc["params"]["scale"] == 0.5
    expected = explain(Model(tiny_onnx()), [image], TOY)
    np.testing.assert_allclose(np.load(tmp_path / "toy" / "face.npy"), expected.maps[0], rtol=1e-5, atol=1e-7)
    assert (tmp_path / "toy" / "face.png").read_bytes()[:4] == b"\x89PNG"


def test_the_toy_gets_its_report_section(toys: None, tiny_onnx, faces: np.ndarray, tmp_path: Path) -> None:
    from onnxplain.engine.report import _resolve_methods, build_report

    assert _resolve_methods(None)[-2:] == [TOY, BARE]  # registered last, shown last
    page = build_report(Model(tiny_onnx()), faces_dataset(faces, n=8), tmp_path, methods=[TOY], features=False,
                        trust=False)
    html = page.read_text()
    assert TITLE in html and PARAGRAPH in html
    numbers = json.loads((tmp_path / "report.json").read_text())
    section = numbers["sections"][TOY]
    assert section["title"] == TITLE and section["error"] is None and section["figures"]
    assert section["params"]["scale"] == 0.25  # its report_params


def test_the_toy_is_benchmarked_with_and_without_a_reference(toys: None, tiny_onnx) -> None:
    from onnxplain.benchmarks.output import markdown
    from onnxplain.benchmarks.runner import BenchConfig, benchmarked_methods, parse_methods, run_benchmark

    assert {TOY, BARE} <= set(benchmarked_methods()) and parse_methods(f"{TOY},{BARE}") == (TOY, BARE)
    config = BenchConfig(methods=(TOY, BARE), batch_sizes=(1, 2), repeats=2, compare=True, backends=False,
                         memory=False, floor_batch_sizes=(8,))
    report = run_benchmark(Model(tiny_onnx()), None, config, name="tiny")
    toy1, toy2, bare1, bare2 = report.rows
    assert toy1.params == {"scale": 0.75}  # its bench_params
    assert toy2.reference_name == f"{TOY} reference" and len(toy2.ratios) == 2
    assert toy2.agreement is not None and toy2.agreement < 1e-6  # the reference computed the same maps
    assert toy2.forward_passes == 2 * 2 and toy2.floor_s is not None and toy2.floor_s > 0
    assert bare1.reference is None and bare1.speedup is None and bare2.forward_passes is None
    md = markdown(report)
    assert md.count(f"\n| {TOY} |") == 2 and md.count(f"\n| {BARE} |") == 2
