"""Integrity: no damaged, doubled or hand-edited file silently changes a result.

Every file one stage writes and another reads is sealed (its sha256 in its provenance sidecar) and
checked when read; a deliberate edit is accepted through `blockswap reseal`; scoring shards are
locked and their partial files repaired only where the repair is certain; results get the
permissions of the user's umask.
"""

import csv
import io
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import time

import pandas as pd
import pytest
from test_scoring import SIZE, candidates, digits, settings, without_seconds  # noqa: F401 (fixtures)

from blockswap import BlockswapError, build_model
from blockswap.cli import main
from blockswap.provenance import file_digest, provenance, provenance_path, write_json
from blockswap.reporting.proxy_tables import correlation_table
from blockswap.search.scoring import Scorer, score_candidates
from blockswap.training.checkpoint import atomic_save, load_model, save_model

SHARDS = 3
REAL_SCORE = Scorer.score  # scoring a candidate, before any test patches it
SAMPLE = [
    "--arch",
    "wrn-10-2",
    "--budget",
    "60000",
    "--samples",
    "9",
    "--tolerance",
    "0.3",
    "--dataset",
    "digits",
    "--image-size",
    str(SIZE),
]


def score_args(candidates_csv, out, shard=0, seed=5):
    return [
        "score",
        str(candidates_csv),
        "--dataset",
        "digits",
        "--image-size",
        str(SIZE),
        "--batch-size",
        "32",
        "--seed",
        str(seed),
        "--shard",
        f"{shard}/{SHARDS}",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A sampled candidates file and its three scored shards, made by the CLI once."""
    folder = tmp_path_factory.mktemp("search")
    assert main(["sample", *SAMPLE, "--seed", "0", "--out", str(folder / "c.csv")]) == 0
    for i in range(SHARDS):
        assert main(score_args(folder / "c.csv", folder / f"s{i}.csv", i)) == 0
    return folder


@pytest.fixture
def search(scored, tmp_path):
    """A private copy of the scored search, free to damage."""
    return shutil.copytree(scored, tmp_path / "search")


def shards(folder):
    return [folder / f"s{i}.csv" for i in range(SHARDS)]


def select(capsys, folder, *extra, scores=None):
    code = main(
        [
            "select",
            *map(str, scores or shards(folder)),
            "--candidates",
            str(folder / "c.csv"),
            "--out",
            str(folder / "student.json"),
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message):
    assert code == 2 and err.startswith("blockswap: error: ") and err.count("\n") == 1, err
    assert message in err, err


# --- select: damaged, missing, foreign and hand-edited shards --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sealed", [True, False])
def test_select_refuses_a_shard_cut_short_in_a_number(search, capsys, sealed):
    """A full disk or an interrupted copy cut the last shard mid-number: before, select read the
    cut value and picked the wrong candidate (exit 0)."""
    shard = search / "s2.csv"
    text = shard.read_text()
    fisher = next(csv.reader(io.StringIO(text.splitlines()[-1])))[5]
    shard.write_text(text[: text.rindex(f",{fisher},") + 1 + len(fisher) // 2])
    if not sealed:  # the sidecar lost as well: the cut line itself gives it away
        provenance_path(shard).unlink()
    code, _, err = select(capsys, search)
    expected = "s2.csv changed after it was written" if sealed else "s2.csv ends in the middle of a line"
    assert_one_line_error(code, err, expected)
    assert not (search / "student.json").exists()


@pytest.mark.parametrize("damage", ["shard left out", "last row dropped"])
def test_select_without_sidecars_checks_against_the_candidates(search, capsys, damage):
    """Without the shards' sidecars select trusted the highest index it saw ("candidate 0 of 3"
    when 9 were sampled); the candidates file now says how many there are."""
    for shard in shards(search):
        provenance_path(shard).unlink()
    scores = shards(search)
    if damage == "shard left out":
        scores, missing = scores[:1], "6 of 9 candidates have no score (first: [3, 4, 5, 6, 7, 8])"
    else:
        lines = scores[2].read_text().splitlines(keepends=True)
        scores[2].write_text("".join(lines[:-1]))
        missing = "1 of 9 candidates have no score (first: [8])"
    code, _, err = select(capsys, search, scores=scores)
    assert_one_line_error(code, err, missing)


def test_select_refuses_shards_of_another_sample_or_other_settings(search, capsys):
    assert main(["sample", *SAMPLE, "--seed", "1", "--out", str(search / "other.csv")]) == 0
    code = main(
        [
            "select",
            *map(str, shards(search)),
            "--candidates",
            str(search / "other.csv"),
            "--out",
            str(search / "student.json"),
        ]
    )
    assert_one_line_error(code, capsys.readouterr().err, "come from different samples")
    assert main(score_args(search / "c.csv", search / "s1.csv", 1, seed=6)) == 0
    capsys.readouterr()
    code, _, err = select(capsys, search)
    assert_one_line_error(code, err, "were scored with different settings")


def test_a_hand_edited_shard_is_named_and_reseal_accepts_it(search, capsys):
    shard = search / "s0.csv"
    frame = pd.read_csv(shard)
    frame.loc[0, "fisher"] = 1e9  # a deliberate edit: this candidate should now win
    shard.write_text(frame.to_csv(index=False))
    code, _, err = select(capsys, search)
    # The command is the one recorded when the shard was written (here pytest's, under main()).
    assert_one_line_error(code, err, f"{shard} changed after it was written: rerun `")
    assert f"` or delete it (to keep a deliberate edit, `blockswap reseal {shard}`)" in err

    written = json.loads(provenance_path(shard).read_text())["sha256"]
    assert main(["reseal", str(shard)]) == 0
    meta = json.loads(provenance_path(shard).read_text())
    assert meta["edited_by_hand"] is True and meta["edited"] and meta["sha256"] == file_digest(shard)
    assert meta["sha256_as_written"] == written and meta["shard"] == [0, SHARDS]  # the provenance is kept
    code, _, _ = select(capsys, search)
    assert code == 0 and json.loads((search / "student.json").read_text())["candidate"] == frame.loc[0, "candidate"]

    assert main(["reseal", str(shard)]) == 0 and "nothing to reseal" in capsys.readouterr().out
    assert main(["reseal", str(provenance_path(shard))]) == 2
    assert "is a provenance sidecar" in capsys.readouterr().err


def test_a_damaged_sidecar_is_one_line(search, capsys):
    provenance_path(search / "s1.csv").write_text('{"shard": [1, ')
    code, _, err = select(capsys, search)
    assert_one_line_error(code, err, "s1.csv.provenance.json is damaged")


@pytest.mark.slow
def test_the_workflow_hands_select_its_candidates(tiny_search_dry_run):
    proc = tiny_search_dry_run  # `snakemake -n -p search` (conftest.py): results/tiny/search/30000/student.json
    assert proc.returncode == 0, proc.stderr
    assert "--candidates results/tiny/search/30000/candidates.csv" in proc.stdout


# --- genotype and model files ------------------------------------------------------------------------


def test_an_edited_genotype_file_and_a_swapped_model_are_refused(tmp_path, capsys):
    student = tmp_path / "student.json"
    write_json(student, {"genotype": ["S", "S", "S"], "provenance": provenance()})
    record = json.loads(student.read_text())
    student.write_text(json.dumps({**record, "genotype": ["G(2)", "S", "S"]}))
    code = main(["cost", "--arch", "wrn-10-2", "--genotype", str(student)])
    assert_one_line_error(code, capsys.readouterr().err, f"{student} changed after it was written")

    model, other = tmp_path / "model.pt", tmp_path / "other" / "model.pt"
    save_model(build_model("wrn-10-1", seed=0), model, (SIZE, SIZE), "digits")
    save_model(build_model("wrn-10-1", seed=1), other, (SIZE, SIZE), "digits")
    model.write_bytes(other.read_bytes())  # a valid model, but not the one this run wrote
    with pytest.raises(BlockswapError, match="model.pt changed after it was written"):
        load_model(model)
    load_model(other)  # untouched: loads


# --- the students table and Table 2 ----------------------------------------------------------------


def metrics(**changes):
    record = {
        "test_error": 5.0,
        "test_error_top5": 1.0,
        "arch": "wrn-10-1",
        "genotype": ["S", "S", "S"],
        "params": 77850,
        "macs": 1_000_000,
        "ops": 1_100_000,
        "dataset": "digits",
        "seed": 0,
        "teacher": None,
        "tags": {"method": "teacher", "network": "teacher"},
    }
    record.update(changes)
    return {key: value for key, value in record.items() if value != "drop"}


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"test_error": None}, "test_error is null, expected a finite error in [0, 100] (%)"),
        ({"test_error": math.nan}, "test_error is nan, expected a finite error"),
        ({"test_error": 140.0}, "test_error is 140.0, expected a finite error in [0, 100]"),
        ({"test_error_top5": "drop"}, "test_error_top5 is missing"),
        ({"params": None}, "params is null, expected a whole number from 0 to 2^53"),
        ({"params": "77850"}, 'params is "77850", expected a whole number'),
        ({"macs": "drop"}, "macs is missing"),
        ({"seed": True}, "seed is true, expected a whole number"),
        ({"genotype": "S S S"}, 'genotype is "S S S", expected a list of block names'),
        ({"tags": {"method": "random", "budget": "30k"}}, "tags.budget is '30k', expected a whole number"),
    ],
)
def test_students_table_refuses_bad_metrics(tmp_path, capsys, changes, message):
    """Before: `test_error: null` became "nan +- nan" in Table 2 (exit 0); a missing key, a traceback."""
    good, bad = tmp_path / "a" / "metrics.json", tmp_path / "b" / "metrics.json"
    for path, record in ((good, metrics()), (bad, metrics(**changes))):
        path.parent.mkdir()
        path.write_text(json.dumps(record))
    out = tmp_path / "students.csv"
    code = main(["report", "students", str(good), str(bad), "--csv", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, f"{bad}: {message}")
    assert not out.exists()


def student_metrics(folder, network, seed, error):
    path = folder / "students" / network / f"seed-{seed}" / "metrics.json"
    tags = {"method": network.split("-")[0], "network": network}
    write_json(
        path, metrics(seed=seed, test_error=error, teacher="teachers/seed-0", tags=tags, provenance=provenance())
    )
    return path


def test_a_run_copied_or_linked_into_another_runs_folder_is_refused(tmp_path, capsys):
    """Before: moonshine-b2's files copied into blockswap-60000/seed-0/ were counted as that run (exit 0)."""
    paths = [student_metrics(tmp_path, n, s, 5.0 + s) for n in ("blockswap-60000", "moonshine-b2") for s in (0, 1)]
    out = tmp_path / "students.csv"
    assert main(["report", "students", *map(str, paths), "--csv", str(out)]) == 0
    out.unlink()
    for name in ("metrics.json", provenance_path(paths[2]).name):  # moonshine-b2 seed 0 over blockswap seed 0
        shutil.copy(paths[2].parent / name, paths[0].parent / name)
    code = main(["report", "students", *map(str, paths), "--csv", str(out)])
    message = f"{paths[0]} records the run 'moonshine-b2' but sits in blockswap-60000/: it is another run's result"
    assert_one_line_error(code, capsys.readouterr().err, message)
    shutil.copy(paths[3].parent / "metrics.json", paths[2])  # moonshine-b2 seed 1 in its seed-0 folder
    shutil.copy(provenance_path(paths[3]), provenance_path(paths[2]))
    code = main(["report", "students", *map(str, paths[1:]), "--csv", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, f"{paths[2]} records seed 1 but sits in seed-0/")
    paths[2].unlink()
    paths[2].symlink_to(paths[3])
    code = main(["report", "students", *map(str, paths[1:]), "--csv", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, f"{paths[2]} is a link to {paths[3]}")
    assert not out.exists()


def test_a_run_counted_twice_is_refused(tmp_path, capsys):
    paths = [student_metrics(tmp_path, "blockswap-60000", s, 5.0) for s in (0, 1)]
    code = main(["report", "students", *map(str, paths), str(paths[0]), "--csv", str(tmp_path / "s.csv")])
    assert_one_line_error(code, capsys.readouterr().err, "the run blockswap-60000 seed 0 appears more than once")
    table = tmp_path / "students.csv"
    assert main(["report", "students", *map(str, paths), "--csv", str(table)]) == 0
    code = main(["report", "table2", str(table), str(table), "--csv", str(tmp_path / "t.csv")])
    assert_one_line_error(code, capsys.readouterr().err, "the run blockswap-60000 seed 0 appears more than once")


def test_table2_refuses_an_edited_or_damaged_students_table(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"seed-{seed}" / "metrics.json")
        write_json(paths[-1], metrics(seed=seed, test_error=4.0 + seed, provenance=provenance()))
    students = tmp_path / "students.csv"
    assert main(["report", "students", *map(str, paths), "--csv", str(students)]) == 0
    table2 = ["report", "table2", str(students), "--csv", str(tmp_path / "table2.csv")]
    assert main(table2) == 0
    capsys.readouterr()

    text = students.read_text()
    students.write_text(text.replace(",4.0,", ",3.0,"))
    assert_one_line_error(main(table2), capsys.readouterr().err, f"{students} changed after it was written")
    provenance_path(students).unlink()  # a hand-made table is read, but checked cell by cell
    students.write_text(text.replace(",4.0,", ",,"))
    assert_one_line_error(
        main(table2), capsys.readouterr().err, f"{students} line 2: test_error is '', expected a finite error"
    )
    students.write_text(text.replace(",77850,", ",77_850,"))  # Python reads it as a number, pandas does not
    assert_one_line_error(main(table2), capsys.readouterr().err, f"{students}: column params does not read as numbers")
    students.write_text(text.replace(",S S S,", ',"S S S,', 1))  # a quote left open
    assert_one_line_error(main(table2), capsys.readouterr().err, f"{students} line 3 is not valid CSV")


def test_metrics_written_by_a_run_are_sealed_and_checked(tmp_path, capsys):
    path = tmp_path / "metrics.json"
    write_json(path, metrics(provenance=provenance()))
    path.write_text(path.read_text().replace('"test_error": 5.0', '"test_error": 1.0'))
    code = main(["report", "students", str(path), "--csv", str(tmp_path / "students.csv")])
    assert_one_line_error(code, capsys.readouterr().err, f"{path} changed after it was written")


# --- Table 1: the proxies files ----------------------------------------------------------------------


def random_students(n=4):
    return pd.DataFrame(
        [
            {
                "method": "random",
                "network": f"random-{i}",
                "arch": "wrn-10-1",
                "genotype": f"G({i + 1}) S S",
                "budget": 30000,
                "seed": 0,
                "params": 30000 + i,
                "macs": 1,
                "ops": 1,
                "test_error": 10.0 + i,
                "test_error_top5": 1.0,
                "fisher": None,
                "candidate": i,
                "dataset": "digits",
            }
            for i in range(n)
        ]
    )


def proxies_text(n=4):
    frame = pd.DataFrame(
        {
            "candidate": range(n),
            "genotype": [f"G({i + 1}) S S" for i in range(n)],
            "params": [30000 + i for i in range(n)],
            "macs": [900 + i for i in range(n)],
            "ops": [1000 + i for i in range(n)],
            "fisher": [float(n - i) for i in range(n)],
        }
    )
    return frame.to_csv(index=False)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda t: t.replace(",4.0\n", ",nan\n"), "line 2: fisher is 'nan', expected a finite number"),
        (lambda t: t.replace(",4.0\n", ",\n"), "line 2: fisher is '', expected a finite number"),
        (lambda t: t.replace("macs", "mac"), "lacks the column macs"),
        (lambda t: "".join(t.splitlines(keepends=True)[:-1]), "has no proxies of candidate 3"),
        (lambda t: t + t.splitlines(keepends=True)[2], "lists candidate 1 twice"),
        (lambda t: t.replace("G(2) S S", "S S S"), "candidate 1 is not the network random student random-1 trained"),
        (lambda t: t[:-3], "ends in the middle of a line"),
    ],
)
def test_correlation_refuses_damaged_proxies(tmp_path, damage, message):
    bad = tmp_path / "proxies.csv"
    bad.write_text(damage(proxies_text()))
    with pytest.raises(BlockswapError, match=message.replace("(", r"\(").replace(")", r"\)")):
        correlation_table(random_students(), {"30000": bad})


def test_correlation_reads_whole_proxies_and_refuses_them_without_random_students(tmp_path):
    (tmp_path / "p.csv").write_text(proxies_text())
    assert set(correlation_table(random_students(), {"30000": tmp_path / "p.csv"})["n"]) == {4}
    with pytest.raises(BlockswapError, match="no random students of budget 45000"):
        correlation_table(random_students(), {"45000": tmp_path / "p.csv"})


# --- scoring: one writer, partial files repaired or named --------------------------------------------


# The CLI, scoring its first candidate after half a second and then stopping for ten minutes inside
# the second: it holds the shard's lock, with one row written, for as long as the test needs it to.
STALLED_SCORE = (
    "import itertools, sys, time; from blockswap.search.scoring import Scorer; real = Scorer.score; "
    "calls = itertools.count(); "
    "Scorer.score = lambda self, *a: (time.sleep(0.5 if next(calls) == 0 else 600), real(self, *a))[1]; "
    "from blockswap.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.slow
def test_a_second_scoring_process_refuses_at_once(scored, tmp_path, capsys):
    """Before: the second process resumed the first one's partial file and both appended to it."""
    out, partial = tmp_path / "s.csv", tmp_path / "s.csv.partial"
    first = subprocess.Popen([sys.executable, "-c", STALLED_SCORE, *score_args(scored / "c.csv", out)])
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (not partial.exists() or partial.read_text().count("\n") < 3):
            time.sleep(0.05)
        assert first.poll() is None, "the first process finished before the test could start a second"
        start = time.perf_counter()
        code = main(score_args(scored / "c.csv", out))
        assert_one_line_error(code, capsys.readouterr().err, f"another process is scoring into {out}")
        # At once: well inside the ten minutes the first process holds the lock.
        assert time.perf_counter() - start < 60 and not out.exists()
    finally:
        first.kill()
        first.wait()
    # The kernel released the lock with the killed process: the shard resumes and completes.
    assert main(score_args(scored / "c.csv", out)) == 0 and not partial.exists()
    pd.testing.assert_frame_equal(without_seconds(pd.read_csv(out)), without_seconds(pd.read_csv(scored / "s0.csv")))


class Killed(Exception):
    """Stands for the process being killed mid-shard: the partial file is left as it is."""


def record_scoring(monkeypatch, stop_after=None):
    """Candidates scored from now on, in order; with `stop_after`, a kill after that many."""
    calls = []

    def score(self, candidate, genotype, *rest):
        if stop_after is not None and len(calls) == stop_after:
            raise Killed
        calls.append(candidate)
        return REAL_SCORE(self, candidate, genotype, *rest)

    monkeypatch.setattr(Scorer, "score", score)
    return calls


def interrupted(monkeypatch, candidates, digits, out, stop_after, shard=(0, 1)):
    """Score into `out` until killed after `stop_after` candidates; the partial file's lines."""
    record_scoring(monkeypatch, stop_after)
    with pytest.raises(Killed):
        score_candidates(candidates, settings(), digits, out, shard, progress=False)
    return out.with_name(out.name + ".partial").read_text().splitlines(keepends=True)


def test_a_partial_cut_inside_a_quoted_field_resumes_from_its_last_whole_line(
    tmp_path, monkeypatch, digits, candidates
):
    """Before: the cut line made the whole partial unreadable and every candidate was scored again."""
    ref = score_candidates(candidates, settings(), digits, tmp_path / "ref.csv", progress=False)
    out = tmp_path / "run.csv"
    lines = interrupted(monkeypatch, candidates, digits, out, stop_after=5)
    text = "".join(lines)
    out.with_name("run.csv.partial").write_text(text[: text.rindex('"[') + 4])  # killed inside fisher_blocks
    rescored = record_scoring(monkeypatch)
    run = score_candidates(candidates, settings(), digits, out, progress=False)
    assert rescored == [4, 5, 6, 7, 8]
    pd.testing.assert_frame_equal(without_seconds(ref), without_seconds(run))


def test_a_partial_with_doubled_rows_drops_copies_and_refuses_conflicts(tmp_path, monkeypatch, digits, candidates):
    ref = score_candidates(candidates, settings(), digits, tmp_path / "ref.csv", progress=False)
    out = tmp_path / "run.csv"
    partial = out.with_name("run.csv.partial")
    lines = interrupted(monkeypatch, candidates, digits, out, stop_after=4)
    row = lines[3]  # candidate 1
    copy = row[: row.rindex(",")] + ",9.99\n"  # the same scores, another timing: a harmless copy
    fisher = next(csv.reader([row]))[5]
    conflict = row.replace(f",{fisher},", f",{float(fisher) * 2!r},")
    partial.write_text("".join(lines) + conflict)
    with pytest.raises(
        BlockswapError,
        match=f"scores candidate 1 twice with different values; delete it to score this shard afresh: rm {partial}",
    ):
        score_candidates(candidates, settings(), digits, out, progress=False)
    partial.write_text("".join(lines) + copy)
    rescored = record_scoring(monkeypatch)
    run = score_candidates(candidates, settings(), digits, out, progress=False)
    assert rescored == [4, 5, 6, 7, 8]
    pd.testing.assert_frame_equal(without_seconds(ref), without_seconds(run))


def test_a_partial_with_rows_of_another_shard_names_the_fix(tmp_path, monkeypatch, digits, candidates):
    """Before: the foreign row counted as done, and every rerun said "scored 4 of 3; rerun to finish"."""
    ref = tmp_path / "ref.csv"
    score_candidates(candidates, settings(), digits, ref, progress=False)
    foreign = ref.read_text().splitlines(keepends=True)[-1]  # candidate 8, of shard 2/3
    out = tmp_path / "run.csv"
    partial = out.with_name("run.csv.partial")
    lines = interrupted(monkeypatch, candidates, digits, out, stop_after=2, shard=(0, 3))
    partial.write_text("".join(lines) + foreign)
    with pytest.raises(
        BlockswapError,
        match=rf"holds candidates that are not in this shard \(8\); delete it to "
        rf"score this shard afresh: rm {partial}",
    ):
        score_candidates(candidates, settings(), digits, out, (0, 3), progress=False)
    partial.unlink()  # the command the error names
    record_scoring(monkeypatch)
    done = score_candidates(candidates, settings(), digits, out, (0, 3), progress=False)
    assert list(done["candidate"]) == [0, 1, 2]


# --- permissions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_results_get_the_permissions_of_the_umask(tmp_path, umask, mode, digits, candidates):
    """Before: tables, metrics and models were 0600 (tempfile.mkstemp), figures 0644."""
    import matplotlib.pyplot as plt

    from blockswap.provenance import atomic_write_text
    from blockswap.reporting import figures

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "table.csv", "a\n1\n")
        write_json(tmp_path / "metrics.json", {"test_error": 1.0})
        save_model(build_model("wrn-10-1"), tmp_path / "model.pt", (SIZE, SIZE), "digits")
        atomic_save({"epoch": 1}, tmp_path / "checkpoint.pt")
        figures.save(plt.figure(), tmp_path / "figure.png")
        score_candidates(candidates.head(2), settings(), digits, tmp_path / "scores.csv", progress=False)
    finally:
        os.umask(old)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert {"table.csv", "metrics.json", "model.pt", "checkpoint.pt", "figure.pdf", "scores.csv"} <= set(made)
    assert {name: oct(stat.S_IMODE((tmp_path / name).stat().st_mode)) for name in made} == {
        name: oct(mode) for name in made
    }
