"""Benchmark: K students trained in lockstep (one `blockswap train` with K --out folders) against one
`blockswap train` process per student, run one after another, on the bundled default's setting
(WRN-16-2 students at 60K parameters distilled from a WRN-16-2 teacher, digits at 8 px, no Cutout).

    python bench/lockstep.py --students 1,4,8,24 --epochs 20 --batch-size 32 --lr 0.05
    python bench/lockstep.py --students 1,2 --epochs 1 --out bench-out/lockstep.json   # quick check

Both sides train the same networks with the same options (their results are identical; the script
checks the test errors), so the ratio of wall times is what lockstep saves: the per-process start-up
(Python, torch, the dataset, the teacher) and the teacher's forward pass, paid once instead of K
times. Every process gets the same thread count (--threads, default all cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["--dataset", "digits", "--image-size", "8", "--no-cutout", "--channels-last", "--quiet"]


def blockswap(args: list[str], threads: int) -> float:
    """Run `blockswap ARGS` in a fresh process; its wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "blockswap.cli", *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def errors(folders) -> list[float]:
    return [json.loads((Path(f) / "metrics.json").read_text())["test_error"] for f in folders]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="1,4,8,24", help="K values, comma-separated")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--teacher-epochs", type=int, default=2, help="the teacher's quality does not matter here")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    ks = [int(k) for k in args.students.split(",")]
    train = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr), *COMMON]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher = tmp / "teacher"
        blockswap(["train", "--arch", "wrn-16-2", "--epochs", str(args.teacher_epochs), "--out", str(teacher),
                   "--dataset", "digits", "--image-size", "8", "--channels-last", "--quiet"], args.threads)  # fmt: skip
        candidates = tmp / "candidates.csv"
        blockswap(["sample", "--arch", "wrn-16-2", "--budget", "60000", "--samples", str(max(ks)), "--seed", "0",
                   "--dataset", "digits", "--image-size", "8", "--out", str(candidates)], args.threads)  # fmt: skip
        genotypes = [line.split('"')[1] for line in candidates.read_text().splitlines()[1:]]
        for k in ks:
            base = ["train", "--arch", "wrn-16-2", "--teacher", str(teacher), *train]
            alone = [tmp / f"k{k}" / "alone" / str(i) for i in range(k)]
            solo = sum(
                blockswap([*base, "--genotype", g, "--out", str(out)], args.threads) for g, out in zip(genotypes, alone)
            )
            together = [tmp / f"k{k}" / "lockstep" / str(i) for i in range(k)]
            joint = blockswap([*base, "--genotype", *genotypes[:k], "--out", *map(str, together)], args.threads)
            same = errors(alone) == errors(together)
            row = {"students": k, "processes_s": solo, "lockstep_s": joint, "speedup": solo / joint, "same": same}
            rows.append(row)
            print(
                f"K = {k:3d}: one process each {solo:7.1f} s, lockstep {joint:7.1f} s, speedup {solo / joint:.2f}x, "
                f"same test errors: {same}",
                flush=True,
            )
    if args.out:
        record = {"settings": vars(args), "cpu_count": os.cpu_count(), "results": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
