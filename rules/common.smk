# Configuration validation, the table of networks, and wildcard constraints shared by every stage.

import shlex
from pathlib import Path

import yaml
from snakemake.utils import validate

from blockswap import Genotype, parse_block

validate(config, "../config/schema.yaml")

RESULTS = f"results/{config['run']}"
LOGS = f"logs/{config['run']}"
BENCHMARKS = f"benchmarks/{config['run']}"
GENOTYPE_DIR = Path(workflow.basedir) / "config" / "genotypes"


def released_genotypes(arch):
    """The paper's released genotypes (config/genotypes/*.yaml) built on `arch`."""
    found = {}
    for path in sorted(GENOTYPE_DIR.glob("*.yaml")):
        meta = yaml.safe_load(path.read_text())
        if meta.get("arch") == arch:
            found[meta["name"]] = str(path)
    return found


def network_table():
    """Every network the run costs: name -> (method, arch, genotype spec for `blockswap`)."""
    teacher = config["teacher"]["arch"]
    table = {"teacher": ("teacher", teacher, "S")}
    for arch in config["baselines"]["reduced"]:
        table[f"reduced-{arch}"] = ("reduced", arch, "S")
    for name in config["baselines"]["moonshine"]:
        block = parse_block(name)
        table[f"moonshine-{block.slug}"] = ("moonshine", teacher, block.name)
    if config["search"]["use_released_genotypes"]:
        for name, path in released_genotypes(teacher).items():
            table[name] = ("blockswap", teacher, path)
    return table


NETWORKS = network_table()


BUDGETS = [str(b) for b in config["search"]["budgets"]]


wildcard_constraints:
    network="|".join(re.escape(n) for n in NETWORKS),
    budget="[0-9]+",
    shard="[0-9]+",


def image_size_arg():
    size = config["image_size"]
    return "" if size is None else f"--image-size {size}"


def data_args():
    """The dataset options every data-reading command takes."""
    args = f"--dataset {config['dataset']} --data-dir {shlex.quote(config['data_dir'])} {image_size_arg()}"
    return args + (" --download" if config["download"] else "")
