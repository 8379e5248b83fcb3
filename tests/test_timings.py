"""`blockswap plan --timings`: a GPU's own measured rates replace the built-in ones, a damaged timings
file is one line, and captured steps are planned with their own rates only when they were measured."""

import copy
import json

import pytest
from helpers import GENOTYPES, ROOT, load_config

from blockswap import BlockswapError
from blockswap.cli import main
from blockswap.planning.plan import plan_networks
from blockswap.planning.run_cost import plan_cost
from blockswap.planning.timings import BUILT_IN, TIMINGS_FORMAT, read_timings

CIFAR = str(ROOT / "config" / "paper-cifar10.yaml")


def wrn(**changes):
    return {**BUILT_IN["wrn"], "measured": "bench/gpu.sh on a test GPU", **changes}


def write(tmp_path, families, fmt=TIMINGS_FORMAT):
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"format": fmt, "families": families}))
    return path


@pytest.fixture(scope="module")
def cifar():
    """paper-cifar10 and its plan (which cuda_graphs and the timings do not change)."""
    config = load_config(CIFAR)
    return config, plan_networks(config, GENOTYPES, "r")


def hours(cifar, timings=BUILT_IN, **training):
    config, plans = cifar
    config = {**config, "training": {**config["training"], **training}}
    return {row.stage: row.gpu_hours for row in plan_cost(config, plans, timings)}


def test_a_family_from_the_file_replaces_the_built_in_one_and_scales_the_hours(tmp_path, cifar):
    timings = read_timings(write(tmp_path, {"wrn": wrn(teacher=2 * BUILT_IN["wrn"]["teacher"])}))
    assert timings["resnet"] == BUILT_IN["resnet"]  # left out of the file: kept
    ours, built_in = hours(cifar, timings), hours(cifar)
    assert ours["teacher"] == pytest.approx(2 * built_in["teacher"])
    assert ours["students"] == pytest.approx(built_in["students"])


def graphed_timings(tmp_path):
    faster = {"student": BUILT_IN["wrn"]["student"] / 3, "teacher_forward": BUILT_IN["wrn"]["teacher_forward"] / 3}
    return write(tmp_path, {"wrn": wrn(cuda_graphs=faster)})


def test_captured_steps_are_planned_with_their_own_rates_only_when_measured(tmp_path, cifar):
    timings = read_timings(graphed_timings(tmp_path))
    eager, graphed = hours(cifar, timings), hours(cifar, timings, cuda_graphs=True)
    assert graphed["ablation"] == pytest.approx(eager["ablation"] / 3)
    assert graphed["teacher"] == eager["teacher"]  # the teacher trains alone, eagerly
    assert hours(cifar, cuda_graphs=True) == hours(cifar)  # built in: no graphed rates, the eager ones


@pytest.mark.slow
def test_the_plan_says_which_rates_it_used(tmp_path, capsys):
    overlay = tmp_path / "graphs.yaml"
    overlay.write_text("training: {cuda_graphs: true}\n")
    assert main(["plan", CIFAR, str(overlay), "--timings", str(graphed_timings(tmp_path))]) == 0
    assert "bench/gpu.sh on a test GPU, students' steps with CUDA graphs" in capsys.readouterr().out
    assert main(["plan", CIFAR, str(overlay)]) == 0
    assert "students' steps eager (no CUDA-graph timing was measured)" in capsys.readouterr().out


def bad_files():
    graphs = {"student": 1e-4, "teacher_forward": 1e-4}
    return [
        ("not json", "is not JSON"),
        ({"format": "other", "families": {"wrn": wrn()}}, f"is not a {TIMINGS_FORMAT} file"),
        ({"format": TIMINGS_FORMAT, "families": {}}, "'families' must map wrn or resnet"),
        ({"format": TIMINGS_FORMAT, "families": {"vgg": wrn()}}, "unknown family 'vgg'"),
        ({"format": TIMINGS_FORMAT, "families": {"wrn": wrn(teacher=0)}}, "wrn: teacher must be a positive number"),
        ({"format": TIMINGS_FORMAT, "families": {"wrn": wrn(student=float("nan"))}}, "student must be a positive"),
        ({"format": TIMINGS_FORMAT, "families": {"wrn": wrn(teacher_forward="1")}}, "teacher_forward must be"),
        ({"format": TIMINGS_FORMAT, "families": {"wrn": wrn(side=32.0)}}, "side must be a whole number"),
        ({"format": TIMINGS_FORMAT, "families": {"wrn": wrn(score=-1)}}, "score must be a positive number"),
        ({"format": TIMINGS_FORMAT, "families": {"wrn": wrn(measured="")}}, "measured must say where and when"),
        ({"format": TIMINGS_FORMAT, "families": {"wrn": wrn(extra=1)}}, "unknown keys extra"),
        (
            {"format": TIMINGS_FORMAT, "families": {"wrn": wrn(cuda_graphs={**graphs, "teacher": 1})}},
            "cuda_graphs must hold exactly student and teacher_forward",
        ),
        (
            {"format": TIMINGS_FORMAT, "families": {"wrn": wrn(cuda_graphs={**graphs, "student": 0})}},
            "cuda_graphs.student must be a positive number",
        ),
    ]


@pytest.mark.parametrize("content, message", bad_files(), ids=[m for _, m in bad_files()])
def test_a_damaged_timings_file_is_one_line_from_the_command(tmp_path, capsys, content, message):
    path = tmp_path / "timings.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(BlockswapError, match=message):
        read_timings(path)
    assert main(["plan", CIFAR, "--timings", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"blockswap: error: timings file {path}") and not captured.out


def test_a_missing_timings_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert main(["plan", CIFAR, "--timings", str(missing)]) == 2
    assert capsys.readouterr().err == f"blockswap: error: timings file {missing}: No such file or directory\n"


def test_the_built_in_figures_pass_their_own_checks(tmp_path):
    assert read_timings(write(tmp_path, copy.deepcopy(BUILT_IN))) == BUILT_IN
