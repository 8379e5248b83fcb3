"""The repository's own copy of the paper: every `docs/paper.md s.N` the code cites exists."""

import re

from helpers import ROOT

CITED = re.compile(r"docs/paper\.md s\.(\d+)")


def test_every_cited_section_of_docs_paper_exists():
    sections = set(re.findall(r"^## s\.(\d+)\b", (ROOT / "docs" / "paper.md").read_text(), flags=re.M))
    files = [
        *ROOT.glob("src/**/*.py"),
        *ROOT.glob("rules/*.smk"),
        *ROOT.glob("config/*.yaml"),
        ROOT / "README.md",
        ROOT / "Snakefile",
        *ROOT.glob("tests/*.py"),
        *ROOT.glob("bench/*.py"),
    ]
    cited = {(path.relative_to(ROOT).as_posix(), n) for path in files for n in CITED.findall(path.read_text())}
    assert len(cited) > 20  # the code points at the paper throughout
    missing = sorted((path, n) for path, n in cited if n not in sections)
    assert not missing, f"cited sections missing from docs/paper.md: {missing}"
    outside = [p for p in files if "PAPER" + ".md" in p.read_text()]  # (spelled so this file is not a hit)
    assert not outside, f"cite docs/paper.md, which is in the repository: {outside}"
