"""Bad inputs: every command that reads a file answers a damaged, foreign or hostile
input, and every command answers a hostile argument or output path, with exit code 2 and one line
on stderr (`blockswap: error: ...`): never a traceback, never a partial output left behind.

Property-based (hypothesis): valid files made once by the CLI are damaged per example (cut at a
random byte, replaced by random bytes, emptied, given bytes that are not UTF-8, a 1 MB cell, a
number replaced by NaN / inf / a huge, negative or non-number value, their seal kept, dropped or
itself damaged) and fed to the command in-process (`blockswap.cli.main`); a few go through the real
console script to show what a terminal shows. Examples are derandomized, so CI is repeatable.

Where a damage can leave a valid file (a cut at a line end, a 1 MB name in a text column), the
command may succeed; then it must succeed cleanly (exit 0, nothing on stderr). Everywhere else it
must refuse. Training is never run: reaching it counts as accepting the inputs.

Run `BLOCKSWAP_SEARCH=500 pytest tests/test_bad_inputs.py` to search afresh (random examples,
500 per test) instead of replaying the fixed ones.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
import torch
from helpers import BIN, ROOT

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from blockswap import Genotype  # noqa: E402
from blockswap.cli import main  # noqa: E402
from blockswap.provenance import provenance_path, write_result_text  # noqa: E402
from blockswap.reporting.students import METRICS_KEYS, STUDENT_COLUMNS, STUDENT_KINDS  # noqa: E402
from blockswap.search.score_files import score_kind  # noqa: E402
from blockswap.training.train import Trainer  # noqa: E402

SIZE = 8  # digits at 8 px: the smallest images the WRN strides handle
ARCH = "wrn-10-2"
BUDGET = 60000
HUGE = 1_000_000  # characters of a huge cell
LONG_LINE = 2000  # an error line longer than this echoes the input instead of naming the problem
# Examples per damaged input of each command; BLOCKSWAP_SEARCH=N searches afresh (random, N each).
SEARCH_EXAMPLES = int(os.environ.get("BLOCKSWAP_SEARCH", "0"))
EXAMPLES = SEARCH_EXAMPLES or 40
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SEARCH_EXAMPLES,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
SEARCH = ["--arch", ARCH, "--dataset", "digits", "--image-size", str(SIZE)]


# The commands several tests below run, with the output path `out` (and `candidates`, the input).
def sample_argv(out):
    return ["sample", *SEARCH, "--budget", str(BUDGET), "--samples", "4", "--tolerance", "0.3", "--out", out]


def score_argv(candidates, out):
    quiet_cpu = ["--device", "cpu", "--quiet"]
    return ["score", candidates, *SEARCH, "--batch-size", "16", "--limit", "1", *quiet_cpu, "--out", out]


def train_argv(out, *extra, size=SIZE):
    data = ["--dataset", "digits", "--image-size", str(size)]
    return ["train", "--arch", ARCH, *data, *extra, "--epochs", "1", "--device", "cpu", "--quiet", "--out", out]


class ReachedTraining(Exception):
    """Raised instead of training: the command accepted its inputs (training would start now)."""


# --- valid inputs, made once by the CLI ----------------------------------------------------------


def run_ok(argv):
    assert main([str(a) for a in argv]) == 0, argv


def students_rows(genotype: str, params: int, macs: int, ops: int):
    """A students table with a row of every method the reports read (teacher, BlockSwap, a best-of-N
    student, a Moonshine network; random students are added with the returned `row`)."""
    rows = []

    def row(method, network, error, budget=None, fisher=None, candidate=None):
        rows.append(
            {
                "method": method,
                "network": network,
                "arch": ARCH,
                "genotype": genotype,
                "budget": budget,
                "seed": 0,
                "params": params,
                "macs": macs,
                "ops": ops,
                "test_error": error,
                "test_error_top5": error / 4,
                "fisher": fisher,
                "candidate": candidate,
                "dataset": "digits",
            }
        )

    row("teacher", "teacher", 5.0)
    row("blockswap", f"blockswap-{BUDGET}", 6.0, BUDGET, 0.5, 0)
    row("bestof", "bestof-3", 6.5, BUDGET, 0.4, 1)
    row("moonshine", "moonshine-g4", 7.0)
    return rows, row


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """Every input a reading command takes, valid and sealed as the CLI writes it."""
    d = tmp_path_factory.mktemp("valid")
    run_ok(["sample", *SEARCH, "--budget", BUDGET, "--samples", 4, "--tolerance", 0.3, "--out", d / "c.csv"])
    run_ok(["score", d / "c.csv", *SEARCH, "--batch-size", 16, "--device", "cpu", "--quiet", "--out", d / "s.csv"])
    run_ok(["pick", d / "c.csv", "--candidate", 0, "--out", d / "g.json"])
    genotype = json.loads((d / "g.json").read_text())
    (d / "g.yaml").write_text(Genotype.of(genotype["genotype"]).to_yaml())
    (d / "g.csv").write_text(Genotype.of(genotype["genotype"]).to_csv())
    run_ok(
        [
            "cost",
            "--arch",
            ARCH,
            "--genotype",
            d / "g.json",
            "--dataset",
            "digits",
            "--image-size",
            SIZE,
            "--out",
            d / "cost.json",
        ]
    )
    run_ok(
        [
            "train",
            "--arch",
            ARCH,
            "--genotype",
            d / "g.json",
            "--dataset",
            "digits",
            "--image-size",
            SIZE,
            "--epochs",
            1,
            "--batch-size",
            128,
            "--device",
            "cpu",
            "--quiet",
            "--out",
            d / "run",
        ]
    )
    rows, row = students_rows(" ".join(genotype["genotype"]), genotype["params"], genotype["macs"], genotype["ops"])
    for i, error in enumerate([6.0, 8.0]):  # two: no bootstrap (it needs three), so a report is quick
        row("random", f"random-{BUDGET}-{i}", error, BUDGET, None, i)
    scored = pd.read_csv(d / "s.csv").set_index("candidate")
    for r in rows:  # the random students are the scored candidates, as the workflow trains them
        if r["method"] == "random":
            r.update(genotype=scored.loc[r["candidate"], "genotype"], params=int(scored.loc[r["candidate"], "params"]))
    write_result_text(d / "students.csv", pd.DataFrame(rows, columns=STUDENT_COLUMNS).to_csv(index=False))
    (d / "train.yaml").write_text("epochs: 1\nbatch_size: 128\nlr: 0.05\nweight_decay: 0.0005\nseed: 3\n")
    shutil.copy(ROOT / "config" / "config.yaml", d / "plan.yaml")
    return d


# --- the commands, and the input of each that is damaged ------------------------------------------


def report_outputs(f):
    return ["--csv", f("out/t.csv"), "--md", f("out/t.md"), "--tex", f("out/t.tex")]


# Command -> (damaged input, its format, argv from a function giving each input's path). Outputs go
# to out/, which must be empty after a refusal.
COMMANDS = {
    "select scores": (
        "s.csv",
        "scores",
        lambda f: ["select", f("s.csv"), "--candidates", f("c.csv"), "--out", f("out/student.json")],
    ),
    "select candidates": (
        "c.csv",
        "candidates",
        lambda f: ["select", f("s.csv"), "--candidates", f("c.csv"), "--out", f("out/student.json")],
    ),
    "pick": ("c.csv", "candidates", lambda f: ["pick", f("c.csv"), "--candidate", "1", "--out", f("out/g.json")]),
    "score": ("c.csv", "candidates", lambda f: score_argv(f("c.csv"), f("out/s.csv"))),
    "report students": (
        "run/metrics.json",
        "metrics",
        lambda f: ["report", "students", f("run/metrics.json"), *report_outputs(f)],
    ),
    "report costs": ("cost.json", "cost", lambda f: ["report", "costs", f("cost.json"), *report_outputs(f)]),
    **{
        f"report {kind}": (
            "students.csv",
            "students",
            lambda f, kind=kind: ["report", kind, f("students.csv"), *report_outputs(f)],
        )
        for kind in ("table2", "table3", "samples")
    },
    "report correlation students": (
        "students.csv",
        "students",
        lambda f: [
            "report",
            "correlation",
            f("students.csv"),
            "--proxies",
            f"{BUDGET}={f('s.csv')}",
            *report_outputs(f),
        ],
    ),
    "report correlation proxies": (
        "s.csv",
        "scores",
        lambda f: [
            "report",
            "correlation",
            f("students.csv"),
            "--proxies",
            f"{BUDGET}={f('s.csv')}",
            *report_outputs(f),
        ],
    ),
    "figure pareto": (
        "students.csv",
        "students",
        lambda f: ["figure", "pareto", f("students.csv"), "--out", f("out/f.png")],
    ),
    **{
        f"cost genotype {suffix}": (
            f"g.{suffix}",
            f"genotype {suffix}",
            lambda f, s=suffix: [
                "cost",
                "--arch",
                ARCH,
                "--genotype",
                f(f"g.{s}"),
                "--dataset",
                "digits",
                "--out",
                f("out/cost.json"),
            ],
        )
        for suffix in ("json", "yaml", "csv")
    },
    "train genotype": ("g.json", "genotype json", lambda f: train_argv(f("out/run"), "--genotype", f("g.json"))),
    "train config": (
        "train.yaml",
        "train config",
        lambda f: [
            "train",
            "--arch",
            ARCH,
            "--config",
            f("train.yaml"),
            "--dataset",
            "digits",
            "--image-size",
            str(SIZE),
            "--device",
            "cpu",
            "--quiet",
            "--out",
            f("out/run"),
        ],
    ),
    "evaluate": (
        "run/model.pt",
        "model",
        lambda f: ["evaluate", f("run/model.pt"), "--device", "cpu", "--out", f("out/e.json")],
    ),
    "evaluate record": (
        "run/model.pt",
        "model record",
        lambda f: ["evaluate", f("run/model.pt"), "--device", "cpu", "--out", f("out/e.json")],
    ),
    "plan": ("plan.yaml", "plan config", lambda f: ["plan", f("plan.yaml")]),
    "reseal": ("s.csv.provenance.json", "sidecar", lambda f: ["reseal", f("s.csv")]),
}
SEALED = {"scores", "candidates", "metrics", "cost", "students", "genotype json", "model", "model record"}  # sealed
YAML = {"train config", "plan config", "genotype yaml"}

# Values that no numeric cell may hold: not numbers, not finite, or beyond a float.
BAD_CELLS = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1e400",
    "abc",
    "0x10",
    "1_000",
    "1,5",
    "12abc",
    "--3",
    "\x00",
]
# Values some numeric cells may hold and others may not (negative, fractional, huge).
ODD_CELLS = ["-1", "1.5", "-0.0", "1e30", "99999999999999999999999", "18446744073709551616", " 7", "+3"]
# JSON values that no numeric key may hold, and ones some may.
BAD_JSON = ["NaN", "Infinity", "-Infinity", "1e400", "-1", "-0.5", '"12"', "null", "true", "[]", "{}", '"nan"']
ODD_JSON = ["1.5", "1e30", "99999999999999999999999", "0"]
# YAML values in place of a number.
BAD_YAML = [
    ".nan",
    ".inf",
    "-.inf",
    "1e400",
    "-1",
    "0",
    "abc",
    "99999999999999999999999",
    "18446744073709551616",
    "null",
    "[]",
    "{}",
    "1.5",
    "true",
    "'3'",
    "2020-01-01",
]
NOT_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]
# The keys of each JSON input whose value is checked, and whether a non-number there is surely wrong.
JSON_KEYS = {
    "metrics": {k: kind in ("int", "error") for k, kind in METRICS_KEYS.items()},
    "cost": {"params": True, "macs": True, "ops": True, "genotype": True, "arch": False},
    "genotype json": {"genotype": True},
}


def csv_kind(fmt: str, column: str):
    return STUDENT_KINDS.get(column) if fmt == "students" else score_kind(column)


# --- damage ---------------------------------------------------------------------------------------


def cut(draw, data: bytes, fmt: str):
    n = draw(st.integers(0, len(data) - 1))
    if fmt in ("scores", "candidates", "students"):
        surely = n == 0 or data[n - 1 : n] != b"\n"  # a cut at a line end leaves a valid, shorter file
    elif fmt in YAML or fmt == "genotype csv":
        surely = n == 0 and fmt == "genotype csv"  # YAML survives most cuts; an empty configuration is {}
    elif fmt == "sidecar":
        surely = n < len(data.rstrip())
    elif fmt == "model":
        surely = True
    else:  # JSON
        surely = n < len(data.rstrip())
    return f"cut at byte {n}", data[:n], surely


def replace_csv_cell(draw, data: bytes, fmt: str, values, surely_bad: bool):
    rows = list(csv.reader(io.StringIO(data.decode())))
    header, body = rows[0], rows[1:]
    checked = [i for i, c in enumerate(header) if csv_kind(fmt, c) is not None]
    numeric = [i for i in checked if csv_kind(fmt, header[i]).rstrip("?") in ("int", "number", "error")]
    r = draw(st.integers(0, len(body) - 1))
    if values == "huge":
        c = draw(st.sampled_from(checked))
        value, surely = "x" * HUGE, c in numeric
    else:
        c = draw(st.sampled_from(numeric))
        value, surely = draw(st.sampled_from(values)), surely_bad
    body[r][c] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    return f"line {r + 2} {header[c]} = {value[:20]!r}", out.getvalue().encode(), surely


def replace_json_value(draw, data: bytes, fmt: str, values, surely_bad: bool):
    record = json.loads(data)
    keys = JSON_KEYS[fmt]
    key = draw(st.sampled_from(sorted(keys)))
    if values == "huge":
        token, surely = json.dumps("x" * HUGE), keys[key]
        if key == "genotype" and draw(st.booleans()):
            # A 1 MB block name: a list of names still, which a report may take as it is.
            token, surely = json.dumps(record[key][:-1] + ["x" * HUGE]), fmt == "genotype json"
    else:
        token, surely = draw(st.sampled_from(values)), surely_bad and keys[key]
    placeholder = "\x00damaged\x00"
    text = json.dumps({**record, key: placeholder}, indent=2).replace(json.dumps(placeholder), token)
    return f"{key} = {token[:20]}", text.encode(), surely


def replace_yaml_value(draw, data: bytes, fmt: str, values):
    lines = data.decode().splitlines(keepends=True)
    # Lines "key: value" and list items "- value" (not comments, not block starts): the value is replaced.
    candidates = [
        i
        for i, line in enumerate(lines)
        if not line.lstrip().startswith("#")
        and (line.lstrip().startswith("- ") or ":" in line and line.split(":", 1)[1].split("#")[0].strip())
    ]
    i = draw(st.sampled_from(candidates))
    key = lines[i].split("- ", 1)[0] + "-" if lines[i].lstrip().startswith("- ") else lines[i].split(":", 1)[0] + ":"
    value = "x" * HUGE if values == "huge" else draw(st.sampled_from(values))
    lines[i] = f"{key} {value}\n"
    return f"line {i + 1} {key.strip()} {value[:20]}", "".join(lines).encode(), False


def replace_model_field(draw, data: bytes):
    record = torch.load(io.BytesIO(data), weights_only=True)
    key = draw(
        st.sampled_from(["format", "arch", "genotype", "num_classes", "input_size", "dataset", "state_dict", "masks"])
    )
    value = draw(st.sampled_from([-1, 0, 1.5, "abc", None, [], {}, float("nan"), 2**70, ["Z"], [-1, -1], ["a", "b"]]))
    record[key] = value
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return f"{key} = {value!r}", buffer.getvalue(), key in ("format", "arch", "genotype", "num_classes", "dataset")


@st.composite
def damaged(draw, data: bytes, fmt: str):
    """(what was done, the damaged bytes, whether the result is surely not a valid input)."""
    kinds = ["cut", "binary", "empty", "not utf-8"] if fmt != "model record" else ["field"]
    if fmt in JSON_KEYS or fmt in YAML or fmt == "sidecar":
        kinds += ["nested"]
    if fmt in ("scores", "candidates", "students"):
        kinds += ["huge", "bad number", "odd number"]
    elif fmt in JSON_KEYS:
        kinds += ["huge", "bad number", "odd number"]
    elif fmt in YAML:
        kinds += ["huge", "yaml number"]
    kind = draw(st.sampled_from(kinds))
    hypothesis.event(f"damage: {kind}")
    if kind == "cut":
        return cut(draw, data, fmt)
    if kind == "binary":
        junk = draw(st.binary(min_size=1, max_size=256))
        # Random bytes are no valid file of ours, except as YAML or a sidecar (b"{}" is an empty one).
        return f"binary {junk[:20]!r}", junk, fmt not in YAML and fmt != "sidecar"
    if kind == "empty":
        return "empty", b"", fmt not in YAML  # an empty configuration is {}: all defaults
    if kind == "not utf-8":
        at = draw(st.integers(0, len(data)))
        bad = draw(st.sampled_from(NOT_UTF8))
        # A model file is not text; bytes added after its zip directory may go unnoticed.
        return f"{bad!r} at byte {at}", data[:at] + bad + data[at:], fmt != "model"
    if kind == "nested":
        depth = draw(st.sampled_from([1000, 100_000]))
        return f"nested {depth} deep", b"[" * depth + b"]" * depth, fmt != "train config"
    if kind == "field":
        return replace_model_field(draw, data)
    if fmt in ("scores", "candidates", "students"):
        values = {"huge": "huge", "bad number": BAD_CELLS, "odd number": ODD_CELLS}[kind]
        return replace_csv_cell(draw, data, fmt, values, kind == "bad number")
    if fmt in JSON_KEYS:
        values = {"huge": "huge", "bad number": BAD_JSON, "odd number": ODD_JSON}[kind]
        return replace_json_value(draw, data, fmt, values, kind == "bad number")
    return replace_yaml_value(draw, data, fmt, "huge" if kind == "huge" else BAD_YAML)


# --- running a command and checking what it left ---------------------------------------------------


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (out/ aside) and its bytes: what a refused command must not touch."""
    return {
        p.relative_to(folder): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
        if p.relative_to(folder).parts[0] != "out"
    }


def leftovers(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run(argv, stub_training=True):
    """`blockswap ARGV` in-process: (exit code, stdout, stderr, warnings issued). Training is not run:
    reaching it returns the code "trained" (the inputs were accepted)."""
    out, err = io.StringIO(), io.StringIO()
    stub = mock.patch.object(Trainer, "run", side_effect=ReachedTraining) if stub_training else contextlib.nullcontext()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(record=True) as w,
        stub,
    ):
        # The filters of a terminal (Python's defaults): a warning shown there is a second line.
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        try:
            code = main([str(a) for a in argv])
        except ReachedTraining:
            code = "trained"
    return code, out.getvalue(), err.getvalue(), [str(x.message) for x in w]


def assert_one_line(code, err, what=""):
    assert code == 2, f"{what}: exit {code}, stderr {err[:300]!r}"
    assert err.startswith("blockswap: error: ") and err.endswith("\n") and err.count("\n") == 1, (
        f"{what}: {err[:500]!r}"
    )
    assert "Traceback" not in err
    assert len(err) < LONG_LINE, f"{what}: a {len(err)}-character error line echoes the input: {err[:200]!r}..."


def assert_refused(code, err, ws: Path, before: dict, what: str, issued=()):
    assert_one_line(code, err, what)
    assert not issued, f"{what}: warnings printed beside the error: {issued}"
    assert leftovers(ws / "out") == [], f"{what}: left behind {leftovers(ws / 'out')}"
    assert snapshot(ws) == before, f"{what}: changed an input"


@contextlib.contextmanager
def workspace(valid: Path):
    """A private copy of the valid inputs with an empty out/ folder."""
    with tempfile.TemporaryDirectory(prefix="bad-") as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(valid, ws)
        (ws / "out").mkdir()
        yield ws


def test_the_valid_inputs_are_accepted(valid):
    """Every command takes the undamaged inputs: the refusals below come from the damage."""
    for name, (_, _, argv) in COMMANDS.items():
        with workspace(valid) as ws:
            code, _, err, _ = run(argv(lambda p: str(ws / p)))
            assert code in (0, "trained"), f"{name}: {err}"


SIDECAR_DAMAGE = ["kept", "dropped", "cut", "empty", "not utf-8", "not an object", "a folder"]


DAMAGED = sorted(COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("command", DAMAGED)
@SETTINGS
@given(data=st.data())
def test_a_damaged_input_is_one_line(valid, command, data):
    target, fmt, argv = COMMANDS[command]
    with workspace(valid) as ws:
        path = ws / target
        original = path.read_bytes()
        what, damage, surely = data.draw(damaged(original, fmt), label="damage")
        unchanged = damage == original  # e.g. a cell replaced by the value it held
        surely = surely and not unchanged
        path.write_bytes(damage)
        sidecar = provenance_path(path)
        if fmt in SEALED:
            # Half the examples without a seal: the file's own damage must be found by the reader.
            seal = data.draw(st.one_of(st.just("dropped"), st.sampled_from(SIDECAR_DAMAGE)), label="seal")
            what += f", seal {seal}"
            if seal == "dropped":
                sidecar.unlink()
            elif seal == "a folder":
                sidecar.unlink()
                sidecar.mkdir()
            elif seal != "kept":
                text = sidecar.read_bytes()
                sidecar.write_bytes(
                    {
                        "cut": text[: len(text) // 2],
                        "empty": b"",
                        "not utf-8": b"\xff" + text,
                        "not an object": b"[1, 2]\n",
                    }[seal]
                )
            # A seal kept no longer matches a changed file; a damaged seal is refused.
            surely = surely or seal not in ("dropped", "kept") or (seal == "kept" and not unchanged)
        before = snapshot(ws)
        code, _, err, issued = run(argv(lambda p: str(ws / p)))
        hypothesis.event(f"{'refused' if code == 2 else 'accepted'}{'' if surely else ' (may be valid)'}")
        if code in (0, "trained") and not surely:
            assert err == "", f"{what}: accepted, but said {err[:300]!r}"
            return
        assert_refused(code, err, ws, before, what, issued)


# --- arguments and output paths --------------------------------------------------------------------

SEEDS = st.one_of(
    st.sampled_from([-1, 2**32, 2**63, 2**64, 2**64 + 1]),
    st.integers(max_value=-1),
    st.integers(min_value=2**32, max_value=2**80),
)
SEEDED = {
    "sample": lambda f: sample_argv(f("out/c.csv")),
    "score": lambda f: score_argv(f("c.csv"), f("out/s.csv")),
    "train": lambda f: train_argv(f("out/run")),
}


@pytest.mark.parametrize("command", sorted(SEEDED))
@settings(SETTINGS, max_examples=SEARCH_EXAMPLES or 6)
@given(seed=SEEDS)
def test_a_seed_outside_0_to_2_32_is_one_line(valid, command, seed):
    """Seeds are 0 to 2^32-1 (blockswap.seeds.MAX_SEED), as in a workflow configuration: beyond, a
    run would fail in torch after its data had loaded, or seed numpy differently from torch."""
    with workspace(valid) as ws:
        before = snapshot(ws)
        code, _, err, issued = run([*SEEDED[command](lambda p: str(ws / p)), "--seed", str(seed)])
        assert_refused(code, err, ws, before, f"{command} --seed {seed}", issued)
        assert "0 to 4294967295" in err or "2^32" in err, err


# Numbers a command takes as arguments, with values out of their range.
NUMBER_ARGUMENTS = {
    "pick --candidate": lambda f, v: ["pick", f("c.csv"), "--candidate", v, "--out", f("out/g.json")],
    "select --first": lambda f, v: [
        "select",
        f("s.csv"),
        "--candidates",
        f("c.csv"),
        "--first",
        v,
        "--out",
        f("out/student.json"),
    ],
    "score --limit": lambda f, v: [
        "score",
        f("c.csv"),
        *SEARCH,
        "--limit",
        v,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        f("out/s.csv"),
    ],
    "score --batch-size": lambda f, v: [
        "score",
        f("c.csv"),
        *SEARCH,
        "--limit",
        "1",
        "--batch-size",
        v,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        f("out/s.csv"),
    ],
    "sample --budget": lambda f, v: ["sample", *SEARCH, "--budget", v, "--samples", "4", "--out", f("out/c.csv")],
    "sample --tolerance": lambda f, v: [
        "sample",
        *SEARCH,
        "--budget",
        str(BUDGET),
        "--samples",
        "4",
        "--tolerance",
        v,
        "--out",
        f("out/c.csv"),
    ],
    "sample --samples": lambda f, v: [
        "sample",
        *SEARCH,
        "--budget",
        str(BUDGET),
        "--samples",
        v,
        "--tolerance",
        "0.3",
        "--out",
        f("out/c.csv"),
    ],
    "cost --image-size": lambda f, v: ["cost", "--arch", ARCH, "--image-size", v, "--out", f("out/cost.json")],
    "train --epochs": lambda f, v: [
        "train",
        "--arch",
        ARCH,
        "--dataset",
        "digits",
        "--image-size",
        str(SIZE),
        "--epochs",
        v,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        f("out/run"),
    ],
    "train --lr": lambda f, v: [
        "train",
        "--arch",
        ARCH,
        "--dataset",
        "digits",
        "--image-size",
        str(SIZE),
        "--lr",
        v,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        f("out/run"),
    ],
}
BAD_NUMBERS = [
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "-1e400",
    "abc",
    "-99999999999999999999999",
    "1.5",
    "",
    "1e",
    "0x10",
]
# Large but meaningful (a limit above the candidates' count, a long run, a large image): may be taken.
HUGE_NUMBERS = ["99999999999999999999999", "18446744073709551616", "1e30"]
VALID_HERE = {("pick --candidate", "0"), ("train --lr", "1.5")}  # bad elsewhere, fine for these


@pytest.mark.slow
@pytest.mark.parametrize("argument", sorted(NUMBER_ARGUMENTS))
@settings(SETTINGS, max_examples=SEARCH_EXAMPLES or 20)  # every value
@given(value=st.sampled_from(BAD_NUMBERS + HUGE_NUMBERS))
def test_a_number_argument_out_of_range_is_one_line(valid, argument, value):
    with workspace(valid) as ws:
        before = snapshot(ws)
        code, _, err, issued = run(NUMBER_ARGUMENTS[argument](lambda p: str(ws / p), value))
        if (value in HUGE_NUMBERS or (argument, value) in VALID_HERE) and code in (0, "trained"):
            assert err == ""
            return
        assert_refused(code, err, ws, before, f"{argument} {value!r}", issued)


# Every command that writes: argv with the output path `out` (inputs from `f`).
WRITERS = {
    "sample": lambda f, out: sample_argv(out),
    "score": lambda f, out: score_argv(f("c.csv"), out),
    "pick": lambda f, out: ["pick", f("c.csv"), "--candidate", "1", "--out", out],
    "select": lambda f, out: ["select", f("s.csv"), "--candidates", f("c.csv"), "--out", out],
    "cost": lambda f, out: ["cost", "--arch", ARCH, "--out", out],
    "data": lambda f, out: ["data", "--dataset", "digits", "--image-size", str(SIZE), "--out", out],
    "report": lambda f, out: ["report", "table2", f("students.csv"), "--csv", out],
    "report md": lambda f, out: ["report", "students", f("run/metrics.json"), "--csv", f("out/t.csv"), "--md", out],
    "figure": lambda f, out: ["figure", "pareto", f("students.csv"), "--out", out],
    "evaluate": lambda f, out: ["evaluate", f("run/model.pt"), "--device", "cpu", "--out", out],
}


@contextlib.contextmanager
def full_disk():
    """Every file written through a temporary file (results, seals, models) lands on /dev/full,
    which refuses every write with ENOSPC as a full disk does."""
    from blockswap import provenance

    create = provenance._create_temporary

    def on_a_full_disk(path):
        tmp, fd = create(path)
        tmp.unlink()
        tmp.symlink_to("/dev/full")
        return tmp, fd

    with mock.patch.object(provenance, "_create_temporary", on_a_full_disk):
        yield


def hostile_out(draw, ws: Path) -> tuple[str, str]:
    """(what, an output path that cannot be written)."""
    kind = draw(st.sampled_from(["parent is a file", "name too long", "a folder", "read-only folder", "a full disk"]))
    hypothesis.event(kind)
    if kind == "a full disk":
        return kind, str(ws / "out" / "x.out")
    if kind == "parent is a file":
        return kind, str(ws / "c.csv" / "sub" / "x.out")
    if kind == "name too long":
        # From names too long themselves to names that fit but whose temporary file or seal does not.
        n = draw(st.integers(230, 300))
        return f"a name of {n} characters", str(ws / "out" / ("n" * n))
    if kind == "a folder":  # named as a figure's output is (the PNG's name)
        (ws / "out" / "taken.png").mkdir()
        return kind, str(ws / "out" / "taken.png")
    locked = ws / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root (CAP_DAC_OVERRIDE) writes anywhere: the folder is no obstacle
        locked.chmod(0o755)
        hypothesis.event("read-only folder: skipped, writable anyway (root)")
        hypothesis.assume(False)
    return kind, str(locked / "x.out")


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(WRITERS))
@settings(SETTINGS, max_examples=SEARCH_EXAMPLES or 10)
@given(data=st.data())
def test_an_output_that_cannot_be_written_is_one_line(valid, command, data):
    with workspace(valid) as ws:
        what, out = hostile_out(data.draw, ws)
        before = snapshot(ws)
        with full_disk() if what == "a full disk" else contextlib.nullcontext():
            code, _, err, issued = run(WRITERS[command](lambda p: str(ws / p), out))
        try:
            if what == "a full disk":
                assert "No space left on device" in err, err
            made = [p for p in leftovers(ws / "out") if p != "taken.png"]
            if what == "a full disk" and command == "score":
                # The scored rows stay in the shard's partial file, for the rerun once there is room.
                made.remove("x.out.partial")
            assert_one_line(code, err, f"{command}: {what}")
            assert not issued, issued
            assert made == [], f"{command}: {what}: left behind {made}"
            assert snapshot(ws) == before
        finally:
            if (ws / "locked").exists():
                (ws / "locked").chmod(0o755)


@pytest.mark.parametrize("what", ["parent is a file", "name too long"])
def test_train_into_a_folder_that_cannot_be_made_is_one_line(valid, tmp_path, what):
    """The run folder is made when training starts (not stubbed here): before the first epoch."""
    out = valid / "c.csv" / "run" if what == "parent is a file" else tmp_path / ("r" * 300)
    code, _, err, _ = run(
        [
            "train",
            "--arch",
            ARCH,
            "--dataset",
            "digits",
            "--image-size",
            SIZE,
            "--epochs",
            1,
            "--batch-size",
            512,
            "--device",
            "cpu",
            "--quiet",
            "--out",
            out,
        ],
        stub_training=False,
    )
    assert_one_line(code, err, what)
    assert "epoch" not in err


@pytest.mark.parametrize("command", ["select", "report", "reseal", "evaluate", "plan", "cost"])
def test_an_input_path_that_is_no_file_is_one_line(valid, command):
    """A folder, a path through a file and a name too long for the file system, as input."""
    for hostile in ("folder", "c.csv/x.json", "z" * 300 + ".json"):
        with workspace(valid) as ws:
            if hostile == "folder":
                (ws / "folder").mkdir()
            path = str(ws / hostile)
            argv = {
                "select": ["select", path, "--candidates", str(ws / "c.csv"), "--out", str(ws / "out/x.json")],
                "report": ["report", "students", path, "--csv", str(ws / "out/t.csv")],
                "reseal": ["reseal", path],
                "evaluate": ["evaluate", path, "--device", "cpu"],
                "plan": ["plan", path],
                "cost": ["cost", "--arch", ARCH, "--genotype", path],
            }[command]
            before = snapshot(ws)
            code, _, err, issued = run(argv)
            assert_refused(code, err, ws, before, f"{command} {hostile[:20]}", issued)


# --- minibatches batch norm cannot train on ---------------------------------------------------------

DIGITS_TRAIN = 1077  # training images of digits
# Batch sizes around them: 1076's divisors leave a last batch of one.
BATCH_SIZES = [1, 2, 4, 128, 269, 538, 1076, 1077, 2000]


@functools.cache
def digits_train_size() -> int:
    from blockswap.data.loaders import load_dataset

    return len(load_dataset("digits", image_size=SIZE).train)


def batch_train_argv(f, size, batch, drop_last):
    return train_argv(f("out/run"), "--batch-size", str(batch), *drop_last * ["--drop-last"], size=size)


PROXY_BATCH = {
    "score": lambda f, size, batch: [
        "score",
        f("c.csv"),
        "--arch",
        ARCH,
        "--dataset",
        "digits",
        "--image-size",
        str(size),
        "--batch-size",
        str(batch),
        "--limit",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        f("out/s.csv"),
    ],
    "search": lambda f, size, batch: [
        "search",
        "--method",
        "random",
        "--arch",
        ARCH,
        "--budget",
        str(BUDGET),
        "--tolerance",
        "0.3",
        "--samples",
        "1",
        "--dataset",
        "digits",
        "--image-size",
        str(size),
        "--batch-size",
        str(batch),
        "--device",
        "cpu",
        "--out",
        f("out/h.csv"),
    ],
}


def last_stage_is_1x1(size: int) -> bool:
    """WRN's stages run at the image size, then halve twice (3x3 convs with padding 1)."""
    return -(-size // 4) == 1


@pytest.mark.slow
@settings(SETTINGS, max_examples=SEARCH_EXAMPLES or 30)
@given(size=st.integers(1, 8), batch=st.sampled_from(BATCH_SIZES), drop_last=st.booleans())
def test_a_training_minibatch_of_one_image_at_1x1_is_one_line(valid, size, batch, drop_last):
    """Batch norm cannot train on one value per channel: a batch of one image (every batch, or the
    last of an epoch) where the last stage is 1x1 would stop training mid-epoch with torch's error."""
    assert digits_train_size() == DIGITS_TRAIN
    rest = DIGITS_TRAIN % batch
    last = DIGITS_TRAIN if DIGITS_TRAIN <= batch else rest if rest and not drop_last else batch
    refused = last_stage_is_1x1(size) and last == 1
    hypothesis.event("refused" if refused else "accepted")
    with workspace(valid) as ws:
        before = snapshot(ws)
        code, _, err, issued = run(batch_train_argv(lambda p: str(ws / p), size, batch, drop_last))
        if not refused:
            assert code == "trained" and err == "", err
            return
        assert_refused(code, err, ws, before, f"--image-size {size} --batch-size {batch}", issued)
        assert "batch norm cannot train on one value per channel" in err, err


@pytest.mark.parametrize("command", sorted(PROXY_BATCH))
@settings(SETTINGS, max_examples=SEARCH_EXAMPLES or 8)
@given(size=st.integers(1, 8), batch=st.sampled_from([1, 2]))
def test_a_proxy_minibatch_of_one_image_at_1x1_is_one_line(valid, command, size, batch):
    """The proxies are measured with batch norm in training mode: a one-image minibatch at 1x1 would
    be torch's error in the middle of the first candidate."""
    refused = last_stage_is_1x1(size) and batch == 1
    hypothesis.event("refused" if refused else "accepted")
    with workspace(valid) as ws:
        before = snapshot(ws)
        code, _, err, issued = run(PROXY_BATCH[command](lambda p: str(ws / p), size, batch))
        if not refused:
            assert code == 0 and err == "", err
            return
        assert_refused(code, err, ws, before, f"{command} --image-size {size} --batch-size {batch}", issued)
        assert "batch norm cannot train on one value per channel" in err, err


# --- through the console script: what a terminal shows ---------------------------------------------


def console(*argv, cwd):
    script = BIN / "blockswap"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "blockswap.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command + [str(a) for a in argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.mark.slow
def test_the_console_script_prints_one_line_and_no_traceback(valid):
    with workspace(valid) as ws:
        (ws / "s.csv").write_bytes((ws / "s.csv").read_bytes()[:-7])
        provenance_path(ws / "s.csv").unlink()
        (ws / "plan.yaml").write_bytes(b"run: \xff\xfe\n")
        (ws / "run" / "model.pt").write_bytes(os.urandom(64))
        before = snapshot(ws)
        cases = [
            ["select", "s.csv", "--candidates", "c.csv", "--out", "out/student.json"],
            ["plan", "plan.yaml"],
            ["evaluate", "run/model.pt", "--device", "cpu", "--out", "out/e.json"],
            ["pick", "c.csv", "--candidate", "1", "--out", "c.csv/g.json"],
            ["sample", *SEARCH, "--budget", str(BUDGET), "--seed", str(2**64), "--out", "out/c.csv"],
        ]
        for argv in cases:
            result = console(*argv, cwd=ws)
            assert_one_line(result.returncode, result.stderr, " ".join(argv)[:80])
            assert leftovers(ws / "out") == [], argv
        assert snapshot(ws) == before
