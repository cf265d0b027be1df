"""`onnxplain bench MODEL`: latency, throughput and peak memory of the methods on one model, with
Captum and the lime package side by side (`--compare`), through the one timing harness
(`onnxplain.benchmarks`)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from onnxplain.benchmarks.output import backend_rows, markdown_notes, table_rows, threads_text, throughput_rows
from onnxplain.benchmarks.results import BenchReport
from onnxplain.benchmarks.runner import BenchConfig, benchmarked_methods, parse_int_list, parse_methods, run_benchmark

from .loading import model_options, open_model
from .options import JsonOpt, ModelArg, QuietOpt, RegistryHelpOption, SeedOpt
from .output import command_output

MethodsOpt = Annotated[Optional[str], RegistryHelpOption(
    "--methods", show_default=False,
    make_help=lambda: f"Comma-separated methods to time (default: all of {','.join(benchmarked_methods())}).")]
BatchSizesOpt = Annotated[str, typer.Option(
    "--batch-sizes", help="Images per call, comma-separated: each method is timed on each count.")]
RepeatsOpt = Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per measurement (median and IQR).")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before the timed ones.")]
CompareOpt = Annotated[bool, typer.Option(
    "--compare", help="Also time the references: Captum on the plain onnx2torch module (and on onnxplain's own "
                      "module), the lime package (test extras: pip install 'onnxplain[test]').")]
FloorsOpt = Annotated[bool, typer.Option(
    "--floors/--no-floors", help="Forward throughput per backend and each forward-only method's floor.")]


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


@model_options
def bench(
    model: ModelArg,
    methods: MethodsOpt = None,
    batch_sizes: BatchSizesOpt = "1,16",
    repeats: RepeatsOpt = 5,
    warmup: WarmupOpt = 1,
    compare: CompareOpt = False,
    floors: FloorsOpt = True,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts,  # type: ignore[no-untyped-def]
) -> None:
    """Time the methods on MODEL (seeded synthetic images): medians, IQRs, peak memory, floors, targets."""
    config = BenchConfig(methods=parse_methods(methods), batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"),
                         repeats=repeats, warmup=warmup, compare=compare, floors=floors, backends=floors, seed=seed,
                         method_batch_size=model_opts.batch_size)
    with command_output(json_mode=json_out, quiet=quiet) as out:
        m = open_model(Path(model), model_opts, out.progress)
        report = run_benchmark(m, None, config, name=Path(model).name, progress=out.progress)
        out.result(report.as_dict(), paths=[], human=lambda console: print_report(console, report))


def _table(title: str, head: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for name in head:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def print_report(console: Console, report: BenchReport) -> None:
    title = escape(f"{report.model} on {report.device}: {report.device_name}; {threads_text(report)}")
    console.print(_table(title, *table_rows(report, compact=True)))
    if report.throughput:
        console.print(_table(f"Forward throughput (images/s) by batch size; {threads_text(report)}",
                             *throughput_rows(report)))
    head, rows = backend_rows(report)
    if rows:
        console.print(_table(f"Forward-only methods by backend (ratio: to that backend's floor); "
                             f"{threads_text(report)}", head, rows))
    refs = sorted({r.reference_name for r in report.rows if r.reference_name})
    if refs:
        console.print(f"References: {'; '.join(refs)}.", markup=False, highlight=False)
    for note in [*markdown_notes(report), *(f"Not measured: {n}." for n in report.notes)]:
        console.print(note, markup=False, highlight=False)
