"""The tree says what each thing is and why, not its development history: no tracker numbers and no
phrases that tell where code came from or what it did before (those belong in commit messages)."""

import re

import pytest
from helpers import ROOT

SCANNED = ["src", "tests", "rules", "config", "docs", "scripts", "bench", "report", "profiles"]
FILES = ["README.md", "Snakefile", "pyproject.toml", "environment.yml"]
SUFFIXES = {".py", ".md", ".smk", ".yaml", ".yml", ".sh", ".rst", ".toml", ".txt"}
SKIPPED = {"tests/data"}  # verbatim third-party files

# Each pattern is spelled so that its own source text does not match it (a bracketed letter).
HISTORY = {
    "a tracker number": re.compile(r"\biss[u]es? ?#?\d+\b", re.I),
    "a #number in prose": re.compile(r"(?:^|[\s(\[,;])[#]\d+\b"),
    "where code moved": re.compile(r"\bmov[e]d (?:to|from|here)\b", re.I),
    # After "is", "are", "(" it says what a thing does (passive); after a bare subject, what it did.
    "what code did before": re.compile(r"\b(?!(?:is|are|be|been|being|was|were|get|gets|got)\b)\w+ us[e]d to\b", re.I),
    "a shim for old code": re.compile(r"\bfor old[e]r callers\b", re.I),
    "what was before": re.compile(r"\bpre[v]iously\b", re.I),
}


def scanned_files():
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and path.suffix in SUFFIXES and not any(rel.startswith(s + "/") for s in SKIPPED):
                yield path
    yield from (ROOT / name for name in FILES if (ROOT / name).is_file())


def history_lines(text: str) -> list[tuple[int, str, str]]:
    return [
        (number, what, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        for what, pattern in HISTORY.items()
        if pattern.search(line)
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Iss" + "ue 13 on the GPU",
        "see #" + "12 for why",
        "Mov" + "ed to splits.py",
        "snakefmt us" + "ed to take this from black",
        "importable here for old" + "er callers",
        "pre" + "viously the loader",
    ],
)
def test_history_is_found(line):
    assert history_lines(line)


@pytest.mark.parametrize(
    "line",
    [
        "the table (us" + "ed to cross-check rows)",
        "a minibatch is us" + "ed to score",
        'color="#' + '333333"',
        "removed here (stale temporaries)",
        "warnings issued: none",
    ],
)
def test_genuine_uses_are_not_history(line):
    assert not history_lines(line)


def test_the_tree_tells_no_history():
    found = [
        f"{path.relative_to(ROOT).as_posix()}:{number}: {what}: {line}"
        for path in scanned_files()
        for number, what, line in history_lines(path.read_text(errors="replace"))
    ]
    assert not found, "development history in the tree (say what a thing is and why):\n" + "\n".join(found)
