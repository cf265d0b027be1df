"""Options shared by the commands: `str` Enums for choices and `Annotated` aliases, so that a
command declares a common option in one line and every command spells it the same way."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from typer.models import OptionInfo

from onnxplain.engine.devices import device_name
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.segmentation import SEGMENTERS

MODEL_PANEL = "Model loading"
OUTPUT_PANEL = "Output"
METHOD_PANEL = "Method parameters"


class TargetOutput(str, Enum):
    logit = "logit"
    probability = "probability"


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


# LIME's segmentation algorithms, from the engine's own list.
Segments = Enum("Segments", {name: name for name in SEGMENTERS}, type=str)  # type: ignore[misc]


class RegistryHelpOption(OptionInfo):
    """An option whose help text is written from the method registry each time the command is built (each
    run), not once at import: a method registered later (a plugin, a test's toy) is listed too."""

    def __init__(self, name: str, *param_decls: str, make_help: Callable[[], str], **kwargs: Any) -> None:
        self._make_help = make_help
        # As `typer.Option("--name", ...)` inside Annotated: the first string is the option's name.
        super().__init__(default=name, param_decls=param_decls, **kwargs)

    @property  # type: ignore[override]
    def help(self) -> str:
        return self._make_help()

    @help.setter
    def help(self, value: object) -> None:
        """OptionInfo's constructor sets a static help; `make_help` replaces it."""


def method_help() -> str:
    """The registered methods, in the registry's order."""
    from onnxplain.engine.registry import method_infos

    return "One of: " + ", ".join(i.name for i in method_infos()) + "."


# ------------------------------------------------------------------------------------ arguments
ModelArg = Annotated[Path, typer.Argument(
    help="The model: .onnx, Keras .h5/.hdf5/.keras, or PyTorch .pt/.pth/.pkl (exported on the fly, cached).",
    show_default=False)]
DataOpt = Annotated[Path, typer.Option(
    "--data", help="A dataset: FER2013 CSV, ImageFolder or Food-11 folder, .npz (x, y), .npy, MNIST idx3-ubyte.",
    show_default=False)]
OptionalDataOpt = Annotated[Optional[Path], typer.Option(
    "--data", help="A dataset to pick images from (with --per-class).", show_default=False)]
LimitOpt = Annotated[Optional[int], typer.Option(
    "--limit", min=1, help="Use only the first N images of the dataset.", show_default=False)]
LayerOpt = Annotated[Optional[str], typer.Option(
    "--layer", help="A conv layer by the name the source framework gave it (conv2d_7, features.3).",
    show_default=False)]

# ------------------------------------------------------------------------------------ model loading
PerClassOpt = Annotated[int, typer.Option("--per-class", min=1, help="Images of each class to explain.")]
MethodsOpt = Annotated[Optional[str], typer.Option(
    "--methods", help="Comma-separated attribution methods, e.g. saliency,lime (default: as the command says).",
    show_default=False)]


def parse_methods(text: str | None) -> list[str] | None:
    """`--methods a, b` -> ["a", "b"]; None when not given (the command's default)."""
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


HistoryOpt = Annotated[Optional[list[str]], typer.Option(
    "--history", help="Training history: a Keras CSVLogger CSV, a JSON or pickled History.history dict, a CSV/JSON "
    "table with an epoch column, or loss=a.npy,accuracy=b.npy (repeat for compare: one per model, in order).",
    show_default=False)]
def parse_device_choice(text: str) -> str:
    """`--device`: auto, or what `engine.devices` accepts (cpu, cuda, cuda:N), in its canonical spelling."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return device_name(text)
    except BadInputError:
        raise typer.BadParameter(f"{text!r} is not auto, cpu, cuda or cuda:N (N a GPU index)") from None


DeviceOpt = Annotated[str, typer.Option(
    "--device", parser=parse_device_choice, metavar="auto|cpu|cuda|cuda:N",
    help="auto: cuda when onnxruntime has the CUDA provider and torch sees a GPU, else cpu; cuda:N picks GPU N.",
    rich_help_panel=MODEL_PANEL)]
LabelsOpt = Annotated[Optional[str], typer.Option(
    "--labels", help="Class names: fer2013, food11, digits, or a comma-separated list a,b,c.",
    rich_help_panel=MODEL_PANEL, show_default=False)]
ScaleOpt = Annotated[Optional[float], typer.Option(
    "--scale", help="Preprocessing: model input = (pixel * scale - mean) / std. Default: sidecar, else 1/255.",
    rich_help_panel=MODEL_PANEL, show_default=False)]
MeanOpt = Annotated[Optional[str], typer.Option(
    "--mean", help="One number or one per channel (0.485,0.456,0.406).", rich_help_panel=MODEL_PANEL,
    show_default=False)]
StdOpt = Annotated[Optional[str], typer.Option(
    "--std", help="One number or one per channel.", rich_help_panel=MODEL_PANEL, show_default=False)]
LayoutOpt = Annotated[Optional[Layout], typer.Option(
    "--layout", help="Input layout when the graph does not tell.", case_sensitive=False,
    rich_help_panel=MODEL_PANEL, show_default=False)]
InputShapeOpt = Annotated[Optional[str], typer.Option(
    "--input-shape", help="Input shape N,C,H,W (or N,H,W,C), for dynamic or unknown inputs: 1,1,48,48.",
    rich_help_panel=MODEL_PANEL, show_default=False)]
TrustOpt = Annotated[bool, typer.Option(
    "--trust", help="Allow code from the model file to run (whole-model pickles, Keras Lambda layers).",
    rich_help_panel=MODEL_PANEL)]
ArchOpt = Annotated[Optional[str], typer.Option(
    "--arch", help="Architecture for weights-only files: a Keras JSON/YAML file, or MODULE:CLASS / file.py:CLASS.",
    rich_help_panel=MODEL_PANEL, show_default=False)]
ArchArgsOpt = Annotated[Optional[str], typer.Option(
    "--arch-args", help='Arguments for --arch as JSON: \'{"num_classes": 7}\'.', rich_help_panel=MODEL_PANEL,
    show_default=False)]
WeightsKeyOpt = Annotated[Optional[str], typer.Option(
    "--weights-key", help="Key of the state_dict inside a checkpoint dict (e.g. model_state_dict).",
    rich_help_panel=MODEL_PANEL, show_default=False)]
BatchSizeOpt = Annotated[Optional[int], typer.Option(
    "--batch-size", min=1, help="Images per batch (default: the method's own).", rich_help_panel=MODEL_PANEL,
    show_default=False)]

# ------------------------------------------------------------------------------------ output
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Output folder (default: onnxplain-out/<model name>/...).", rich_help_panel=OUTPUT_PANEL,
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print one JSON document on stdout (progress and logs go to stderr).",
    rich_help_panel=OUTPUT_PANEL)]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress bars and no tables; print only the paths written.",
    rich_help_panel=OUTPUT_PANEL)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same results).")]

# ------------------------------------------------------------------------------------ integrated gradients
IgStepsOpt = Annotated[Optional[int], typer.Option(
    "--steps", min=1, help="Integrated gradients: integration steps (default 50).", rich_help_panel=METHOD_PANEL,
    show_default=False)]
IgToleranceOpt = Annotated[Optional[float], typer.Option(
    "--tolerance", help="IG: integrate again with twice the steps (up to 1024) each image whose completeness error "
    "is above this fraction, e.g. 0.01.", rich_help_panel=METHOD_PANEL, show_default=False)]


def _target_output_help() -> str:
    from onnxplain.engine.registry import method_infos

    takers = ", ".join(i.name for i in method_infos() if "target_output" in i.params)
    return (f"Gradient methods ({takers}): explain the pre-softmax score (logit, the default, also for models "
            "ending in softmax) or the probability.")


TargetOutputOpt = Annotated[Optional[TargetOutput], RegistryHelpOption(
    "--target-output", make_help=_target_output_help, case_sensitive=False, rich_help_panel=METHOD_PANEL,
    show_default=False)]


def gradient_params(steps: int | None, tolerance: float | None,
                    target_output: TargetOutput | None = None) -> dict[str, dict[str, Any]]:
    """The per-method parameters a report or grade passes on (only those given): integrated gradients'
    steps and tolerance, and the target output of every method that takes one."""
    from onnxplain.engine.registry import get_method, method_names

    params: dict[str, dict[str, Any]] = {}
    ig = {k: v for k, v in {"steps": steps, "tolerance": tolerance}.items() if v is not None}
    if ig:
        params["ig"] = ig
    if target_output is not None:
        for name in method_names():
            if "target_output" in get_method(name).params:
                params.setdefault(name, {})["target_output"] = target_output.value
    return params


def parse_samples(text: str) -> int | str:
    """`--samples`: a whole number of at least 1, or `auto` (LIME only: as many as its top superpixels need)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number or 'auto'") from None
    if value < 1:
        raise typer.BadParameter(f"{value} is less than 1")
    return value


_AUTO_HELP = "auto: in rounds until the top-5 superpixels are as stable as the lime package at 1,000, at most 5,000"
# The annotations say str for Typer (it has no unions); the parser gives an int or "auto".
SamplesOpt = Annotated[Optional[str], typer.Option(
    "--samples", parser=parse_samples, metavar="N|auto", help=f"LIME perturbations ({_AUTO_HELP}) / SmoothGrad "
    "noisy copies.", rich_help_panel=METHOD_PANEL, show_default=False)]
LimeSamplesOpt = Annotated[Optional[str], typer.Option(
    "--samples", parser=parse_samples, metavar="N|auto", help=f"LIME perturbations per image ({_AUTO_HELP}; "
    "default auto).", rich_help_panel=METHOD_PANEL, show_default=False)]




def report_params(steps: int | None, tolerance: float | None, samples: int | str | None,
                  target_output: TargetOutput | None = None) -> dict[str, dict[str, Any]]:
    """`gradient_params`, plus LIME's sample count when given: what report and grade pass on."""
    params = gradient_params(steps, tolerance, target_output)
    if samples is not None:
        params.setdefault("lime", {})["samples"] = samples
    return params


def parse_index_list(text: str | None, what: str) -> list[int] | None:
    """`0-15` or `0,3,7` -> indices (ranges inclusive)."""
    if text is None:
        return None
    from onnxplain.engine.data import parse_rows

    try:
        return parse_rows(text)
    except BadInputError:
        raise BadInputError(f"--{what} {text!r} is not like 0-15 or 0,3,7") from None
