#!/usr/bin/env bash
# End-to-end test of profiles/slurm against a real single-node SLURM cluster started here:
# runs tests/slurm/config.yaml locally and through `snakemake --profile profiles/slurm`, checks that
# every job went through sbatch and that both runs produced the same results, then stops the
# cluster. Exit 0 = passed, 77 = skipped (the cluster could not start here; the reason is printed),
# anything else = failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
config=$root/tests/slurm/config.yaml
work=$(mktemp -d)
skip() { echo "slurm test: SKIPPED: $*"; exit 77; }
fail() { echo "slurm test: FAILED: $*"; scripts/slurm-cluster.sh stop; exit 1; }

command -v snakemake >/dev/null || fail "snakemake is not on PATH (activate the environment)"
python -c "import snakemake_executor_plugin_slurm" 2>/dev/null || fail "snakemake-executor-plugin-slurm is not installed"
[ "$(id -u)" = 0 ] || skip "needs root to install and start slurmctld/slurmd/munged"
out=$(scripts/slurm-cluster.sh install 2>&1) || skip "$out"
out=$(scripts/slurm-cluster.sh start 2>&1) || skip "$out"
trap 'scripts/slurm-cluster.sh stop' EXIT

# The same thread count in both runs, so CPU numerics (and so trained errors) agree exactly.
export OMP_NUM_THREADS=1

# The local run goes alongside the SLURM run, which mostly waits for the scheduler.
start=$(date +%s)
( snakemake all --cores 2 --directory "$work/local" --configfile "$config" > "$work/local.log" 2>&1
  echo $? > "$work/local.rc"; echo $(( $(date +%s) - start )) > "$work/local.s" ) &
local_pid=$!
trap 'pkill -P $local_pid 2>/dev/null; kill $local_pid 2>/dev/null; scripts/slurm-cluster.sh stop' EXIT

# The plugin waits 40 s before its first status check and after each check that saw a job finish,
# and 10 s longer after each that saw none (right for a busy cluster); on this idle single-node
# cluster 1 s keeps the test's wall time down.
snakemake all --profile profiles/slurm --directory "$work/slurm" --configfile "$config" \
  --slurm-init-seconds-before-status-checks 1 \
  --set-resources train_teacher:gpu=0 train_student:gpu=0 score:gpu=0 proxies:gpu=0 proxies_reseeded:gpu=0 \
  --default-resources mem_mb=1000 cpus_per_task=1 runtime=30 \
  > "$work/slurm.log" 2>&1 || { tail -n 40 "$work/slurm.log"; fail "the SLURM run failed (log: $work/slurm.log)"; }
slurm_s=$(( $(date +%s) - start ))

wait $local_pid
[ "$(cat "$work/local.rc" 2>/dev/null)" = 0 ] || fail "the local run failed (log: $work/local.log)"
local_s=$(cat "$work/local.s")

PYTHONPATH=tests python - "$work" <<'PY' || fail "results differ or jobs bypassed sbatch"
import re, sys
from pathlib import Path
import pandas as pd
from snakemake_log import job_counts

work = Path(sys.argv[1])
log = (work / "slurm.log").read_text()
jobs = job_counts(log)
remote = sum(n for rule, n in jobs.items() if rule not in ("all", "total"))
submitted = set(re.findall(r"(?:SLURM (?:array )?job ?id|SLURM jobid) (\d+(?:_\d+)?)", log, flags=re.I))
finished_remote = len(re.findall(r"Finished jobid: \d+ \(Rule: (?!all\))", log))
print(f"jobs run remotely: {finished_remote} of {remote}; sbatch submissions seen: {len(submitted)}")
assert finished_remote == remote, (finished_remote, remote)
assert submitted, "no sbatch submission in the log"
for rule in re.findall(r"^localrule (\w+):", log, flags=re.M):
    assert rule == "all", f"rule {rule} ran locally, not through sbatch"

def table(run, name, drop=()):
    frame = pd.read_csv(work / run / "results" / "slurm" / "tables" / name)
    return frame.drop(columns=[c for c in drop if c in frame])

# Wall time and images/s of each training differ between runs; everything else must not.
TIMES = ("train_seconds", "images_per_s")
for name in ("students.csv", "table2.csv", "costs.csv", "correlation.csv"):
    pd.testing.assert_frame_equal(table("local", name, TIMES), table("slurm", name, TIMES))
for shard in (0, 1):
    path = f"results/slurm/search/30000/scores/shard-{shard}.csv"
    # Timings (`seconds`, and `seconds_<proxy>` per proxy pass) differ between runs; scores do not.
    a, b = (pd.read_csv(work / run / path) for run in ("local", "slurm"))
    a, b = (f.drop(columns=[c for c in f if c == "seconds" or c.startswith("seconds_")]) for f in (a, b))
    pd.testing.assert_frame_equal(a, b)
resolved = list((work / "slurm" / ".snakemake" / "blockswap-config").glob("*.yaml"))
assert len(resolved) == 1, "the resolved configuration was not handed to the jobs"
print("results identical: students, table2, costs, correlation, scores")
PY
echo "slurm test: PASSED (local run ${local_s} s, SLURM run ${slurm_s} s)"
