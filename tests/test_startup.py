"""Start-up without torch: importing torch is about a second of every process, and the workflow starts
hundreds. Snakemake's own start (the rules' imports), `import blockswap`, and the commands that cost,
sample, pick, select, tabulate and draw (every workflow job but training and scoring) run in a
process where torch cannot be imported at all."""

import json
import re
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

pytestmark = pytest.mark.slow  # each test starts Python processes

# Commands whose whole run needs no torch (the workflow's cost, sample, pick, select, best, report,
# figure and reseal jobs, and `blockswap plan`).
TORCH_FREE_COMMANDS = ("blocks", "cost", "sample", "pick", "select", "best", "report", "figure", "reseal", "plan")

# Run in a child: torch (and anything under it) raises ImportError naming who imported it.
NO_TORCH = """
import importlib.abc, importlib.machinery, sys, traceback
class Refused(importlib.abc.Loader):
    def __init__(self, chain):
        self.chain = chain
    def create_module(self, spec):
        raise ImportError("torch imported via " + self.chain)
    def exec_module(self, module):
        pass
class NoTorch(importlib.abc.MetaPathFinder):
    # torch is found (importlib.util.find_spec still sees where it is installed) but never loaded.
    def find_spec(self, name, path=None, target=None):
        if name != "torch" and not name.startswith("torch."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        chain = [f.filename.split("/src/")[-1] + f":{f.lineno}" for f in traceback.extract_stack()
                 if "/blockswap/" in f.filename]
        spec.loader = Refused(" <- ".join(reversed(chain)))
        return spec
sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH + code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def workflow_imports() -> list[str]:
    """The package import statements of the Snakefile and its rules, as written there."""
    sources = [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
    pattern = re.compile(r"^(?:from blockswap[\w.]* import (?:\([^)]*\)|[^\n]*)|import blockswap[\w.]*)", re.M)
    return sorted({statement for path in sources for statement in pattern.findall(path.read_text())})


def test_the_blocker_catches_torch():
    """The check below can fail: a module that imports torch is refused, and the message names the chain."""
    result = run_without_torch("import blockswap.networks.models")
    assert result.returncode != 0 and "torch imported via blockswap/networks/models.py" in result.stderr


def test_the_workflow_starts_without_torch():
    statements = workflow_imports()
    assert any("commands" in s for s in statements) and len(statements) >= 5  # the rules' imports were found
    result = run_without_torch("import sys\nfor statement in sys.argv[1:]: exec(statement)", *statements)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_package_root_and_the_light_commands_import_without_torch():
    code = (
        "import importlib, sys\n"
        "import blockswap\n"
        "from blockswap.cli import COMMAND_MODULES\n"
        "for c in sys.argv[1:]: importlib.import_module('blockswap.cli.' + COMMAND_MODULES[c])\n"
        "import blockswap.reporting.figures\n"  # `figure` imports it when it draws
        "print(blockswap.__version__)"
    )
    result = run_without_torch(code, *TORCH_FREE_COMMANDS)
    assert result.returncode == 0, result.stderr[-2000:]


def test_costing_and_planning_run_without_torch(tmp_path):
    code = "import sys; from blockswap.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "c.json"
    cost = run_without_torch(code, "cost", "--arch", "wrn-16-2", "--genotype", "G(4)", "--out", str(out))
    assert cost.returncode == 0, cost.stderr[-2000:]
    record = json.loads(out.read_text())
    # Provenance names the torch that would run, build tag included, without importing it.
    assert record["provenance"]["torch"] == torch.__version__
    assert record["provenance"]["device"].startswith("cpu:")
    plan = run_without_torch(code, "plan", "config/config.yaml")
    assert plan.returncode == 0 and "GPU-hours" in plan.stdout, plan.stderr[-2000:]


def test_a_training_command_still_loads_what_it_needs():
    """Only the chosen command's module is imported: `train --help` loads the training stack."""
    code = (
        "import sys\nfrom blockswap.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "True"
