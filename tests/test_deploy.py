"""Deployment budgets: latency tables, latency budgets and limits, exports.

Timings on a shared CPU are noise, so these tests check behaviour, not speed: the table's structure
and seal, reuse on a matching machine and refusal elsewhere, that predictions are sums of the
table's parts (exactly, with a deterministic stand-in timer), and that every block type of the zoo
exports to ONNX and TorchScript with the PyTorch model's outputs.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from blockswap import (
    CANDIDATE_SETS,
    BlockswapError,
    Genotype,
    build_model,
    parse_arch,
    parse_block,
)
from blockswap.cli import main
from blockswap.deploy import calibration, settings, timing
from blockswap.deploy import latency_validation as latency_check
from blockswap.deploy.export import (
    Deployable,
    deployable,
    example_batch,
    export_model,
    run_export,
)
from blockswap.deploy.latency import LatencyTable, build_latency_table
from blockswap.deploy.latency_validation import check_table
from blockswap.deploy.settings import Setting
from blockswap.deploy.timing import settings_from
from blockswap.provenance import read_sidecar, write_json, write_result_text
from blockswap.reporting.latency_ranks import latency_ranks
from blockswap.reporting.report import table2
from blockswap.reporting.students import students_table
from blockswap.search.sampling import (
    CostTable,
    parse_limits,
    sample_candidates,
    within_budget,
)
from blockswap.training.checkpoint import save_model

ARCH, SIZE, CLASSES = "wrn-10-1", (8, 8), 10


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def fake_seconds(module, shape, setting, warmup, runs, seed=0, clock="wall"):
    """A deterministic stand-in for a timer: 1 ns per parameter per image, so parts add up exactly."""
    return 1e-9 * shape[0] * sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("latency") / "table.json"
    assert (
        main(
            [
                "latency",
                ARCH,
                "--dataset",
                "digits",
                "--image-size",
                "8",
                "--threads",
                "1",
                "--batches",
                "1,2",
                "--quiet",
                "--out",
                str(path),
            ]
        )
        == 0
    )
    # Budgets need a calibrated setting. Timings of whole networks on a shared CPU are noise, so the
    # calibration here is fitted to networks that take exactly their predicted time (slope 1, no
    # intercept): what these tests check does not hang on the machine's load
    # (tests/test_latency_calibration.py checks the calibration itself).
    table = LatencyTable.load(path)
    types = CostTable.build(parse_arch(ARCH), CANDIDATE_SETS["paper"], SIZE, CLASSES).types
    genotypes = latency_check.spread_genotypes(table, "cpu/t1/b1", types, 12, seed=0)
    predicted = [table.predict(g, "cpu/t1/b1") for g in genotypes]
    entry = calibration.calibration_entry([str(g) for g in genotypes], predicted, predicted, seed=0)
    write_json(path, {**table.record, "calibration": {"cpu/t1/b1": entry}})
    return path


@pytest.mark.slow
def test_table_times_stem_head_and_every_fitting_type_at_every_shape(table_file):
    table = LatencyTable.load(table_file)
    r = table.record
    assert r["settings"] == ["cpu/t1/b1", "cpu/t1/b2"] and (r["warmup"], r["runs"]) == (10, 50)
    arch = parse_arch(ARCH)
    assert len(r["positions"]) == arch.depth and len(r["shapes"]) == 3  # wrn-10-1: three distinct shapes
    for shape in r["shapes"]:
        fits = [
            t.name
            for t in CANDIDATE_SETS["paper"]
            if t.problem_at(shape["cin"], shape["cout"], shape["stride"]) is None
        ]
        assert list(shape["times"]) == fits
        assert all(set(t) == set(r["settings"]) and all(v > 0 for v in t.values()) for t in shape["times"].values())
    assert set(r["stem"]) == set(r["head"]) == set(r["settings"])
    assert {"cpu", "cores", "torch", "numpy"} <= set(r["fingerprint"])
    sidecar = read_sidecar(table_file)
    assert sidecar["sha256"] and sidecar["provenance"]["command"]


def test_prediction_is_stem_head_and_the_blocks_entries(table_file):
    table = LatencyTable.load(table_file)
    genotype = Genotype.parse("S G(N) BG(2,M/4)")
    parts = table.fixed_seconds("cpu/t1/b2") + sum(
        table.block_seconds(i, t, "cpu/t1/b2") for i, t in enumerate(genotype)
    )
    assert table.predict(genotype, "cpu/t1/b2") == pytest.approx(parts)
    with pytest.raises(BlockswapError, match="has no setting cpu/t4/b1"):
        table.predict(genotype, "cpu/t4/b1")


def test_table_is_reused_on_this_machine_and_refused_on_another(table_file, tmp_path, capsys):
    code, out, _ = run(
        capsys, "latency", ARCH, "--dataset", "digits", "--image-size", "8", "--threads", "1", "--out", table_file
    )
    assert code == 0 and out.startswith(f"reusing {table_file}")
    record = json.loads(table_file.read_text())
    record["fingerprint"]["cpu"] = "Some Other CPU 9000"
    other = tmp_path / "other.json"
    write_json(other, record)
    for argv in (
        ["latency", ARCH, "--dataset", "digits", "--image-size", "8", "--threads", "1", "--out", other],
        ["latency-check", other, "--samples", "2", "--out", tmp_path / "c.csv"],
        [
            "sample",
            "--arch",
            ARCH,
            "--dataset",
            "digits",
            "--image-size",
            "8",
            "--budget",
            "30000",
            "--tolerance",
            "0.1",
            "--samples",
            "2",
            "--latency-table",
            other,
            "--limit",
            "latency=5000",
            "--out",
            tmp_path / "s.csv",
        ],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "measured on another machine (cpu 'Some Other CPU 9000' there" in err
        assert f"rebuild it here: blockswap latency {ARCH}" in err and "--force" in err
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "s.csv").exists()
    record["fingerprint"]["torch"] = "0.0"
    record["fingerprint"]["cpu"] = timing.cpu_model()
    write_json(other, record)
    with pytest.raises(BlockswapError, match="torch '0.0' there"):
        LatencyTable.load(other)


def test_predicted_equals_measured_when_parts_add_up(monkeypatch, tmp_path):
    # A quiet toy: with a timer that is exactly additive, the sum of the table's parts is the
    # end-to-end time of every network, so the check reports no error and a perfect ranking.
    monkeypatch.setattr(timing, "time_module", fake_seconds)
    record = build_latency_table(ARCH, "paper", SIZE, CLASSES, [Setting("cpu", 1, 4)])
    table = LatencyTable(record)
    for name in ("S", "G(N)", "BG(2,M/4)", "B(2)"):
        model = build_model(ARCH, name, CLASSES)
        assert table.predict(Genotype.from_spec(name, 3), "cpu/t1/b4") == pytest.approx(
            timing.measure_model(deployable(model), SIZE, Setting("cpu", 1, 4)), rel=1e-12
        )
    frame, summary = check_table(table, "cpu/t1/b4", samples=12, seed=3)
    assert len(frame) == 12 and frame["genotype"].is_unique
    assert summary["mape_pct"] == pytest.approx(0, abs=1e-6) and summary["within_10pct"] == 1.0
    assert summary["kendall_predicted"] == pytest.approx(1.0) and summary["kendall_params"] == pytest.approx(1.0)


def test_latency_check_command_reports_error_share_and_kendall(table_file, tmp_path, capsys):
    code, out, _ = run(capsys, "latency-check", table_file, "--samples", "4", "--out", tmp_path / "check.csv")
    assert code == 0
    summary = json.loads(out)
    assert {"mape_pct", "within_10pct", "kendall_params", "kendall_macs", "kendall_predicted"} <= set(summary)
    frame = pd.read_csv(tmp_path / "check.csv")
    assert list(frame.columns) == latency_check.CHECK_COLUMNS and len(frame) == 4 and (frame["measured_ms"] > 0).all()
    assert read_sidecar(tmp_path / "check.csv")["summary"] == {k: v for k, v in summary.items() if k != "arch"}


def test_check_summary_separates_a_constant_factor_from_scatter():
    # Measured = 1.1 x predicted for every student: the raw error is 1/11 of measured (9.09 %),
    # all of it one factor, so the held-out calibrated error is zero and the ratio is 1.1.
    rng = np.random.default_rng(0)
    predicted = rng.uniform(1, 5, 20)
    frame = pd.DataFrame(
        {
            "candidate": range(20),
            "genotype": [str(i) for i in range(20)],
            "params": rng.permutation(20),
            "macs": np.arange(20),
            "predicted_ms": predicted,
            "measured_ms": 1.1 * predicted,
        }
    )
    frame["error_pct"] = 100 * (frame.predicted_ms - frame.measured_ms) / frame.measured_ms
    summary = latency_check.check_summary(frame)
    assert summary["mape_pct"] == pytest.approx(100 / 11, abs=1e-3) and summary["within_10pct"] == 1.0
    assert summary["median_ratio"] == pytest.approx(1.1) and summary["calibrated_mape_pct"] == pytest.approx(0)
    assert summary["kendall_predicted"] == pytest.approx(1.0) and summary["kendall_predicted_interval"] == [1.0, 1.0]
    expected = scipy.stats.kendalltau(frame["params"], frame["measured_ms"])[0]
    low, high = summary["kendall_params_interval"]
    assert summary["kendall_params"] == pytest.approx(expected, abs=1e-4) and low <= summary["kendall_params"] <= high
    # Scatter that no factor removes stays in the calibrated figure.
    frame["measured_ms"] = predicted * np.where(np.arange(20) % 4 < 2, 1.3, 0.8)
    frame["error_pct"] = 100 * (frame.predicted_ms - frame.measured_ms) / frame.measured_ms
    assert latency_check.check_summary(frame)["calibrated_mape_pct"] > 10


def test_latency_ranks_of_trained_networks(tmp_path, capsys):
    rows = []
    for i, (params, ms, error) in enumerate([(100, 1.0, 30.0), (200, 3.0, 20.0), (300, 2.0, 25.0), (400, 4.0, 10.0)]):
        for seed in (0, 1):  # two seeds of one network: one network, latencies averaged
            rows.append(
                {
                    "method": "random",
                    "network": f"random-{i}",
                    "arch": ARCH,
                    "genotype": f"G{i}",
                    "budget": 1,
                    "seed": seed,
                    "params": params,
                    "macs": 10 * params,
                    "ops": params,
                    "test_error": error + seed,
                    "test_error_top5": 0.0,
                    "fisher": None,
                    "candidate": i,
                    "dataset": "digits",
                    "latency_ms": ms + seed / 100,
                }
            )
    frame = pd.DataFrame(rows)
    ranks = latency_ranks(frame).set_index("measure")
    assert (ranks["n"] == 4).all()
    assert ranks.loc["params", "kendall_tau"] == pytest.approx(
        scipy.stats.kendalltau([1, 2, 3, 4], [1, 3, 2, 4])[0], abs=1e-4
    )
    assert ranks.loc["test_error", "kendall_tau"] == pytest.approx(
        scipy.stats.kendalltau([30, 20, 25, 10], [1, 3, 2, 4])[0], abs=1e-4
    )
    with pytest.raises(BlockswapError, match="no measured latency"):
        latency_ranks(frame.assign(latency_ms=None))
    students = tmp_path / "students.csv"
    write_result_text(students, frame.to_csv(index=False))
    code, out, err = run(
        capsys, "report", "latency_ranks", students, "--csv", tmp_path / "ranks.csv", "--md", tmp_path / "ranks.md"
    )
    assert code == 0 and "| params |" in (tmp_path / "ranks.md").read_text()
    assert pd.read_csv(tmp_path / "ranks.csv").set_index("measure")["n"].to_dict() == {
        "params": 4,
        "macs": 4,
        "test_error": 4,
    }
    missing = tmp_path / "none.csv"
    code, out, err = run(capsys, "report", "latency_ranks", missing, "--csv", tmp_path / "r.csv")
    assert code == 2 and err.count("\n") == 1 and f"{missing} does not exist" in err


def latency_cost_table(table_file):
    table = LatencyTable.load(table_file)
    costs = CostTable.build(parse_arch(ARCH), CANDIDATE_SETS["paper"], SIZE, CLASSES)
    return table, costs.with_latency(*table.slot_microseconds(costs.types, "cpu/t1/b1"))


def test_latency_budgets_and_combined_limits(table_file):
    table, costs = latency_cost_table(table_file)
    low, high = costs.achievable("latency")
    budget = (low + high) / 2
    frame = sample_candidates(
        costs, budget, 20, seed=0, budget_kind="latency", tolerance=0.2, limits={"params": 40_000}
    )
    assert ((frame["latency_us"] - budget).abs() < 0.2 * budget).all() and (frame["params"] <= 40_000).all()
    for row in frame.itertuples():  # the column is the table's prediction, in whole microseconds
        predicted = table.predict(Genotype.parse(row.genotype), "cpu/t1/b1") * 1e6
        assert abs(row.latency_us - predicted) <= 0.5 * (len(Genotype.parse(row.genotype)) + 2)
    again = sample_candidates(
        costs, budget, 20, seed=0, budget_kind="latency", tolerance=0.2, limits={"params": 40_000}
    )
    pd.testing.assert_frame_equal(frame, again)
    # The acceptance test is one function a search can reuse: band on one kind, ceilings on others.
    choices = np.zeros((1, 3), dtype=np.int64)
    totals = costs.totals(choices)
    assert within_budget(costs, totals, totals[0, 0], "params", 0.01, {"latency": totals[0, 3]})[0]
    assert not within_budget(costs, totals, totals[0, 0], "params", 0.01, {"latency": totals[0, 3] - 1})[0]
    with pytest.raises(BlockswapError, match="limit latency <= 1 is below the cheapest"):
        sample_candidates(costs, 30_000, 2, seed=0, tolerance=0.2, limits={"latency": 1})


def test_latency_without_a_table_and_bad_limits_are_one_line_errors(tmp_path, capsys):
    costs = CostTable.build(parse_arch(ARCH), CANDIDATE_SETS["paper"], SIZE, CLASSES)
    with pytest.raises(BlockswapError, match="latency budgets need a measured latency table"):
        sample_candidates(costs, 500, 2, seed=0, budget_kind="latency")
    for items, message in (
        (["speed=3"], "a limit is KIND=VALUE"),
        (["params=x"], "must be a number"),
        (["params=1", "params=2"], "given twice"),
    ):
        with pytest.raises(BlockswapError, match=message):
            parse_limits(items)
    for argv, message in (
        (["latency", ARCH, "--warmup", "3", "--out", tmp_path / "t.json"], "warm-up calls must be at least 10"),
        (["latency", ARCH, "--runs", "20", "--out", tmp_path / "t.json"], "timed runs must be at least 50"),
        (["latency", ARCH, "--threads", "one", "--out", tmp_path / "t.json"], "--threads takes whole numbers"),
        (["latency", ARCH, "--batches", "0", "--out", tmp_path / "t.json"], "batches must be positive"),
        (["latency-check", tmp_path / "missing.json", "--out", tmp_path / "c.csv"], "does not exist"),
        (["measure", tmp_path / "nothing", "--setting", "gpu/1"], "unknown latency setting"),
        (["export", tmp_path / "nothing", "--format", "onnx", "--out", tmp_path / "x.onnx"], "does not exist"),
        (
            ["sample", "--arch", ARCH, "--budget", "500", "--budget-kind", "latency", "--out", tmp_path / "s.csv"],
            "latency budgets need a measured latency table",
        ),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, (argv, err)
    assert not list(tmp_path.iterdir())


def test_settings():
    assert Setting.parse("cpu/t2/b128") == Setting("cpu", 2, 128) and Setting.parse("cuda/b1").key == "cuda/b1"
    assert Setting.parse("cpu/tall/b1").threads == settings.available_cores()
    for bad in ("cpu/t0/b1", "cpu/b1", "tpu/b1", "cpu/t1/bx"):
        with pytest.raises(BlockswapError, match="unknown latency setting"):
            Setting.parse(bad)
    keys = [s.key for s in settings_from("cpu", [1, "all"], [1, 8])]
    assert keys[:2] == ["cpu/t1/b1", "cpu/t1/b8"] and len(keys) == (2 if settings.available_cores() == 1 else 4)


# --- exports ------------------------------------------------------------------------------------

EXPORT_ARCH = "wrn-10-4"  # widths 64/128/256 after a 16-channel stem: every type of the zoo fits
ZOO = list(dict.fromkeys([*CANDIDATE_SETS["paper"], *CANDIDATE_SETS["released"], parse_block("MBConv(6)")]))


def trained_like(block_type) -> torch.nn.Module:
    """A network whose BatchNorm statistics are not the initial ones, as after training, so that an
    export in training mode (batch statistics) could not match."""
    model = build_model(EXPORT_ARCH, block_type.name, CLASSES, seed=1)
    generator = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model.eval()


def test_the_zoo_fits_the_export_architecture():
    arch = parse_arch(EXPORT_ARCH)
    assert len(ZOO) == 25
    assert all(t.problem_at(s.cin, s.cout, s.stride) is None for t in ZOO for s in arch.slots)


@pytest.mark.slow
@pytest.mark.parametrize("block_type", ZOO, ids=lambda t: t.name)
def test_every_block_type_exports_to_onnx_and_torchscript_with_equal_outputs(block_type):
    model = trained_like(block_type)
    x = example_batch(SIZE, batch=5, seed=4)
    with torch.inference_mode():
        expected = model(x)
    for fmt in ("onnx", "torchscript"):
        data, difference = export_model(model, fmt, SIZE)
        got = run_export(data, fmt, x)  # ONNX through ONNX Runtime, TorchScript through torch.jit.load
        assert got.shape == (5, CLASSES) and difference <= 1e-4
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_export_keeps_only_the_inference_path():
    import onnx

    model = trained_like(parse_block("G(N)"))
    assert isinstance(deployable(model), Deployable) and not deployable(model).training
    data, _ = export_model(model, "onnx", SIZE)
    graph = onnx.load_from_string(data).graph
    assert [o.name for o in graph.output] == ["logits"]  # no stage outputs, no Fisher probes
    assert not any(
        node.op_type == "BatchNormalization" and "training_mode" in [a.name for a in node.attribute if a.i]
        for node in graph.node
    )
    batch = example_batch(SIZE, batch=3)
    torch.testing.assert_close(run_export(data, "onnx", batch), run_export(data, "onnx", batch[:3]))  # dynamic batch


@pytest.mark.slow
def test_export_command_writes_a_sealed_file_with_both_latencies(tmp_path, capsys):
    run_dir = tmp_path / "run"
    save_model(trained_like(parse_block("BG(2,M/4)")), run_dir / "model.pt", list(SIZE), "digits")
    for fmt, name in (("onnx", "s.onnx"), ("torchscript", "s.pt")):
        code, out, err = run(capsys, "export", run_dir, "--format", fmt, "--out", tmp_path / name)
        assert code == 0, err
        shown = json.loads(out)
        assert shown["format"] == fmt and shown["latency_ms"] > 0 and shown["pytorch_latency_ms"] > 0
        sidecar = read_sidecar(tmp_path / name)
        assert sidecar["max_abs_difference"] <= 1e-4 and sidecar["setting"] == "cpu/t1/b1"
        assert sidecar["genotype"] == ["BG(2,M/4)"] * 3
    code, out, _ = run(capsys, "measure", run_dir, "--out", tmp_path / "latency.json")
    assert code == 0 and json.loads(out)["latency_ms"] > 0


# --- the students table, Table 2 and the figure ---------------------------------------------------


def write_run(folder, network, seed, error):
    folder.mkdir(parents=True)
    spec = build_model(ARCH, "S" if network == "teacher" else "G(N)", CLASSES).spec
    cost = spec.cost(SIZE)
    metrics = {
        "arch": ARCH,
        "genotype": spec.genotype.names,
        "seed": seed,
        "params": cost.params,
        "macs": cost.macs,
        "ops": cost.ops,
        "test_error": error,
        "test_error_top5": 0.0,
        "dataset": "digits",
        "tags": {"method": "teacher" if network == "teacher" else "moonshine", "network": network},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder / "metrics.json"


def test_students_table_table2_and_figure_carry_measured_latency(tmp_path):
    metrics, latencies = [], []
    for network, ms in (("teacher", 2.0), ("moonshine-gn", 1.0)):
        for seed in (0, 1):
            path = write_run(tmp_path / network / f"seed-{seed}", network, seed, 10.0 + seed)
            metrics.append(path)
            out = tmp_path / "latency" / f"{network}-{seed}.json"
            write_json(out, {"run": str(path.parent), "setting": "cpu/t1/b1", "latency_ms": ms + seed / 10})
            latencies.append(out)
    frame = students_table(metrics, latencies)
    assert frame.set_index(["network", "seed"])["latency_ms"].to_dict() == {
        ("moonshine-gn", 0): 1.0,
        ("moonshine-gn", 1): 1.1,
        ("teacher", 0): 2.0,
        ("teacher", 1): 2.1,
    }
    assert students_table(metrics)["latency_ms"].isna().all()  # no files: an empty column
    table = table2(frame)
    assert table.set_index("network")["latency (ms)"].to_dict() == {"teacher": 2.05, "moonshine-gn": 1.05}
    assert "latency (ms)" not in table2(students_table(metrics))
    with pytest.raises(BlockswapError, match="whose metrics.json is not an input"):
        students_table(metrics[:1], latencies[:2])
    from blockswap.reporting import figures

    figures.pareto_latency(frame, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.pdf").exists()
    with pytest.raises(BlockswapError, match="no measured latencies"):
        figures.pareto_latency(students_table(metrics), tmp_path / "none.png")


# --- the workflow's configuration -------------------------------------------------------------


def config_with(**changes):
    from blockswap.planning.config_file import load_config

    config = load_config([latency_root() / "config" / "config.yaml"])
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


def latency_root():
    from helpers import ROOT

    return ROOT


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"latency__setting": "cpu/t3/b1"}, "uses 3 threads, which latency.threads"),
        ({"latency__setting": "cpu/t1/b64"}, "uses batch 64, which latency.batches"),
        ({"latency__setting": "cuda/b1"}, "is a CUDA setting but latency.device is cpu"),
        ({"latency__clock": "thread"}, "the thread clock times one CPU thread"),
    ],
)
def test_latency_settings_are_checked_before_any_job(changes, message):
    from blockswap.planning.config_checks import check_plan

    with pytest.raises(BlockswapError, match=message):
        check_plan(config_with(**changes))


def test_latency_budgets_plan_without_counting_and_schema_rejects_bad_keys(tmp_path):
    from blockswap.planning.config_checks import check_plan
    from blockswap.planning.config_file import load_config
    from blockswap.planning.plan import plan_notes

    config = config_with(search__budget_kind="latency", search__budgets=[400, 800])
    check_plan(config)  # counted against the measured table when sampling, not now
    assert all("latency budget" in note for note in plan_notes(config))
    for text, message in (
        ("search: {limits: {speed: 3}}", "Additional properties are not allowed"),
        ("latency: {runs: 10}", "10 is less than the minimum of 50"),
        ("latency: {setting: gpu}", "does not match"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(BlockswapError, match=message):
            load_config([latency_root() / "config" / "config.yaml", bad])


# --- the workflow -------------------------------------------------------------------------------


def snakemake(workdir, overlay, *args):
    """Snakemake on the tiny test config plus `overlay` (one --configfile: a second one would replace it)."""
    from helpers import TINY
    from helpers import snakemake as run

    return run("--directory", workdir, *args, "--configfile", *TINY, overlay)


@pytest.mark.slow
def test_workflow_latency_target_builds_the_table_and_its_check(tmp_path):
    (tmp_path / "latency.yaml").write_text(
        "latency: {threads: [1], check_samples: 3, calibration_samples: 10, clock: thread}\n"
    )
    proc = snakemake(tmp_path, tmp_path / "latency.yaml", "--cores", "1", "latency")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = LatencyTable.load(tmp_path / "results" / "tiny" / "latency" / "table.json")
    assert table.record["arch"] == "wrn-10-1" and table.record["input_size"] == [8, 8]
    assert table.record["clock"] == "thread" and table.calibration("cpu/t1/b1")["clock"] == "thread"
    assert len(table.calibration("cpu/t1/b1")["networks"]) == 10  # the setting latency budgets use
    check = read_sidecar(tmp_path / "results" / "tiny" / "latency" / "check.csv")["summary"]
    assert check["samples"] == 3 and check["setting"] == "cpu/t1/b1"


@pytest.mark.slow
def test_workflow_with_latency_enabled_and_a_latency_budget_plans_every_measurement(tmp_path):
    from snakemake_log import job_counts

    (tmp_path / "latency.yaml").write_text(
        "latency: {enabled: true}\nsearch: {budget_kind: latency, budgets: [900, 1200], limits: {params: 60000}}\n"
        "baselines: {moonshine: []}\n"
        "ablation: {budgets: null}\n"  # the default's ablation budget is a parameter count: follow the search
        # The comparison's students are not in the students table, so they are not measured.
        "comparison: {seeds: [0], budgets: [900], samples: 6, trained: 1, bestof: [2], in_all: true}\n"
    )
    proc = snakemake(tmp_path, tmp_path / "latency.yaml", "-n", "all")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    counts = job_counts(proc.stdout)
    # The random students train in lockstep jobs, many runs each.
    in_lockstep = set(re.findall(r"students/(random-[^/]+/seed-\d+)/metrics\.json", proc.stdout))
    trained = counts["train_teacher"] + counts["train_student"] + len(in_lockstep)
    compared = set(
        re.findall(r"output: \S+/students/((?:randomsearch|evolution|bestofn)-[^/]+/seed-\d+)/", proc.stdout)
    )
    assert compared and counts["latency_table"] == 1 and counts["latency_check"] == 1
    assert counts["network_latency"] == trained - len(compared)  # every network of the students table
    assert counts["figure_pareto_latency"] == 1 and counts["latency_ranks"] == 1
    assert "--budget-kind latency" in proc.stdout and "--limit params=60000 --latency-table" in proc.stdout


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda r: r.update(settings="cpu/t1/b1"), "settings is not a list"),
        (lambda r: r.update(settings=["cpu/t1/b1", "tpu"]), "unknown setting 'tpu'"),
        (lambda r: r.update(arch="vgg"), "arch is not an architecture"),
        (lambda r: r.update(input_size=[8]), "input_size is not two sizes"),
        (lambda r: r["stem"].update({"cpu/t1/b1": float("nan")}), "stem lacks a positive time"),
        (lambda r: r["shapes"][1]["times"].update({"S": {"cpu/t1/b1": -1}}), "S lacks a positive time"),
        (lambda r: r.update(positions=[0, 1, 7]), "positions is not one shape index per block"),
        (lambda r: r.pop("head"), "it lacks head"),
        (lambda r: r.update(format="x"), "is not a latency table"),
    ],
)
def test_a_damaged_table_is_one_line(table_file, tmp_path, capsys, damage, message):
    record = json.loads(table_file.read_text())
    damage(record)
    bad = tmp_path / "bad.json"
    write_json(bad, record)  # sealed as written: the damage is in the content, not the seal
    code, out, err = run(capsys, "latency-check", bad, "--samples", "2", "--out", tmp_path / "c.csv")
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    bad.write_text(table_file.read_text().replace("cpu/t1/b1", "cpu/t1/b3", 1))  # edited after it was sealed
    code, _, err = run(capsys, "latency-check", bad, "--samples", "2", "--out", tmp_path / "c.csv")
    assert code == 2 and "changed after it was written" in err and not (tmp_path / "c.csv").exists()


def test_sample_command_under_a_latency_budget_records_the_table(table_file, tmp_path, capsys):
    from blockswap.provenance import file_digest

    _, costs = latency_cost_table(table_file)
    low, high = costs.achievable("latency")
    budget = int((low + high) / 2)
    code, out, err = run(
        capsys,
        "sample",
        "--arch",
        ARCH,
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--budget",
        budget,
        "--budget-kind",
        "latency",
        "--tolerance",
        "0.2",
        "--samples",
        "5",
        "--latency-table",
        table_file,
        "--limit",
        "params=60000",
        "--out",
        tmp_path / "c.csv",
    )
    assert code == 0, err
    assert f"of {budget} latency, params <= 60000" in out
    frame = pd.read_csv(tmp_path / "c.csv")
    assert list(frame.columns)[-1] == "latency_us" and ((frame["latency_us"] - budget).abs() < 0.2 * budget).all()
    sidecar = read_sidecar(tmp_path / "c.csv")
    assert sidecar["latency_table"] == {str(table_file): file_digest(table_file)}
    assert sidecar["limits"] == {"params": 60000.0} and sidecar["latency_setting"] == "cpu/t1/b1"


@pytest.mark.slow
def test_thread_clock_tables_for_shared_machines(tmp_path, capsys):
    code, _, err = run(
        capsys,
        "latency",
        ARCH,
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--threads",
        "1",
        "--clock",
        "thread",
        "--out",
        tmp_path / "t.json",
        "--quiet",
    )
    assert code == 0, err
    table = LatencyTable.load(tmp_path / "t.json")
    assert table.record["clock"] == "thread" and "--clock thread" in table.rebuild_command()
    _, summary = check_table(table, "cpu/t1/b1", samples=2)
    assert summary["clock"] == "thread"
    code, _, err = run(
        capsys,
        "latency",
        ARCH,
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--threads",
        "1",
        "--out",
        tmp_path / "t.json",
    )
    assert code == 2 and "timed on the thread clock, not wall" in err
    code, _, err = run(capsys, "latency", ARCH, "--threads", "2", "--clock", "thread", "--out", tmp_path / "u.json")
    assert code == 2 and "the thread clock times one CPU thread" in err and not (tmp_path / "u.json").exists()
