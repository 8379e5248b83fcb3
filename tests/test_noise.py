"""The target's trustworthiness: the seed-to-seed noise ceiling of the random students (ICC, SDs,
Kendall ceiling), the power of a shoot-out of n networks, and the convergence table; each on
constructed tables with known values, and through `blockswap report ceiling/convergence`."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, spearmanr

from blockswap import BlockswapError
from blockswap.reporting.convergence import convergence_display, convergence_table
from blockswap.reporting.noise import (
    ceiling_display,
    ceiling_table,
    min_observed_tau,
    min_true_tau,
    networks_needed,
    null_se,
)
from blockswap.reporting.students import STUDENT_COLUMNS


def seeded_students(errors: dict, method="random") -> pd.DataFrame:
    """A students table from {budget: networks x seeds matrix of test error}."""
    rows = []
    for budget, matrix in errors.items():
        for i, network in enumerate(np.asarray(matrix, float)):
            for seed, error in enumerate(network):
                rows.append(
                    {
                        "method": method,
                        "network": f"random-{budget}-{i}",
                        "arch": "wrn-10-1",
                        "genotype": "S S S",
                        "budget": budget,
                        "seed": seed,
                        "params": budget,
                        "macs": 1,
                        "ops": 1,
                        "test_error": error,
                        "test_error_top5": 0.0,
                        "fisher": None,
                        "candidate": i,
                        "dataset": "digits",
                    }
                )
    return pd.DataFrame(rows, columns=STUDENT_COLUMNS)


def test_identical_seeds_reach_the_full_ceiling():
    errors = np.linspace(5, 20, 8)[:, None].repeat(3, axis=1)  # every seed gives the same error
    row = ceiling_table(seeded_students({30000: errors})).iloc[0]
    assert (row["n"], row["seeds"], row["pairs"]) == (8, 3, 3)
    for column in ("seed_tau", "seed_rho", "icc_c_1", "icc_c_k", "ceiling_tau"):
        assert row[column] == pytest.approx(1)
    assert row["seed_tau_low"] == pytest.approx(1) and row["ceiling_tau_high"] == pytest.approx(1)
    assert row["within_sd"] == 0 and row["between_sd"] == pytest.approx(np.std(errors[:, 0], ddof=1))
    assert row["n_needed"] == 43  # a ceiling of 1: the plain power of Kendall's tau (below)


def test_anova_icc_and_ceiling_on_hand_computed_values():
    # Network means 2, 6, 9 (grand mean 17/3): MSB = 2 * 74/3 / 2 = 74/3. Seed means 5 and 19/3;
    # residuals x - m_i - c_j + 17/3 are -1/3, 1/3, -1/3, 1/3, 2/3, -2/3: MSE = (4/3) / (2 x 1) = 2/3.
    errors = [[1, 3], [5, 7], [9, 9]]
    row = ceiling_table(seeded_students({30000: errors})).iloc[0]
    msb, mse = 74 / 3, 2 / 3
    assert row["icc_c_1"] == pytest.approx((msb - mse) / (msb + mse))
    assert row["icc_c_k"] == pytest.approx((msb - mse) / msb)
    # Spearman-Brown: the 2-seed mean's reliability from one run's.
    assert row["icc_c_k"] == pytest.approx(2 * row["icc_c_1"] / (1 + row["icc_c_1"]))
    assert row["within_sd"] == pytest.approx(np.sqrt(mse))
    assert row["seed_shift_sd"] == pytest.approx(np.std([5, 19 / 3], ddof=1))
    assert row["between_sd"] == pytest.approx(np.std([2, 6, 9], ddof=1))
    assert row["ceiling_tau"] == pytest.approx(2 / np.pi * np.arcsin(np.sqrt((msb - mse) / msb)))
    a, b = np.array(errors, float).T
    assert row["seed_tau"] == pytest.approx(kendalltau(a, b)[0])
    assert row["seed_rho"] == pytest.approx(spearmanr(a, b)[0])


def test_a_shift_shared_by_every_network_of_a_seed_is_not_noise():
    # Seed 1 makes every network 3 points worse (its minibatches are everyone's): the ranking
    # repeats exactly, and so the ceiling is 1.
    errors = np.linspace(5, 20, 8)[:, None] + np.array([0.0, 3.0])
    row = ceiling_table(seeded_students({30000: errors})).iloc[0]
    assert row["seed_tau"] == pytest.approx(1) and row["icc_c_1"] == pytest.approx(1)
    assert row["ceiling_tau"] == pytest.approx(1) and row["within_sd"] == pytest.approx(0, abs=1e-9)
    assert row["seed_shift_sd"] == pytest.approx(np.std([0.0, 3.0], ddof=1))


def test_seed_statistics_average_over_pairs_of_seeds():
    rng = np.random.default_rng(2)
    errors = rng.normal(10, 1, (10, 1)) + rng.normal(0, 1, (10, 3))
    row = ceiling_table(seeded_students({30000: errors})).iloc[0]
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert row["seed_tau"] == pytest.approx(np.mean([kendalltau(errors[:, i], errors[:, j])[0] for i, j in pairs]))
    assert row["seed_rho"] == pytest.approx(np.mean([spearmanr(errors[:, i], errors[:, j])[0] for i, j in pairs]))
    assert row["seed_tau_low"] < row["seed_tau"] < row["seed_tau_high"]
    assert row["ceiling_tau_low"] <= row["ceiling_tau"] <= row["ceiling_tau_high"]


@pytest.mark.slow
def test_independent_noise_leaves_no_ceiling_to_speak_of():
    rng = np.random.default_rng(0)
    errors = 10 + rng.normal(0, 1, (200, 2))  # the networks are all alike: error is seed noise alone
    row = ceiling_table(seeded_students({30000: errors})).iloc[0]
    assert abs(row["icc_c_1"]) < 0.15 and abs(row["seed_tau"]) < 0.1
    assert row["seed_tau_low"] < 0 < row["seed_tau_high"]
    assert row["within_sd"] == pytest.approx(1, abs=0.1) and row["ceiling_tau"] < 0.4


def test_a_ceiling_of_zero_means_never_and_the_table_says_so():
    # Every network's seed mean is 10: nothing between the networks for any predictor to find.
    errors = [[10 + d, 10 - d] for d in (1.0, 2.0, 0.5, 3.0)]
    table = ceiling_table(seeded_students({30000: errors, 60000: np.array(errors) + 5}))
    assert table["budget"].tolist() == [30000, 60000, "pooled"]
    first = table.iloc[0]
    assert first["ceiling_tau"] == 0 and first["icc_c_1"] == -1 and np.isnan(first["icc_c_k"])
    assert first["between_sd"] == 0 and pd.isna(first["n_needed"])
    assert np.isnan(first["min_true_tau"])
    shown = ceiling_display(table)
    assert shown.loc[0, "n for true tau 0.3"] == "never (ceiling 0)"
    assert shown.loc[0, "min true tau"] == "never (ceiling 0)"
    # Pooled, the budgets differ by 5 points: the between-budget spread is a ceiling for the pooled rows.
    assert table.iloc[2]["ceiling_tau"] > 0.5 and shown.loc[2, "n for true tau 0.3"].isdigit()


def test_power_numbers_against_hand_computed_values():
    # n = 24: SE0 = sqrt(2 * 53 / (9 * 24 * 23)) = 0.14607; (1.96 + 0.8416) SE0 = 0.4092.
    assert null_se(24) == pytest.approx(np.sqrt(106 / 4968))
    assert min_observed_tau(24) == pytest.approx(0.4092, abs=1e-4)
    assert min_true_tau(24, 0.5) == pytest.approx(0.8185, abs=1e-3) and np.isnan(min_true_tau(24, 0.0))
    # n = 42 gives 2.8016 * 0.10717 = 0.3002 > 0.3 and n = 43 gives 0.2965: 43 networks for tau 0.3.
    assert min_observed_tau(42) > 0.3 >= min_observed_tau(43) and networks_needed(1.0) == 43
    # Half the ceiling asks for tau 0.15: close to four times as many networks (159).
    half = networks_needed(0.5)
    assert min_observed_tau(half - 1) > 0.15 >= min_observed_tau(half) and half == 159
    assert networks_needed(0.0) is None and networks_needed(float("nan")) is None


def test_bad_seedings_are_one_line_errors():
    good = np.arange(8.0).reshape(4, 2)
    one = seeded_students({30000: good[:, :1]})
    with pytest.raises(BlockswapError, match="random-30000-0 of budget 30000 was trained under one seed: .*two"):
        ceiling_table(one)
    mixed = seeded_students({30000: good}).drop(index=[1])  # random-30000-0 lost its seed 1
    with pytest.raises(BlockswapError, match="random-30000-0 of budget 30000 was trained under one seed"):
        ceiling_table(mixed)
    other = seeded_students({30000: good})
    other.loc[1, "seed"] = 5  # seeds 0 and 5 for one network, 0 and 1 for the others
    with pytest.raises(BlockswapError, match="random-30000-0 of budget 30000 has no run of seed 1"):
        ceiling_table(other)
    twice = seeded_students({30000: good})
    twice.loc[1, "seed"] = 0
    with pytest.raises(BlockswapError, match="random-30000-0 has two rows of seed 0"):
        ceiling_table(twice)
    with pytest.raises(BlockswapError, match="budget 30000 has 2 random students: .* three or more"):
        ceiling_table(seeded_students({30000: good[:2], 60000: good}))
    with pytest.raises(BlockswapError, match="no test_error column"):
        ceiling_table(seeded_students({30000: good}).drop(columns="test_error"))
    with pytest.raises(BlockswapError, match="no random students"):
        ceiling_table(seeded_students({30000: good}, method="blockswap"))
    for error in (one, mixed, other, twice):
        with pytest.raises(BlockswapError) as caught:
            ceiling_table(error)
        assert "\n" not in str(caught.value)


def convergence_students() -> pd.DataFrame:
    """Runs of three methods with known training loss and validation-error change."""
    frame = seeded_students({30000: np.full((3, 2), 10.0), 60000: np.full((3, 1), 8.0)})
    frame["final_train_loss"] = np.linspace(0.1, 0.9, len(frame))
    frame["val_error_change"] = [0.2, -1.5, 0.9, 1.0, None, -0.3, 2.5, 0.1, -0.4]
    frame["convergence_window"] = 3
    teacher = frame.iloc[:2].assign(method="teacher", network="teacher", budget=None, val_error_change=[-3.0, None])
    return pd.concat([frame, teacher], ignore_index=True)


def test_convergence_counts_and_names_the_runs_that_did_not_plateau():
    table = convergence_table(convergence_students())
    assert table["method"].tolist() == ["teacher", "random", "random"]  # the paper's order, random per budget
    assert pd.isna(table["budget"].iloc[0]) and table["budget"].iloc[1:].tolist() == [30000, 60000]
    teacher, small, large = (table.iloc[i] for i in range(3))
    assert (teacher["runs"], teacher["plateaued"], teacher["not_plateaued"], teacher["unknown"]) == (2, 0, 1, 1)
    assert teacher["not_plateaued_runs"] == "teacher/0" and teacher["val_error_change_worst"] == 3.0
    # 30000: changes 0.2, -1.5, 0.9, 1.0 (exactly the threshold: plateaued), none, -0.3.
    assert (small["runs"], small["plateaued"], small["not_plateaued"], small["unknown"]) == (6, 4, 1, 1)
    assert small["not_plateaued_runs"] == "random-30000-0/1"
    assert small["val_error_change_median"] == pytest.approx(np.median([0.2, 1.5, 0.9, 1.0, 0.3]))
    assert small["val_error_change_worst"] == 1.5 and small["final_train_loss_worst"] == pytest.approx(0.6)
    assert small["final_train_loss_median"] == pytest.approx(np.median(np.linspace(0.1, 0.9, 9)[:6]))
    assert large["not_plateaued_runs"] == "random-60000-0/0" and large["window_epochs"] == 3
    # A looser criterion: 2.5 points plateau too; the criterion is stated in the Markdown's header.
    loose = convergence_table(convergence_students(), plateau=3.0)
    assert loose["not_plateaued"].tolist() == [0, 0, 0] and (loose["not_plateaued_runs"] == "").all()
    assert "plateaued (abs change <= 3 pt)" in convergence_display(loose).columns


def test_convergence_needs_the_columns_and_a_sensible_threshold():
    old = convergence_students().drop(columns=["val_error_change"])
    with pytest.raises(BlockswapError, match="no val_error_change column: .*rebuild it"):
        convergence_table(old)
    with pytest.raises(BlockswapError, match="--plateau is -1"):
        convergence_table(convergence_students(), plateau=-1)


def test_report_ceiling_and_convergence_end_to_end(tmp_path, capsys):
    from blockswap.cli import main
    from blockswap.provenance import provenance_path
    from blockswap.reporting.students import read_students

    rng = np.random.default_rng(1)
    quality = rng.normal(10, 2, (6, 1))
    frame = seeded_students({30000: quality + rng.normal(0, 0.5, (6, 2)), 60000: quality + rng.normal(0, 0.5, (6, 2))})
    csv = tmp_path / "students.csv"
    frame.to_csv(csv, index=False)  # an older table: no convergence columns, and it still reads
    assert "final_train_loss" not in read_students([csv])
    out, md = tmp_path / "ceiling.csv", tmp_path / "ceiling.md"
    assert main(["report", "ceiling", str(csv), "--csv", str(out), "--md", str(md)]) == 0
    table = pd.read_csv(out)
    assert table["budget"].tolist() == ["30000", "60000", "pooled"] and table["n"].tolist() == [6, 6, 12]
    assert table["ceiling_tau"].between(0, 1).all() and table["n_needed"].notna().all()
    assert "| ceiling tau (seed mean) |" in md.read_text() and json.loads(provenance_path(out).read_text())["rows"] == 3
    assert main(["report", "convergence", str(csv), "--csv", str(tmp_path / "c.csv")]) == 2
    assert "no final_train_loss column" in capsys.readouterr().err

    convergence_students().to_csv(csv, index=False)
    out, md = tmp_path / "convergence.csv", tmp_path / "convergence.md"
    assert main(["report", "convergence", str(csv), "--plateau", "2", "--csv", str(out), "--md", str(md)]) == 0
    table = pd.read_csv(out)
    assert table["not_plateaued"].tolist() == [1, 0, 1] and table["plateau_points"].tolist() == [2.0] * 3
    assert "plateaued (abs change <= 2 pt)" in md.read_text() and "random-60000-0/0" in md.read_text()
    # One seed per network: the ceiling refuses, in one line naming the network.
    seeded_students({30000: quality[:, :1]}).to_csv(csv, index=False)
    assert main(["report", "ceiling", str(csv), "--csv", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "random-30000-0 of budget 30000 was trained under one seed" in err and err.count("\n") == 1
    assert not (tmp_path / "x.csv").exists()
