"""Paths and commands shared by the test modules.

Kept out of conftest.py: conftest is pytest's plugin file, and importing it as a module
by name works only by accident of sys.path.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from blockswap.planning.plan import RELEASED_GENOTYPES

ROOT = Path(__file__).resolve().parents[1]
RELEASED = ROOT / "tests" / "data" / "released"
GENOTYPES = RELEASED_GENOTYPES
MINIATURE = ROOT / "tests" / "miniature"  # scale-down overlays of the shipped configurations
# The tiny run the workflow tests read: the default configuration under its miniature overlay.
TINY = (ROOT / "config" / "config.yaml", MINIATURE / "config.yaml")

# This interpreter's environment: its console scripts (snakemake, blockswap, ruff) come first on PATH,
# so a Snakemake job's `blockswap` is the package under test; then tests/bin (its scontrol answers
# the SLURM plugin's probe at once: every Snakemake run of the tests is local).
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": os.pathsep.join([str(BIN), str(ROOT / "tests" / "bin"), os.environ.get("PATH", "")])}
CORES = os.environ.get("BLOCKSWAP_TEST_CORES", "2")  # bench/gpu.sh runs the miniatures with the GPU machine's cores


def snakemake(*args, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    """`snakemake --snakefile <repository>/Snakefile ARGS` (output captured, never raises): `env` is
    added to ENV."""
    return subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *map(str, args)],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
    )


def reads_data_files(name) -> bool:
    """Whether config/NAME trains on files from its data folder (the bundled digits need none)."""
    return yaml.safe_load((ROOT / "config" / name).read_text()).get("dataset") != "digits"


# The --config values of a miniature run, from the tiny data folder: its data_dir, and for a user's own
# network (config/own-network.yaml) the image folder and stand-in weight file conftest.py writes there.
MINIATURE_VALUES = {
    "own-network.yaml": lambda data: [
        f"data_dir={data / 'own-network' / 'images'}",
        f"teacher={{weights: {data / 'own-network' / 'resnet50.pth'}}}",
    ],
}


def run_miniature(name, tiny_data, workdir, *extra, target="all", overlays=()):
    """Snakemake on config/NAME with its tests/miniature/NAME overlay (and `overlays` after it), on the
    tiny data of conftest.py's tiny_data fixture (`None` for a configuration on the bundled digits:
    it runs as a user's checkout does, with the configuration's own data folder)."""
    data = []
    env = {}
    if reads_data_files(name):
        root, torch_home = tiny_data
        data = ["--config", *MINIATURE_VALUES.get(name, lambda root: [f"data_dir={root}"])(root)]
        env = {"TORCH_HOME": str(torch_home)}
    return snakemake(
        "--directory", workdir, "--cores", CORES, target,
        "--configfile", ROOT / "config" / name, MINIATURE / name, *overlays,
        *data, *extra,
        env=env,
    )  # fmt: skip


def copy_run(run: Path, to: Path) -> Path:
    """A private copy of a finished workflow run (its .snakemake records and file times included),
    for a test that deletes or damages files and reruns Snakemake on them."""
    return Path(shutil.copytree(run, to, symlinks=True))


def one_line_error(call, *patterns) -> str:
    """The BlockswapError `call()` raises: one line, containing each of `patterns`."""
    import pytest

    from blockswap.errors import BlockswapError

    with pytest.raises(BlockswapError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for pattern in patterns:
        assert pattern in message, (pattern, message)
    return message


def merged_configfiles(*configfiles) -> dict:
    """Configuration files (paths, or names under the repository) merged as `snakemake --configfile`
    merges them."""
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    config = {}
    for path in configfiles:
        update_config(config, load_configfile(str(ROOT / path)))
    return config


def load_config(*configfiles) -> dict:
    """Configuration files (paths, or names under the repository) merged as `snakemake --configfile`
    merges them, with the schema's defaults applied: the config the workflow sees."""
    from snakemake.utils import validate

    from blockswap.planning.config_file import SCHEMA

    config = merged_configfiles(*configfiles)
    validate(config, str(SCHEMA))
    return config


def workflow_config_error(*configfiles) -> str | None:
    """The line the workflow prints for `--configfile CONFIGFILES` before any job runs, or None if it
    starts: the start-up of rules/common.smk in this process. Snakemake's configuration files are
    read and merged as `snakemake --configfile` does; then the schema (its defaults applied), the
    plan of networks and its checks, the plan's notes and the teacher. An error the workflow does not
    catch is raised here too (there, it is a traceback)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from blockswap.errors import BlockswapError
    from blockswap.planning import outputs
    from blockswap.planning.config_checks import check_detection
    from blockswap.planning.config_file import SCHEMA, config_error_message
    from blockswap.planning.plan import plan_networks, plan_notes
    from blockswap.planning.teacher import teacher_spec

    config = merged_configfiles(*configfiles)
    try:
        validate(config, str(SCHEMA))
        check_detection(config)
        if not outputs.is_detection(config):  # Table 4's detection workflow has no classification plan
            plan_networks(config, GENOTYPES, f"results/{config['run']}")
            plan_notes(config)
        teacher_spec(config)
    except (WorkflowError, BlockswapError) as err:
        return f"blockswap: config error: {config_error_message(err)}"
    return None


# The calls rules/common.smk makes in its start-up `try:` block, as workflow_config_error makes them.
STARTUP_CALLS = ("validate", "check_detection", "is_detection", "plan_networks", "plan_notes", "teacher_spec")
