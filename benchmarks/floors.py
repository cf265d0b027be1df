"""The forward-pass floor of the forward-only methods: pure forward throughput on onnxruntime and on the
torch module (`forward_throughput`), how many passes a method needs (from the registry), and a Model
whose forward passes run on its torch module (`TorchBackendModel`), so those methods can be timed on
either backend unchanged."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np

from onnxplain.engine.batching import torch_batched
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.registry import get_method, method_infos

from .results import Throughput
from .timing import Clock, device_sync, time_call

if TYPE_CHECKING:
    import torch

    from onnxplain.engine.model import Model

FLOOR_BATCH_SIZES = (64, 256, 1024)


def torch_predict(model: "Model", x: "np.ndarray | torch.Tensor", batch_size: int = 256) -> np.ndarray:
    """`Model.predict` on the torch module instead of onnxruntime (same batching, outputs on the host)."""
    import torch

    xt = torch.as_tensor(np.ascontiguousarray(x, np.float32) if isinstance(x, np.ndarray) else x)
    xt = xt.to(device=model.torch_device, dtype=torch.float32)
    module = model.torch_module
    with torch.inference_mode():
        y = torch_batched(module, xt, batch_size=batch_size)
    return y.float().cpu().numpy()


class TorchBackendModel:
    """A Model whose forward passes (`predict`, `predict_tensor`) run on its torch module.

    Lets the forward-only methods, written against `Model.predict` (onnxruntime), be timed on the
    other backend unchanged; every other attribute is the wrapped Model's.
    """

    def __init__(self, model: "Model") -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, x: np.ndarray, batch_size: int = 256, **_: Any) -> np.ndarray:
        return torch_predict(self._model, x, batch_size)

    def predict_tensor(self, x: "torch.Tensor", batch_size: int = 256) -> np.ndarray:
        return torch_predict(self._model, x, batch_size)


def forward_pool(x: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`size` model inputs for throughput runs: the given images cycled, with a little seeded noise."""
    rng = np.random.default_rng(seed)
    reps = x[np.arange(size) % len(x)]
    scale = np.float32(0.01 * (float(x.max()) - float(x.min()) or 1.0))
    return np.ascontiguousarray(reps + scale * rng.standard_normal(reps.shape, dtype=np.float32))


def forward_throughput(
    model: "Model",
    x: np.ndarray,
    backend: Literal["onnxruntime", "torch"] = "onnxruntime",
    batch_sizes: Sequence[int] = FLOOR_BATCH_SIZES,
    *,
    pool: int | None = None,
    repeats: int = 3,
    warmup: int = 1,
    budget_s: float | None = None,
    clock: Clock = time.perf_counter,
) -> Throughput:
    """Images/s of pure forward passes at each batch size, on onnxruntime or on the torch module.

    The pool holds max(batch_sizes) images (at least `pool`), so every batch size runs full batches.
    On cuda the pool sits on the device and onnxruntime reads it through IO binding.
    """
    n = max(pool or 0, *batch_sizes)
    data = forward_pool(x, n)
    if backend == "onnxruntime":
        if model.device_kind == "cuda":
            import torch

            xt = torch.from_numpy(data).to(model.torch_device)
            run: Callable[[int], Any] = lambda b: model.predict_tensor(xt, b)  # noqa: E731
        else:
            run = lambda b: model.predict(data, b)  # noqa: E731
    elif backend == "torch":
        import torch

        xt = torch.from_numpy(data).to(model.torch_device)
        run = lambda b: torch_predict(model, xt, b)  # noqa: E731
    else:
        raise BadInputError(f"unknown backend {backend!r}; known: onnxruntime, torch")
    sync = device_sync(model.device)
    per_batch = {int(b): time_call(lambda b=b: run(b), repeats=repeats, warmup=warmup, sync=sync, clock=clock,
                                   images=n, budget_s=budget_s)
                 for b in batch_sizes}
    return Throughput(backend, per_batch)


def forward_passes(method: str, params: dict[str, Any], model: "Model") -> int:
    """Forward passes one image needs, as the method's registry entry counts them (`forward_passes`)."""
    count = get_method(method).forward_passes
    if count is None:
        counted = [i.name for i in method_infos() if i.forward_passes is not None]
        raise BadInputError(f"{method!r} does not count its forward passes; these do: {', '.join(counted)}")
    return int(count(params, model.spec))
