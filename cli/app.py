"""The `onnxplain` command line: a thin Typer app over the engine and the exporters.

Each `commands_*.py` module has a `register(app)` function that adds its commands; adding a
command module means writing it and naming it in COMMAND_MODULES below.
"""
from __future__ import annotations

from typing import Annotated

import typer

from . import commands_bench, commands_compare, commands_eval, commands_explain, commands_features, commands_grade, commands_model
from .errors import OnnxplainGroup

COMMAND_MODULES = (commands_model, commands_explain, commands_features, commands_eval, commands_compare, commands_grade,
                   commands_bench)

app = typer.Typer(
    name="onnxplain",
    cls=OnnxplainGroup,
    help="Explain image-classification CNNs from Keras, PyTorch and ONNX: saliency, SmoothGrad, integrated "
         "gradients, Grad-CAM, LIME, occlusion, filter visualisation, evaluation and one HTML report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from ..engine.versions import onnxplain_version

        typer.echo(f"onnxplain {onnxplain_version()}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs (or set ONNXPLAIN_DEBUG=1).")]
    = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """onnxplain: explain any student's CNN, whatever framework it was trained in."""
    # --debug is read (and taken off the line) by OnnxplainGroup.main before parsing, so that it
    # works anywhere on the command line; it is declared here for --help.


for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """Console-script entry point (`onnxplain`)."""
    app()
