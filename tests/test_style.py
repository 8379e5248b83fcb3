"""Style gates: ruff lint and format, snakefmt for the workflow. Fast, so part of the quick lane."""

import shutil
import subprocess

import pytest
from helpers import ENV, ROOT


def tool(name):
    """The tool from this interpreter's environment first, so the pinned version is the one that judges."""
    found = shutil.which(name, path=ENV["PATH"])
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
    return found


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "--no-fix", "--output-format", "concise", "."],
        ["ruff", "format", "--check", "."],
        # every Snakefile and .smk under the root (.gitignore'd folders are skipped)
        ["snakefmt", "--check", "."],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_style_is_clean(command):
    proc = subprocess.run([tool(command[0]), *command[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, f"`{' '.join(command)}` failed:\n{proc.stdout}{proc.stderr}"
