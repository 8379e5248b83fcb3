"""`blockswap latency`, `latency-calibrate`, `latency-check`, `measure` and `export`: deployment budgets."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..data.datasets import dataset_info
from ..deploy import calibration
from ..deploy.export import deployable, export_run
from ..deploy.latency import LatencyTable, build_latency_table
from ..deploy.latency_validation import calibrate, check_table
from ..deploy.settings import Setting
from ..deploy.timing import machine_fingerprint, measure_model, settings_from
from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.blocks import CANDIDATE_SETS
from ..provenance import provenance, write_json, write_result_text
from ..seeds import seed_argument
from ..training.checkpoint import load_model
from .data_options import add_data_options


def _csv_items(text: str, what: str) -> list:
    items = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if part == "all" and what == "threads":
            items.append("all")
            continue
        try:
            items.append(int(part))
        except ValueError:
            raise BlockswapError(
                f"--{what} takes whole numbers separated by commas"
                f"{' (or all)' if what == 'threads' else ''}, got {text!r}"
            ) from None
    return items


def _progress(quiet: bool):
    return None if quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def cmd_latency(args) -> None:
    arch = parse_arch(args.arch)
    if args.classes is not None and args.classes < 1:
        raise BlockswapError(f"--classes must be at least 1, got {args.classes}")
    input_size, classes = dataset_info(args.dataset).network_input(args.image_size, args.data_dir)
    classes = args.classes or classes
    settings = settings_from(args.device, _csv_items(args.threads, "threads"), _csv_items(args.batches, "batches"))
    out = Path(args.out)
    if out.exists() and not args.force:
        table = LatencyTable.load(out)  # refused, with the way to rebuild it, on another machine
        table.check_network(arch.name, input_size, classes)
        missing = [s.key for s in settings if s.key not in table.record["settings"]]
        if missing:
            raise BlockswapError(f"{out} has no setting {missing[0]}; rebuild it with --force")
        if table.record.get("clock", "wall") != args.clock:
            raise BlockswapError(
                f"{out} was timed on the {table.record.get('clock', 'wall')} clock, not {args.clock}; "
                "rebuild it with --force"
            )
        print(
            f"reusing {out}: measured on this machine ({table.record['fingerprint']['cpu']}), "
            f"{len(table.record['settings'])} settings"
        )
        return
    start = time.perf_counter()
    record = build_latency_table(
        arch,
        args.candidates,
        input_size,
        classes,
        settings,
        args.warmup,
        args.runs,
        args.seed,
        _progress(args.quiet),
        args.clock,
    )
    record["dataset"] = args.dataset
    record["provenance"] = provenance(seed=args.seed, seconds=time.perf_counter() - start)
    write_json(out, record)
    print(
        f"latency table of {arch.name} ({len(record['shapes'])} block shapes x {args.candidates} types, "
        f"{len(settings)} settings: {', '.join(s.key for s in settings)}) built in {record['build_seconds']:.1f} s "
        f"-> {out}"
    )


def add_latency(sub) -> None:
    p = sub.add_parser(
        "latency",
        help="measure a per-block latency table on this machine",
        description="Time the stem, the head and every candidate block type at every block shape of ARCH "
        "(eval mode, inference mode, warm-ups then the median of timed runs), for every thread count and batch "
        "size, on the CPU and on CUDA when present. The table records this machine's fingerprint and is "
        "reused only on a matching machine.",
    )
    p.add_argument("arch", help="architecture (wrn-D-K, resnet-18/34)")
    p.add_argument("--candidates", choices=sorted(CANDIDATE_SETS), default="paper", help="block types to time")
    add_data_options(p, default="cifar10")
    p.add_argument("--classes", type=int, help="override the dataset's number of classes")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (CPU settings, plus CUDA when present)")
    p.add_argument("--threads", default="1,all", help="CPU thread counts, e.g. 1,all (default)")
    p.add_argument("--batches", default="1", help="batch sizes, e.g. 1,128 (batch 1 and the training batch)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (at least 10)")
    p.add_argument("--runs", type=int, default=50, help="timed calls, the median kept (at least 50)")
    p.add_argument("--seed", type=seed_argument, default=0, help="seeds inputs and weights (0 to 2^32-1)")
    p.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall time (default), or the "
        "calling thread's CPU time: one-thread CPU settings only, steady on a shared machine",
    )
    p.add_argument("--force", action="store_true", help="measure again even if --out exists")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--out", required=True, help="output JSON (sealed, with provenance and the machine fingerprint)")


def cmd_latency_calibrate(args) -> None:
    table = LatencyTable.load(args.table)
    key = table.check_setting(args.setting)
    start = time.perf_counter()
    entry = calibrate(table, key, args.samples, args.seed, args.warmup, args.runs)
    entry["provenance"] = provenance(seed=args.seed, seconds=time.perf_counter() - start)
    record = dict(table.record)
    record["calibration"] = {**record.get("calibration", {}), key: entry}
    write_json(args.table, record)
    held = entry["held_out"]
    trusted = held["mape_pct"] <= calibration.MAX_HELD_OUT_MAPE_PCT
    print(
        json.dumps(
            {
                "table": str(args.table),
                "setting": key,
                "networks": len(entry["networks"]),
                "slope": round(entry["slope"], 4),
                "intercept_ms": round(entry["intercept_seconds"] * 1e3, 4),
                "raw_mape_pct": entry["raw"]["mape_pct"],
                "held_out_mape_pct": held["mape_pct"],
                "held_out_within_10pct": held["within_10pct"],
                "latency_budgets": "allowed" if trusted else "refused",
            }
        )
    )


def add_latency_calibrate(sub) -> None:
    p = sub.add_parser(
        "latency-calibrate",
        help="fit a setting's calibration to whole networks, with its held-out error",
        description="Time whole networks of the table's space, spread from its fastest to its slowest, fit "
        "measured = slope x predicted + intercept for one setting, score that line on held-out folds, and "
        "store both in the table. Latency budgets and limits in that setting go through the line, and are "
        f"refused where its held-out error is above {calibration.MAX_HELD_OUT_MAPE_PCT:g} %%.",
    )
    p.add_argument("table", help="a latency table ('blockswap latency --out'); rewritten with the calibration")
    p.add_argument("--setting", default="cpu/t1/b1", help="which of the table's settings (default cpu/t1/b1)")
    p.add_argument(
        "--samples",
        type=int,
        default=calibration.DEFAULT_NETWORKS,
        help=f"validation networks timed (default {calibration.DEFAULT_NETWORKS}, at least {calibration.MIN_NETWORKS})",
    )
    p.add_argument("--seed", type=seed_argument, default=0, help="seeds the networks and the folds (0 to 2^32-1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (at least 10)")
    p.add_argument("--runs", type=int, default=50, help="timed calls, the median kept (at least 50)")


def cmd_latency_check(args) -> None:
    table = LatencyTable.load(args.table)
    start = time.perf_counter()
    frame, summary = check_table(table, args.setting, args.samples, args.seed, args.warmup, args.runs)
    meta = {
        "table": str(args.table),
        "arch": table.record["arch"],
        "summary": summary,
        "provenance": provenance(seed=args.seed, seconds=time.perf_counter() - start),
    }
    write_result_text(args.out, frame.to_csv(index=False), meta)
    print(json.dumps({"arch": table.record["arch"], **summary}))


def add_latency_check(sub) -> None:
    p = sub.add_parser(
        "latency-check",
        help="predicted (sum of blocks) vs measured latency of random students",
        description="Draw random students of the table's space, measure each end to end, and report the "
        "table's mean absolute percentage error, the share within +-10 %%, and Kendall tau of predicted "
        "latency, params and MACs against measured latency.",
    )
    p.add_argument("table", help="a latency table ('blockswap latency --out')")
    p.add_argument("--setting", default="cpu/t1/b1", help="which of the table's settings (default cpu/t1/b1)")
    p.add_argument("--samples", type=int, default=200, help="random students measured (default 200)")
    p.add_argument("--seed", type=seed_argument, default=0, help="seeds the students (0 to 2^32-1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (at least 10)")
    p.add_argument("--runs", type=int, default=50, help="timed calls, the median kept (at least 50)")
    p.add_argument("--out", required=True, help="output CSV, one row per student (summary in its sidecar)")


def cmd_measure(args) -> None:
    setting = Setting.parse(args.setting)
    model, record = load_model(args.run)
    seconds = measure_model(deployable(model), record["input_size"], setting, args.warmup, args.runs, clock=args.clock)
    result = {
        "run": str(args.run),
        "arch": record["arch"],
        "genotype": record["genotype"],
        "setting": setting.key,
        "clock": args.clock,
        "latency_ms": round(seconds * 1e3, 6),
        "warmup": args.warmup,
        "runs": args.runs,
        "fingerprint": machine_fingerprint(setting.device == "cuda"),
    }
    if args.out:
        write_json(args.out, {**result, "provenance": provenance(device=setting.device)})
    print(json.dumps({k: result[k] for k in ("arch", "setting", "latency_ms")}))


def add_measure(sub) -> None:
    p = sub.add_parser(
        "measure",
        help="measured latency of a trained network on this machine",
        description="Time a trained network end to end (eval mode, inference mode, warm-ups "
        "then the median of timed runs) on this machine.",
    )
    p.add_argument("run", help="a training folder or model.pt")
    p.add_argument("--setting", default="cpu/t1/b1", help="cpu/tT/bB or cuda/bB (default cpu/t1/b1)")
    p.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall time, or the thread's CPU time (cpu/t1 settings)",
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (at least 10)")
    p.add_argument("--runs", type=int, default=50, help="timed calls, the median kept (at least 50)")
    p.add_argument("--out", help="also write the result, with provenance and fingerprint, to this JSON file")


def cmd_export(args) -> None:
    result = export_run(
        args.run, args.format, args.out, args.setting, args.warmup, args.runs, measure=not args.no_latency
    )
    shown = {k: result[k] for k in ("format", "max_abs_difference", "latency_ms", "pytorch_latency_ms") if k in result}
    print(json.dumps({"out": str(args.out), **shown}))


def add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a deployable student (ONNX or TorchScript)",
        description="Write a trained network for deployment: eval mode, logits only (no stage "
        "outputs or Fisher probes); its outputs are checked against PyTorch's on a batch and both "
        "latencies are measured.",
    )
    p.add_argument("run", help="a training folder or model.pt")
    p.add_argument("--format", choices=["onnx", "torchscript"], required=True, help="what to write")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt); a .provenance.json goes beside it")
    p.add_argument("--setting", default="cpu/t1/b1", help="where latency is measured (default cpu/t1/b1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (at least 10)")
    p.add_argument("--runs", type=int, default=50, help="timed calls, the median kept (at least 50)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")


COMMANDS = {
    "latency": (add_latency, cmd_latency),
    "latency-calibrate": (add_latency_calibrate, cmd_latency_calibrate),
    "latency-check": (add_latency_check, cmd_latency_check),
    "measure": (add_measure, cmd_measure),
    "export": (add_export, cmd_export),
}
