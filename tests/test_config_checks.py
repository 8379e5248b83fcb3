"""Configurations no job can run are stopped before any job starts: non-finite numbers,
floats for integers, block types that do not fit the teacher, budgets holding fewer networks than
samples, run names and seeds that cannot make file names or seeds. Both through the workflow (one
line, `blockswap: config error: <key>: ...`) and through the plan functions themselves."""

import re

import pytest
import yaml
from helpers import GENOTYPES, ROOT, STARTUP_CALLS, TINY, load_config, snakemake, workflow_config_error

from blockswap import BlockswapError
from blockswap.planning.budgets import budget_keys
from blockswap.planning.config_checks import check_plan
from blockswap.planning.config_file import SCHEMA, load_schema
from blockswap.planning.plan import plan_networks
from blockswap.seeds import MAX_SEED, derive_seed


def dry_run_errors(tmp_path, override):
    """`snakemake -n` of the tiny config with `override` on top: the config-error lines it printed.
    Also checks it failed, without a traceback, and before any job wrote a result."""
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", *TINY, tmp_path / "override.yaml")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in proc.stderr and not (tmp_path / "results").exists(), output
    return [line for line in output.splitlines() if line.startswith("blockswap: config error:")], output


def start_up_errors(tmp_path, override):
    """What the workflow's start-up says of the tiny config with `override` on top, run in this process
    (helpers.workflow_config_error): the config-error lines, as dry_run_errors returns them."""
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    error = workflow_config_error(*TINY, tmp_path / "override.yaml")
    assert error is not None, f"{override} was accepted"
    return error.splitlines(), error


WORKFLOW_CASES = [
    # Non-finite numbers pass the schema's bounds (every comparison with NaN is false; .inf has no maximum).
    ({"training": {"lr": float("inf")}}, "training.lr: inf is not a finite number; allowed: finite numbers"),
    ({"distillation": {"beta": float("nan")}}, "distillation.beta: nan is not a finite number"),
    ({"search": {"tolerance": float("nan")}}, "search.tolerance: nan is not a finite number"),
    # jsonschema counts 2.0 as an integer; `--epochs 2.0` fails in the training job.
    ({"training": {"epochs": 2.0}}, "training.epochs: 2.0 is not an integer; allowed: a whole number"),
    ({"search": {"budgets": [30000.0]}}, "search.budgets.0: 30000.0 is not an integer"),
    # Block types that cannot be built at the teacher's widths (wrn-10-1's first stage has 16 channels).
    (
        {"baselines": {"moonshine": ["G(32)"]}},
        "baselines.moonshine: G(32) does not fit wrn-10-1 (G(32) at 16->16 channels: 32 groups do not divide 16",
    ),
    ({"baselines": {"moonshine": ["S", "BG(2,16)"]}}, "baselines.moonshine: BG(2,16) does not fit wrn-10-1"),
    # Bands holding fewer distinct networks than search.samples (12): wrn-10-1 has 4 at 50,000 +-2.5 %.
    (
        {"search": {"budgets": [50000], "tolerance": 0.025}},
        "search.budgets: budget 50000 params (+-2.5%) holds only 4 distinct wrn-10-1 networks of these candidates, "
        "fewer than search.samples (12); allowed: search.samples at most 4",
    ),
    (
        {"search": {"budgets": [30000], "tolerance": 0.025}, "ablation": {"budgets": [50000]}},
        "ablation.budgets: budget 50000 params (+-2.5%) holds only 4 distinct",
    ),
    (
        {"ablation": {"random_students": 13}},
        "ablation.random_students: 13 is more than search.samples (12); random students are the first sampled "
        "candidates; allowed: 0 to 12",
    ),
    (
        {"ablation": {"stability_candidates": 13}},
        "ablation.stability_candidates: 13 is more than search.samples (12); allowed: 2 to 12",
    ),
    ({"ablation": {"stability_seeds": 1}}, "ablation.stability_seeds: 1 should not be valid"),
    # Blocks kept as a pretrained teacher's own need one (the tiny run trains its teacher).
    ({"teacher": {"keep": "layer1"}}, "teacher.keep names blocks of a pretrained teacher, and no pretrained teacher"),
    # Names and seeds that cannot make file names or seed every generator.
    ({"run": "r" * 101}, f"run: '{'r' * 101}' is too long"),
    ({"seeds": [0, 1, 2**32]}, "seeds.2: 4294967296 is greater than the maximum of 4294967295"),
    ({"search": {"seed": 2**32}}, "search.seed: 4294967296 is greater than the maximum of 4294967295"),
    ({"ablation": {"seeds": [2**32]}}, "ablation.seeds.0: 4294967296 is greater than the maximum of 4294967295"),
]


@pytest.mark.parametrize("override,message", WORKFLOW_CASES, ids=[m.split(":")[0] for _, m in WORKFLOW_CASES])
def test_bad_config_stops_the_workflow_with_one_line(tmp_path, override, message):
    errors, output = start_up_errors(tmp_path, override)
    assert len(errors) == 1 and message in errors[0], output


# One real `snakemake -n` per kind of error: the workflow prints the very line of the in-process start-up.
WORKFLOW_PATH = {
    kind: next(case for case in WORKFLOW_CASES if case[1].startswith(prefix))
    for kind, prefix in (
        ("schema", "seeds.2:"),  # jsonschema's error, through Snakemake's validate
        ("number check", "training.lr:"),  # .inf passes the schema: the package's number check
        ("plan check", "search.budgets: budget 50000"),  # a band of too few networks: the package's plan check
    )
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(WORKFLOW_PATH))
def test_the_workflow_prints_the_line_of_the_in_process_start_up(tmp_path, kind):
    override, message = WORKFLOW_PATH[kind]
    errors, output = dry_run_errors(tmp_path, override)
    assert len(errors) == 1 and message in errors[0], output
    assert errors == start_up_errors(tmp_path, override)[0], output


def test_the_in_process_start_up_makes_the_calls_of_the_workflows():
    """helpers.workflow_config_error stands for the `try:` block rules/common.smk starts with."""
    text = (ROOT / "rules" / "common.smk").read_text()
    block = text.split("\ntry:\n", 1)[1].split("\nexcept (WorkflowError, BlockswapError) as err:\n", 1)
    assert len(block) == 2 and "config_error_message(err)" in block[1].split("\n", 1)[0], "start-up changed"
    remote = {"is_file", "use_resolved_config"}  # a remote (e.g. SLURM) job reads the resolved config instead
    remote.add("str")  # a conversion, not a step
    assert set(re.findall(r"\b([a-z_]+)\(", block[0])) - remote == set(STARTUP_CALLS)


@pytest.mark.parametrize("run", ["..", ".hidden", "a/b", "../up", "-rf", "a b", "r" * 101])
def test_run_names_that_are_not_plain_file_names_are_rejected(run):
    """The pattern admits only file names (no '/', no leading '.' or '-'); 100 characters at most."""
    from jsonschema import Draft202012Validator

    errors = list(Draft202012Validator(load_schema()["properties"]["run"]).iter_errors(run))
    assert errors, run
    assert not list(Draft202012Validator(load_schema()["properties"]["run"]).iter_errors("r" * 100))


def test_the_schema_seed_limit_is_the_one_every_seeding_api_takes():
    """seeds, search.seed and ablation.seeds stop at MAX_SEED (2^32-1), which derive_seed, torch and
    numpy's legacy seeding all take; derive_seed itself takes any non-negative integer."""
    import numpy as np
    import torch

    schema = load_schema()["properties"]
    limits = [
        schema["seeds"]["items"]["maximum"],
        schema["search"]["properties"]["seed"]["maximum"],
        schema["ablation"]["properties"]["seeds"]["items"]["maximum"],
    ]
    assert limits == [MAX_SEED] * 3 and MAX_SEED == 2**32 - 1
    np.random.seed(MAX_SEED)
    torch.Generator().manual_seed(MAX_SEED)
    assert 0 <= derive_seed(MAX_SEED, 199) < 2**63 and derive_seed(2**70) >= 0
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)  # the narrowest API: why the limit is 2^32-1


# --- the plan functions directly ---------------------------------------------------------------------


def load(name, **changes):
    """A config file with the schema's defaults applied, then sections updated with `changes`."""
    config = load_config(name)
    for section, values in changes.items():
        if isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"training": {"lr": float("inf")}}, "training.lr: inf is not a finite number"),
        ({"training": {"weight_decay": float("nan")}}, "training.weight_decay: nan is not a finite number"),
        ({"training": {"gamma": float("-inf")}}, "training.gamma: -inf is not a finite number"),
        ({"distillation": {"beta": float("inf")}}, "distillation.beta: inf is not a finite number"),
        ({"training": {"epochs": 200.0}}, "training.epochs: 200.0 is not an integer"),
        ({"training": {"milestones": [60, 120.0]}}, "training.milestones.1: 120.0 is not an integer"),
        ({"image_size": 32.0}, "image_size: 32.0 is not an integer"),
        ({"seeds": [0, 1.0]}, "seeds.1: 1.0 is not an integer"),
        ({"search": {"samples": 1000.0}}, "search.samples: 1000.0 is not an integer"),
        (
            {"training": {"cuda_graphs": True, "gpus": 4}},
            "training.cuda_graphs needs training.gpus: 1 (captured steps run in one process), got 4",
        ),
    ],
)
def test_numbers_no_job_can_use_are_plan_errors(changes, message):
    config = load("config/paper-cifar10.yaml", **changes)
    with pytest.raises(BlockswapError, match=re.escape(message)):
        check_plan(config)


@pytest.mark.parametrize(
    "changes,message",
    [
        # digits' 1,077 training images in batches of 538: a last batch of one image, and wrn-16-2 is 1x1 at 4 px.
        (
            {"image_size": 4, "training": {"batch_size": 538}},
            "the last training minibatch of each epoch (1077 training images in batches of 538) holds 1 image and "
            "wrn-16-2's last stage is 1x1 at 4x4 px: batch norm cannot train on one value per channel; choose another "
            "training.batch_size, set training.drop_last, or use a larger image_size",
        ),
        (
            {"image_size": 4, "search": {"batch_size": 1}},
            "the scoring minibatch (search.batch_size 1) holds 1 image and wrn-16-2's last stage is 1x1",
        ),
    ],
)
def test_minibatches_batch_norm_cannot_train_on_are_plan_errors(changes, message):
    config = load("config/config.yaml", **changes)
    with pytest.raises(BlockswapError, match=re.escape(message)):
        check_plan(config)
    config["training"]["drop_last"] = True
    config["search"]["batch_size"] = 2
    check_plan(config)  # whole batches of 538, scoring batches of 2: no error


def test_floats_stay_allowed_where_the_schema_takes_numbers():
    config = load("config/paper-cifar10.yaml", training={"lr": 0.05, "gamma": 0.2}, distillation={"beta": 1000.0})
    check_plan(config)  # no error


@pytest.mark.parametrize(
    "names,message",
    [
        # WRN-40-2's first block takes the stem's 16 channels to 32; BG(2,.)'s 3x3 works at M = 16 there.
        (
            ["G(16)", "G(64)"],
            "baselines.moonshine: G(64) does not fit wrn-40-2 (G(64) at 16->32 channels: 64 groups do not divide 16",
        ),
        (["BG(2,32)"], "baselines.moonshine: BG(2,32) does not fit wrn-40-2"),
        (["G(N/64)"], "baselines.moonshine: G(N/64) does not fit wrn-40-2"),
        (["X(3)"], "baselines.moonshine: unknown block type 'X(3)'"),
    ],
)
def test_moonshine_types_must_fit_every_block_of_the_teacher(names, message):
    config = load("config/paper-cifar10.yaml", baselines={"moonshine": names})
    with pytest.raises(BlockswapError, match=re.escape(message)) as failure:
        plan_networks(config, GENOTYPES, "r")
    if "does not fit" in message:  # it lists what fits: G(16) does, G(64) does not
        assert "allowed here, of the released types: S," in str(failure.value) and "G(16)" in str(failure.value)


@pytest.mark.parametrize(
    "moonshine,pairing,message",
    [
        (
            None,
            {300000: "BG(2,4)"},
            "ablation.single_blocktype: 300000 is not a budget of Figure 2 or the samples table",
        ),
        (["G(16)", "G(4)"], {200000: "BG(2,4)"}, "ablation.single_blocktype: all-BG(2,4) (paired with 200000) is not "),
        (None, {200000: "X(3)"}, "ablation.single_blocktype: unknown block type 'X(3)'"),
    ],
)
def test_a_paired_single_blocktype_network_must_be_shown_and_trained(moonshine, pairing, message):
    config = load("config/paper-cifar10.yaml")
    config["ablation"]["single_blocktype"] = pairing
    if moonshine is not None:
        config["baselines"]["moonshine"] = moonshine
    with pytest.raises(BlockswapError, match=re.escape(message)):
        check_plan(config)


def test_every_sampled_budget_is_counted_under_its_own_key():
    """Search, ablation and samples-ablation budgets each hold at least search.samples networks; the
    count is exact even beyond 2^64 (the samples budget 404.2K holds ~1.6e23 released networks)."""
    config = load(
        "config/paper-cifar10.yaml", search={"samples": 10**30}, ablation={"random_students": 0, "samples": [10]}
    )
    assert budget_keys(config) == {404200: "ablation.samples_budget"}  # released genotypes: nothing searched
    with pytest.raises(
        BlockswapError,
        match=r"^ablation\.samples_budget: budget 404200 params \(\+-2\.5%\) holds only "
        r"157326526571290109935502 distinct wrn-40-2 networks",
    ):
        check_plan(config)
    config["ablation"]["random_students"] = 1
    assert list(budget_keys(config).values()) == ["ablation.budgets"] * 3 + ["ablation.samples_budget"]
    with pytest.raises(BlockswapError, match=r"^ablation\.budgets: budget 200000 params"):
        check_plan(config)
    config["search"]["use_released_genotypes"] = False
    with pytest.raises(BlockswapError, match=r"^search\.budgets: budget 811400 params"):
        check_plan(config)


def test_the_default_and_paper_configs_pass_every_check():
    for names in (["config/config.yaml"], ["config/paper-cifar10.yaml"], ["config/paper-imagenet.yaml"], TINY):
        check_plan(load_config(*names))


def test_the_schema_allows_exactly_the_proxy_registry():
    import yaml

    from blockswap.search.proxies import PROXIES

    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["ablation"]["properties"]["proxies"]["items"]["enum"] == list(PROXIES)


def test_search_proxy_is_a_registry_name():
    import yaml

    from blockswap.search.proxies import PROXIES

    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["search"]["properties"]["proxy"]["enum"] == list(PROXIES)
