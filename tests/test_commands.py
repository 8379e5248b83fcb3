"""The flags each workflow job gets from the configuration (blockswap.planning.commands): one test
per builder, pinning the exact text the rules put into their shell commands."""

import copy
from types import SimpleNamespace

import pytest
from helpers import ROOT

from blockswap.planning import commands
from blockswap.planning.config_file import load_config
from blockswap.planning.plan import RELEASED_GENOTYPES, NetworkPlan, plan_networks


@pytest.fixture(scope="module")
def default():
    return load_config([ROOT / "config" / "config.yaml"])


@pytest.fixture(scope="module")
def coco():
    return load_config([ROOT / "config" / "paper-coco.yaml"])


def changed(config, **sections):
    """A copy of `config` with some keys of its sections replaced."""
    config = copy.deepcopy(config)
    for section, values in sections.items():
        if isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


def test_optional_arg_is_nothing_for_null():
    assert commands.optional_arg("--limit", None) == ""
    assert commands.optional_arg("--limit", 0) == "--limit 0"


def test_comma_list():
    assert commands.comma_list([1, "all", 2.5]) == "1,all,2.5"
    assert commands.comma_list([]) == ""


def test_image_size_arg(default):
    assert commands.image_size_arg(default) == "--image-size 8"
    assert commands.image_size_arg(changed(default, image_size=None)) == ""


def test_data_args_quote_the_folder_and_download_only_when_asked(default):
    assert commands.data_args(default) == "--dataset digits --data-dir=data --image-size 8"
    odd = changed(default, data_dir="my data", download=True, image_size=None)
    assert commands.data_args(odd) == "--dataset digits --data-dir='my data' "
    assert commands.data_args(odd, download=True) == "--dataset digits --data-dir='my data'  --download"
    assert commands.data_args(default, download=True) == commands.data_args(default)  # download: false


def test_training_args(default):
    assert commands.training_args(default) == (
        "--protocol cifar --epochs 30 --batch-size 32 --lr 0.05 --weight-decay 0.0005 --nproc 1 --no-cutout "
        "--channels-last"
    )
    assert "--epochs 15 " in commands.training_args(default, "random")  # ablation.epochs
    every = changed(
        default,
        training={
            "schedule": "cosine",
            "milestones": [3, 6],
            "gamma": 0.5,
            "cutout": True,
            "channels_last": False,
            "cuda_graphs": True,
            "drop_last": True,
        },
    )
    assert commands.training_args(every, "blockswap") == (
        "--protocol cifar --epochs 15 --batch-size 32 --lr 0.05 --weight-decay 0.0005 --nproc 1 --cutout "
        "--schedule cosine --milestones 3,6 --gamma 0.5 --cuda-graphs --drop-last"
    )


def test_distillation_args(default):
    plan = NetworkPlan("snip-60000", "snip", "wrn-16-2", "S", 60000, prune_params=60000)
    assert commands.distillation_args(default, plan) == " --prune snip --prune-params 60000"  # beta auto
    fixed = changed(default, distillation={"beta": 500})
    assert commands.distillation_args(fixed, NetworkPlan("teacher", "teacher", "wrn-16-2", "S")) == "--beta 500"


def test_plan_tags():
    assert commands.plan_tags(NetworkPlan("teacher", "teacher", "wrn-16-2", "S")) == (
        "--tag method=teacher --tag network=teacher"
    )
    assert commands.plan_tags(NetworkPlan("blockswap-60000", "blockswap", "wrn-16-2", "x.json", 60000)) == (
        "--tag method=blockswap --tag network=blockswap-60000 --tag budget=60000"
    )


def test_lockstep_tags(default):
    plans = plan_networks(default, RELEASED_GENOTYPES, "results/default")
    assert commands.lockstep_tags([plans["random-60000-0"], plans["random-60000-1"]]) == (
        "--tag method=random --each-tag network=random-60000-0,random-60000-1 --each-tag budget=60000,60000"
    )


@pytest.mark.parametrize("proxy", ["fisher", "params", "macs"])
def test_search_proxy_args_leave_out_the_columns_every_scores_file_has(default, proxy):
    assert commands.search_proxy_args(changed(default, search={"proxy": proxy})) == ""


def test_search_proxy_args_score_another_proxy_at_initialisation(default):
    assert commands.search_proxy_args(changed(default, search={"proxy": "synflow"})) == (
        "--proxies synflow --minibatches 1 "
    )


def test_scoring_data_args_use_a_pretrained_teachers_normalisation(default, tmp_path):
    """Candidates are scored on inputs normalised as their students are trained: a pretrained
    teacher's library's mean and std; a trained teacher's students use the dataset's own."""
    assert commands.scoring_data_args(default) == commands.data_args(default)
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"")
    own = load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "own-network.yaml"])
    own = changed(own, teacher={"weights": str(weights)})
    assert commands.scoring_data_args(own) == (
        "--dataset folder --data-dir=my-images --image-size 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225"
    )
    assert commands.guided_search_args(own).endswith(commands.scoring_data_args(own))


def test_keep_args_name_the_blocks_and_the_teacher(default, tmp_path):
    assert commands.keep_args(default) == ""
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"")
    own = load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "own-network.yaml"])
    own = changed(own, teacher={"weights": str(weights), "keep": "layer1,layer3.0"})
    assert commands.keep_args(own) == f"--keep layer1,layer3.0 --teacher torchvision:resnet50:{weights.resolve()}"
    assert commands.guided_search_args(own).endswith(commands.keep_args(own))


def test_guided_search_args(default):
    assert commands.guided_search_args(default) == (
        "--arch wrn-16-2 --budget-kind params --tolerance 0.025 --candidates paper --population 64 "
        "--tournament 10 --proxy fisher --score-seed 0 --batch-size 128 --dataset digits --data-dir=data "
        "--image-size 8"
    )


def test_sample_latency_args(default):
    assert not commands.samples_latency(default)
    assert commands.sample_latency_args(default, "T.json") == ""
    limited = changed(default, search={"limits": {"params": None, "macs": 9000000, "latency": 2.5}})
    assert commands.samples_latency(limited)
    assert commands.sample_latency_args(limited, "T.json") == (
        "--limit macs=9000000 --limit latency=2.5 --latency-table T.json --latency-setting cpu/t1/b1"
    )


def test_latency_measure_args(default):
    assert commands.latency_measure_args(default) == "--warmup 10 --runs 50 --clock wall"
    assert commands.latency_measure_args(default, clock=False) == "--warmup 10 --runs 50"


def test_proxies_args():
    assert commands.proxies_args([("60000", "a.csv"), ("150000", "b.csv")]) == (
        "--proxies 60000=a.csv --proxies 150000=b.csv"
    )


def test_note_args_quote_each_note():
    assert commands.note_args(["no all-G near 60000", "plain"]) == "--note 'no all-G near 60000' --note plain"


def test_benchmark_rule_args_skip_rules_without_a_benchmark():
    rules = [
        SimpleNamespace(name="score", benchmark="benchmarks/x/search/{budget}/score-{shard}.tsv"),
        SimpleNamespace(name="all", benchmark=None),
        SimpleNamespace(name="odd", benchmark="bench marks/{n}.tsv"),
    ]
    assert commands.benchmark_rule_args(rules) == (
        "--rule score='benchmarks/x/search/{budget}/score-{shard}.tsv' --rule odd='bench marks/{n}.tsv'"
    )


def test_detection_args(coco):
    assert commands.detection_args(coco) == "--data-dir=data --min-size 800 --max-size 1333"


def test_detection_training_args(coco):
    assert commands.detection_training_args(coco) == (
        "--arch resnet-34 --epochs 26 --batch-size 16 --seed 0 --milestones 16,22 --warmup-iters 1000 --nproc 8"
    )
    short = changed(coco, detection={"milestones": [], "lr": 0.01, "train_limit": 64})
    assert commands.detection_training_args(short) == (
        "--arch resnet-34 --epochs 26 --batch-size 16 --seed 0 --milestones , --warmup-iters 1000 --nproc 8 "
        "--lr 0.01 --limit 64"
    )
