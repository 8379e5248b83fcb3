"""Benchmark: start-up of the processes a workflow starts by the hundred.

Per command, the median wall time of `blockswap CMD --help` (the command's module imported, its
parser built, nothing run) over `--repeats` runs, and whether the process loaded torch; then a
Snakemake dry run of the tiny run (config/config.yaml + tests/miniature/config.yaml), which is
Snakemake's own start, the rules' imports and the DAG. The table and figure steps, picking,
selecting, costing and planning should not load torch (tests/test_startup.py keeps them so).

    python bench/startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("cost", "sample", "select", "report", "figure", "plan", "train", "score", "latency")
# Reports whether torch was imported once the command's parser is built.
PROBE = (
    "import sys\nfrom blockswap.cli import main\n"
    "try:\n    main([sys.argv[1], '--help'])\nexcept SystemExit:\n    pass\n"
    "print('torch' in sys.modules, file=sys.stderr)"
)


def timed(argv, env=None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    blockswap = shutil.which("blockswap") or "blockswap"
    results = {}
    for command in COMMANDS:
        seconds = [timed([blockswap, command, "--help"])[0] for _ in range(args.repeats)]
        _, probe = timed([sys.executable, "-c", PROBE, command])
        results[command] = {
            "median_s": round(statistics.median(seconds), 3),
            "loads_torch": probe.stderr.strip().endswith("True"),
        }
        print(f"blockswap {command:<8} {results[command]['median_s']:.2f} s  torch: {results[command]['loads_torch']}")
    # The tests' scontrol answers the SLURM executor plugin's start-up probe at once (tests/bin).
    env = {**os.environ, "PATH": os.pathsep.join([str(ROOT / "tests" / "bin"), os.environ["PATH"]])}
    dry = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as work:
            argv = [
                "snakemake",
                "all",
                "-n",
                "--cores",
                "2",
                "--directory",
                work,
                "--snakefile",
                str(ROOT / "Snakefile"),
            ]
            argv += [
                "--configfile",
                str(ROOT / "config" / "config.yaml"),
                str(ROOT / "tests" / "miniature" / "config.yaml"),
            ]
            seconds, proc = timed(argv, env)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-2000:])
            dry.append(seconds)
    results["snakemake_dry_run_s"] = round(statistics.median(dry), 3)
    print(f"snakemake -n (tiny run) {results['snakemake_dry_run_s']:.2f} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
