"""`blockswap compress`: BlockSwap on a user's own trained ResNet and image folder, in one process.

    prepare   every input checked (teacher, weights, classes, folder, budget), nothing written
    teacher   teacher.json: the teacher's record and its error on the held-out test split
    search    search.csv: random or evolutionary search inside the budget, scored by a proxy
    select    student.json: the fittest genotype of the search
    train     student/: the student, its stem (and kept blocks) from the teacher, distilled with AT
    export    student.onnx / student.torchscript.pt: checked against PyTorch on a seeded batch
    latency   latency.json: teacher and student timed on this machine
    report    report.md, report.json, proxy.png: teacher vs student on one page

The student has the teacher's skeleton (networks.pretrained: stem, section widths, strides and
block counts), each block drawn from the candidate set that fits its widths, except the blocks
kept as the teacher's own (`--keep`). Every stage writes its output atomically with the settings'
fingerprint in it; a rerun with the same settings skips what is complete and carries on where a
stage stopped (the search and the training resume mid-way), and a rerun with other settings into
the same folder is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..data.folder import class_names
from ..data.loader import evaluation_batches
from ..data.loaders import load_folder
from ..data.splits import Dataset
from ..deploy.export import FORMATS, deployable, export_latency, export_model
from ..deploy.latency import LatencyTable, build_latency_table
from ..deploy.latency_validation import calibrate
from ..deploy.settings import Setting
from ..deploy.timing import machine_fingerprint, measure_model
from ..errors import BlockswapError
from ..networks.architectures import Architecture, parse_arch
from ..networks.blocks import BlockType, candidate_set, parse_block
from ..networks.pretrained import PretrainedTeacher, describe, load_pretrained_teacher
from ..networks.teacher_specs import PretrainedArch, parse_spec
from ..provenance import atomic_write, file_digest, provenance, read_sidecar, seal, verify, write_json
from ..search.evolution import SearchSettings, history_winner, read_history, search_to_file
from ..search.sampling import CostTable, check_budget
from ..search.scoring import Scorer, ScoringSettings
from ..training.checkpoint import load_model
from ..training.config import TrainConfig
from ..training.evaluation import EVAL_BATCH_SIZE, evaluate
from ..training.run_files import MODEL_FILE
from ..training.train import Trainer
from ..validation import check_batch_norm_batch, check_training_batches
from .report import REPORT_FILE, write_report
from .settings import CompressSettings

SETTINGS_FILE = "compress.json"
TEACHER_FILE = "teacher.json"
SEARCH_FILE = "search.csv"
WINNER_FILE = "student.json"
STUDENT_DIR = "student"
LATENCY_FILE = "latency.json"
LATENCY_TABLE_FILE = "latency-table.json"
EXPORT_FILES = {"onnx": "student.onnx", "torchscript": "student.torchscript.pt"}
assert set(EXPORT_FILES) == set(FORMATS), "every export format needs its file name"
MIN_CLASSES = 2


@dataclass
class Plan:
    """A compression whose inputs have all been checked: what every stage needs."""

    settings: CompressSettings
    out: Path
    device: torch.device
    arch: PretrainedArch
    teacher: PretrainedTeacher
    teacher_info: dict
    skeleton: Architecture
    candidates: str
    kept: dict[int, BlockType]
    data: Dataset
    table: CostTable
    fingerprint: str
    log: Callable[[str], None]
    latency_table: dict | None = None  # measured for a latency budget; kept in the folder with the settings

    @property
    def input_size(self) -> tuple[int, int]:
        return self.data.input_size


def _check_classes(folder: Path) -> list[str]:
    names = class_names(folder)
    if len(names) < MIN_CLASSES:
        raise BlockswapError(
            f"{folder} has {len(names)} class folder ({', '.join(names)}); a classifier needs at least "
            f"{MIN_CLASSES}: put each class's images in its own folder, {folder}/<class>/<images>"
        )
    return names


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BlockswapError(f"--out {out} is a file; give a folder (it is made if missing)")


def _latency_table(settings: CompressSettings, skeleton, candidates, kept, size, classes, out: Path, log) -> CostTable:
    """The cost table with a latency column from a table measured here, reused from `out` when it
    was measured on this machine for this network (building one times every candidate at every shape)."""
    path = out / LATENCY_TABLE_FILE
    kept_types = tuple(sorted({t.name for t in kept.values()}))
    setting = Setting.parse(settings.latency_setting)
    record = None
    if path.exists():
        table = LatencyTable.load(path)
        r = table.record
        if (
            (r["arch"], r["candidates"], r.get("kept", []), r["input_size"], r["num_classes"])
            == (
                skeleton.name,
                candidates,
                list(kept_types),
                list(size),
                classes,
            )
            and setting.key in r["settings"]
            and r.get("clock", "wall") == settings.latency_clock
        ):
            record = r
    if record is None:
        log(f"measuring a latency table of {skeleton.name} ({candidates} types) on this machine ({setting.key})")
        record = build_latency_table(
            skeleton, candidates, size, classes, [setting], kept=kept_types, clock=settings.latency_clock
        )
    table = LatencyTable(record, str(path))
    costs = CostTable.build(skeleton, candidate_set(candidates), size, classes, kept)
    if setting.key not in record.get("calibration", {}):
        # A sum of block times is not a whole network's time; budgets go through the setting's
        # calibration line, fitted here on networks of this very space (kept slots included), and
        # are refused when its held-out error is too large (deploy/calibration.py).
        log(f"calibrating {setting.key} on {settings.calibration_samples} whole networks")
        entry = calibrate(table, setting.key, settings.calibration_samples, settings.seed, types=costs.types)
        record = {**record, "calibration": {**record.get("calibration", {}), setting.key: entry}}
        table = LatencyTable(record, str(path))
    return costs.with_latency(*table.slot_microseconds(costs.types, setting.key)), record


def prepare(settings: CompressSettings, out: Path, device: torch.device, log=print) -> Plan:
    """Check every input, cheapest first, and load the teacher and the images; nothing is written."""
    out = Path(out)
    _check_out(out)
    arch, _ = parse_spec(settings.teacher)
    folder = Path(settings.data)
    names = _check_classes(folder)
    size = (settings.image_size, settings.image_size)
    teacher = load_pretrained_teacher(settings.teacher, len(names), size)  # weights and class count checked
    info = describe(settings.teacher, size)
    skeleton = parse_arch(arch.skeleton)
    candidates = settings.candidates or arch.candidates
    kept = {i: parse_block(arch.block) for i in settings.keep}
    latency_record = None
    if settings.budget_kind == "latency":
        table, latency_record = _latency_table(settings, skeleton, candidates, kept, size, len(names), out, log)
    else:
        table = CostTable.build(skeleton, candidate_set(candidates), size, len(names), kept)
    check_budget(table, settings.budget, settings.budget_kind, settings.tolerance, settings.samples, "--samples")
    data = load_folder(folder, settings.image_size, 0)
    mean, std = settings.mean or tuple(info["mean"]), settings.std or tuple(info["std"])
    data = replace(data, mean=tuple(mean), std=tuple(std))
    check_batch_norm_batch(
        skeleton,
        size,
        min(settings.search_batch_size, len(data.train)),
        f"the search's proxy minibatch ({min(settings.search_batch_size, len(data.train))} images)",
        "use a larger --search-batch-size or --image-size",
    )
    check_training_batches(skeleton, size, settings.batch_size, False, len(data.train))
    plan = Plan(
        settings,
        out,
        device,
        arch,
        teacher.to(device),
        info,
        skeleton,
        candidates,
        kept,
        data,
        table,
        settings.fingerprint(info["weights_sha256"]),
        log,
        latency_record,
    )
    _claim_check(plan)
    return plan


def _read_record(path: Path) -> dict | None:
    """A stage's JSON record, its seal checked; None when it is not there."""
    if not path.exists():
        return None
    verify(path)
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BlockswapError(f"{path} is damaged (not JSON); delete it to redo its stage") from None
    return record if isinstance(record, dict) else None


def _claim_check(plan: Plan) -> None:
    record = _read_record(plan.out / SETTINGS_FILE)
    if record is not None and record.get("fingerprint") != plan.fingerprint:
        raise BlockswapError(
            f"{plan.out} holds a compression with other settings (or another teacher file); give another --out "
            "or delete it to start afresh"
        )


def _current(plan: Plan, path: Path) -> dict | None:
    """The record of a stage done under these settings, or None (then the stage runs)."""
    record = _read_record(path)
    return record if record is not None and record.get("fingerprint") == plan.fingerprint else None


def claim(plan: Plan) -> None:
    """compress.json: the settings this folder holds a compression of (written once), and the
    latency table a latency budget was sampled with."""
    if plan.latency_table is not None and not (plan.out / LATENCY_TABLE_FILE).exists():
        write_json(plan.out / LATENCY_TABLE_FILE, plan.latency_table)
    if _current(plan, plan.out / SETTINGS_FILE) is not None:
        return
    settings = asdict(plan.settings)
    settings.pop("extra")
    write_json(
        plan.out / SETTINGS_FILE,
        {
            "fingerprint": plan.fingerprint,
            "settings": settings,
            "teacher_sha256": plan.teacher_info["weights_sha256"],
            "skeleton": plan.skeleton.name,
            "candidates": plan.candidates,
            "classes": plan.data.source["classes"],
            "provenance": provenance(seed=plan.settings.seed),
        },
    )


def stage_teacher(plan: Plan) -> dict:
    path = plan.out / TEACHER_FILE
    done = _current(plan, path)
    if done is not None:
        plan.log(f"teacher: done ({path})")
        return done
    start = time.perf_counter()
    test = evaluate(plan.teacher, evaluation_batches(plan.data, "test", EVAL_BATCH_SIZE, plan.device), plan.device)
    record = {
        "fingerprint": plan.fingerprint,
        **plan.teacher_info,
        "test_error": test["top1_error"],
        "test_error_top5": test["top5_error"],
        "test_images": len(plan.data.test),
        "seconds": round(time.perf_counter() - start, 3),
        "provenance": provenance(device=plan.device),
    }
    write_json(path, record)
    plan.log(f"teacher: {plan.arch.spec_name}, {record['test_error']:.2f}% test error on the held-out split")
    return record


def _search_settings(plan: Plan, scorer: Scorer) -> SearchSettings:
    s = plan.settings
    proxy = next(p for p in scorer.proxies if p.name == s.proxy)
    return SearchSettings(
        method=s.method,
        budget=s.budget,
        samples=s.samples,
        seed=s.seed,
        budget_kind=s.budget_kind,
        tolerance=s.tolerance,
        proxy=proxy.name,
        higher_is_better=proxy.higher_is_better,
    )


def stage_search(plan: Plan) -> dict:
    """search.csv (resumable, evaluation by evaluation), then student.json: the fittest genotype."""
    s, data = plan.settings, plan.data
    path = plan.out / SEARCH_FILE
    scoring = ScoringSettings(
        arch=plan.skeleton.name,
        dataset=data.name,
        num_classes=data.num_classes,
        image_size=data.image_size,
        batch_size=min(s.search_batch_size, len(data.train)),
        seed=s.seed,
        proxies=[s.proxy],
    )
    extra = {
        "arch": plan.skeleton.name,
        "candidates": plan.candidates,
        "kept": {str(i): t.name for i, t in sorted(plan.kept.items())},
        "dataset": data.name,
        "data": s.data,
        "input_size": list(plan.input_size),
        "normalisation": {"mean": list(data.mean), "std": list(data.std)},
        "scoring": asdict(scoring),
        "compress": plan.fingerprint,
    }
    finished = path.exists() and read_history(path)[1].get("compress") == plan.fingerprint
    if finished:
        plan.log(f"search: done ({path})")
    else:
        start = time.perf_counter()
        scorer = Scorer(scoring, data, plan.device)
        search = _search_settings(plan, scorer)
        column = "fisher" if search.proxy == "fisher" else f"{search.proxy}@1"
        table = plan.table

        def evaluate_one(key, choice) -> dict:
            costs = dict(zip(("params", "macs", "ops"), (int(v) for v in table.totals(choice[None, :])[0][:3])))
            record = scorer.score(key, table.genotype(choice), costs)
            return {"fitness": float(record[column]), "fisher": float(record["fisher"]), "seconds": record["seconds"]}

        plan.log(f"search: {s.method}, {s.samples} {s.proxy} evaluations within +-{s.tolerance:.1%} of the budget")
        search_to_file(table, search, evaluate_one, path, extra, plan.device)
        plan.log(f"search: {s.samples} evaluations in {time.perf_counter() - start:.1f} s -> {path}")
    winner = history_winner(path)
    record = {
        "fingerprint": plan.fingerprint,
        **winner,
        "arch": plan.skeleton.name,
        "kept": extra["kept"],
        "provenance": provenance(seed=s.seed),
    }
    done = _current(plan, plan.out / WINNER_FILE)
    if done is None or done.get("genotype") != record["genotype"]:
        write_json(plan.out / WINNER_FILE, record)
    return record


def train_config(plan: Plan, genotype: list[str]) -> TrainConfig:
    s = plan.settings
    return TrainConfig(
        arch=plan.skeleton.name,
        dataset=plan.data.name,
        genotype=genotype,
        data_dir=s.data,
        image_size=s.image_size,
        protocol="imagenet",  # the teacher's sections are ImageNet's: beta is the paper's 750 at 224 px, scaled
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        weight_decay=s.weight_decay,
        schedule="cosine",
        cutout=False,
        seed=s.seed,
        teacher=s.teacher,
        beta=s.beta,
        teacher_init=True,
        mean=list(plan.data.mean),
        std=list(plan.data.std),
    )


def stage_train(plan: Plan, winner: dict) -> dict:
    config = train_config(plan, winner["genotype"])
    record = {"kind": "pretrained", **plan.teacher_info}
    trainer = Trainer(
        config,
        plan.out / STUDENT_DIR,
        plan.device,
        data=plan.data,
        progress=not plan.settings.extra.get("quiet", False),
        log=lambda line: plan.log(f"train: {line}"),
        tags={"method": "blockswap", "network": "student"},
        teacher=(plan.teacher, record),
    )
    return trainer.run()


def stage_export(plan: Plan) -> dict:
    """Each format's file, checked against PyTorch (export_model) and sealed with what it holds."""
    model_path = plan.out / STUDENT_DIR / MODEL_FILE
    digest = file_digest(model_path)
    records = {}
    net = None
    for fmt in plan.settings.formats:
        path = plan.out / EXPORT_FILES[fmt]
        sidecar = read_sidecar(path) if path.exists() else None
        if sidecar is not None and sidecar.get("model_sha256") == digest:
            verify(path)
            plan.log(f"export: {fmt} done ({path})")
            records[fmt] = sidecar
            continue
        start = time.perf_counter()
        if net is None:
            net, _ = load_model(model_path)
        data, difference = export_model(net, fmt, plan.input_size)
        record = {
            "format": fmt,
            "model_sha256": digest,
            "max_abs_difference": difference,
            "input": f"images (N, 3, {plan.settings.image_size}, {plan.settings.image_size}), RGB on the 0..1 scale "
            "minus mean, divided by std",
            "mean": list(plan.data.mean),
            "std": list(plan.data.std),
            "classes": plan.data.source["classes"],
            "seconds": round(time.perf_counter() - start, 3),
            "provenance": provenance(),
        }
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
        seal(path, record)
        plan.log(f"export: {fmt} -> {path} (largest logit difference from PyTorch {difference:.2g})")
        records[fmt] = record
    return records


def stage_latency(plan: Plan) -> dict:
    """Teacher and student timed here (PyTorch; the student's ONNX export through ONNX Runtime too)."""
    path = plan.out / LATENCY_FILE
    setting = Setting.parse(plan.settings.latency_setting)
    digest = file_digest(plan.out / STUDENT_DIR / MODEL_FILE)
    machine = machine_fingerprint(cuda=setting.device == "cuda")
    done = _current(plan, path)
    if done is not None and (done.get("model_sha256"), done.get("machine")) == (digest, machine):
        plan.log(f"latency: done ({path})")
        return done
    start = time.perf_counter()
    net, _ = load_model(plan.out / STUDENT_DIR)
    if setting.device == "cuda":
        teacher, student = plan.teacher.net.to("cuda"), deployable(net).to("cuda")
    else:
        teacher, student = plan.teacher.net.cpu(), deployable(net)
    record = {
        "fingerprint": plan.fingerprint,
        "model_sha256": digest,
        "setting": setting.key,
        "machine": machine,
        "teacher_ms": round(measure_model(teacher, plan.input_size, setting) * 1e3, 4),
        "student_ms": round(measure_model(student, plan.input_size, setting) * 1e3, 4),
    }
    plan.teacher.to(plan.device)
    onnx_file = plan.out / EXPORT_FILES["onnx"]
    if "onnx" in plan.settings.formats and setting.device == "cpu":
        record["student_onnx_ms"] = round(
            export_latency(onnx_file.read_bytes(), "onnx", plan.input_size, setting) * 1e3, 4
        )
    record["seconds"] = round(time.perf_counter() - start, 3)
    record["provenance"] = provenance()
    write_json(path, record)
    plan.log(f"latency ({setting.key}): teacher {record['teacher_ms']:.3g} ms, student {record['student_ms']:.3g} ms")
    return record


def compress(settings: CompressSettings, out: Path, device: torch.device, log=print) -> dict:
    """Every stage in order, each skipped when its output is complete and of these settings;
    returns the report's record."""
    plan = prepare(settings, out, device, log)
    claim(plan)
    teacher = stage_teacher(plan)
    winner = stage_search(plan)
    metrics = stage_train(plan, winner)
    exports = stage_export(plan)
    latency = stage_latency(plan)
    record = write_report(plan, teacher, read_history(plan.out / SEARCH_FILE), winner, metrics, exports, latency)
    log(f"report -> {plan.out / REPORT_FILE}")
    return record
