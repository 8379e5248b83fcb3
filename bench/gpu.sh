#!/usr/bin/env bash
# The one prepared GPU measurement run: Fisher scoring speed against its floor and
# variants, training throughput (paper vs fast mode, lockstep students with and without CUDA graphs), correctness on the device (Fisher vs CPU,
# kill-and-resume, digits in both modes), the ImageNet loader against ResNet-34's rate, and the
# paper CIFAR-10 configuration in miniature through snakemake. Measurements: bench/gpu.py.
#
#   bash bench/gpu.sh             # on the GPU machine: results in ${OUT:-bench-out}/gpu.json + gpu.log
#   bash bench/gpu.sh --dry-run   # CPU, tiny sizes: every code path that does not need CUDA
#
# Every step runs in its own process under `timeout`, inside one overall budget
# (GPU_BENCH_BUDGET seconds, default 540 on the GPU, 360 dry); a failing or timed-out step is
# recorded and the next one runs. The summary table comes last. GPU_BENCH_STEPS chooses the steps
# and their order (default "env fisher latency train lockstep snakemake correctness loader"; install and the
# report always run).
#
# Offline install on the GPU machine (no internet there): the wheels in .whl/ (snakemake and the
# dependencies its image lacks) go to /tmp/site; the package itself runs from src/ with a
# `blockswap` shim on PATH (the workflow's rules call that command).
set -uo pipefail # no -e: a failing step must not stop the others
export PYTHONUNBUFFERED=1

OUT=${OUT:-bench-out} # relative to where the script is started
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python3}
LOG=$OUT/gpu.log
: >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/blockswap-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if ((DRY)); then
    BUDGET=${GPU_BENCH_BUDGET:-360}
    DRYFLAG=--dry-run
else
    BUDGET=${GPU_BENCH_BUDGET:-540}
    DRYFLAG=
fi
STEPS=${GPU_BENCH_STEPS:-env fisher latency train lockstep snakemake correctness loader}
RESERVE=8 # seconds kept for the report
START=$SECONDS

log() { echo "$*" | tee -a "$LOG"; }
left() { echo $((BUDGET - (SECONDS - START) - RESERVE)); }
record() { # name status rc seconds limit note
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6//$'\t'/ }" >>"$WORK/steps.tsv"
}
wanted() { [[ " $STEPS " == *" $1 "* ]]; }

# run_step NAME CAP COMMAND...: run COMMAND under a time limit of min(CAP, what is left of the
# budget); its output goes to the terminal, gpu.log and WORK/NAME.log; {SECONDS} in COMMAND is
# replaced by the limit (less a margin, so that the step can finish its own JSON in time).
run_step() {
    local name=$1 cap=$2
    shift 2
    local limit
    limit=$(left)
    ((limit > cap)) && limit=$cap
    if ((limit < 15)); then
        log "=== $name: skipped, out of time (${limit} s left)"
        record "$name" skipped 0 0 0 "skipped: out of time"
        return
    fi
    local args=() a
    for a in "$@"; do args+=("${a//\{SECONDS\}/$((limit - 5))}"); done
    log "=== $name (limit ${limit} s) $(date -u +%H:%M:%S)"
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "${args[@]}" 2>&1 | tee -a "$LOG" "$WORK/$name.log"
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - t0)) status=ok
    if ((rc == 124 || rc == 137)); then
        status=timeout
    elif ((rc != 0)); then
        status=error
    fi
    log "=== $name: $status (rc $rc, ${took} s)"
    record "$name" "$status" "$rc" "$took" "$limit" "${NOTE:-}"
    NOTE=
}

# --- install (offline) ------------------------------------------------------------------------
t0=$SECONDS
note=
status=ok
if ((DRY)); then
    note="dry run: nothing installed (the environment's own snakemake and blockswap)"
    status=skipped
elif [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
    log "=== install: $(ls .whl/*.whl | wc -l) wheels -> /tmp/site"
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl 2>&1 | tee -a "$LOG"; then
        note="$(ls .whl/*.whl | wc -l) wheels installed"
    else
        status=error
        note="pip install of .whl/ failed"
    fi
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    export PATH=/tmp/site/bin:$PATH
else
    note="no .whl/ folder: using the environment's snakemake"
fi
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
# Commands the workflow and the tests call: `blockswap` and `snakemake`, beside the interpreter
# when they are not there (tests look for them next to sys.executable) and on PATH.
mkdir -p "$WORK/bin"
export PATH=$WORK/bin:$PATH
BIN=$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))')
for pair in "blockswap:blockswap.cli" "snakemake:snakemake"; do
    cmd=${pair%%:*} module=${pair#*:}
    shim="#!/bin/sh
exec \"$("$PY" -c 'import sys; print(sys.executable)')\" -m $module \"\$@\""
    if [[ ! -x "$BIN/$cmd" ]]; then
        if ((! DRY)) && [[ -w "$BIN" ]]; then
            printf '%s\n' "$shim" >"$BIN/$cmd" && chmod +x "$BIN/$cmd" && note="$note; $cmd shim in $BIN"
        fi
        if ! command -v "$cmd" >/dev/null; then
            printf '%s\n' "$shim" >"$WORK/bin/$cmd" && chmod +x "$WORK/bin/$cmd"
        fi
    fi
done
if version=$(snakemake --version 2>>"$LOG"); then
    note="$note; snakemake ${version##*$'\n'}"
else
    status=error
    note="$note; snakemake does not run (see gpu.log)"
fi
if blockswap blocks >/dev/null 2>>"$LOG"; then
    note="$note; blockswap ok"
else
    status=error
    note="$note; blockswap does not run (see gpu.log)"
fi
log "=== install: $status: $note"
record install "$status" 0 $((SECONDS - t0)) 0 "$note"

# --- measurements, in the order of $STEPS ----------------------------------------------------
declare -A CAP=([env]=20 [fisher]=150 [latency]=100 [train]=90 [lockstep]=120 [correctness]=90 [loader]=35 [snakemake]=110)
snakemake_step() { # the paper CIFAR-10 configuration in miniature (the report reads pytest's closing line)
    if [[ ! -f tests/test_paper_configs.py ]]; then
        record snakemake skipped 0 0 0 "skipped: tests/test_paper_configs.py not present"
    elif ((DRY)); then
        NOTE="dry run: collected only"
        run_step snakemake 60 "$PY" -m pytest -q -p no:cacheprovider --collect-only tests/test_paper_configs.py \
            -k "cifar10 and end_to_end"
    else
        # All the machine's cores: the miniature is ~100 short jobs, each a fresh process.
        export BLOCKSWAP_TEST_CORES
        BLOCKSWAP_TEST_CORES=$(nproc)
        run_step snakemake "${CAP[snakemake]}" "$PY" -m pytest -q -x -s \
            -p no:cacheprovider tests/test_paper_configs.py -k "cifar10 and end_to_end"
    fi
}
for name in env fisher latency train lockstep correctness loader snakemake; do
    wanted "$name" || record "$name" skipped 0 0 0 "not in GPU_BENCH_STEPS"
done
for name in $STEPS; do
    case $name in
    env | fisher | latency | train | lockstep | correctness | loader)
        run_step "$name" "${CAP[$name]}" "$PY" bench/gpu.py "$name" --work "$WORK" --seconds "{SECONDS}" $DRYFLAG
        ;;
    snakemake) snakemake_step ;;
    *) log "=== unknown step $name (GPU_BENCH_STEPS): ignored" ;;
    esac
done

# --- one JSON and the summary, last -----------------------------------------------------------
"$PY" bench/gpu.py report --work "$WORK" --out "$OUT" --budget "$BUDGET" --elapsed $((SECONDS - START)) $DRYFLAG \
    2>&1 | tee -a "$LOG"
