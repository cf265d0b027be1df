"""The tables of a benchmark run: markdown (and the cells the CLI's terminal tables share) and the one
JSON document. Every table says which threads the run used."""
from __future__ import annotations

from typing import Any, Sequence

from onnxplain.engine.devices import is_cuda

from .memory import Measurement
from .results import BenchReport
from .targets import Check
from .timing import Timing

MIB = 1024 * 1024


def _ms(t: Timing | None) -> str:
    return "" if t is None else f"{t.ms:.3g} ({t.iqr * 1e3:.2g})"


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "" if v is None else fmt.format(v)


def _ratio(value: float | None, iqr: tuple[float, float] | None, rounds: int) -> str:
    if value is None:
        return ""
    return f"{value:.2f}x" + (f" ({iqr[0]:.2f}-{iqr[1]:.2f})" if iqr and rounds > 1 else "")


def threads_text(report: BenchReport) -> str:
    """'threads: torch 2, onnxruntime default': what the run used (0 threads is onnxruntime's default)."""
    t = report.threads
    ort = t.get("onnxruntime")
    return f"threads: torch {t.get('torch', '?')}, onnxruntime {ort or 'default'}"


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "defaults"


def _mib(v: int | None) -> str:
    return "" if v is None else f"{v / MIB:.0f}"


def _host_mem(m: Measurement | None) -> str:
    """Peak RSS of the run and, in brackets, how far it rose above the RSS before the run."""
    if m is None or m.memory is None:
        return ""
    return f"{_mib(m.memory.host_peak)} (+{_mib(m.memory.host_delta)})"


def _gpu_mem(m: Measurement | None) -> str:
    """Torch allocator peak and the sampled device-wide rise (onnxruntime's arena included)."""
    if m is None or m.memory is None or m.memory.gpu_allocator_peak is None:
        return ""
    return f"{_mib(m.memory.gpu_allocator_peak)} (+{_mib(m.memory.gpu_device_delta)})"


def _pair(a: str, b: str) -> str:
    return f"{a} / {b}" if b else a


def check_text(c: Check) -> str:
    if c.met is None:
        return f"not measured: {c.target}"
    return f"{'met' if c.met else '**MISSED**'}: {c.target} ({c.value:.3g})"


def table_rows(report: BenchReport, *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """The main table (one row per method and batch) as header + cells; markdown and the CLI share it.
    `compact` (for a terminal) leaves out the parameters, the reference's name, passes and floor."""
    gpu = is_cuda(report.device)
    head = ["method", "params", "images", "onnxplain ms (IQR)", "ms/image", "reference", "reference ms (IQR)",
            "speedup", "vs Captum on our module", "map diff", "passes", "floor ms", "ours/floor", "host MiB ours / ref"]
    if gpu:
        head.append("GPU MiB ours / ref")
    head.append("targets")
    rows = []
    for r in report.rows:
        cells = [r.method, _params(r.params), str(r.images), _ms(r.ours.timing), f"{r.ours.timing.ms_per_image:.3g}",
                 r.reference_name or "", _ms(r.reference.timing if r.reference else None),
                 _ratio(r.speedup, r.speedup_iqr, len(r.ratios)),
                 _ratio(r.module_speedup, r.module_speedup_iqr, len(r.module_ratios)), _num(r.agreement, "{:.1e}"),
                 str(r.forward_passes or ""),
                 _num(r.floor_s and r.floor_s * 1e3, "{:.3g}"),
                 _num(r.floor_ratio, "{:.2f}x"), _pair(_host_mem(r.ours), _host_mem(r.reference))]
        if gpu:
            cells.append(_pair(_gpu_mem(r.ours), _gpu_mem(r.reference)))
        cells.append("; ".join(check_text(c) for c in r.checks) or "no target")
        rows.append(cells)
    if compact:
        keep = [i for i, h in enumerate(head) if h not in ("params", "reference", "map diff", "passes", "floor ms")]
        head = [head[i] for i in keep]
        rows = [[row[i].replace("**MISSED**", "MISSED") for i in keep] for row in rows]
    return head, rows


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def throughput_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Forward throughput (images/s) per backend and batch size."""
    sizes = sorted({b for t in report.throughput.values() for b in t.per_batch})
    return (["backend", *map(str, sizes), "best"],
            [[name, *(_num(t.images_per_s.get(b), "{:.0f}") for b in sizes), f"{t.best:.0f} (batch {t.best_batch})"]
             for name, t in report.throughput.items()])


def backend_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Forward-only methods on onnxruntime and on the torch module, each against its own floor."""
    head = ["method", "images", "passes", "onnxruntime ms", "floor ms", "ratio", "torch module ms", "floor ms",
            "ratio"]
    return head, [[r.method, str(r.images), str(r.forward_passes), f"{r.ours.timing.ms:.3g}",
                   _num(r.floor_s and r.floor_s * 1e3, "{:.3g}"), _num(r.floor_ratio, "{:.2f}x"),
                   _num(r.torch_backend.timing.ms if r.torch_backend else None, "{:.3g}"),
                   _num(r.torch_floor_s and r.torch_floor_s * 1e3, "{:.3g}"), _num(r.torch_floor_ratio, "{:.2f}x")]
                  for r in report.rows if r.forward_passes and r.torch_backend]


def markdown_notes(report: BenchReport) -> list[str]:
    """What the columns mean, and the count of targets met and missed."""
    cfg = report.config
    legend = (f"Medians of up to {cfg['repeats']} runs after {cfg['warmup']} warm-up run(s), interquartile range in "
              "brackets. onnxplain and its reference are timed interleaved (one call of each per round, the order "
              "alternating); speedup = median over rounds of reference / onnxplain (IQR in brackets); vs Captum on our "
              "module = the same for Captum run on onnxplain's own torch module, timed in the same rounds (below 1: "
              "our method code costs more than Captum's around the same module); map diff = "
              "max |ours - reference| / max |reference| (SmoothGrad: of the mean maps; LIME: not compared); "
              "ours/floor = onnxplain / the time its forward passes take at the model's best forward throughput; "
              "host MiB = the process's peak RSS during one run (+ its rise above the RSS before that run)")
    if is_cuda(report.device):
        legend += ("; GPU MiB = torch's allocator peak (+ the rise of the device's used memory, which includes "
                   "onnxruntime's arena)")
    checks = [c for r in report.rows for c in r.checks]
    met = sum(c.met is True for c in checks)
    missed = sum(c.met is False for c in checks)
    return [legend + ".", f"Targets: {met} met, {missed} missed, {len(checks) - met - missed} not measured."]


def markdown(report: BenchReport) -> str:
    legend, summary = markdown_notes(report)
    lines = [f"### {report.model} on {report.device}: {report.device_name}; {threads_text(report)}", "", legend, ""]
    lines += _md_table(*table_rows(report))
    if report.throughput:
        lines += ["", f"Forward throughput (images/s) by batch size ({threads_text(report)}):", ""]
        lines += _md_table(*throughput_rows(report))
    head, rows = backend_rows(report)
    if rows:
        lines += ["", f"Forward-only methods by backend (ratio: to that backend's floor; {threads_text(report)}):", ""]
        lines += _md_table(head, rows)
    lines += ["", summary] + [f"Not measured: {note}." for note in report.notes]
    return "\n".join(lines) + "\n"


def report_document(reports: Sequence[BenchReport]) -> dict[str, Any]:
    """The one JSON document for a run over several models."""
    return {"onnxplain_benchmark": 1, "reports": [r.as_dict() for r in reports]}