"""bench/gpu.sh, the prepared GPU measurement run, in its CPU dry-run mode: every step
runs at tiny sizes, a failing part or step is recorded without stopping the others, and one JSON
holds every step with its results."""

import functools
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers import BIN, ROOT

STEPS = ["install", "env", "fisher", "latency", "train", "lockstep", "correctness", "loader", "snakemake"]


pytestmark = pytest.mark.slow  # runs the benchmark scripts end to end


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-bench")
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # Robustness: the env step's process dies after its JSON (exit 3), one part of the
        # Fisher step raises; both must be recorded and every later step must still run.
        "GPU_BENCH_FAIL": "env:exit,fisher:floor",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu.json").read_text()), proc.stdout, out


def test_every_step_is_in_the_json_and_the_summary_comes_last(dry_run):
    result, stdout, out = dry_run
    assert result["dry_run"] is True
    assert list(result["steps"]) == STEPS
    assert sorted(p.name for p in out.iterdir()) == ["gpu.json", "gpu.log", "timings.json"]  # few files come back
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("full results:")
    header = max(i for i, line in enumerate(lines) if line.startswith("== bench/gpu.sh on CPU dry run"))
    summary = lines[header + 2 : -1]
    assert [line.split()[0] for line in summary if not line.startswith(" ")] == STEPS


def test_failures_are_recorded_and_the_rest_runs(dry_run):
    steps = dry_run[0]["steps"]
    env = steps["env"]
    assert env["status"] == "error" and env["rc"] == 3
    assert env["result"]["ceilings"]["copy_tb_per_s"] > 0  # what it measured before dying is kept
    fisher = steps["fisher"]
    assert fisher["status"] == "ok" and "injected" in fisher["result"]["errors"]["floor"]
    assert fisher["result"]["variants"] and fisher["result"]["processes"]  # the parts after it ran
    for step in ("train", "correctness", "loader"):
        assert steps[step]["status"] == "ok" and not steps[step]["result"]["errors"], steps[step]
    assert steps["install"]["status"] == "skipped"
    assert steps["snakemake"]["status"] in ("ok", "skipped")


def test_fisher_step(dry_run):
    fisher = dry_run[0]["steps"]["fisher"]["result"]
    baseline = fisher["baseline"]
    assert baseline["candidates"] == 4 and baseline["candidates_per_s"] > 0 and baseline["seconds_for_1000"] > 0
    assert fisher["kernel_time"]["measure_gpu_ms"] == 0  # no kernels on the CPU
    # Building afresh, the module bank (in both layouts) and the released path, side by side.
    paths = fisher["paths"]
    assert paths["candidates"] == 2 and paths["memory_format"] == "channels-last"  # the CPU's
    assert paths["bank_equals_fresh"] == {"parameters": True, "fisher": True}
    assert set(paths["paths"]) == {"fresh", "bank", "bank_nchw", "released"}
    for name in ("fresh", "bank", "bank_nchw"):
        assert all(paths["paths"][name][f"{part}_ms"] > 0 for part in ("build", "init", "move", "measure")), name
    assert paths["paths"]["released"]["total_ms"] > 0 and paths["fresh_over_bank"] > 0
    cli = fisher["score_cli"]  # one `blockswap score` process over the candidates
    assert cli["processes"] == 1 and cli["candidates"] == 4 and cli["max_rel_diff_vs_baseline"] == 0
    assert cli["seconds_for_1000_with_startup"] > cli["wall_seconds"] > 0
    variants = fisher["variants"]
    assert set(variants) == {
        "plain",
        "skip_default_init",
        "one_copy",
        "skip_init+one_copy",
        "threads4",
        "threads4+skip_init+one_copy",
        "bf16_autocast",
        "tf32_off",
    }
    for name in (
        "plain",
        "skip_default_init",
        "one_copy",
        "skip_init+one_copy",
        "threads4",
        "threads4+skip_init+one_copy",
        "tf32_off",
    ):  # the same numbers as `blockswap score`
        assert variants[name]["max_rel_diff_vs_plain"] == 0 and variants[name]["max_rel_diff_vs_baseline"] == 0, name
        assert variants[name]["candidates_per_s"] > 0
    assert variants["bf16_autocast"]["max_rel_diff_vs_plain"] > 0
    processes = fisher["processes"]["processes2"]
    assert processes["candidates"] == 4 and processes["compared"] == 4 and processes["max_rel_diff_vs_baseline"] == 0


def test_train_step(dry_run):
    train = dry_run[0]["steps"]["train"]["result"]
    assert set(train["results"]) == {"teacher wrn-40-2", "blockswap-404k", "all-G(4)", "all-G(N)"}
    for label, modes in train["results"].items():
        assert set(modes) == {"paper", "cl"}, label  # bf16 and compile need CUDA
        assert modes["paper"]["images_per_s"] > 0 and modes["cl"]["speedup_vs_paper"] > 0
        assert modes["paper"]["seconds_per_cifar_epoch"] == pytest.approx(
            50_000 / modes["paper"]["images_per_s"], rel=1e-2
        )


def test_lockstep_step(dry_run):
    lockstep = dry_run[0]["steps"]["lockstep"]["result"]
    assert not lockstep["errors"], lockstep["errors"]
    results = lockstep["results"]
    assert set(results) == {"sync", "eager", "graphs"}
    for mode, runs in results.items():
        assert set(runs) == {"K=1", "K=2"}, mode
        for run in runs.values():
            assert run["images_per_s"] > 0 and run["images_per_s"] == pytest.approx(
                run["students"] * run["per_student_images_per_s"], rel=1e-3
            )
    for k, run in results["graphs"].items():  # the CPU stand-in replays the same step: same weights
        assert run["identical_to_eager"] and run["max_rel_diff_vs_eager"] == 0, k
        # The teacher once; each student once, and again for epoch 1's learning rate.
        assert run["captures"] == 1 + 2 * run["students"], k
    assert results["eager"]["K=2"]["captures"] == 0
    control = results["eager"]["K=1"]  # eager against eager: the CPU repeats itself exactly
    assert control["repeat_identical"] and control["repeat_max_rel_diff"] == 0


def test_the_run_writes_timings_blockswap_plan_reads(dry_run, capsys):
    from blockswap.cli import main
    from blockswap.planning.timings import BUILT_IN, read_timings

    out = dry_run[2]
    timings = read_timings(out / "timings.json")  # every check of the format passes
    wrn = timings["wrn"]
    train = dry_run[0]["steps"]["train"]["result"]["results"]["teacher wrn-40-2"]["paper"]
    assert wrn["teacher"] == pytest.approx(1 / train["images_per_s"])
    assert "CPU dry run" in wrn["measured"] and wrn["score"] > 0
    # Tiny CPU timings on a loaded machine may not split into positive parts; the file carries the
    # graphed rates exactly when this run's graphed lockstep rates split.
    graphs = bench_gpu().lockstep_split(dry_run[0]["steps"]["lockstep"]["result"]["results"]["graphs"])
    expected = None if graphs is None else {"student": graphs[0], "teacher_forward": graphs[1]}
    assert wrn.get("cuda_graphs") == (expected and pytest.approx(expected))
    assert timings["resnet"] != BUILT_IN["resnet"]  # the loader step timed ResNet-34 too
    config = str(ROOT / "config" / "paper-cifar10.yaml")
    assert main(["plan", config]) == 0
    built_in = capsys.readouterr().out
    assert main(["plan", config, "--timings", str(out / "timings.json")]) == 0
    mine = capsys.readouterr().out
    # The CPU's tiny-batch rates are far slower than the H100's: the same plan, many more hours.
    total = {text: float(next(line for line in text.splitlines() if line.startswith("total")).split()[3])
             for text in (built_in, mine)}  # fmt: skip
    assert total[mine] > 10 * total[built_in] and "CPU dry run" in mine


@functools.cache  # bench/gpu.py puts bench/ on sys.path when imported: once
def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lockstep_runs(rates: dict) -> dict:
    return {f"K={k}": {"students": k, "images_per_s": rate} for k, rate in rates.items()}


def test_lockstep_rates_split_into_the_teachers_forward_pass_and_each_student():
    split = bench_gpu().lockstep_split
    forward, student = 0.004, 0.006  # seconds per image: a job's minibatch costs forward + K x student
    runs = lockstep_runs({k: k / (forward + k * student) for k in (1, 4, 8)})  # aggregate images/s
    assert split(runs) == pytest.approx((student, forward))
    assert split(lockstep_runs({1: 100.0})) is None  # one K cannot be split
    assert split(lockstep_runs({1: 100.0, 4: 40.0})) is None  # slower per student than K = 1 alone: noise
    assert split({"K=8": {"students": 8, "images_per_s": 150.0}}) is None  # K = 1 missing


def test_correctness_step(dry_run):
    correctness = dry_run[0]["steps"]["correctness"]["result"]
    fisher = correctness["fisher_device_vs_cpu"]
    assert fisher["max_rel_diff_tf32_on"] == 0 and fisher["within_1e-3"]  # CPU against CPU
    resume = correctness["kill_and_resume"]
    if resume["killed"]:  # a loaded machine can finish the short run before the kill
        assert resume["resumed"] and resume["identical"] and resume["test_error_diff"] == 0
    digits = correctness["digits"]["summary"]
    assert digits["paper"]["runs"] == 1 and digits["fast"]["runs"] == 1 and "within_noise" in digits


def test_loader_step(dry_run):
    loader = dry_run[0]["steps"]["loader"]["result"]
    assert loader["loader_result"]["images_per_s"] > 0 and loader["loader_result"]["images_timed"] > 0
    assert loader["resnet34"]["paper"]["images_per_s"] > 0
    assert loader["gpu_over_loader"]["paper"] > 0 and "loader_bound" in loader


def test_latency_step(dry_run):
    latency = dry_run[0]["steps"]["latency"]["result"]
    assert latency["setup"]["settings"] == ["cpu/t1/b1"] and latency["table"]["build_seconds"] > 0
    check = latency["check cpu/t1/b1"]
    assert check["samples"] == 10 and check["mape_pct"] >= 0 and -1 <= check["kendall_params"] <= 1
    assert check["calibrated_mape_pct"] >= 0 and check["table_calibrated_mape_pct"] >= 0
    # The setting's calibration: its held-out error, and whether it lets latency budgets through.
    calibrated = latency["calibration cpu/t1/b1"]
    assert calibrated["networks"] == 10 and len(calibrated["timings_ms"]) == 10 and calibrated["slope"] > 0
    held = calibrated["held_out"]["mape_pct"]
    verdict = "allowed" if held <= 10 else "refused: latency budgets in cpu/t1/b1 are refused"
    assert calibrated["latency_budgets"].startswith(verdict)
    summary = dry_run[1]
    assert f"cpu/t1/b1: calibration held-out MAPE {held:.3g} %" in summary
