"""`export` (any supported file -> ONNX + sidecar) and `inspect` (the Keras-style model summary)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from onnxplain.engine.errors import ConversionError
from onnxplain.engine.sidecar import read_sidecar

from .loading import ModelOptions, check_model_path, model_options, open_model
from .options import (
    MODEL_PANEL, ArchArgsOpt, ArchOpt, InputShapeOpt, JsonOpt, LabelsOpt, LayoutOpt, MeanOpt, ModelArg, QuietOpt,
    ScaleOpt, StdOpt, TrustOpt, WeightsKeyOpt,
)
from .output import command_output, default_out, say


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("inspect")(inspect_command)


def export_command(
    src: Annotated[Path, typer.Argument(help="A Keras .h5/.hdf5/.keras, PyTorch .pt/.pth/.pkl or .onnx file.",
                                        show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="The ONNX file to write (default: onnxplain-out/<name>/<name>.onnx; never beside SRC, "
        "which may be a student's folder).", show_default=False)] = None,
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    input_shape: InputShapeOpt = None,
    weights_key: WeightsKeyOpt = None,
    trust: TrustOpt = False,
    layout: LayoutOpt = None,
    labels: LabelsOpt = None,
    scale: ScaleOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    images: Annotated[Optional[list[str]], typer.Option(
        "--images", help="Real images (INPUTS syntax) for the parity check; repeat the option for more.",
        rich_help_panel=MODEL_PANEL, show_default=False)] = None,
    allow_mismatch: Annotated[bool, typer.Option(
        "--allow-mismatch", help="Write the ONNX file even when its outputs differ from the source model's.",
        rich_help_panel=MODEL_PANEL)] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds the export may take.",
                                           rich_help_panel=MODEL_PANEL)] = 120.0,
    memory_gb: Annotated[float, typer.Option("--memory-gb", min=0.5, help="Memory cap of the export process (GiB).",
                                             rich_help_panel=MODEL_PANEL)] = 4.0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a Keras or PyTorch model to ONNX, with a sidecar and a parity check.

    The export runs in an isolated, time- and memory-limited process; untrusted code never runs
    unless --trust."""
    from onnxplain.engine.data import parse_inputs
    from onnxplain.exporters import export

    check_model_path(src)
    kwargs = ModelOptions(labels=labels, scale=scale, mean=mean, std=std,
                          layout=layout.value if layout else None, input_shape=input_shape, trust=trust, arch=arch,
                          arch_args=arch_args, weights_key=weights_key).export_kwargs()
    real = [img for _, img in parse_inputs(images)] if images else None
    if out is None:
        out = default_out(src, f"{default_out(src).name}.onnx")
        out.parent.mkdir(parents=True, exist_ok=True)
    with command_output(json_mode=json_out, quiet=quiet) as run:
        run.progress(f"exporting {src.name} to ONNX", None)
        path = Path(export(src, out, images=real, allow_mismatch=allow_mismatch, timeout=timeout,
                           memory_gb=memory_gb, **kwargs))
        sidecar = read_sidecar(path) or {}
        doc = {"command": "export", "source": str(src), "onnx": str(path), "sidecar": str(path) + ".json",
               "parity": sidecar.get("parity"), "input": sidecar.get("input"),
               "preprocessing": sidecar.get("preprocessing"), "labels": sidecar.get("labels"),
               "opset": sidecar.get("opset"), "found": found_notes(sidecar.get("source") or {})}
        run.result(doc, paths=[path], human=lambda console: _print_export(console, doc))


def found_notes(source: dict[str, Any]) -> list[str]:
    """What the export worked out by itself, in words (the class, the input size, the weights' key...)."""
    notes = []
    if source.get("model_class"):
        args = source.get("arch_args")
        shown = f" with {args}" if args else ""
        notes.append(f"model class: {source['model_class']}{shown}, the one whose state_dict fits the weights")
    if source.get("input_inferred"):
        notes.append(f"input size: {source['input_inferred']}")
    if source.get("weights_key"):
        notes.append(f"weights: the checkpoint's {source['weights_key']!r} entry")
    if source.get("labels"):
        notes.append(f"class names: from the checkpoint ({', '.join(source['labels'][:6])}"
                     + (", ..." if len(source["labels"]) > 6 else "") + ")")
    if source.get("weights_dtype"):
        notes.append(f"weights stored as {source['weights_dtype']}, loaded as float32")
    if str(source.get("serialization", "")).startswith("h5 full model (Keras 1"):
        notes.append(f"Keras {source.get('framework_version')} file translated to Keras 2; backend {source.get('backend')}")
    return notes


def _print_export(console: Console, doc: dict[str, Any]) -> None:
    parity = doc.get("parity") or {}
    figure = parity.get("max_abs_diff")
    line = f"exported {doc['source']} (opset {doc.get('opset')})"
    if figure is not None:
        line += f"; parity with the source: max |diff| {figure:.2e}"
    say(console, line)
    for note in doc.get("found") or []:
        say(console, note)


@model_options
def inspect_command(
    model: ModelArg,
    parity: Annotated[bool, typer.Option(
        "--parity/--no-parity", help="Build the torch module and measure its agreement with onnxruntime.")] = True,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """The model summary: layers, output shapes, parameters, input spec, opset, parity."""
    with command_output(json_mode=json_out, quiet=quiet) as run:
        m = open_model(model, model_opts, run.progress)
        torch_error = None
        if parity:
            run.progress("building the torch module and checking parity", None)
            try:
                _ = m.torch_parity
            except ConversionError as exc:  # the summary still stands; gradient methods will not
                torch_error = str(exc)
        summary = {"command": "inspect", **m.summary(), "device": m.device, "torch_error": torch_error}
        run.result(summary, paths=[], human=lambda console: print_summary(console, summary))


def print_summary(console: Console, s: dict[str, Any]) -> None:
    source = s.get("source_summary")
    if source:
        name = Path(str((s.get("source") or {}).get("path") or s["path"])).name
        console.print(source_table(source, title=f"{name}: {source['style']}"))
        say(console, f"Total params: {source['total_params']:,}   Trainable params: {source['trainable_params']:,}   "
                     f"Non-trainable params: {source['non_trainable_params']:,}")
        if source.get("note"):
            say(console, f"note: {source['note']}")
    else:
        console.print(_onnx_table(s))
        say(console, f"note: {s['summary_note']}")
    _print_model_facts(console, s)


def source_table(source: dict[str, Any], *, title: str) -> Table:
    """The framework's summary as it prints it: name (class), output shape, parameters; torch rows indented by depth."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for col, justify in (("layer (type)", "left"), ("output shape", "left"), ("params", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in source["rows"]:
        indent = "  " * max(int(row.get("depth") or 0) - 1, 0)
        table.add_row(f"{indent}{row['name']} ({row['class']})", row["output_shape"], f"{row['params']:,}")
    return table


def _onnx_table(s: dict[str, Any]) -> Table:
    table = Table(title=f"{Path(s['path']).name}: ONNX layers", title_justify="left", show_lines=False)
    for col, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for layer in s["layers"]:
        shape = "(None, " + ", ".join(map(str, layer["output_shape"])) + ")" if layer["output_shape"] else "?"
        table.add_row(layer["name"], f"{layer['kind']} ({layer['op_type']})", shape, f"{layer['params']:,}")
    return table


def _print_model_facts(console: Console, s: dict[str, Any]) -> None:
    spec = s["input"]
    dims = (f"{spec['channels']}x{spec['height']}x{spec['width']}" if spec["layout"] == "NCHW"
            else f"{spec['height']}x{spec['width']}x{spec['channels']}")
    pre = s["preprocessing"]
    lines = [
        f"ONNX layers: {s['onnx_layer_params']:,} params (all float weights in the file: {s['all_params']:,})",
        f"input: {spec['name']} {spec['layout']} {dims}{' (dynamic batch)' if spec['dynamic_batch'] else ''}",
        f"preprocessing: (pixel * {pre['scale']:.6g} - {_nums(pre['mean'])}) / {_nums(pre['std'])}",
        f"output: {s['classes']} classes, {s['output_kind']}"
        + (f" ({', '.join(s['labels'])})" if s.get("labels") else " (no labels; give --labels)"),
        f"opset: {s['opset']}   producer: {s['producer'] or 'unknown'}   device: {s['device']}",
    ]
    if s.get("export_parity") is not None:
        lines.append(f"export parity (source vs ONNX): max |diff| {s['export_parity']:.2e}")
    if s.get("torch_parity") is not None:
        lines.append(f"torch parity (torch module vs onnxruntime): max |diff| {s['torch_parity']:.2e}")
    if s.get("torch_error"):
        lines.append(f"torch module: FAILED ({s['torch_error']}); gradient methods are unavailable")
    choices = s["layer_choices"]
    others = [name for name in choices["any"] if name not in choices["conv"]]
    lines.append("--layer accepts: " + (", ".join(choices["conv"]) or "no conv layer")
                 + (f" (conv layers; also {', '.join(others)})" if others else " (conv layers)"))
    for line in lines:
        say(console, line)


def _nums(values: list[float]) -> str:
    return values[0].__format__(".6g") if len(set(values)) == 1 else "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
