"""The measurements of `bench/gpu.sh`: one subcommand per step, each writing its JSON.

Steps (each a separate process, time-boxed by the shell script; inside, every part is guarded, so a
failing part is recorded in `errors` and the rest goes on; the JSON is rewritten after every part,
so a step killed at its time limit keeps what it measured):

- `env`: the device (name, memory, driver, clocks via nvidia-smi), torch and CUDA versions, the
  TF32 flags, the two ceilings of METHOD.md (device-to-device copy bandwidth, matrix-product rate
  in bf16 and in float32/TF32) and which snakemake is imported (the shell's install step has
  run `snakemake --version` and `blockswap blocks`).
- `fisher`: what `blockswap score` does (`scoring.score_candidates`: each candidate assembled
  from the module bank and re-initialised in place, forward, activation gradients at the probes,
  Fisher) on up to 1000 WRN-40-2 candidates at the 404.2K budget, batch 128, 32 px, in the
  scoring layout of the device; the per-candidate breakdown (build / init / move / measure) of
  building afresh against the bank, beside the released code's path (bench/bank.py), with the
  bank in the other layout too; the 1000 candidates through one `blockswap score` process (wall
  time, start included); the floor (forward + activation-only backward of the built network) and
  the fresh path's breakdown; the GPU's kernel time from the profiler; speed-up variants of the
  fresh path on a subset, each with its Fisher values compared to the plain path (skip PyTorch's
  default init, one pinned host-to-device copy, 4 threads on 4 CUDA streams, bf16 autocast, TF32
  off, and K `blockswap score` shard processes sharing the GPU).
- `latency`: the per-block latency table of WRN-40-2 under cuda/b1 and cuda/b128 and its
  prediction error against end-to-end timings of random students.
- `train`: training images/s through `Trainer.train_epoch` on synthetic CIFAR-shaped data, for
  the WRN-40-2 teacher and three students (BlockSwap 404.2K, all-G(4), all-G(N) depthwise) in
  paper mode, bf16 + channels-last (eager) and fast mode (bf16 + channels-last + compile).
- `lockstep`: aggregate training images/s of K = 1, 4, 8 WRN-40-2 students at 404.2K trained in
  lockstep from one WRN-40-2 teacher, side by side: waiting for the device after every student's
  step (the trainer when it read each loss back), the default trainer (no host sync in a step),
  and --cuda-graphs (captured steps and teacher, a stream per student), whose trained weights are
  compared with the default's.
- `correctness`: Fisher on the device vs on the CPU (10 candidates, same minibatch; TF32 on and
  off), kill-and-resume of `blockswap train` on the device, and digits training in paper and
  fast mode (2 seeds each) with their test errors.
- `loader`: ImageNet input pipeline (`load_imagenet` + `epoch_batches` with one worker per core)
  on synthetic JPEGs against ResNet-34's training rate at 224 px, batch 256.
- `report`: merges the step files into one `gpu.json`, writes `timings.json` (this GPU's seconds per
  training image and per scored candidate, for `blockswap plan CONFIG --timings`) and prints the
  summary table.

`--dry-run` runs every step at tiny sizes on the CPU (bf16 and compile need CUDA: skipped with a
note). Run through the shell script, not directly:

    bash bench/gpu.sh               # on the GPU machine; results in $OUT (default bench-out)
    bash bench/gpu.sh --dry-run     # CPU, tiny sizes, about a minute
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))  # bank.py, fisher_scoring.py and train_step.py are reused

STEPS = ("install", "env", "fisher", "latency", "train", "lockstep", "correctness", "loader", "snakemake")
TEACHER = "wrn-40-2"
STUDENTS = {  # label -> genotype spec (file or one block name for every block)
    "blockswap-404k": "src/blockswap/genotypes/blockswap-404k.yaml",
    "all-G(4)": "G(4)",
    "all-G(N)": "G(N)",
}
CIFAR_EPOCH = 50_000  # images in a CIFAR-10 training epoch
FISHER_BUDGET = 404_200
# For tests of the script's robustness: "STEP:PART" raises in that part, "STEP:exit" ends the step's
# process with exit code 3 once its JSON is written (tests/test_bench_gpu.py).
INJECTED = dict(item.split(":", 1) for item in os.environ.get("GPU_BENCH_FAIL", "").split(",") if ":" in item)


# --- shared helpers -----------------------------------------------------------------------------


class Record:
    """One step's results, rewritten to its JSON file after every change (a step killed at its
    time limit keeps what it had measured). `part` runs a sub-measurement: an exception is
    recorded under `errors` and the step goes on."""

    def __init__(self, path: Path, step: str, dry_run: bool, seconds: float):
        self.path = path
        self.start = time.perf_counter()
        self.deadline = self.start + seconds
        self.data = {
            "step": step,
            "dry_run": dry_run,
            "time_box_s": round(seconds, 1),
            "notes": [],
            "errors": {},
            "skipped": {},
            "part_seconds": {},
        }
        self.save()

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def set(self, key, value):
        self.data[key] = value
        self.save()

    def note(self, text: str):
        print(f"note: {text}", flush=True)
        self.data["notes"].append(text)
        self.save()

    def skip(self, name: str, why: str):
        print(f"skipped {name}: {why}", flush=True)
        self.data["skipped"][name] = why
        self.save()

    def enough(self, name: str, seconds: float) -> bool:
        """True if `seconds` are left in the time box; otherwise record the part as skipped."""
        if self.left() >= seconds:
            return True
        self.skip(name, f"out of time ({self.left():.0f} s left, needs ~{seconds:.0f} s)")
        return False

    @contextlib.contextmanager
    def part(self, name: str):
        start = time.perf_counter()
        print(f"--- {self.data['step']}: {name} ({self.left():.0f} s left)", flush=True)
        try:
            yield
            if INJECTED.get(self.data["step"]) == name:
                raise RuntimeError("failure injected by GPU_BENCH_FAIL")
        except Exception as err:  # any failure of one part is data; the others still run
            traceback.print_exc()
            self.data["errors"][name] = f"{type(err).__name__}: {err}"[:600]
        finally:
            self.data["part_seconds"][name] = round(time.perf_counter() - start, 2)
            self.save()

    def save(self):
        self.data["seconds"] = round(time.perf_counter() - self.start, 2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_jsonable))
        os.replace(tmp, self.path)


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def rounded(x, digits=4):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(f"{x:.{digits}g}")


def device_of(args):
    import torch

    if args.dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("CUDA is not available: run with --dry-run on a machine without a GPU")
    return torch.device("cuda")


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall(fn, device):
    """Seconds of one call, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def median_time(fn, device, repeats=3, warmup=1):
    for _ in range(warmup):
        wall(fn, device)
    return statistics.median(wall(fn, device)[0] for _ in range(repeats))


def max_rel_diff(a, b):
    """max |a - b| / |b| over paired values (b is the reference)."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return None
    return max(abs(x - y) / max(abs(y), 1e-30) for x, y in pairs)


def free_memory():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- env ----------------------------------------------------------------------------------------


def step_env(args, rec: Record):
    import platform

    import torch

    device = device_of(args)
    rec.set("device", str(device))
    rec.set("python", platform.python_version())
    rec.set("torch", torch.__version__)
    rec.set("cpu_count", os.cpu_count())
    rec.set("torch_threads", torch.get_num_threads())
    with rec.part("versions"):
        import torchvision

        import blockswap

        rec.set("torchvision", torchvision.__version__)
        rec.set("blockswap", blockswap.__version__)
        rec.set("blockswap_from", str(Path(blockswap.__file__).parent))
    with rec.part("snakemake"):  # the install step ran `snakemake --version` and `blockswap blocks`
        import snakemake

        rec.set(
            "snakemake",
            {"version": getattr(snakemake, "__version__", "?"), "from": str(Path(snakemake.__file__).parent)},
        )
    if device.type == "cuda":
        with rec.part("gpu"):
            describe_gpu(device, rec)
    else:
        rec.skip("gpu", "no CUDA device (dry run)")
    with rec.part("ceilings"):
        rec.set("ceilings", ceilings(device, small=device.type != "cuda"))
        free_memory()


def describe_gpu(device, rec: Record):
    import torch

    props = torch.cuda.get_device_properties(device)
    rec.set(
        "gpu",
        {
            "name": torch.cuda.get_device_name(device),
            "capability": list(torch.cuda.get_device_capability(device)),
            "multiprocessors": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "tf32_cudnn_conv": torch.backends.cudnn.allow_tf32,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        },
    )
    with rec.part("nvidia_smi"):
        query = (
            "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu"
        )
        proc = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv"], capture_output=True, text=True, timeout=30
        )
        rec.set("nvidia_smi", proc.stdout.strip().splitlines())


def ceilings(device, small: bool) -> dict:
    """METHOD.md's two ceilings: a large device-to-device copy (bytes read + written) and a large
    matrix product on random data, bf16 and float32 with and without TF32."""
    import torch

    result = {}
    n = 1 << (20 if small else 28)  # 1 GiB of float32 on the GPU
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    t = median_time(lambda: dst.copy_(src), device, repeats=10, warmup=2)
    src = dst = None  # free before the matrices
    result["copy_tb_per_s"] = rounded(2 * n * 4 / t / 1e12, 3)
    size = 256 if small else 8192
    for name, dtype, tf32 in (
        ("bf16", torch.bfloat16, False),
        ("fp32_tf32", torch.float32, True),
        ("fp32", torch.float32, False),
    ):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            t = median_time(lambda: a @ b, device, repeats=10 if name != "fp32" else 3, warmup=2)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        result[f"matmul_{name}_tflops"] = rounded(2 * size**3 / t / 1e12, 3)
    return result


# --- fisher -------------------------------------------------------------------------------------


def write_cifar10(root: Path, per_batch: int, seed: int = 0) -> Path:
    """A CIFAR-10 folder in the original pickled format (random pixels), as the tests write it."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    return root


@contextlib.contextmanager
def skipped_default_init():
    """Build without PyTorch's default initialisation (kaiming-uniform draws on the global RNG):
    `models.initialise` overwrites every conv, BN and linear parameter from the seeded generator
    anyway, and no conv has a bias, so the built network is the same."""
    import torch.nn as nn

    saved = {cls: cls.reset_parameters for cls in (nn.Conv2d, nn.Linear)}
    try:
        for cls in saved:
            cls.reset_parameters = lambda self: None
        yield
    finally:
        for cls, fn in saved.items():
            cls.reset_parameters = fn


def to_device_one_copy(model, device, channels_last: bool):
    """Move `model` with one pinned host-to-device copy per dtype (instead of one per tensor);
    4-D tensors land in channels-last layout, as `model.to(device, memory_format=...)` does."""
    import torch

    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    by_dtype = {}
    for t in tensors.values():
        by_dtype.setdefault(t.dtype, []).append(t)
    placed = {}
    for dtype, group in by_dtype.items():
        parts = [(t.permute(0, 2, 3, 1) if channels_last and t.dim() == 4 else t).reshape(-1) for t in group]
        total = sum(p.numel() for p in parts)
        host = torch.empty(total, dtype=dtype, pin_memory=device.type == "cuda")
        torch.cat([p.detach() for p in parts], out=host)
        flat = host.to(device, non_blocking=True)
        offset = 0
        for t in group:
            piece = flat[offset : offset + t.numel()]
            offset += t.numel()
            if channels_last and t.dim() == 4:
                n, c, h, w = t.shape
                placed[id(t)] = piece.view(n, h, w, c).permute(0, 3, 1, 2)
            else:
                placed[id(t)] = piece.view(t.shape)
    return model._apply(lambda t: placed.get(id(t), t))


class FisherPaths:
    """One candidate's Fisher potential by the plain path and by its variants."""

    def __init__(self, arch, images, labels, device, channels_last: bool, seed=0):
        self.arch, self.images, self.labels, self.device, self.seed = arch, images, labels, device, seed
        self.channels_last = channels_last

    def score(self, index, genotype, one_copy=False, bf16=False):
        import torch

        from blockswap import build_model
        from blockswap.search.fisher import fisher_from_probes
        from blockswap.search.measure import measure_one_pass
        from blockswap.search.proxies import PROXIES
        from blockswap.seeds import derive_seed

        model = build_model(self.arch, genotype, 10, seed=derive_seed(self.seed, index))
        if one_copy:
            to_device_one_copy(model, self.device, channels_last=self.channels_last)
        else:
            model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        model.train()
        if not bf16:
            values, _, _ = measure_one_pass(model, self.images, self.labels, [PROXIES["fisher"]])
            return values["fisher"]
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            out = model.forward_intermediates(self.images)
            loss = torch.nn.functional.cross_entropy(out.logits, self.labels)
        grads = torch.autograd.grad(loss, list(out.probes))
        return float(fisher_from_probes([p.float() for p in out.probes], [g.float() for g in grads]).sum())


def run_variant(paths: FisherPaths, todo, threads=1, skip_init=False, **flags):
    """Score `todo` [(index, genotype)]; with threads > 1, each thread on its own CUDA stream."""
    with skipped_default_init() if skip_init else contextlib.nullcontext():  # once for all threads
        return _run_variant(paths, todo, threads, **flags)


def _run_variant(paths: FisherPaths, todo, threads, **flags):
    import torch

    values = {}
    if threads == 1:
        for i, g in todo:
            values[i] = paths.score(i, g, **flags)
        return values
    cuda = paths.device.type == "cuda"
    sync(paths.device)

    def work(k):
        stream = torch.cuda.Stream(paths.device) if cuda else None
        with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
            for i, g in todo[k::threads]:
                values[i] = paths.score(i, g, **flags)

    errors = []

    def guarded(k):
        try:
            work(k)
        except Exception as err:  # re-raised in the calling thread below
            errors.append(err)

    workers = [threading.Thread(target=guarded, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    if len(values) != len(todo):
        raise RuntimeError(f"threads scored {len(values)} of {len(todo)} candidates")
    return values


def gpu_kernel_ms(fn, device):
    """Total CUDA kernel time (ms) of one call, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    total = 0.0
    for e in prof.key_averages():
        total += getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0) or 0.0
    return total / 1000.0


def score_processes(k, m, cands, data_dir, batch, device, work: Path, limit: float, baseline: dict) -> dict:
    """The first `m` candidates scored by `k` `blockswap score --shard j/k` processes at once on
    one device (the workflow's scoring shards), timed from their start to the last one's end."""
    import pandas as pd

    csv = work / f"cands-{m}.csv"
    cands.head(m).to_csv(csv, index=False)
    outs = [work / f"proc{k}-{j}.csv" for j in range(k)]
    cmd = [
        sys.executable,
        "-m",
        "blockswap.cli",
        "score",
        str(csv),
        "--arch",
        TEACHER,
        "--dataset",
        "cifar10",
        "--data-dir",
        str(data_dir),
        "--batch-size",
        str(batch),
        "--device",
        device.type,
        "--quiet",
    ]
    start = time.perf_counter()
    running = [
        subprocess.Popen(
            cmd + ["--shard", f"{j}/{k}", "--out", str(o)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for j, o in enumerate(outs)
    ]
    logs = []
    for p in running:
        try:
            logs.append(p.communicate(timeout=max(1.0, limit - (time.perf_counter() - start)))[0])
        except subprocess.TimeoutExpired:
            for q in running:
                q.kill()
            raise
    t = time.perf_counter() - start
    bad = [(p.returncode, log[-400:]) for p, log in zip(running, logs) if p.returncode != 0]
    if bad:
        raise RuntimeError(f"blockswap score failed: {bad[0]}")
    shards = [pd.read_csv(o) for o in outs]
    scored = pd.concat(shards)
    scoring = max(s["seconds"].sum() for s in shards)  # the slowest process's own scoring time
    values = dict(zip(scored["candidate"].astype(int), scored["fisher"].astype(float)))
    common = [i for i in values if i in baseline]
    return {
        "processes": k,
        "candidates": m,
        "wall_seconds": rounded(t),
        "candidates_per_s_with_startup": rounded(m / t),
        "candidates_per_s_scoring": rounded(m / max(scoring, 1e-9)),
        "max_rel_diff_vs_baseline": rounded(
            max_rel_diff([values[i] for i in common], [baseline[i] for i in common]), 3
        ),
        "compared": len(common),
    }


def step_fisher(args, rec: Record):
    import torch
    from bank import run as bank_paths
    from fisher_scoring import floor

    from blockswap import CANDIDATE_SETS, Genotype, build_model, parse_arch
    from blockswap.data.loaders import load_dataset
    from blockswap.search.fisher import fisher_potential
    from blockswap.search.sampling import CostTable, sample_candidates
    from blockswap.search.scoring import Scorer, ScoringSettings, score_candidates
    from blockswap.seeds import derive_seed

    device = device_of(args)
    dry = args.dry_run
    batch = 8 if dry else 128
    total = 4 if dry else 1000
    work = Path(args.work) / "fisher"
    work.mkdir(parents=True, exist_ok=True)
    data_dir = write_cifar10(work / "data", per_batch=max(2 * batch, 64) // 5 + batch)
    data = load_dataset("cifar10", data_dir)
    table = CostTable.build(parse_arch(TEACHER), CANDIDATE_SETS["paper"], (32, 32), 10)
    cands = sample_candidates(table, FISHER_BUDGET, total, seed=0)
    cands_csv = work / "candidates.csv"
    cands.to_csv(cands_csv, index=False)
    genotypes = [Genotype.parse(g) for g in cands["genotype"]]
    settings = ScoringSettings(
        arch=TEACHER, dataset="cifar10", num_classes=10, image_size=32, batch_size=batch, seed=0
    ).on(device)
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format
    rec.set(
        "setup",
        {
            "arch": TEACHER,
            "budget": FISHER_BUDGET,
            "candidate_set": "paper",
            "batch_size": batch,
            "image_size": 32,
            "candidates_sampled": len(cands),
            "device": str(device),
            "memory_format": "channels-last" if settings.channels_last else "nchw",
            "tf32_cudnn_conv": torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None,
        },
    )

    # 1. The real path: scoring.score_candidates (what `blockswap score` runs) in one call, so that
    #    one module bank serves every candidate as in a scoring run; as many candidates as a rate
    #    taken on a warm-up scorer says fit its share of the time box, extrapolated to 1000 if fewer.
    baseline = {}
    with rec.part("baseline"):
        scorer = Scorer(settings, data, device)
        for i in range(2 if dry else 5):  # warm-up: CUDA context, cuDNN handles, kernel loads
            scorer.score(i, genotypes[i])
        probe = range(5, 5 if dry else 25)
        t, _ = wall(lambda: [scorer.score(i, genotypes[i]) for i in probe], device)
        box = 0.35 * rec.left()
        m = total if dry else min(total, max(20, int(box * len(probe) / t)))
        rows = cands.iloc[:m]
        spent, scored = wall(
            lambda: score_candidates(rows, settings, data, work / "base.csv", device=device, progress=False), device
        )
        baseline.update(zip(scored["candidate"].astype(int), scored["fisher"].astype(float)))
        per_candidate = scored["seconds"].tolist()
        if m < total:
            rec.note(
                f"baseline scored {m} candidates to fit its {box:.0f} s share; the 1000-candidate time is extrapolated"
            )
        n = len(baseline)
        rec.set(
            "baseline",
            {
                "candidates": n,
                "seconds": rounded(spent),
                "candidates_per_s": rounded(n / spent),
                "ms_per_candidate": rounded(1000 * spent / n),
                "median_scorer_ms": rounded(1000 * statistics.median(per_candidate)),
                "seconds_for_1000": rounded(1000 * spent / n),
                "extrapolated": n < 1000,
                "goal_1000_under_60s": 1000 * spent / n < 60,
            },
        )

    # 2. Per candidate, building afresh against the bank against the released code's path, side by
    #    side (bench/bank.py), the bank in both layouts; then the candidates through one
    #    `blockswap score` process, start included.
    with rec.part("paths"):
        n = 2 if dry else 20
        rec.set("paths", bank_paths(device, n, batch, 32, settings.channels_last, other_layout=True))
    rate = rec.data.get("baseline", {}).get("candidates_per_s") or 10.0
    with rec.part("score_cli"):
        m = total if dry else min(total, int(0.8 * rate * (rec.left() - 30)))
        if m < 8 and not dry:
            rec.skip("score_cli", f"out of time ({rec.left():.0f} s left)")
        else:
            one = score_processes(1, m, cands, data_dir, batch, device, work, rec.left() - 3, baseline)
            startup = one["wall_seconds"] - m / one["candidates_per_s_scoring"]
            one["seconds_for_1000_with_startup"] = rounded(startup + 1000 / one["candidates_per_s_scoring"])
            one["extrapolated"] = m < 1000
            rec.set("score_cli", one)

    # 3. Floor and the fresh path's breakdown on the first few candidates, on the shared minibatch.
    images, labels = Scorer(settings, data, device).shared[0]
    few = list(range(min(len(genotypes), 2 if dry else 20)))
    with rec.part("floor"):
        parts = {"build": [], "move": [], "measure": [], "floor": []}
        for i in few:
            seed = derive_seed(0, i)
            t, model = wall(lambda: build_model(TEACHER, genotypes[i], 10, seed=seed), device)
            parts["build"].append(t)
            parts["move"].append(wall(lambda: model.to(device, memory_format=layout), device)[0])
            parts["measure"].append(median_time(lambda: fisher_potential(model, images, labels), device, repeats=3))
            parts["floor"].append(median_time(lambda: floor(model, images, labels), device, repeats=3))
            del model
        ms = {k: 1000 * statistics.mean(v) for k, v in parts.items()}
        result = {f"{k}_ms": rounded(v) for k, v in ms.items()}
        result["candidates"] = len(few)
        if "baseline" in rec.data:
            result["ours_over_floor"] = rounded(rec.data["baseline"]["ms_per_candidate"] / ms["floor"], 3)
        result["measure_over_floor"] = rounded(ms["measure"] / ms["floor"], 3)
        rec.set("floor", result)

    # GPU busy time per candidate (on the CPU, in a dry run, the profiler finds no kernels: 0 ms).
    with rec.part("kernel_time"):
        ms_floor, ms_measure = [], []
        for i in few[: 1 if dry else 3]:
            model = build_model(TEACHER, genotypes[i], 10, seed=derive_seed(0, i)).to(device, memory_format=layout)
            fisher_potential(model, images, labels)
            ms_measure.append(gpu_kernel_ms(lambda: fisher_potential(model, images, labels), device))
            ms_floor.append(gpu_kernel_ms(lambda: floor(model, images, labels), device))
        rec.set(
            "kernel_time",
            {
                "floor_gpu_ms": rounded(statistics.mean(ms_floor)),
                "measure_gpu_ms": rounded(statistics.mean(ms_measure)),
                "note": "sum of CUDA kernel times (profiler): the GPU's busy time per candidate",
            },
        )

    # 4. K `blockswap score` processes sharing the device, each one shard (the workflow's shards);
    #    then in-process variants of the fresh path on a subset; then more processes if time is left.
    procs = {}

    def processes(k):
        if not rec.enough(f"processes{k}", 15):
            return
        with rec.part(f"processes{k}"):
            m = len(genotypes) if dry else min(len(genotypes), max(8 * k, int(rate * 12)))
            m -= m % k
            procs[f"processes{k}"] = score_processes(
                k, m, cands, data_dir, batch, device, work, rec.left() - 3, baseline
            )
            rec.set("processes", procs)

    processes(2 if dry else 4)
    subset = max(2, min(200, int(rate * 2))) if not dry else 2
    todo = [(i, genotypes[i]) for i in range(min(subset, len(genotypes)))]
    paths = FisherPaths(TEACHER, images, labels, device, settings.channels_last)
    variants = [  # most telling first: the time box may cut the list short
        ("plain", {}),
        ("bf16_autocast", {"bf16": True}),
        ("one_copy", {"one_copy": True}),
        ("skip_default_init", {"skip_init": True}),
        ("threads4", {"threads": 4}),
        ("skip_init+one_copy", {"skip_init": True, "one_copy": True}),
        ("threads4+skip_init+one_copy", {"threads": 4, "skip_init": True, "one_copy": True}),
        ("tf32_off", {"tf32": False}),
    ]
    results, reference = {}, None
    with rec.part("variants"):
        run_variant(paths, todo[:2])  # warm-up
        for name, flags in variants:
            flags = dict(flags)
            if not rec.enough(f"variant {name}", 2 + len(todo) / rate):
                continue
            tf32 = flags.pop("tf32", None)
            old = torch.backends.cudnn.allow_tf32
            if tf32 is not None:
                torch.backends.cudnn.allow_tf32 = tf32
            try:
                with rec.part(f"variant {name}"):
                    t, values = wall(lambda: run_variant(paths, todo, **flags), device)
                    ordered = [values[i] for i, _ in todo]
                    if name == "plain":
                        reference = ordered
                    entry = {
                        "candidates": len(todo),
                        "candidates_per_s": rounded(len(todo) / t),
                        "ms_per_candidate": rounded(1000 * t / len(todo)),
                    }
                    if reference is not None:
                        plain_ms = results.get("plain", entry)["ms_per_candidate"]
                        entry["max_rel_diff_vs_plain"] = rounded(max_rel_diff(ordered, reference), 3)
                        entry["speedup_vs_plain"] = rounded(plain_ms / entry["ms_per_candidate"], 3)
                    entry["max_rel_diff_vs_baseline"] = rounded(
                        max_rel_diff(ordered, [baseline.get(i) for i, _ in todo]), 3
                    )
                    if name == "bf16_autocast" and reference is not None and len(todo) > 2:
                        from scipy.stats import spearmanr

                        entry["spearman_vs_plain"] = rounded(spearmanr(ordered, reference)[0], 4)
                        entry["same_best_candidate"] = max(range(len(todo)), key=ordered.__getitem__) == max(
                            range(len(todo)), key=reference.__getitem__
                        )
                    d = entry.get("max_rel_diff_vs_plain")
                    entry["within_1e-3"] = d is not None and d <= 1e-3
                    results[name] = entry
                    rec.set("variants", results)
            finally:
                torch.backends.cudnn.allow_tf32 = old
            free_memory()
    if not dry:
        processes(8)

    # The fastest variant whose Fisher values stay within 1e-3 of the plain path's.
    speeds = {
        name: (e.get("speedup_vs_plain"), e.get("max_rel_diff_vs_plain"))
        for name, e in results.items()
        if name not in ("plain", "tf32_off") and e.get("within_1e-3")
    }
    base_rate = rec.data.get("baseline", {}).get("candidates_per_s")
    for name, e in procs.items():
        if base_rate and e.get("max_rel_diff_vs_baseline") is not None and e["max_rel_diff_vs_baseline"] <= 1e-3:
            speeds[name] = (rounded(e["candidates_per_s_with_startup"] / base_rate, 3), e["max_rel_diff_vs_baseline"])
    speeds = {k: v for k, v in speeds.items() if v[0]}
    if speeds:
        name = max(speeds, key=lambda k: speeds[k][0])
        rec.set(
            "best_variant",
            {
                "name": name,
                "speedup": speeds[name][0],
                "max_rel_diff": speeds[name][1],
                "wins": speeds[name][0] >= 1.1,
                "note": "speed-up over the plain path (processes: over the baseline, start included)",
            },
        )


# --- train --------------------------------------------------------------------------------------


def genotype_names(spec):
    from blockswap import Genotype, parse_arch

    if spec is None:
        return None
    path = ROOT / spec
    if path.is_file():
        return Genotype.load(path).names
    return Genotype.from_spec(spec, parse_arch(TEACHER).depth).names


def train_throughput(names, flags, steps, batch, device, tmp, images=None):
    """images/s of Trainer.train_epoch (augmentation on the device included) after a warm-up
    epoch of 2 batches (which holds the compilation in fast mode)."""
    from train_step import epoch_seconds, synthetic_cifar

    from blockswap.data.splits import ImageTensors
    from blockswap.training.config import TrainConfig
    from blockswap.training.train import Trainer

    data = synthetic_cifar(images or batch * steps)
    cfg = TrainConfig(arch=TEACHER, genotype=names, dataset="digits", batch_size=batch, **flags)
    trainer = Trainer(cfg, tmp, device, data, progress=False)
    full = data.train
    data.train = ImageTensors(full.images[: 2 * batch], full.labels[: 2 * batch])
    warmup = epoch_seconds(trainer, device)
    data.train = full
    seconds = epoch_seconds(trainer, device)
    n = (len(full) // batch) * batch
    ips = n / seconds
    del trainer, data
    return {
        "images_per_s": rounded(ips),
        "seconds_per_cifar_epoch": rounded(CIFAR_EPOCH / ips, 3),
        "warmup_seconds": rounded(warmup, 3),
        "timed_images": n,
        "extrapolated_epoch": n < CIFAR_EPOCH - batch,
    }


def step_train(args, rec: Record):
    import tempfile

    import torch

    device = device_of(args)
    dry = args.dry_run
    batch, steps = (8, 2) if dry else (128, 40)
    models = {f"teacher {TEACHER}": None, **STUDENTS}
    modes = {
        "paper": {},
        "bf16_cl": {"bf16": True, "channels_last": True},
        "fast": {"bf16": True, "channels_last": True, "compile": True},
    }
    if dry:
        modes = {"paper": {}, "cl": {"channels_last": True}}
        rec.note("CPU dry run: bf16 and compile need CUDA; channels-last alone stands in for fast mode")
    rec.set(
        "setup",
        {
            "batch_size": batch,
            "steps": steps,
            "image_size": 32,
            "modes": modes,
            "tf32_cudnn_conv": torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None,
        },
    )
    results = {label: {} for label in models}
    names = {label: genotype_names(spec) for label, spec in models.items()}
    rec.set("results", results)
    # Paper mode of every network, then the teacher's fast mode (the goal), then the rest with the
    # students' fast mode (each a compilation) last.
    teacher = f"teacher {TEACHER}"
    order = [("paper", label) for label in models]
    order += [(m, teacher) for m in modes if m != "paper"][::-1]
    order += [(m, label) for m in modes if m not in ("paper", "fast") for label in models if label != teacher]
    order += [("fast", label) for label in models if "fast" in modes and label != teacher]
    compile_s = None
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for mode, label in order:
            need = 6 if mode != "fast" else (compile_s * 1.2 + 5 if compile_s else 25)
            if not rec.enough(f"{label} {mode}", need):
                continue
            with rec.part(f"{label} {mode}"):
                try:
                    out = train_throughput(names[label], modes[mode], steps, batch, device, f"{tmp}/{mode}-{label}")
                finally:
                    if mode == "fast":
                        torch._dynamo.reset()
                    free_memory()
                results[label][mode] = out
                if mode == "fast":
                    compile_s = max(compile_s or 0, out["warmup_seconds"])
                paper = results[label].get("paper")
                if paper and mode != "paper":
                    out["speedup_vs_paper"] = rounded(out["images_per_s"] / paper["images_per_s"], 3)
                rec.set("results", results)
        # A full CIFAR-sized epoch (50,000 synthetic images) of the teacher, paper and fast mode.
        if not dry:
            teacher = f"teacher {TEACHER}"
            for mode in ("paper", "fast"):
                ips = results[teacher].get(mode, {}).get("images_per_s")
                if not ips or not rec.enough(f"teacher full epoch {mode}", CIFAR_EPOCH / ips + (compile_s or 0) + 10):
                    continue
                with rec.part(f"teacher full epoch {mode}"):
                    try:
                        # 390 full batches: a real epoch's last partial batch would add a recompilation
                        out = train_throughput(
                            None,
                            modes[mode],
                            steps,
                            batch,
                            device,
                            f"{tmp}/full-{mode}",
                            images=CIFAR_EPOCH // batch * batch,
                        )
                    finally:
                        torch._dynamo.reset()
                        free_memory()
                    results[teacher][f"{mode}_full_epoch"] = out
                    rec.set("results", results)
        # cuDNN autotuning (off in the package) for the teacher in paper mode.
        if not dry and rec.enough("teacher paper cudnn.benchmark", 10):
            with rec.part("teacher paper cudnn.benchmark"):
                torch.backends.cudnn.benchmark = True
                try:
                    out = train_throughput(None, {}, steps, batch, device, f"{tmp}/bench")
                finally:
                    torch.backends.cudnn.benchmark = False
                    free_memory()
                results[f"teacher {TEACHER}"]["paper_cudnn_benchmark"] = out
                rec.set("results", results)
    teacher = results[teacher]
    if "paper" in teacher and "fast" in teacher:
        rec.set("teacher_fast_over_paper", teacher["fast"]["speedup_vs_paper"])
        rec.set("goal_fast_3x_paper", teacher["fast"]["speedup_vs_paper"] >= 3)


# --- lockstep -----------------------------------------------------------------------------------

# How the K students of one lockstep job step (train.train_pass, one teacher forward per minibatch):
# "sync" waits for the device after every student's step, as the trainer did when it read each
# loss back; "eager" is the default trainer (no host sync in a step); "graphs" is --cuda-graphs
# (each step and the teacher's forward replayed from CUDA graphs, one stream per student).
LOCKSTEP_MODES = ("sync", "eager", "graphs")


def lockstep_teacher(device, batch, tmp) -> str:
    """A WRN-40-2 teacher run folder (two steps of training, tested on two minibatches: its quality
    does not matter here)."""
    from dataclasses import replace

    from train_step import synthetic_cifar

    from blockswap.data.splits import ImageTensors
    from blockswap.training.config import TrainConfig
    from blockswap.training.train import Trainer

    out = f"{tmp}/teacher"
    data = synthetic_cifar(2 * batch)
    data = replace(data, test=ImageTensors(data.test.images[: 2 * batch], data.test.labels[: 2 * batch]))
    Trainer(TrainConfig(arch=TEACHER, dataset="digits", epochs=1, batch_size=batch), out, device,
            data, progress=False, log=lambda *_: None).run()  # fmt: skip
    return out


def lockstep_rate(k, mode, steps, batch, device, tmp, teacher, genotypes, label=None) -> dict:
    """Aggregate images/s of K WRN-40-2 students at the 404.2K budget trained in lockstep from
    `teacher` over `steps` full minibatches, after a warm-up pass of WARMUP_CALLS + 2 minibatches
    (which holds the captures). Then, untimed, an epoch-1 pass that ends on a partial minibatch: a
    new learning rate (captured again) and an eager step between replays. The first student's
    weights after all of it come back for comparison between modes."""
    import torch
    from train_step import synthetic_cifar

    from blockswap.data.splits import ImageTensors
    from blockswap.training.config import TrainConfig
    from blockswap.training.step_capture import WARMUP_CALLS
    from blockswap.training.train import SharedWork, Trainer, train_pass

    data = synthetic_cifar(batch * steps)
    full = data.train
    cfgs = [
        TrainConfig(
            arch=TEACHER,
            genotype=genotypes[i % len(genotypes)],
            dataset="digits",
            batch_size=batch,
            teacher=teacher,
            epochs=2,
            cuda_graphs=mode == "graphs",
        )  # fmt: skip
        for i in range(k)
    ]
    folder = f"{tmp}/{label or mode}-k{k}"
    trainers = [Trainer(cfg, f"{folder}/{i}", device, data, progress=False) for i, cfg in enumerate(cfgs)]
    if mode == "sync":
        for t in trainers:
            t.update = synced(t.update, device)
    work = SharedWork(trainers)

    def one_pass(epoch=0):
        for t in trainers:
            t.start_epoch(epoch)  # epoch 0 again: the same learning rate, so no capture is redone
        train_pass(trainers, epoch, work)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warm = (WARMUP_CALLS + 2) * batch
    data.train = ImageTensors(full.images[:warm], full.labels[:warm])
    warmup, _ = wall(one_pass, device)
    data.train = full
    seconds, _ = wall(one_pass, device)
    images = steps * batch
    out = {
        "students": k,
        "images_per_s": rounded(k * images / seconds),
        "per_student_images_per_s": rounded(images / seconds),
        "seconds": rounded(seconds, 3),
        "warmup_seconds": rounded(warmup, 3),
        "train_loss": rounded(trainers[0].epoch_means()["train_loss"], 8),
    }
    tail = 3 * batch + batch // 2  # three full minibatches and a partial one
    data.train = ImageTensors(full.images[:tail], full.labels[:tail])
    one_pass(epoch=1)
    sync(device)
    out["captures"] = sum(getattr(step, "captures", 0) for step in [work.teacher, *(t.update for t in trainers)])
    if device.type == "cuda":
        out["max_memory_reserved_gb"] = rounded(torch.cuda.max_memory_reserved(device) / 1e9, 3)
    return out, {name: t.detach().cpu() for name, t in trainers[0].model.state_dict().items()}


def max_rel_tensor_diff(a: dict, b: dict) -> float:
    """max over floating tensors of max|a - b| / max|b|."""
    return max(
        float((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-30)) for n in a if a[n].is_floating_point()
    )


def synced(update, device):
    def step(*args, **kwargs):
        out = update(*args, **kwargs)
        sync(device)
        return out

    return step


def step_lockstep(args, rec: Record):
    import tempfile

    import torch

    from blockswap.training import step_capture

    device = device_of(args)
    dry = args.dry_run
    # K = 1 first (the baseline and the control), then K = 8 (the goal), then K = 4 if time is left.
    batch, steps, ks = (8, 2, (1, 2)) if dry else (128, 30, (1, 8, 4))
    if dry:
        # CUDA graphs need CUDA: the CPU stand-in replays by running the step again, which checks
        # everything around the capture (held minibatch, captured teacher, streams off the GPU).
        step_capture.GRAPH_BACKENDS["cpu"] = step_capture.RerunGraphs
        rec.note("CPU dry run: 'graphs' uses the stand-in backend (step_capture.RerunGraphs), not CUDA graphs")
    rec.set("setup", {"batch_size": batch, "steps": steps, "students": list(ks), "modes": list(LOCKSTEP_MODES),
                      "teacher": TEACHER, "budget": FISHER_BUDGET})  # fmt: skip
    genotypes = [genotype_names(STUDENTS["blockswap-404k"]), genotype_names("G(4)"), genotype_names("G(N)")]
    results = {mode: {} for mode in LOCKSTEP_MODES}
    rec.set("results", results)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        with rec.part("teacher"):
            teacher = lockstep_teacher(device, batch, tmp)
        for k in ks:
            weights = {}
            for mode in LOCKSTEP_MODES:
                if not rec.enough(f"{mode} K={k}", 4 + 1.5 * k):
                    continue
                with rec.part(f"{mode} K={k}"):
                    try:
                        out, weights[mode] = lockstep_rate(k, mode, steps, batch, device, tmp, teacher, genotypes)
                    finally:
                        free_memory()
                    results[mode][f"K={k}"] = out
                    rec.set("results", results)
            if "graphs" in weights and "eager" in weights:
                a, b = weights["eager"], weights["graphs"]
                results["graphs"][f"K={k}"]["identical_to_eager"] = all(torch.equal(a[n], b[n]) for n in a)
                results["graphs"][f"K={k}"]["max_rel_diff_vs_eager"] = rounded(max_rel_tensor_diff(b, a), 6)
                rec.set("results", results)
            # The control: eager against eager. cuDNN's backward kernels need not be deterministic,
            # so graphs against eager is read beside how far two eager runs already differ.
            if k == ks[0] and "eager" in weights and rec.enough(f"eager again K={k}", 4 + 1.5 * k):
                with rec.part(f"eager again K={k}"):
                    try:
                        _, again = lockstep_rate(k, "eager", steps, batch, device, tmp, teacher, genotypes, "again")
                    finally:
                        free_memory()
                    control = results["eager"][f"K={k}"]
                    control["repeat_identical"] = all(torch.equal(again[n], weights["eager"][n]) for n in again)
                    control["repeat_max_rel_diff"] = rounded(max_rel_tensor_diff(again, weights["eager"]), 6)
                    rec.set("results", results)
    sync_k1 = results["sync"].get("K=1", {}).get("images_per_s")
    best = max((r["images_per_s"] for mode in results.values() for r in mode.values()), default=None)
    if sync_k1 and best:
        rec.set("best_over_sync_k1", rounded(best / sync_k1, 3))
        rec.set("goal_2x", best / sync_k1 >= 2)


# --- correctness --------------------------------------------------------------------------------


def train_cmd(out, epochs, device):
    # tests/test_train.py::test_killed_training_resumes_to_the_same_numbers, on `device`.
    return [
        sys.executable,
        "-m",
        "blockswap.cli",
        "train",
        "--arch",
        "wrn-10-2",
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--epochs",
        str(epochs),
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--device",
        device,
        "--quiet",
        "--out",
        str(out),
    ]


def kill_and_resume(device: str, epochs: int, work: Path, limit: float) -> dict:
    import pandas as pd

    from blockswap.training.checkpoint import CHECKPOINT_FORMAT, load_model, safe_load

    start = time.perf_counter()
    # The uninterrupted reference runs beside the run that gets killed (they share nothing).
    reference = subprocess.Popen(
        train_cmd(work / "ref", epochs, device), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = work / "run"
    proc = subprocess.Popen(train_cmd(out, epochs, device), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.4)  # somewhere inside a later epoch
    proc.kill()
    proc.wait()
    ref_log = reference.communicate(timeout=limit)[0]
    if reference.returncode != 0:
        raise RuntimeError(f"reference run failed: {ref_log[-400:]}")
    if (out / "metrics.json").exists() or not (out / "checkpoint.pt").exists():
        return {"killed": False, "note": "the run finished (or wrote no checkpoint) before the kill"}
    killed_after = safe_load(out / "checkpoint.pt", CHECKPOINT_FORMAT)["epoch"]
    left = limit - (time.perf_counter() - start)
    resumed = subprocess.run(
        train_cmd(out, epochs, device), check=True, capture_output=True, text=True, timeout=max(5.0, left)
    )
    ref = json.loads((work / "ref" / "metrics.json").read_text())
    run = json.loads((out / "metrics.json").read_text())
    a, _ = load_model(work / "ref")
    b, _ = load_model(out)
    weight_diff = max(
        float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
        for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )
    h_ref = pd.read_csv(work / "ref" / "history.csv")
    h_run = pd.read_csv(out / "history.csv")
    return {
        "killed": True,
        "killed_after_epoch": killed_after,
        "epochs": epochs,
        "resumed": "resuming" in resumed.stdout,
        "test_error_ref": ref["test_error"],
        "test_error_resumed": run["test_error"],
        "test_error_diff": rounded(run["test_error"] - ref["test_error"]),
        "max_weight_abs_diff": rounded(weight_diff, 3),
        "max_train_loss_diff": rounded(float((h_ref["train_loss"] - h_run["train_loss"]).abs().max()), 3),
        "identical": weight_diff == 0.0 and run["test_error"] == ref["test_error"],
        "seconds": rounded(time.perf_counter() - start, 3),
    }


def step_correctness(args, rec: Record):
    import tempfile

    import torch

    from blockswap import CANDIDATE_SETS, Genotype, parse_arch
    from blockswap.data.loaders import load_dataset
    from blockswap.search.sampling import CostTable, sample_candidates
    from blockswap.search.scoring import Scorer, ScoringSettings

    device = device_of(args)
    dry = args.dry_run
    work = Path(tempfile.mkdtemp(dir=args.work))

    with rec.part("fisher_device_vs_cpu"):
        n, batch = (2, 8) if dry else (10, 128)
        data = load_dataset("cifar10", write_cifar10(work / "data", per_batch=max(batch, 64)))
        table = CostTable.build(parse_arch(TEACHER), CANDIDATE_SETS["paper"], (32, 32), 10)
        cands = sample_candidates(table, FISHER_BUDGET, n, seed=0)
        genotypes = [Genotype.parse(g) for g in cands["genotype"]]
        settings = ScoringSettings(arch=TEACHER, dataset="cifar10", num_classes=10, image_size=32, batch_size=batch)
        cpu = Scorer(settings, data, torch.device("cpu"))
        ref = [cpu.score(i, g)["fisher"] for i, g in enumerate(genotypes)]
        result = {"candidates": n, "batch_size": batch, "cpu_threads": torch.get_num_threads()}
        for tf32 in (True, False):  # cuDNN's TF32 convolutions (PyTorch's default) and off; no-op on CPU
            old = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = tf32
            try:
                scorer = Scorer(settings, data, device)
                got = [scorer.score(i, g)["fisher"] for i, g in enumerate(genotypes)]
            finally:
                torch.backends.cudnn.allow_tf32 = old
            key = "tf32_on" if tf32 else "tf32_off"
            result[f"max_rel_diff_{key}"] = rounded(max_rel_diff(got, ref), 3)
            result[f"same_ranking_{key}"] = sorted(range(n), key=got.__getitem__) == sorted(
                range(n), key=ref.__getitem__
            )
        result["within_1e-3"] = result["max_rel_diff_tf32_on"] <= 1e-3
        rec.set("fisher_device_vs_cpu", result)

    # Digits in paper and fast mode, with kill-and-resume after the first pair's paper run (so that
    # a long compilation cannot crowd it out); the second seed if time is left.
    from blockswap.training.config import TrainConfig
    from blockswap.training.train import Trainer

    if dry:
        arch, size, epochs, seeds = "wrn-10-2", 8, 1, (0,)
        modes = {"paper": {}, "fast": {"channels_last": True}}
        rec.note("CPU dry run: digits 'fast' is channels-last alone (bf16 and compile need CUDA)")
    else:
        arch, size, epochs, seeds = "wrn-16-2", 16, 15, (0, 1)
        modes = {"paper": {}, "fast": {"bf16": True, "channels_last": True, "compile": True}}
    digits = load_dataset("digits", image_size=size)
    runs = {m: [] for m in modes}
    rec.set("digits", {"arch": arch, "image_size": size, "epochs": epochs, "batch_size": 64, "runs": runs})
    seconds = {}

    def train_digits(mode, seed):
        flags = modes[mode]
        need = seconds.get(mode) or (seconds.get("paper", 10) + (30 if flags.get("compile") else 0))
        if not rec.enough(f"digits {mode} seed {seed}", need):
            return
        with rec.part(f"digits {mode} seed {seed}"):
            cfg = TrainConfig(
                arch=arch, dataset="digits", image_size=size, epochs=epochs, batch_size=64, seed=seed, **flags
            )
            start = time.perf_counter()
            try:
                metrics = Trainer(
                    cfg, work / f"digits-{mode}-{seed}", device, digits, progress=False, log=lambda line: None
                ).run()
            finally:
                torch._dynamo.reset()
                free_memory()
            seconds[mode] = time.perf_counter() - start
            runs[mode].append({"seed": seed, "test_error": metrics["test_error"], "seconds": rounded(seconds[mode], 3)})
            rec.save()

    train_digits("paper", seeds[0])
    if rec.enough("kill_and_resume", 20 if not dry else 5):
        with rec.part("kill_and_resume"):
            epochs_kr = 2 if dry else 12
            rec.set(
                "kill_and_resume", kill_and_resume(device.type, epochs_kr, work / "resume", max(10.0, rec.left() - 5))
            )
    train_digits("fast", seeds[0])
    for seed in seeds[1:]:
        for mode in modes:
            train_digits(mode, seed)

    summary = {}
    for mode, rows in runs.items():
        errors = [r["test_error"] for r in rows]
        if errors:
            summary[mode] = {
                "mean": rounded(statistics.mean(errors)),
                "runs": len(errors),
                "std": rounded(statistics.stdev(errors)) if len(errors) > 1 else None,
            }
    if len(summary) == 2:
        p = (summary["paper"]["mean"] + summary["fast"]["mean"]) / 200
        n_test = len(digits.test)
        noise = 100 * 2 * math.sqrt(max(p * (1 - p), 1 / n_test) * 2 / n_test)
        diff = abs(summary["paper"]["mean"] - summary["fast"]["mean"])
        summary["abs_diff"] = rounded(diff)
        summary["noise_bound"] = rounded(noise)
        summary["within_noise"] = diff <= noise
        summary["rule"] = (
            "|mean paper - mean fast| <= 2 binomial std of a difference of two test errors (n = test size)"
        )
    rec.data["digits"]["summary"] = summary
    rec.save()


# --- loader -------------------------------------------------------------------------------------


def _write_jpeg(job):
    import numpy as np
    from PIL import Image

    path, width, height, seed = job
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(low).resize((width, height), Image.BICUBIC)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3))
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return os.path.getsize(path)


def write_imagefolder(root: Path, unique: int, total: int, width: int, height: int, classes: int = 10):
    """An ImageFolder tree root/imagenet/{train,val}/<class>/: `unique` distinct JPEGs (smooth
    content plus noise, about the bytes of a real photo), hard-linked up to `total` train files."""
    from multiprocessing import Pool

    base = root / "imagenet"
    jobs = []
    for i in range(unique):
        folder = base / "train" / f"c{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(folder / f"u{i:05d}.JPEG"), width, height, i))
    for c in range(classes):
        folder = base / "val" / f"c{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(folder / "v0.JPEG"), width, height, 10_000 + c))
    with Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        sizes = pool.map(_write_jpeg, jobs, chunksize=8)
    for j in range(unique, total):
        src = jobs[j % unique][0]
        dst = base / "train" / f"c{j % classes:02d}" / f"l{j:06d}.JPEG"
        os.link(src, dst)
    return statistics.mean(sizes[:unique])


def resnet34_rate(flags, batch, size, steps, device, out) -> float:
    """Training images/s of ResNet-34 (ImageNet protocol, 1000 classes) on synthetic images held
    on the device, through Trainer.train_epoch, after a 2-batch warm-up."""
    import torch
    from train_step import epoch_seconds

    from blockswap.data.datasets import IMAGENET_MEAN, IMAGENET_STD
    from blockswap.data.splits import Dataset, ImageTensors
    from blockswap.training.config import PROTOCOLS, TrainConfig
    from blockswap.training.train import Trainer

    g = torch.Generator().manual_seed(0)
    full = ImageTensors(
        torch.randint(0, 256, (batch * steps, 3, size, size), dtype=torch.uint8, generator=g),
        torch.randint(0, 1000, (batch * steps,), generator=g),
    )
    data = Dataset("synthetic-imagenet", 1000, size, IMAGENET_MEAN, IMAGENET_STD, full, None)
    cfg = TrainConfig(arch="resnet-34", dataset="imagenet", **{**PROTOCOLS["imagenet"], "batch_size": batch, **flags})
    trainer = Trainer(cfg, out, device, data, progress=False)
    data.train = ImageTensors(full.images[: 2 * batch], full.labels[: 2 * batch])
    epoch_seconds(trainer, device)  # warm-up
    data.train = full
    return batch * steps / epoch_seconds(trainer, device)


def step_loader(args, rec: Record):
    import tempfile

    import torch

    from blockswap.data.loader import epoch_batches
    from blockswap.data.loaders import load_dataset

    device = device_of(args)
    dry = args.dry_run
    workers = 2 if dry else (os.cpu_count() or 1)
    batch, size = (8, 32) if dry else (256, 224)
    batches = 4 * workers  # timed from the end of the first wave (one batch per worker) on
    width, height, unique = (64, 48, 16) if dry else (500, 375, 512)
    work = Path(tempfile.mkdtemp(dir=args.work))
    rec.set(
        "setup",
        {
            "workers": workers,
            "batch_size": batch,
            "image_size": size,
            "jpeg": [width, height],
            "unique_jpegs": unique,
            "train_files": batch * batches,
            "cpu_count": os.cpu_count(),
        },
    )

    with rec.part("loader"):
        t, mean_bytes = wall(
            lambda: write_imagefolder(work, unique, batch * batches, width, height), torch.device("cpu")
        )
        rec.set("jpegs", {"write_seconds": rounded(t, 3), "mean_kib": rounded(mean_bytes / 1024, 3)})
        data = load_dataset("imagenet", work, image_size=size)
        # One process, one image at a time: decode + RandomResizedCrop + flip + ToTensor + Normalize.
        k = min(len(data.train), 16 if dry else 200)
        t, _ = wall(lambda: [data.train[i] for i in range(k)], torch.device("cpu"))
        per_image_ms = 1000 * t / k
        # Each worker makes whole batches, so they come in waves of `workers`: the rate is timed from
        # the end of the first wave, which also leaves out the workers' start.
        begin = time.perf_counter()
        stream = iter(epoch_batches(data, batch, seed=0, device=device, cutout=False, workers=workers))
        t_first, _ = wall(lambda: next(stream), device)
        count, seen = 0, 1
        start = time.perf_counter() if workers <= 1 else None
        for _images, labels in stream:
            seen += 1
            if start is not None:
                count += len(labels)
            elif seen >= workers:
                sync(device)
                start = time.perf_counter()
            # Cut short only once something is timed: a rate from no images would be no result.
            if count and time.perf_counter() - begin > rec.left() - 20:
                rec.note("loader timing cut short to keep time for the GPU side")
                break
        sync(device)
        end = time.perf_counter()
        t = end - (start or begin)
        rec.set(
            "loader_result",
            {
                "images_per_s": rounded(count / t) if count else None,
                "images_timed": count,
                "images_per_s_with_start": rounded(seen * batch / (end - begin)),
                "first_batch_seconds": rounded(t_first, 3),
                "one_process_ms_per_image": rounded(per_image_ms, 3),
                "ideal_images_per_s_all_cores": rounded(workers * 1000 / per_image_ms),
            },
        )

    gpu = {}
    for mode, flags in {"paper": {}, "bf16_cl": {"bf16": True, "channels_last": True}}.items():
        if mode == "bf16_cl" and device.type != "cuda":
            rec.skip("resnet34 bf16_cl", "needs CUDA")
            continue
        if not rec.enough(f"resnet34 {mode}", 8):
            continue
        with rec.part(f"resnet34 {mode}"):
            steps = 2 if dry else 8
            try:
                gpu[mode] = {
                    "images_per_s": rounded(resnet34_rate(flags, batch, size, steps, device, work / mode)),
                    "steps": steps,
                }
            finally:
                free_memory()
            rec.set("resnet34", gpu)
    loader = rec.data.get("loader_result", {}).get("images_per_s")
    if loader and gpu:
        ratios = {m: rounded(v["images_per_s"] / loader, 3) for m, v in gpu.items()}
        rec.set("gpu_over_loader", ratios)
        rec.set("loader_bound", any(r > 1 for r in ratios.values()))


def step_latency(args, rec: Record):
    """Deployment budgets on the GPU: a per-block latency table of WRN-40-2 under cuda/b1 and cuda/b128 (the
    package's own protocol: 10 warm-ups, median of 50 CUDA-synchronised calls); then, per setting, its
    calibration (`blockswap latency-calibrate`: whole networks spread over the predicted range, the line
    measured = slope x predicted + intercept, its held-out error, and whether latency budgets there are
    allowed or refused), and the table's error against end-to-end timings of as many random students as the
    time box allows, raw, with a line fitted on those students (held out) and with the stored calibration."""
    from blockswap.deploy.calibration import DEFAULT_NETWORKS, MIN_NETWORKS
    from blockswap.deploy.latency import LatencyTable, build_latency_table
    from blockswap.deploy.latency_validation import calibrate, check_table
    from blockswap.deploy.settings import Setting
    from blockswap.errors import BlockswapError

    dry = args.dry_run
    device_of(args)  # refuses a GPU run without CUDA
    arch, size = ("wrn-10-1", (8, 8)) if dry else (TEACHER, (32, 32))
    settings = [Setting("cpu", 1, 1)] if dry else [Setting("cuda", 0, 1), Setting("cuda", 0, 128)]
    rec.set("setup", {"arch": arch, "input_size": list(size), "settings": [s.key for s in settings]})
    table = None
    with rec.part("table"):
        start = time.perf_counter()
        record = build_latency_table(arch, "paper", size, 10, settings)
        rec.set(
            "table",
            {
                "build_seconds": rounded(time.perf_counter() - start),
                "stem_ms": {k: rounded(v * 1e3) for k, v in record["stem"].items()},
                "head_ms": {k: rounded(v * 1e3) for k, v in record["head"].items()},
            },
        )
        table = LatencyTable(record)
    if table is None:
        return
    record.setdefault("calibration", {})
    for setting in settings:
        key, wanted = setting.key, (100 if setting.batch == 1 else 50)
        # Of what is left, this setting's share (all of it for the last), 60 % of it for the calibration.
        share = 1.0 if setting is settings[-1] else 1 / len(settings)
        each = None
        with rec.part(f"calibration {key}"):
            networks = MIN_NETWORKS
            if not dry:  # a few students first tell what one whole network costs
                start = time.perf_counter()
                check_table(table, key, samples=3, seed=1)
                each = (time.perf_counter() - start) / 3
                networks = max(MIN_NETWORKS, min(DEFAULT_NETWORKS, int((rec.left() - 10) * share * 0.6 / each)))
                if networks < DEFAULT_NETWORKS:
                    rec.note(f"{key}: {networks} of {DEFAULT_NETWORKS} calibration networks fit the time box")
            entry = calibrate(table, key, samples=networks, seed=0)
            record["calibration"][key] = entry
            try:
                table.budget_calibration(key)
                budgets = "allowed"
            except BlockswapError as err:
                budgets = f"refused: {err}"
            rec.set(
                f"calibration {key}",
                {
                    "networks": len(entry["networks"]),
                    "slope": rounded(entry["slope"]),
                    "intercept_ms": rounded(entry["intercept_seconds"] * 1e3),
                    "raw": entry["raw"],
                    "held_out": entry["held_out"],
                    "latency_budgets": budgets,
                    "timings_ms": [
                        [n["genotype"], rounded(n["predicted_seconds"] * 1e3), rounded(n["measured_seconds"] * 1e3)]
                        for n in entry["networks"]
                    ],
                },
            )
        with rec.part(f"check {key}"):
            samples = MIN_NETWORKS
            if each is not None:
                samples = max(3, min(wanted, int((rec.left() - 10) * share / each)))
                if samples < wanted:
                    rec.note(f"{key}: {samples} of {wanted} students fit the time box")
            _, summary = check_table(table, key, samples=samples, seed=0)
            rec.set(f"check {key}", summary)


# --- report -------------------------------------------------------------------------------------


def read_steps(work: Path) -> dict:
    """Merge the shell's per-step status lines (steps.tsv) with each step's JSON."""
    steps = {}
    table = work / "steps.tsv"
    for line in table.read_text().splitlines() if table.exists() else []:
        name, status, rc, seconds, limit, note = (line.split("\t") + [""] * 6)[:6]
        entry = {
            "status": status,
            "rc": int(rc) if rc.lstrip("-").isdigit() else None,
            "wall_seconds": float(seconds or 0),
            "time_limit_s": float(limit or 0),
        }
        if note:
            entry["note"] = note
        path = work / f"{name}.json"
        if path.exists():
            try:
                entry["result"] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                entry["result_error"] = f"unreadable JSON: {err}"
        log = work / f"{name}.log"
        if name == "snakemake" and log.exists():  # pytest's closing line
            closing = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if any(w in line for w in ("passed", "failed", "error", "selected", "no tests ran"))
            ]
            entry["pytest"] = closing[-1].strip("= ") if closing else None
            entry["note"] = "; ".join(x for x in (note, entry["pytest"]) if x)
        if status not in ("ok", "skipped"):
            if log.exists():
                entry["log_tail"] = log.read_text(errors="replace").splitlines()[-15:]
        steps[name] = entry
    return {name: steps[name] for name in sorted(steps, key=lambda n: STEPS.index(n) if n in STEPS else len(STEPS))}


def fmt(x, unit="", digits=3):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if abs(x) >= 1000:
            return f"{x:,.0f}{unit}"
        return f"{float(f'{x:.{digits}g}'):g}{unit}"
    return str(x)


def _env_lines(env: dict) -> list[str]:
    c = env.get("ceilings", {})
    text = f"torch {env.get('torch')}, {env.get('cpu_count')} CPUs"
    if c:
        text += (
            f"; copy {fmt(c.get('copy_tb_per_s'))} TB/s, matmul bf16 {fmt(c.get('matmul_bf16_tflops'))} / "
            f"tf32 {fmt(c.get('matmul_fp32_tf32_tflops'))} / fp32 {fmt(c.get('matmul_fp32_tflops'))} TFLOP/s"
        )
    return [text]


def _fisher_lines(f: dict) -> list[str]:
    b, fl, kt = f.get("baseline", {}), f.get("floor", {}), f.get("kernel_time", {})
    out = []
    if b:
        out.append(
            f"score: {b.get('candidates')} cand, {fmt(b.get('candidates_per_s'))}/s, "
            f"{fmt(b.get('ms_per_candidate'))} ms each -> 1000 in {fmt(b.get('seconds_for_1000'))} s"
            f"{' (extrap.)' if b.get('extrapolated') else ''} goal<60s: {fmt(b.get('goal_1000_under_60s'))}"
        )
    paths = f.get("paths", {})
    for name, e in paths.get("paths", {}).items():
        parts = "/".join(fmt(e.get(f"{k}_ms")) for k in ("build", "init", "move", "measure") if f"{k}_ms" in e)
        out.append(
            f"{name}: {fmt(e.get('total_ms'))} ms per cand" + (f" (build/init/move/measure {parts})" if parts else "")
        )
    if paths:
        exact = paths.get("bank_equals_fresh", {})
        out.append(
            f"  ({paths.get('memory_format')}, {paths.get('candidates')} cand) fresh/bank "
            f"{fmt(paths.get('fresh_over_bank'))}x, released/bank {fmt(paths.get('released_over_bank'))}x; "
            f"bank = fresh: params {fmt(exact.get('parameters'))}, fisher {fmt(exact.get('fisher'))}"
        )
    cli = f.get("score_cli")
    if cli:
        extrapolated = " (extrap.)" if cli.get("extrapolated") else ""
        out.append(
            f"blockswap score, 1 process: {cli.get('candidates')} cand in {fmt(cli.get('wall_seconds'))} s with start "
            f"-> 1000 in {fmt(cli.get('seconds_for_1000_with_startup'))} s{extrapolated}"
        )
    if fl:
        out.append(
            f"floor {fmt(fl.get('floor_ms'))} ms (ours {fmt(fl.get('ours_over_floor'))}x); build "
            f"{fmt(fl.get('build_ms'))} move {fmt(fl.get('move_ms'))} measure {fmt(fl.get('measure_ms'))} ms"
            + (f"; GPU busy {fmt(kt.get('measure_gpu_ms'))} ms" if kt else "")
        )
    parts = [
        f"{k} {fmt(e.get('speedup_vs_plain'))}x d{fmt(e.get('max_rel_diff_vs_plain'), digits=2)}"
        for k, e in f.get("variants", {}).items()
        if k != "plain"
    ]
    for i in range(0, len(parts), 3):
        out.append(("variants: " if i == 0 else "  ") + "; ".join(parts[i : i + 3]))
    for k, e in f.get("processes", {}).items():
        out.append(
            f"{k}: {fmt(e.get('candidates_per_s_with_startup'))}/s incl. start "
            f"({fmt(e.get('candidates_per_s_scoring'))}/s scoring), "
            f"d{fmt(e.get('max_rel_diff_vs_baseline'), digits=2)}"
        )
    best = f.get("best_variant")
    if best:
        out.append(
            f"best exact variant: {best['name']} {fmt(best['speedup'])}x (max rel diff "
            f"{fmt(best['max_rel_diff'], digits=2)}){'' if best['wins'] else ': no real win'}"
        )
    return out


def _train_lines(t: dict) -> list[str]:
    out = []
    for label, modes in t.get("results", {}).items():
        cells = [
            f"{m} {fmt(e.get('images_per_s'))}/s {fmt(e.get('seconds_per_cifar_epoch'))}s/ep"
            for m, e in modes.items()
            if m in ("paper", "bf16_cl", "fast", "cl")
        ]
        speed = modes.get("fast", modes.get("cl", {})).get("speedup_vs_paper")
        out.append(f"{label}: " + ", ".join(cells) + (f" ({fmt(speed)}x)" if speed else ""))
    teacher = t.get("results", {}).get(f"teacher {TEACHER}", {})
    extra = [
        f"{k.replace('_', ' ')} {fmt(teacher[k].get('images_per_s'))}/s"
        + (f" ({fmt(teacher[k]['timed_images'] / teacher[k]['images_per_s'])} s)" if "full" in k else "")
        for k in ("paper_full_epoch", "fast_full_epoch", "paper_cudnn_benchmark")
        if k in teacher
    ]
    if extra:
        out.append("teacher: " + ", ".join(extra))
    if "teacher_fast_over_paper" in t:
        out.append(
            f"teacher fast/paper {fmt(t['teacher_fast_over_paper'])}x, goal >=3x: {fmt(t.get('goal_fast_3x_paper'))}"
        )
    return out


def _lockstep_lines(lo: dict) -> list[str]:
    out = []
    for mode, runs in lo.get("results", {}).items():
        cells = [
            f"{k} {fmt(r.get('images_per_s'))}/s"
            + (f" (same as eager: {fmt(r['identical_to_eager'])})" if "identical_to_eager" in r else "")
            for k, r in runs.items()
        ]
        out.append(f"{mode}: " + ", ".join(cells))
    control = lo.get("results", {}).get("eager", {}).get("K=1", {})
    if "repeat_identical" in control:
        out.append(
            f"control, eager twice at K=1: identical {fmt(control['repeat_identical'])}, "
            f"max rel diff {fmt(control.get('repeat_max_rel_diff'))}"
        )
    if "best_over_sync_k1" in lo:
        out.append(f"best / sync K=1 {fmt(lo['best_over_sync_k1'])}x, goal >=2x: {fmt(lo.get('goal_2x'))}")
    return out


def _correctness_lines(c: dict) -> list[str]:
    out = []
    fd = c.get("fisher_device_vs_cpu")
    if fd:
        diffs = ", ".join(
            f"{k[len('max_rel_diff_') :]} {fmt(v, digits=2)}" for k, v in fd.items() if k.startswith("max_rel_diff_")
        )
        out.append(f"fisher dev/cpu max rel: {diffs}; within 1e-3: {fmt(fd.get('within_1e-3'))}")
    kr = c.get("kill_and_resume")
    if kr:
        out.append(
            f"kill+resume: killed after epoch {kr.get('killed_after_epoch')}, "
            f"resumed {fmt(kr.get('resumed'))}, err diff {fmt(kr.get('test_error_diff'))}, "
            f"max w diff {fmt(kr.get('max_weight_abs_diff'), digits=2)}"
            if kr.get("killed")
            else f"kill+resume: {kr.get('note')}"
        )
    d = c.get("digits", {}).get("summary", {})
    if d:
        modes = ", ".join(
            f"{m} {fmt(d[m]['mean'])}+-{fmt(d[m]['std'])} (n={d[m]['runs']})" for m in ("paper", "fast") if m in d
        )
        noise = (
            f"; within noise ({fmt(d.get('noise_bound'))}): {fmt(d.get('within_noise'))}" if "within_noise" in d else ""
        )
        out.append(f"digits err %: {modes}{noise}")
    return out


def _loader_lines(lo: dict) -> list[str]:
    lr, gpu, setup = lo.get("loader_result", {}), lo.get("resnet34", {}), lo.get("setup", {})
    out = [
        f"loader {fmt(lr.get('images_per_s'))} img/s ({setup.get('workers')} workers; "
        f"{fmt(lr.get('one_process_ms_per_image'))} ms/img in 1 proc)"
    ]
    if gpu:
        ratios = lo.get("gpu_over_loader", {})
        out.append(
            f"resnet-34 {setup.get('image_size')}px b{setup.get('batch_size')}: "
            + ", ".join(f"{m} {fmt(e.get('images_per_s'))} img/s" for m, e in gpu.items())
            + "; gpu/loader "
            + ", ".join(f"{m} {fmt(x)}x" for m, x in ratios.items())
            + f"; loader-bound: {fmt(lo.get('loader_bound'))}"
        )
    return out


def _latency_lines(la: dict) -> list[str]:
    out = []
    if "table" in la:
        out.append(f"table of {la.get('setup', {}).get('arch')} built in {fmt(la['table'].get('build_seconds'))} s")
    for key, s in la.items():
        if key.startswith("calibration ") and isinstance(s, dict):
            held, raw = s.get("held_out", {}), s.get("raw", {})
            out.append(
                f"{key[12:]}: calibration held-out MAPE {fmt(held.get('mape_pct'))} % "
                f"(within 10 %: {fmt(held.get('within_10pct'))}; raw {fmt(raw.get('mape_pct'))} %), slope "
                f"{fmt(s.get('slope'))}, intercept {fmt(s.get('intercept_ms'))} ms, n={s.get('networks')}: "
                f"latency budgets {str(s.get('latency_budgets')).split(':')[0]}"
            )
        if key.startswith("check ") and isinstance(s, dict):
            out.append(
                f"{key[6:]}: MAPE {fmt(s.get('mape_pct'))} %, within 10 %: {fmt(s.get('within_10pct'))}, "
                f"ratio {fmt(s.get('median_ratio'))}, calibrated {fmt(s.get('calibrated_mape_pct'))} % "
                f"(stored line {fmt(s.get('table_calibrated_mape_pct'))} %); "
                f"tau pred {fmt(s.get('kendall_predicted'))} params {fmt(s.get('kendall_params'))} "
                f"macs {fmt(s.get('kendall_macs'))} (n={s.get('samples')})"
            )
    return out


STEP_LINES = {
    "env": _env_lines,
    "fisher": _fisher_lines,
    "latency": _latency_lines,
    "train": _train_lines,
    "lockstep": _lockstep_lines,
    "correctness": _correctness_lines,
    "loader": _loader_lines,
}


def summary_lines(steps: dict) -> dict[str, list[str]]:
    """Per step, one or more short lines of the key results (a step whose lines fail says so)."""
    lines = {}
    for name, step in steps.items():
        result = step.get("result")
        try:
            if name in STEP_LINES and result:
                lines[name] = STEP_LINES[name](result)
            elif step.get("note"):
                lines[name] = [step["note"]]
        except Exception as err:  # a summary must never cost the results
            lines[name] = [f"(summary failed: {type(err).__name__}: {err})"]
    return lines


def lockstep_split(runs: dict) -> tuple[float, float] | None:
    """(student, teacher_forward) seconds per image from a lockstep mode's aggregate rates at K = 1
    and the largest K: a job's time per minibatch image is teacher_forward + K x student."""
    rates = {r["students"]: r["images_per_s"] for r in runs.values() if r.get("images_per_s")}
    if 1 not in rates or len(rates) < 2:
        return None
    k = max(rates)
    one, many = 1 / rates[1], k / rates[k]
    student = (many - one) / (k - 1)
    forward = one - student
    return (student, forward) if student > 0 and forward > 0 else None


def plan_timings(steps: dict, gpu: str, dry_run: bool) -> dict | None:
    """The timings file `blockswap plan --timings` reads (planning/timings.py), from this run's
    train, lockstep, fisher and loader steps; None when the teacher's training rate is missing."""
    from blockswap.planning.timings import TIMINGS_FORMAT

    result = {name: step.get("result") or {} for name, step in steps.items()}
    train = result.get("train", {}).get("results", {})
    teacher_rate = train.get(f"teacher {TEACHER}", {}).get("paper", {}).get("images_per_s")
    if not teacher_rate:
        return None
    when = time.strftime("%Y-%m-%d")
    measured = f"bench/gpu.sh on {gpu}, {when}" + (" (CPU dry run, tiny sizes)" if dry_run else "")
    teacher = 1 / teacher_rate
    lockstep = result.get("lockstep", {}).get("results", {})
    eager = lockstep_split(lockstep.get("eager", {}))
    if eager:
        student, forward = eager
    else:
        rates = [modes["paper"]["images_per_s"] for label, modes in train.items()
                 if label in STUDENTS and modes.get("paper", {}).get("images_per_s")]  # fmt: skip
        if not rates:
            return None
        student, forward = sum(1 / r for r in rates) / len(rates), teacher / 3
        measured += "; the teacher's forward pass taken as a third of its training step"
    wrn = {"side": 32, "teacher": teacher, "student": student, "teacher_forward": forward, "measured": measured}
    graphs = lockstep_split(lockstep.get("graphs", {}))
    if graphs:
        wrn["cuda_graphs"] = {"student": graphs[0], "teacher_forward": graphs[1]}
    score = result.get("fisher", {}).get("score_cli", {}).get("seconds_for_1000_with_startup")
    wrn["score"] = score / 1000 if score else None
    families = {"wrn": wrn}
    resnet = result.get("loader", {}).get("resnet34", {}).get("paper", {}).get("images_per_s")
    if resnet:
        families["resnet"] = {"side": 224, "teacher": 1 / resnet, "student": 1 / resnet,
                              "teacher_forward": 1 / resnet / 3, "score": None,
                              "measured": measured + "; ResNet-34 for the teacher and every student"}  # fmt: skip
    return {"format": TIMINGS_FORMAT, "families": families}


def step_report(args):
    work, out = Path(args.work), Path(args.out)
    steps = read_steps(work)
    env = steps.get("env", {}).get("result", {})
    gpu = env.get("gpu", {}).get("name") or ("CPU dry run" if args.dry_run else None)
    if gpu is None:  # the env step failed: ask the driver
        try:
            gpu = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                ).stdout.strip()
                or "unknown"
            )
        except (OSError, subprocess.SubprocessError):
            gpu = "unknown"
    combined = {
        "dry_run": args.dry_run,
        "device": gpu,
        "torch": env.get("torch"),
        "budget_s": args.budget,
        "elapsed_s": args.elapsed,
        "steps": steps,
    }
    lines = summary_lines(steps)
    combined["summary"] = lines
    (out / "gpu.json").write_text(json.dumps(combined, indent=1, default=_jsonable))
    timings = plan_timings(steps, gpu, args.dry_run)
    if timings is not None:  # `blockswap plan CONFIG --timings $OUT/timings.json`
        (out / "timings.json").write_text(json.dumps(timings, indent=1))
    print()
    print(
        f"== bench/gpu.sh on {gpu} (torch {env.get('torch')}): {args.elapsed:.0f} s of a {args.budget:.0f} s budget =="
    )
    print(f"{'step':<12} {'status':<8} {'s':>5}  result")
    for name in STEPS:
        s = steps.get(name)
        if s is None:
            print(f"{name:<12} {'missing':<8} {'':>5}")
            continue
        status = s["status"]
        errors = s.get("result", {}).get("errors") or {}
        if status == "ok" and errors:
            status = "partial"
        text = lines.get(name) or [s.get("note", "")]
        print(f"{name:<12} {status:<8} {s['wall_seconds']:>5.0f}  {text[0]}")
        for extra in text[1:]:
            print(f"{'':<28}{extra}")
        for part, err in list(errors.items())[:3]:
            print(f"{'':<28}error in {part}: {err[:110]}")
        if status in ("error", "timeout") and s.get("rc"):
            tail = (s.get("log_tail") or [""])[-1]
            limit = " (time limit)" if status == "timeout" else ""
            print(f"{'':<28}exit code {s.get('rc')}{limit}; last output: {tail[:80]}")
    print(f"full results: {out / 'gpu.json'}, log: {out / 'gpu.log'}")


# --- main ---------------------------------------------------------------------------------------

STEP_FUNCTIONS = {
    "env": step_env,
    "fisher": step_fisher,
    "latency": step_latency,
    "train": step_train,
    "lockstep": step_lockstep,
    "correctness": step_correctness,
    "loader": step_loader,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEP_FUNCTIONS) + ["report"])
    parser.add_argument("--work", required=True, help="scratch folder shared by the steps (step JSONs go here)")
    parser.add_argument("--seconds", type=float, default=60.0, help="this step's time box")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--out", help="report: folder for gpu.json")
    parser.add_argument("--budget", type=float, default=0.0, help="report: the whole run's budget (s)")
    parser.add_argument("--elapsed", type=float, default=0.0, help="report: the whole run's elapsed time (s)")
    args = parser.parse_args()
    if args.step == "report":
        step_report(args)
        return
    rec = Record(Path(args.work) / f"{args.step}.json", args.step, args.dry_run, args.seconds)
    try:
        STEP_FUNCTIONS[args.step](args, rec)
    except Exception as err:
        traceback.print_exc()
        rec.data["errors"]["step"] = f"{type(err).__name__}: {err}"[:600]
        rec.save()
        sys.exit(1)
    rec.save()
    if INJECTED.get(args.step) == "exit":
        sys.stdout.flush()
        os._exit(3)


if __name__ == "__main__":
    main()
