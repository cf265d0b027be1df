"""Device forms: "cpu", "cuda", "cuda:N" and torch.device; the GPU index reaches onnxruntime, torch and
the IO binding. No GPU here: onnxruntime's session is recorded (and run on the CPU) instead."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from onnxplain.engine import BadInputError, Model
from onnxplain.engine import model as model_module
from onnxplain.engine.devices import device_name, parse_device


@pytest.mark.parametrize("given, parsed, name", [
    ("cpu", ("cpu", None), "cpu"), ("cuda", ("cuda", None), "cuda"), ("cuda:1", ("cuda", 1), "cuda:1"),
    (" CUDA:12 ", ("cuda", 12), "cuda:12"), (torch.device("cuda", 3), ("cuda", 3), "cuda:3"),
    (torch.device("cuda"), ("cuda", None), "cuda"), (torch.device("cpu"), ("cpu", None), "cpu"),
])
def test_device_forms(given, parsed: tuple, name: str) -> None:
    assert parse_device(given) == parsed and device_name(given) == name


@pytest.mark.parametrize("bad", ["gpu", "auto", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "cuda:1:2", "", 0, None,
                                 torch.device("meta")])
def test_bad_device_forms_are_one_line_errors_naming_the_parameter(bad) -> None:
    with pytest.raises(BadInputError, match='`device` .* is not "cpu", "cuda", "cuda:N"') as err:
        parse_device(bad)
    assert err.value.params == ("device",) and "\n" not in str(err.value)


def test_model_rejects_a_bad_device_before_reading_the_file(tmp_path) -> None:
    with pytest.raises(BadInputError, match="`device`"):
        Model(tmp_path / "missing.onnx", device="gpu:1")


@pytest.fixture
def recorded_cuda(monkeypatch: pytest.MonkeyPatch) -> list:
    """onnxruntime sessions that record the providers asked for, run on the CPU and report CUDA as theirs."""
    seen: list = []

    class CudaLookalike(ort.InferenceSession):
        def __init__(self, model: bytes, sess_options=None, providers=None) -> None:
            seen.append(providers)
            super().__init__(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(ort, "InferenceSession", CudaLookalike)
    monkeypatch.setattr(model_module, "_preload_cuda_libraries", lambda _ort: None)
    return seen


@pytest.mark.parametrize("device, index", [("cuda", 0), ("cuda:1", 1), (torch.device("cuda", 2), 2)])
def test_the_gpu_index_reaches_onnxruntime_torch_and_the_binding(tiny_onnx, recorded_cuda, device, index) -> None:
    m = Model(tiny_onnx(), device=device)
    assert recorded_cuda == [[("CUDAExecutionProvider", {"device_id": index, "use_tf32": 0}), "CPUExecutionProvider"]]
    assert m.device == device_name(device) and m.device_kind == "cuda"
    assert m.torch_device == torch.device("cuda", index)
    assert m.binding_device() == ("cuda", index)


def test_the_binding_binds_where_binding_device_says(tiny_onnx, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(tiny_onnx(), device="cpu")
    calls: list = []
    real = m.session.io_binding

    def recording_binding():
        binding = real()

        class Recorder:
            def bind_input(self, name, kind, index, *rest):
                calls.append(("in", kind, index))
                return binding.bind_input(name, "cpu", 0, *rest)  # where the data really is

            def bind_output(self, name, kind, index):
                calls.append(("out", kind, index))
                return binding.bind_output(name, "cpu", 0)

            def __getattr__(self, attr):
                return getattr(binding, attr)

        return Recorder()

    monkeypatch.setattr(m.session, "io_binding", recording_binding)
    monkeypatch.setattr(m, "binding_device", lambda: ("cpu", 7))  # as a "cuda:7" Model would say ("cuda", 7)
    x = np.random.default_rng(0).normal(size=(3, *m.spec.shape)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x, io_binding=True), m.predict(x, io_binding=False), rtol=1e-6, atol=1e-7)
    assert calls and set(calls) == {("in", "cpu", 7), ("out", "cpu", 7)}
