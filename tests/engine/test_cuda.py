"""The CUDA paths on a real GPU: `pytest -m gpu` (benchmarks/gpu.sh runs them on a device machine).

Plain runs deselect them (`-m "not gpu"` in pyproject's addopts, so `make test` says "deselected").
Selected on a machine without CUDA they fail, never skip: `Model(..., "cuda")` raises DeviceError
rather than fall back to the CPU, so a GPU run that did not use the GPU cannot pass. The two helpers
that look inside onnxruntime (its profile, its IO binding) are checked on the CPU too, unmarked, so
that a GPU test can fail only because of the GPU.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnxruntime.capi.onnxruntime_inference_collection import IOBinding

from onnxplain.engine import Model, explain, method_names
from tests.conftest import zoo_path

gpu = pytest.mark.gpu
# Substrings of the op names (onnxruntime's fused ones included) that do a layer's arithmetic.
LAYER_OPS = ("Conv", "Gemm", "MatMul", "Pool")
MAP_TOLERANCE = 1e-4  # max |cuda - cpu| over a map, relative to max(1, max |cpu map|)


def node_providers(profile: Path) -> dict[str, set[str]]:
    """Op name -> the execution providers that ran it, read from an onnxruntime profile (a JSON trace)."""
    ran: dict[str, set[str]] = {}
    for event in json.loads(Path(profile).read_text()):
        args = event.get("args", {})
        if event.get("cat") == "Node" and "op_name" in args:
            ran.setdefault(args["op_name"], set()).add(args["provider"])
    return ran


def profiled_model(path: Path, device: str, monkeypatch: pytest.MonkeyPatch, folder: Path) -> Model:
    """A Model whose own onnxruntime session writes a profile (Model builds its SessionOptions itself)."""
    real = ort.SessionOptions

    def options() -> ort.SessionOptions:
        opts = real()
        opts.enable_profiling = True
        opts.profile_file_prefix = str(folder / f"ort-{device}")
        return opts

    monkeypatch.setattr(ort, "SessionOptions", options)
    try:
        return Model(path, device)  # type: ignore[arg-type]
    finally:
        monkeypatch.setattr(ort, "SessionOptions", real)


def assert_layers_ran_on(model: Model, provider: str) -> None:
    """Every layer's op of a predict call ran on `provider`: no node quietly placed on another one."""
    model.predict(np.zeros((4, *model.spec.shape), np.float32), batch_size=4)
    ran = node_providers(Path(model.session.end_profiling()))
    layers = {op: p for op, p in ran.items() if any(k in op for k in LAYER_OPS)}
    assert layers, f"no layer ops in the profile: {ran}"
    assert all(p == {provider} for p in layers.values()), layers


def binding_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Records the device of every input onnxruntime's IO binding binds and of every output it
    copies back, as ("input"|"output", device name)."""
    log: list[tuple[str, str]] = []
    bind, copy = IOBinding.bind_input, IOBinding.copy_outputs_to_cpu

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):  # noqa: ANN001
        log.append(("input", str(device_type).lower()))
        return bind(self, name, device_type, device_id, element_type, shape, buffer_ptr)

    def copy_outputs_to_cpu(self):  # noqa: ANN001
        log.extend(("output", v.device_name().lower()) for v in self.get_outputs())
        return copy(self)

    monkeypatch.setattr(IOBinding, "bind_input", bind_input)
    monkeypatch.setattr(IOBinding, "copy_outputs_to_cpu", copy_outputs_to_cpu)
    return log


def random_input(model: Model, n: int, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).uniform(0, 255, (n, model.spec.height, model.spec.width, model.spec.channels))
    return model.spec.pixels_to_model(pixels.astype(np.float32))


# ---------------------------------------------------------------------- the helpers, on the CPU (not marked)
def test_profile_names_the_provider_of_every_layer(tiny_onnx, monkeypatch, tmp_path) -> None:
    model = profiled_model(tiny_onnx(), "cpu", monkeypatch, tmp_path)
    assert_layers_ran_on(model, "CPUExecutionProvider")
    ran = node_providers(next(tmp_path.glob("ort-cpu*.json")))
    assert {"Conv", "Gemm"} & set(ran) and all(p == {"CPUExecutionProvider"} for p in ran.values())


def test_binding_log_sees_each_batch_bound(tiny_onnx, monkeypatch) -> None:
    model = Model(tiny_onnx())
    x = random_input(model, 10)
    log = binding_log(monkeypatch)
    np.testing.assert_array_equal(model.predict(x, 4, io_binding=True), model.predict(x, 4))
    assert log == [("input", "cpu"), ("output", "cpu")] * 3  # ceil(10 / 4) batches, the plain call none


# ---------------------------------------------------------------------- on a CUDA GPU
MODELS: dict[str, Callable[..., Path]] = {"tiny": lambda tiny_onnx: tiny_onnx(), "o01": lambda _: zoo_path("o01")}


@pytest.fixture(scope="module")
def model_pair(tiny_onnx) -> Callable[[str], tuple[Model, Model]]:
    """model_pair("tiny" | "o01") -> (cpu Model, cuda Model) of the same file, built once per module."""
    built: dict[str, tuple[Model, Model]] = {}

    def get(key: str) -> tuple[Model, Model]:
        if key not in built:
            path = MODELS[key](tiny_onnx)
            built[key] = (Model(path, "cpu"), Model(path, "cuda"))
        return built[key]

    return get


@gpu
@pytest.mark.parametrize("key", sorted(MODELS))
def test_cuda_provider_runs_every_layer(key: str, tiny_onnx, monkeypatch, tmp_path) -> None:
    assert "CUDAExecutionProvider" in ort.get_available_providers(), "this onnxruntime has no CUDA provider"
    model = profiled_model(MODELS[key](tiny_onnx), "cuda", monkeypatch, tmp_path)
    assert model.session.get_providers()[0] == "CUDAExecutionProvider"
    assert_layers_ran_on(model, "CUDAExecutionProvider")


@gpu
@pytest.mark.parametrize("key", sorted(MODELS))
def test_predict_on_cuda_equals_cpu(key: str, model_pair) -> None:
    cpu, cuda = model_pair(key)
    x = random_input(cpu, 37, seed=1)
    ref = cpu.predict(x, 16)
    np.testing.assert_allclose(cuda.predict(x, 16), ref, atol=1e-4)
    np.testing.assert_allclose(cuda.predict(x, 16, io_binding=False), ref, atol=1e-4)
    assert next(cuda.torch_module.parameters()).is_cuda and cuda.torch_parity <= 1e-4


@gpu
def test_io_binding_keeps_batches_on_the_gpu(model_pair, faces, monkeypatch) -> None:
    """predict binds GPU memory and leaves outputs there until the copy; LIME and occlusion build
    their perturbed batches on the GPU (torch tensors) and hand them to predict_tensor."""
    _, cuda = model_pair("o01")
    log = binding_log(monkeypatch)
    cuda.predict(random_input(cuda, 100), 64)
    assert log == [("input", "cuda"), ("output", "cuda")] * math.ceil(100 / 64)
    devices: list[str] = []
    predict_tensor = Model.predict_tensor

    def spy(self: Model, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        devices.append(x.device.type)
        return predict_tensor(self, x, batch_size)

    monkeypatch.setattr(Model, "predict_tensor", spy)
    explain(cuda, faces[:2], "lime", samples=300, seed=0)
    explain(cuda, faces[:2], "occlusion")
    assert devices and set(devices) == {"cuda"}


@gpu
@pytest.mark.parametrize("key", sorted(MODELS))
@pytest.mark.parametrize("method", method_names())
def test_maps_on_cuda_equal_maps_on_cpu(method: str, key: str, model_pair, faces) -> None:
    """Same images, targets, seed and (default) parameters: the maps agree within MAP_TOLERANCE."""
    cpu, cuda = model_pair(key)
    images = faces[:3]
    targets = cpu.predict_images(images).argmax(axis=1)
    ref = explain(cpu, images, method, targets=targets, seed=0)
    got = explain(cuda, images, method, targets=targets, seed=0)
    assert got.maps.shape == ref.maps.shape
    diff = float(np.abs(got.maps - ref.maps).max())
    scale = max(1.0, float(np.abs(ref.maps).max()))
    assert diff <= MAP_TOLERANCE * scale, f"{method} on {key}: max |cuda - cpu| = {diff:.2e} (map scale {scale:.2g})"
