"""Scoring: shard invariance, repeatability, kill-and-resume, proxies; selection across shards."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from blockswap import CANDIDATE_SETS, BlockswapError, parse_arch
from blockswap.cli import main
from blockswap.data.loaders import load_dataset
from blockswap.provenance import read_sidecar
from blockswap.search.sampling import CostTable, sample_candidates
from blockswap.search.score_files import is_timing
from blockswap.search.scoring import ScoringSettings, parse_shard, score_candidates, shard_of
from blockswap.search.selection import select_best

SIZE = 8


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=SIZE)


@pytest.fixture(scope="module")
def candidates():
    table = CostTable.build(parse_arch("wrn-10-2"), CANDIDATE_SETS["paper"], (SIZE, SIZE), 10)
    return sample_candidates(table, 60_000, 9, seed=0, tolerance=0.3)


def settings(**overrides):
    base = dict(arch="wrn-10-2", dataset="digits", num_classes=10, image_size=SIZE, batch_size=32, seed=5)
    return ScoringSettings(**{**base, **overrides})


def without_seconds(frame):
    """The scores without the timing columns (`seconds` and each proxy's `seconds_<proxy>`)."""
    return frame.drop(columns=[c for c in frame if is_timing(c)]).reset_index(drop=True)


@pytest.mark.slow
def test_one_shard_equals_three_shards_and_reruns_repeat(tmp_path, digits, candidates):
    whole = score_candidates(candidates, settings(), digits, tmp_path / "all.csv", progress=False)
    parts = [
        score_candidates(candidates, settings(), digits, tmp_path / f"s{i}.csv", (i, 3), progress=False)
        for i in range(3)
    ]
    pd.testing.assert_frame_equal(without_seconds(whole), without_seconds(pd.concat(parts)))
    again = score_candidates(candidates, settings(), digits, tmp_path / "again.csv", progress=False)
    pd.testing.assert_frame_equal(without_seconds(whole), without_seconds(again))
    assert list(whole.columns) == [
        "candidate",
        "genotype",
        "params",
        "macs",
        "ops",
        "fisher",
        "fisher_blocks",
        "seconds_fisher",
        "seconds",
    ]
    assert all(len(json.loads(b)) == 3 for b in whole["fisher_blocks"])
    assert whole["fisher"].nunique() == len(whole)
    meta = json.loads((tmp_path / "s1.csv.provenance.json").read_text())
    assert meta["shard"] == [1, 3] and meta["candidates_total"] == 9 and meta["provenance"]["seed"] == 5


def test_shards_partition_the_candidates(candidates):
    seen = pd.concat([shard_of(candidates, (i, 4)) for i in range(4)])["candidate"]
    assert sorted(seen) == list(range(9))


@pytest.mark.slow
def test_seed_and_minibatch_mode_change_scores(tmp_path, digits, candidates):
    base = score_candidates(candidates, settings(), digits, tmp_path / "a.csv", progress=False)
    other = score_candidates(candidates, settings(seed=6), digits, tmp_path / "b.csv", progress=False)
    released = score_candidates(
        candidates, settings(minibatch="per-candidate"), digits, tmp_path / "c.csv", progress=False
    )
    released2 = score_candidates(
        candidates, settings(minibatch="per-candidate"), digits, tmp_path / "d.csv", progress=False
    )
    assert not base["fisher"].equals(other["fisher"]) and not base["fisher"].equals(released["fisher"])
    pd.testing.assert_series_equal(released["fisher"], released2["fisher"])


@pytest.mark.slow
def test_proxy_columns(tmp_path, digits, candidates):
    s = settings(proxies=["fisher", "accuracy", "l2_norm", "grad_norm"], minibatches=[1, 3])
    frame = score_candidates(candidates.head(2), s, digits, tmp_path / "p.csv", progress=False)
    expected = ["accuracy@1", "l2_norm@1", "grad_norm@1", "fisher@3", "accuracy@3", "l2_norm@3", "grad_norm@3"]
    assert [c for c in frame.columns if "@" in c] == expected
    assert frame["accuracy@3"].between(0, 100).all()


def test_partial_of_other_settings_is_refused(tmp_path, digits, candidates):
    (tmp_path / "x.csv.partial").write_text("# not-this-fingerprint\n")
    with pytest.raises(BlockswapError, match="holds scores of other settings"):
        score_candidates(candidates, settings(), digits, tmp_path / "x.csv", progress=False)


@pytest.mark.slow
def test_killed_scoring_resumes_to_the_same_result(tmp_path):
    cands = tmp_path / "cands.csv"
    cmd = [sys.executable, "-m", "blockswap.cli"]
    subprocess.run(
        cmd
        + [
            "sample",
            "--arch",
            "wrn-16-2",
            "--budget",
            "150000",
            "--samples",
            "24",
            "--dataset",
            "digits",
            "--out",
            str(cands),
        ],
        check=True,
        capture_output=True,
    )
    score = cmd + [
        "score",
        str(cands),
        "--dataset",
        "digits",
        "--batch-size",
        "64",
        "--seed",
        "1",
        "--quiet",
        "--device",
        "cpu",
    ]
    subprocess.run(score + ["--out", str(tmp_path / "ref.csv")], check=True, capture_output=True)

    partial = tmp_path / "run.csv.partial"
    proc = subprocess.Popen(
        score + ["--out", str(tmp_path / "run.csv")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not partial.exists() or partial.read_text().count("\n") < 5):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows_before = partial.read_text().count("\n") - 2
    assert 0 < rows_before < 24 and not (tmp_path / "run.csv").exists()
    subprocess.run(score + ["--out", str(tmp_path / "run.csv")], check=True, capture_output=True)
    ref, run = pd.read_csv(tmp_path / "ref.csv"), pd.read_csv(tmp_path / "run.csv")
    pd.testing.assert_frame_equal(without_seconds(ref), without_seconds(run))
    assert not partial.exists()


def test_select_merges_shards_and_picks_the_highest_fisher(tmp_path, digits, candidates):
    paths = [tmp_path / f"s{i}.csv" for i in range(3)]
    frames = [score_candidates(candidates, settings(), digits, p, (i, 3), progress=False) for i, p in enumerate(paths)]
    merged = pd.concat(frames, ignore_index=True)
    listed = tmp_path / "candidates.csv"
    candidates.to_csv(listed, index=False)
    best = select_best(paths, listed)
    top = merged.loc[merged["fisher"].idxmax()]
    assert best["candidate"] == top["candidate"] and best["genotype"] == top["genotype"].split()
    assert best["candidates"] == 9 and len(best["rank_table"]) == 9
    assert [r["fisher"] for r in best["rank_table"]] == sorted(merged["fisher"], reverse=True)
    with pytest.raises(BlockswapError, match="3 of 9 candidates have no score .* a shard is missing"):
        select_best(paths[:2], listed)
    with pytest.raises(BlockswapError, match="scored twice"):
        select_best(paths + paths[:1], listed)


def test_select_first_n_is_the_best_of_the_first_n(tmp_path, digits, candidates):
    """The samples ablation: best-of-N looks only at candidates 0..N-1 of the complete scored list."""
    path, listed = tmp_path / "s.csv", tmp_path / "candidates.csv"
    frame = score_candidates(candidates, settings(), digits, path, progress=False)
    candidates.to_csv(listed, index=False)
    for n in (1, 4, 9):
        best = select_best([path], listed, first=n)
        first = frame[frame["candidate"] < n]
        assert best["candidate"] == first.loc[first["fisher"].idxmax(), "candidate"] and best["candidates"] == n
    assert select_best([path], listed, first=1)["candidate"] == 0
    with pytest.raises(BlockswapError, match="--first must be between 1 and the 9 scored candidates, got 10"):
        select_best([path], listed, first=10)


def test_scoring_runs_in_true_float32_unless_tf32_is_asked(digits):
    """TF32 moved GPU Fisher values by up to 5.6 % (bench/gpu.sh on an H100): scoring turns it off."""
    import torch

    from blockswap.search.scoring import Scorer

    torch.backends.cudnn.allow_tf32 = True
    Scorer(settings(), digits, torch.device("cpu"))
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    Scorer(settings(tf32=True), digits, torch.device("cpu"))
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # PyTorch's defaults


def test_select_cli_writes_a_genotype_file(tmp_path, digits, candidates, capsys):
    score_candidates(candidates, settings(), digits, tmp_path / "s.csv", progress=False)
    candidates.to_csv(tmp_path / "candidates.csv", index=False)
    assert (
        main(
            [
                "select",
                str(tmp_path / "s.csv"),
                "--candidates",
                str(tmp_path / "candidates.csv"),
                "--out",
                str(tmp_path / "student.json"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "cost",
                "--arch",
                "wrn-10-2",
                "--genotype",
                str(tmp_path / "student.json"),
                "--dataset",
                "digits",
                "--image-size",
                str(SIZE),
            ]
        )
        == 0
    )
    student = json.loads((tmp_path / "student.json").read_text())
    cost = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cost["params"] == student["params"] and "provenance" in student


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2", "0/0"])
def test_bad_shard(text):
    with pytest.raises(BlockswapError, match="shard"):
        parse_shard(text)


def test_score_cli_errors(tmp_path, capsys, candidates):
    path = tmp_path / "c.csv"
    candidates.to_csv(path, index=False)
    for argv, message in [
        (["--dataset", "digits", "--arch", "wrn-10-2", "--proxies", "fisher,iq"], "unknown proxy 'iq'"),
        (["--dataset", "digits"], "does not say which architecture"),
        (["--dataset", "digits", "--arch", "wrn-10-2", "--shard", "5/2"], "out of range"),
        (["--dataset", "digits", "--arch", "wrn-10-2", "--device", "tpu"], "unknown device 'tpu'"),
    ]:
        code = main(["score", str(path), "--out", str(tmp_path / "s.csv"), "--quiet", *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
    assert not (tmp_path / "s.csv").exists()
    assert main(["score", str(tmp_path / "none.csv"), "--dataset", "digits", "--out", "x.csv"]) == 2


def test_memory_format_is_chosen_per_device_and_recorded(tmp_path, digits, candidates):
    """Unset, the layout is the faster one on the scoring device (channels-last on the CPU, NCHW
    on a GPU) and the settings a scores file records name it; forced, it stays as asked."""
    import torch

    assert settings().channels_last is None
    assert settings().on(torch.device("cpu")).channels_last is True
    assert settings().on(torch.device("cuda")).channels_last is False
    assert settings(channels_last=False).on(torch.device("cpu")).channels_last is False
    assert settings(channels_last=True).on(torch.device("cuda")).channels_last is True
    with pytest.raises(BlockswapError, match="channels_last must be true, false or null .per device., got 'yes'"):
        settings(channels_last="yes")

    def scored(name, **overrides):
        frame = score_candidates(candidates.head(2), settings(**overrides), digits, tmp_path / name, progress=False)
        return without_seconds(frame), json.loads((tmp_path / f"{name}.provenance.json").read_text())

    auto, auto_record = scored("auto.csv")
    forced, forced_record = scored("cl.csv", channels_last=True)
    assert auto_record["settings"]["channels_last"] is True
    # The same scores file as channels-last asked for by name: same values, same fingerprint.
    assert auto_record["fingerprint"] == forced_record["fingerprint"]
    pd.testing.assert_frame_equal(auto, forced)
    nchw, nchw_record = scored("nchw.csv", channels_last=False)
    assert (
        nchw_record["settings"]["channels_last"] is False and nchw_record["fingerprint"] != auto_record["fingerprint"]
    )

    path = tmp_path / "c.csv"
    candidates.head(2).to_csv(path, index=False)
    argv = ["score", str(path), "--dataset", "digits", "--image-size", str(SIZE), "--arch", "wrn-10-2", "--quiet"]
    assert (
        main([*argv, "--batch-size", "32", "--seed", "5", "--memory-format", "nchw", "--out", str(tmp_path / "m.csv")])
        == 0
    )
    record = json.loads((tmp_path / "m.csv.provenance.json").read_text())
    assert record["settings"]["channels_last"] is False and record["fingerprint"] == nchw_record["fingerprint"]


def test_table1_mode_is_a_checked_setting():
    assert settings().table1_mode == "accumulated"  # the paper's ablation
    assert settings(table1_mode="snapshot").table1_mode == "snapshot"
    with pytest.raises(BlockswapError, match="unknown Table 1 reading 'last'; allowed: accumulated, snapshot"):
        settings(table1_mode="last")


def test_meco_on_a_one_by_one_map_is_one_line(tmp_path, capsys):
    # wrn-10-2's last stage is 1x1 at 4 px: MeCo's single example leaves its BatchNorm layers one
    # value per channel. A setting to change, not a crash in the middle of the first candidate.
    table = CostTable.build(parse_arch("wrn-10-2"), CANDIDATE_SETS["paper"], (4, 4), 10)
    path = tmp_path / "c.csv"
    sample_candidates(table, 60_000, 2, seed=0, tolerance=0.3).to_csv(path, index=False)
    argv = ["score", str(path), "--dataset", "digits", "--arch", "wrn-10-2", "--image-size", "4", "--quiet"]
    code = main([*argv, "--batch-size", "16", "--proxies", "meco", "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "proxy meco" in err and "1 x 1" in err and "--image-size" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_select_by_another_proxy_uses_its_sign(tmp_path):
    """`select --proxy`: the best candidate by that proxy's column at k = 1, not by Fisher potential."""
    from blockswap.cli import main

    csv = tmp_path / "c.csv"
    assert main(
        [
            "sample",
            "--arch",
            "wrn-10-1",
            "--budget",
            "30000",
            "--tolerance",
            "0.1",
            "--samples",
            "12",
            "--seed",
            "3",
            "--dataset",
            "digits",
            "--image-size",
            "8",
            "--out",
            str(csv),
        ]
    ) in (0, None)
    scores = tmp_path / "s.csv"
    assert main(
        [
            "score",
            str(csv),
            "--dataset",
            "digits",
            "--image-size",
            "8",
            "--batch-size",
            "32",
            "--proxies",
            "synflow,random",
            "--minibatches",
            "1",
            "--quiet",
            "--out",
            str(scores),
        ]
    ) in (0, None)
    frame = pd.read_csv(scores)
    by = {}
    for proxy, column in (("fisher", "fisher"), ("synflow", "synflow@1"), ("random", "random@1"), ("params", "params")):
        out = tmp_path / f"{proxy}.json"
        assert main(["select", str(scores), "--candidates", str(csv), "--proxy", proxy, "--out", str(out)]) in (0, None)
        chosen = json.loads(out.read_text())
        assert chosen["proxy"] == proxy and chosen["candidate"] == int(frame.loc[frame[column].idxmax(), "candidate"])
        assert chosen["score"] == pytest.approx(frame[column].max())
        by[proxy] = chosen["candidate"]
    assert len(set(by.values())) > 1  # the proxies disagree somewhere, so the choice follows the proxy
    assert (
        main(["select", str(scores), "--candidates", str(csv), "--proxy", "zen", "--out", str(tmp_path / "z.json")])
        == 2
    )
    assert (
        main(["select", str(scores), "--candidates", str(csv), "--proxy", "nope", "--out", str(tmp_path / "n.json")])
        == 2
    )


def test_a_given_normalisation_is_what_candidates_are_scored_with(tmp_path, digits, candidates):
    """--mean/--std (a pretrained teacher's normalisation) reach the minibatches: the scores equal
    scoring data normalised that way, differ from the dataset's own, and are in the fingerprint."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    rows = candidates.head(2)
    given = score_candidates(rows, settings(mean=mean, std=std), digits, tmp_path / "given.csv")
    renormalised = replace(digits, mean=tuple(mean), std=tuple(std))
    by_hand = score_candidates(rows, settings(), renormalised, tmp_path / "by-hand.csv")
    own = score_candidates(rows, settings(), digits, tmp_path / "own.csv")
    assert without_seconds(given).equals(without_seconds(by_hand))
    assert not np.allclose(given["fisher"], own["fisher"])
    records = [read_sidecar(tmp_path / name) for name in ("given.csv", "by-hand.csv")]
    assert records[0]["settings"]["mean"] == mean and records[1]["settings"]["mean"] is None
    assert records[0]["fingerprint"] != records[1]["fingerprint"]


def test_a_normalisation_needs_both_mean_and_std(tmp_path, capsys):
    with pytest.raises(BlockswapError, match="both mean and std"):
        settings(mean=[0.5, 0.5, 0.5])
    candidates_csv = tmp_path / "c.csv"
    candidates_csv.write_text("candidate,genotype,params,macs,ops\n")
    assert main(["score", str(candidates_csv), "--dataset", "digits", "--mean", "0.5,0.5,0.5", "--out", "x"]) == 2
    assert "--mean and --std go together" in capsys.readouterr().err
