"""A latency table's per-setting calibration: the line fitted to whole networks, its held-out error,
the refusal of latency budgets where that error is above 10 %, and the stored calibration.

Most tests time nothing: a stand-in timer prices a block at 0.1 us per parameter per image, and a
whole network at a known distortion of the sum of its parts, so the fitted line and its errors can
be checked exactly against what was put in.
"""

import json

import numpy as np
import pytest

from blockswap import CANDIDATE_SETS, BlockswapError, Genotype, parse_arch
from blockswap.cli import main
from blockswap.deploy import calibration, timing
from blockswap.deploy import latency_validation as validation
from blockswap.deploy.export import Deployable
from blockswap.deploy.latency import LatencyTable, build_latency_table
from blockswap.deploy.settings import Setting
from blockswap.provenance import file_digest, read_sidecar, write_json
from blockswap.search.sampling import CostTable, sample_candidates

ARCH, SIZE, CLASSES, KEY = "wrn-10-1", (8, 8), 10, "cpu/t1/b1"
# Stand-in timer: these apply to whole networks only, each network's time made from its blocks' sum.
SLOPE, OFFSET = 0.69, 2e-4  # the measured/predicted median of cuda/b128, and a per-network constant


def parts_seconds(module, shape):
    return 1e-7 * shape[0] * sum(p.numel() for p in module.parameters())


def stand_in_timer(scatter: float, seed: int = 0):
    """A timer whose blocks add up exactly and whose whole networks take SLOPE x (sum) + OFFSET,
    times a seeded factor within +-scatter."""
    rng = np.random.default_rng(seed)

    def time_module(module, shape, setting, warmup, runs, seed=0, clock="wall"):
        seconds = parts_seconds(module, shape)
        if isinstance(module, Deployable):
            return (SLOPE * seconds + OFFSET) * (1 + rng.uniform(-scatter, scatter))
        return seconds

    return time_module


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def calibrated(monkeypatch, tmp_path):
    """A table file whose cpu/t1/b1 calibration is fitted to stand-in whole networks with `scatter`."""

    def make(scatter: float, samples: int = 20, name: str = "table.json"):
        monkeypatch.setattr(timing, "time_module", stand_in_timer(scatter))
        record = build_latency_table(ARCH, "paper", SIZE, CLASSES, [Setting("cpu", 1, 1)])
        table = LatencyTable(record)
        record["calibration"] = {KEY: validation.calibrate(table, KEY, samples=samples, seed=3)}
        path = tmp_path / name
        write_json(path, record)
        return path

    return make


def sample_argv(table, out, *extra):
    return [
        "sample",
        "--arch",
        ARCH,
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--budget-kind",
        "latency",
        "--tolerance",
        "0.2",
        "--samples",
        "3",
        "--latency-table",
        table,
        "--out",
        out,
        *extra,
    ]


# --- the line and its held-out error --------------------------------------------------------------


def test_a_line_removes_a_factor_and_an_offset_and_its_error_is_held_out():
    rng = np.random.default_rng(1)
    predicted = rng.uniform(1e-3, 5e-3, 40)
    measured = (SLOPE * predicted + OFFSET) * (1 + rng.uniform(-0.02, 0.02, 40))
    raw = calibration.error_summary(calibration.percent_errors(predicted, measured))
    held = calibration.error_summary(calibration.held_out_errors(predicted, measured, seed=0))
    assert raw["mape_pct"] > 25 and raw["within_10pct"] == 0  # the sum over-predicts by about a third
    assert held["mape_pct"] < 2 and held["within_10pct"] == 1.0
    slope, intercept = calibration.fit_line(predicted, measured)
    assert slope == pytest.approx(SLOPE, rel=0.02) and intercept == pytest.approx(OFFSET, abs=5e-5)
    # Without scatter the line is exact, offset included, where one factor is not.
    exact = SLOPE * predicted + OFFSET
    assert np.abs(calibration.held_out_errors(predicted, exact, seed=0)).max() < 1e-9
    factor = np.median(exact / predicted)
    assert np.abs(calibration.percent_errors(factor * predicted, exact)).mean() > 2


def test_held_out_errors_are_each_fold_predicted_by_the_others():
    # Recomputed here by the normal equations of the relative least squares, fold by fold.
    rng = np.random.default_rng(2)
    p = rng.uniform(1, 3, 12)
    m = p * rng.uniform(0.8, 1.2, 12) + 0.1
    errors = calibration.held_out_errors(p, m, seed=7)
    order = np.random.default_rng(7).permutation(12)
    for fold in np.array_split(order, calibration.FOLDS):
        train = np.setdiff1d(np.arange(12), fold)
        x, y = p[train] / m[train], 1 / m[train]
        a, b = np.linalg.solve([[x @ x, x @ y], [x @ y, y @ y]], [x.sum(), y.sum()])
        assert errors[fold] == pytest.approx(100 * (a * p[fold] + b - m[fold]) / m[fold])
    # A network fitted with the others scores better in-sample than held out.
    slope, intercept = calibration.fit_line(p, m)
    in_sample = np.abs(calibration.percent_errors(slope * p + intercept, m)).mean()
    assert in_sample < np.abs(errors).mean()
    with pytest.raises(BlockswapError, match="at least 10 networks"):
        calibration.calibration_entry(["S"] * 9, p[:9], m[:9], seed=0)


def test_calibration_networks_span_the_predicted_range(monkeypatch):
    monkeypatch.setattr(timing, "time_module", stand_in_timer(0))
    table = LatencyTable(build_latency_table(ARCH, "paper", SIZE, CLASSES, [Setting("cpu", 1, 1)]))
    types = CostTable.build(parse_arch(ARCH), CANDIDATE_SETS["paper"], SIZE, CLASSES).types
    chosen = validation.spread_genotypes(table, KEY, types, 12, seed=0)
    pool = validation.draw_genotypes(types, 12 * validation.POOL_PER_NETWORK, [0, validation.CALIBRATION_STREAM])
    predicted = sorted(table.predict(g, KEY) for g in chosen)
    everything = [table.predict(g, KEY) for g in pool]
    assert len(set(map(str, chosen))) == 12 and set(map(str, chosen)) <= set(map(str, pool))
    assert predicted[0] == min(everything) and predicted[-1] == max(everything)
    gaps = np.diff(predicted) / (predicted[-1] - predicted[0])
    assert gaps.max() < 0.3  # spread across the range, not crowded in its middle
    check = {str(g) for g in validation.draw_genotypes(types, 12, 0)}
    assert check != set(map(str, chosen))  # the check's students come from another stream


# --- budgets go through the calibration, and are refused where it does not hold ---------------------


def test_budgets_use_the_calibrated_prediction(calibrated):
    table = LatencyTable.load(calibrated(scatter=0.01))
    entry = table.calibration(KEY)
    assert entry["slope"] == pytest.approx(SLOPE, rel=0.02) and entry["held_out"]["mape_pct"] < 2
    assert entry["raw"]["mape_pct"] > 30 and len(entry["networks"]) == 20
    costs = CostTable.build(parse_arch(ARCH), CANDIDATE_SETS["paper"], SIZE, CLASSES)
    costs = costs.with_latency(*table.slot_microseconds(costs.types, KEY))
    low, high = costs.achievable("latency")
    frame = sample_candidates(costs, (low + high) / 2, 10, seed=0, budget_kind="latency", tolerance=0.2)
    for row in frame.itertuples():  # the column is the calibrated time, not the table's sum
        genotype = Genotype.parse(row.genotype)
        calibrated_us = table.calibrated_seconds(genotype, KEY) * 1e6
        assert abs(row.latency_us - calibrated_us) <= 0.5 * (len(genotype) + 2)
        assert abs(row.latency_us - table.predict(genotype, KEY) * 1e6) > 0.2 * calibrated_us


def test_a_budget_is_refused_above_ten_percent_held_out_error_and_not_below(calibrated, tmp_path, capsys):
    steady, scattered = calibrated(scatter=0.03, name="steady.json"), calibrated(scatter=0.5, name="scattered.json")
    held = LatencyTable.load(scattered).calibration(KEY)["held_out"]
    assert held["mape_pct"] > calibration.MAX_HELD_OUT_MAPE_PCT
    code, out, err = run(capsys, *sample_argv(steady, tmp_path / "ok.csv", "--budget", 3000))
    assert code == 0, err
    for extra in (["--budget", 3000], ["--budget", 30000, "--budget-kind", "params", "--limit", "latency=3000"]):
        code, out, err = run(capsys, *sample_argv(scattered, tmp_path / "no.csv", *extra))
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert f"latency budgets in {KEY} are refused" in err and f"held-out error of {held['mape_pct']:.1f} %" in err
        assert "budget in params or macs" in err and "blockswap latency-calibrate" in err
    assert not (tmp_path / "no.csv").exists()
    assert read_sidecar(tmp_path / "ok.csv")["latency_held_out_error"]["mape_pct"] < 10


def test_the_threshold_is_on_the_held_out_error(calibrated, monkeypatch):
    table = LatencyTable.load(calibrated(scatter=0.1))
    held = table.calibration(KEY)["held_out"]["mape_pct"]
    monkeypatch.setattr(calibration, "MAX_HELD_OUT_MAPE_PCT", held)
    assert table.budget_calibration(KEY)["held_out"]["mape_pct"] == held  # at the limit: allowed
    monkeypatch.setattr(calibration, "MAX_HELD_OUT_MAPE_PCT", held - 0.01)
    with pytest.raises(BlockswapError, match="are refused"):
        table.budget_calibration(KEY)


def test_a_setting_without_calibration_refuses_latency_budgets(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(timing, "time_module", stand_in_timer(0))
    path = tmp_path / "bare.json"
    write_json(path, build_latency_table(ARCH, "paper", SIZE, CLASSES, [Setting("cpu", 1, 1)]))
    code, out, err = run(capsys, *sample_argv(path, tmp_path / "c.csv", "--budget", 3000))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"has no calibration of {KEY}, so a latency budget there would be unchecked" in err
    assert f"blockswap latency-calibrate {path} --setting {KEY} --samples 40" in err
    assert not (tmp_path / "c.csv").exists()


# --- the stored calibration -------------------------------------------------------------------------


def test_the_calibration_round_trips_through_the_table_file(calibrated):
    path = calibrated(scatter=0.02)
    stored = json.loads(path.read_text())["calibration"][KEY]
    table = LatencyTable.load(path)
    assert table.calibration(KEY) == stored
    genotype = Genotype.parse(stored["networks"][0]["genotype"])
    assert table.calibrated_seconds(genotype, KEY) == pytest.approx(
        stored["slope"] * table.predict(genotype, KEY) + stored["intercept_seconds"]
    )
    assert {"clock", "warmup", "runs", "load_average", "folds", "seed"} <= set(stored)


def _bump(entry, key):
    entry[key] *= 1.01


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda c: c[KEY].update(slope=0.5), "its slope is not what its timings give"),
        (lambda c: _bump(c[KEY], "intercept_seconds"), "its intercept_seconds is not what its timings give"),
        (lambda c: c[KEY]["held_out"].update(mape_pct=1.0), "its held_out error is not what its timings give"),
        (lambda c: c[KEY].update(networks=c[KEY]["networks"][:9]), "lacks the timings of at least 10"),
        (lambda c: c[KEY]["networks"][0].update(measured_seconds=-1), "lacks its genotype or a positive time"),
        (lambda c: _bump(c[KEY]["networks"][0], "predicted_seconds"), "fitted on other block times"),
        (lambda c: c[KEY]["networks"][0].update(genotype="S S"), "validation network 'S S'"),
        (lambda c: c[KEY].pop("seed"), "lacks its fold seed"),
        (lambda c: c[KEY].update(model="spline"), "is not a linear calibration"),
        (lambda c: c.update({"cpu/t9/b1": {}}), "calibration is not a mapping of the table's settings"),
    ],
)
def test_damaged_calibration_data_is_one_line(calibrated, tmp_path, capsys, damage, message):
    path = calibrated(scatter=0.02)
    record = json.loads(path.read_text())
    damage(record["calibration"])
    write_json(path, record)  # sealed as written: the damage is in the content
    code, out, err = run(capsys, *sample_argv(path, tmp_path / "c.csv", "--budget", 3000))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "c.csv").exists()


# --- the command -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_latency_calibrate_times_whole_networks_and_stores_the_line(tmp_path, capsys):
    path = tmp_path / "t.json"
    argv = ["latency", ARCH, "--dataset", "digits", "--image-size", "8", "--threads", "1", "--quiet", "--out", path]
    assert run(capsys, *argv)[0] == 0
    before = file_digest(path)
    code, out, err = run(capsys, "latency-calibrate", path, "--samples", "5")
    assert code == 2 and out == "" and err.count("\n") == 1 and "at least 10 validation networks" in err
    code, _, err = run(capsys, "latency-calibrate", path, "--setting", "cpu/t1/b8")
    assert code == 2 and "has no setting cpu/t1/b8" in err and file_digest(path) == before
    code, out, err = run(capsys, "latency-calibrate", path, "--samples", "10", "--seed", "2")
    assert code == 0, err
    shown = json.loads(out)
    entry = LatencyTable.load(path).calibration(KEY)  # re-read: the seal and every figure check out
    assert shown["held_out_mape_pct"] == entry["held_out"]["mape_pct"] and shown["networks"] == 10
    assert shown["latency_budgets"] == ("allowed" if entry["held_out"]["mape_pct"] <= 10 else "refused")
    assert entry["seed"] == entry["provenance"]["seed"] == 2 and entry["provenance"]["created"]
    assert all(n["measured_seconds"] > 0 for n in entry["networks"])
    code, out, _ = run(capsys, "latency-check", path, "--samples", "10", "--out", tmp_path / "c.csv")
    summary = json.loads(out)
    assert code == 0 and summary["table_calibrated_mape_pct"] >= 0 and summary["calibrated_mape_pct"] >= 0
