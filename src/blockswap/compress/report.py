"""The one-page report of `blockswap compress`: teacher vs student (parameters, MACs, measured latency,
held-out error), the student's blocks section by section, the search's proxy distribution, the
exports and where the time went. Written from the stages' records alone, so a rerun rewrites it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..networks.genotype import Genotype
from ..provenance import provenance, seal_all, write_json, write_result_text
from ..search.evolution import choice_of
from ..search.sampling import COST_INDEX

REPORT_FILE = "report.md"
REPORT_JSON = "report.json"
PROXY_FIGURE = "proxy.png"


def human(n: float) -> str:
    """8_012_345 -> 8.01M (three significant digits, as a reader compares sizes)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:g}"


def _ratio(student, teacher) -> str:
    return f"{student / teacher:.3f}" if teacher else "-"


def _quantiles(values) -> dict:
    qs = np.quantile(np.asarray(values, dtype=float), [0.0, 0.25, 0.5, 0.75, 1.0])
    return dict(zip(("min", "q25", "median", "q75", "max"), (float(q) for q in qs)))


def _sections(genotype: list[str], stages: list[int], names: tuple[str, ...], kept: dict) -> list[str]:
    lines = []
    for stage, name in enumerate(names):
        blocks = [(i, g) for i, (g, s) in enumerate(zip(genotype, stages)) if s == stage]
        text = " ".join(f"{g}*" if str(i) in kept else g for i, g in blocks)
        lines.append(f"- {name} ({len(blocks)} blocks): {text}")
    return lines


def _figure(history, winner: dict, proxy: str, out: Path) -> None:
    from ..reporting.figures import plt, save  # matplotlib: only when the report is drawn

    fig, ax = plt.subplots(figsize=(5, 3))
    values = history["fitness"].to_numpy(dtype=float)
    positive = values[values > 0]
    log = len(positive) == len(values) and values.max() > 100 * values.min()
    shown = np.log10(values) if log else values
    ax.hist(shown, bins=min(30, max(5, len(values) // 3)), color="#8aa6c1")
    ax.axvline(math.log10(winner["fitness"]) if log else winner["fitness"], color="#c0392b", label="student")
    ax.set_xlabel(f"log10 {proxy}" if log else proxy)
    ax.set_ylabel("candidates")
    ax.legend(frameon=False)
    save(fig, out)
    plt.close(fig)
    seal_all([out.with_suffix(".png"), out.with_suffix(".pdf")])


def write_report(plan, teacher: dict, search: tuple, winner: dict, metrics: dict, exports: dict, latency: dict) -> dict:
    """report.md, report.json and proxy.png in the compression's folder; `search` is the history and
    its record (read_history). Returns the JSON record."""
    s, out = plan.settings, plan.out
    search_history, search_record = search
    size = s.image_size
    student = {
        "params": metrics["params"],
        "macs": metrics["macs"],
        "latency_ms": latency.get("student_ms"),
        "onnx_latency_ms": latency.get("student_onnx_ms"),
        "test_error": metrics["test_error"],
        "test_error_top5": metrics["test_error_top5"],
        "genotype": metrics["genotype"],
        "predicted_latency_ms": predicted_ms(plan.table, metrics["genotype"]),
    }
    teacher_numbers = {
        "params": teacher["params"],
        "macs": teacher["macs"],
        "latency_ms": latency.get("teacher_ms"),
        "test_error": teacher["test_error"],
        "test_error_top5": teacher["test_error_top5"],
    }
    fitness = search_history["fitness"].tolist()
    distribution = _quantiles(fitness)
    data = plan.data
    stages = [slot.stage for slot in plan.skeleton.slots]
    seconds = {
        "teacher evaluation": teacher.get("seconds"),
        "search": (search_record.get("provenance") or {}).get("wall_seconds"),
        "training": (metrics.get("provenance") or {}).get("wall_seconds"),
        "export": sum(r.get("seconds", 0.0) for r in exports.values()) or None,
        "latency": latency.get("seconds"),
    }
    record = {
        "teacher_spec": s.teacher,
        "data": s.data,
        "classes": data.source["classes"],
        "images": {
            "train": len(data.train),
            "val": len(data.val) if data.val is not None else 0,
            "test": len(data.test),
        },
        "input_size": [size, size],
        "normalisation": {"mean": list(data.mean), "std": list(data.std)},
        "budget": s.budget,
        "budget_kind": s.budget_kind,
        "teacher": teacher_numbers,
        "student": student,
        "kept": winner.get("kept", {}),
        "search": {
            "method": s.method,
            "proxy": s.proxy,
            "evaluations": len(fitness),
            "distribution": distribution,
            "student_value": winner["fitness"],
            "student_evaluation": winner["candidate"],
        },
        "exports": {fmt: {"max_abs_difference": r["max_abs_difference"]} for fmt, r in exports.items()},
        "latency_setting": latency.get("setting"),
        "seconds": seconds,
        "provenance": provenance(seed=s.seed),
    }
    _figure(search_history, winner, s.proxy, out / PROXY_FIGURE)
    write_json(out / REPORT_JSON, record)
    write_result_text(out / REPORT_FILE, markdown(plan, record, winner, stages))
    return record


def predicted_ms(table, genotype: list[str]) -> float | None:
    """The latency table's prediction for the student (what a latency budget bounds), when the
    search was budgeted in latency."""
    if not table.has_latency:
        return None
    choice = choice_of(table, Genotype.of(genotype))
    return round(float(table.totals(choice[None, :])[0][COST_INDEX["latency"]]) / 1e3, 4)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def markdown(plan, r: dict, winner: dict, stages: list[int]) -> str:
    s, t, st = plan.settings, r["teacher"], r["student"]
    size = s.image_size
    budget = (
        f"{s.budget / 1e3:g} ms latency ({s.latency_setting})"
        if s.budget_kind == "latency"
        else (f"{human(s.budget)} {'parameters' if s.budget_kind == 'params' else 'MACs'}")
    )
    kept = r["kept"]
    lines = [
        f"# Compressing {plan.arch.spec_name}",
        "",
        f"Teacher weights: `{plan.teacher_info['weights_file']}` (sha256 {plan.teacher_info['weights_sha256'][:12]}).",
        f"Data: `{s.data}`, {len(r['classes'])} classes ({', '.join(r['classes'])}), {size} px; "
        f"{r['images']['train']} training, {r['images']['val']} validation and {r['images']['test']} held-out "
        "test images.",
        f"Budget: {budget} (+-{s.tolerance:.1%}); student skeleton {plan.skeleton.name}, "
        f"candidates `{plan.candidates}`"
        + (f", {len(kept)} blocks kept as the teacher's own (marked *)." if kept else "."),
        "",
        "| | teacher | student | student / teacher |",
        "|---|---|---|---|",
        f"| parameters | {human(t['params'])} | {human(st['params'])} | {_ratio(st['params'], t['params'])} |",
        f"| MACs at {size} px | {human(t['macs'])} | {human(st['macs'])} | {_ratio(st['macs'], t['macs'])} |",
        f"| latency, PyTorch ({r['latency_setting']}) | {_ms(t['latency_ms'])} | {_ms(st['latency_ms'])} | "
        f"{_ratio(st['latency_ms'] or 0, t['latency_ms'] or 0)} |",
    ]
    if st["predicted_latency_ms"] is not None:
        lines.append(
            f"| latency, predicted by the table (the budget's measure) | - | {_ms(st['predicted_latency_ms'])} | |"
        )
    if st["onnx_latency_ms"] is not None:
        lines.append(f"| latency, ONNX Runtime ({r['latency_setting']}) | - | {_ms(st['onnx_latency_ms'])} | |")
    lines.append(f"| test error, top-1 | {t['test_error']:.2f} % | {st['test_error']:.2f} % | |")
    if len(r["classes"]) > 5:
        lines.append(f"| test error, top-5 | {t['test_error_top5']:.2f} % | {st['test_error_top5']:.2f} % | |")
    d = r["search"]["distribution"]
    lines += [
        "",
        "## Student",
        "",
        *_sections(st["genotype"], stages, plan.arch.at_layers, kept),
        "",
        f"Distilled with attention transfer at the four section outputs for {s.epochs} epochs (batch {s.batch_size}, "
        f"lr {s.lr:g} cosine); its stem{' and kept blocks' if kept else ''} started from the teacher's weights.",
        "",
        "## Search",
        "",
        f"{r['search']['method']} search, {r['search']['evaluations']} evaluations of `{s.proxy}` at "
        f"initialisation. Distribution: min {d['min']:.4g}, quartiles {d['q25']:.4g} / {d['median']:.4g} / "
        f"{d['q75']:.4g}, max {d['max']:.4g}; the student's {winner['fitness']:.4g} "
        f"(evaluation {winner['candidate']}). Histogram: `{PROXY_FIGURE}`.",
        "",
        "## Exports",
        "",
    ]
    for fmt, e in r["exports"].items():
        lines.append(f"- `{fmt}`: largest logit difference from PyTorch {e['max_abs_difference']:.2g}")
    lines += [
        f"- input: images (N, 3, {size}, {size}), RGB on the 0..1 scale, minus mean "
        f"{json.dumps([round(v, 4) for v in r['normalisation']['mean']])}, divided by std "
        f"{json.dumps([round(v, 4) for v in r['normalisation']['std']])}; outputs: logits in the class order above",
        "",
        "## Time",
        "",
        *(f"- {stage}: {sec:.1f} s" for stage, sec in r["seconds"].items() if sec is not None),
        f"- all stages: {sum(sec for sec in r['seconds'].values() if sec is not None):.1f} s (each as measured by "
        "the run that did it)",
        "",
    ]
    return "\n".join(lines)
