"""The plan of networks a workflow configuration trains and costs."""

import re

import pytest
import yaml
from helpers import GENOTYPES, ROOT, load_config

from blockswap import BlockswapError, Genotype
from blockswap.planning.budgets import closest_single_blocktype
from blockswap.planning.plan import lockstep_groups, plan_networks, released_for_budget
from blockswap.planning.run_cost import plan_cost

load = load_config


def test_paper_cifar10_trains_the_released_genotypes_for_table2():
    plans = plan_networks(load("config/paper-cifar10.yaml"), GENOTYPES, "results/x")
    released = {p.budget: p.genotype for p in plans.values() if p.method == "blockswap"}
    assert {b: str(g).split("/")[-1] for b, g in released.items()} == {
        811400: "blockswap-811k.yaml",
        556000: "blockswap-556k.yaml",
        404200: "blockswap-404k.yaml",
        289200: "blockswap-289k.yaml",
        217000: "blockswap-217k.yaml",
        162200: "blockswap-162k.yaml",
    }
    methods = [p.method for p in plans.values()]
    assert methods.count("moonshine") == 21 and methods.count("reduced") == 3 and methods.count("random") == 300
    assert methods.count("snip") == 6 and methods.count("bestof") == 3


def test_paper_cifar10_ablation_follows_the_paper_design():
    """Table 1 / Figure 2: 100 random students at ~200K, ~400K and ~800K, each trained once; the
    samples ablation trains the Fisher-best of the first 10 / 100 / 1000 candidates at 404.2K, from
    every teacher."""
    plans = plan_networks(load("config/paper-cifar10.yaml"), GENOTYPES, "results/x")
    random = [p for p in plans.values() if p.method == "random"]
    assert sorted({p.budget for p in random}) == [200000, 400000, 800000]
    assert all(p.seeds == (0,) for p in random) and len(random) == 300
    bestof = [p for p in plans.values() if p.method == "bestof"]
    assert [(p.first, p.budget, p.genotype) for p in bestof] == [
        (n, 404200, f"results/x/search/404200/bestof-{n}.json") for n in (10, 100, 1000)
    ]
    assert all(p.seeds == (0, 1, 2) for p in bestof)  # every teacher, as Table 2's rows: mean +- std, n = 3
    blockswap = {p.budget: p for p in plans.values() if p.method == "blockswap"}
    assert all(p.seeds == (0, 1, 2) for p in blockswap.values())
    # SNIP prunes the teacher to each budget, Table 2's printed size, as the authors' SNIP script
    # does; not to the released BlockSwap student's exact count (217,050 and 404,250 here).
    snip = {p.budget: p.prune_params for p in plans.values() if p.method == "snip"}
    assert snip == {b: b for b in (811400, 556000, 404200, 289200, 217000, 162200)}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"ablation": {"seeds": [5]}}, "ablation.seeds: [5] are not in seeds"),
        ({"ablation": {"random_students": 2000}}, "is more than search.samples"),
        ({"ablation": {"samples": [10, 5000]}}, "ablation.samples: [5000] exceed search.samples"),
        ({"ablation": {"samples_budget": 123456}}, "ablation.samples_budget: 123456 is not one of search.budgets"),
        ({"ablation": {"random_students": 0, "student_seeds": [0, 1]}}, "no random students to train under them"),
    ],
)
def test_ablation_mistakes_are_caught_before_any_job(change, message):
    config = load("config/paper-cifar10.yaml")
    for section, values in change.items():
        config[section].update(values)
    with pytest.raises(BlockswapError, match=re.escape(message)):
        plan_networks(config, GENOTYPES, "r")


def test_searched_students_depend_on_the_search_output():
    plans = plan_networks(load("config/config.yaml"), GENOTYPES, "results/default")
    student = plans["blockswap-60000"]
    assert student.searched and student.genotype == "results/default/search/60000/student.json"
    assert plans["random-60000-23"].genotype == "results/default/ablation/60000/random-23.json"
    assert "random-60000-24" not in plans  # 24 random students per budget


def test_moonshine_auto_picks_the_single_blocktype_closest_to_each_budget():
    config = load("config/paper-cifar10.yaml")
    config["search"]["candidates"] = "paper"
    # From docs/paper.md s.6: 404.2K is closest to G(16) (406.4K); 217.0K to BG(2,4) (214.1K).
    assert closest_single_blocktype(config, 404_200) == ("G(16)", "")
    assert closest_single_blocktype(config, 217_000) == ("BG(2,4)", "")
    config["baselines"]["moonshine"] = "auto"
    names = [p.name for p in plan_networks(config, GENOTYPES, "r").values() if p.method == "moonshine"]
    assert "moonshine-g16" in names and "moonshine-bg2-4" in names


def test_moonshine_auto_never_picks_a_network_outside_the_tolerance():
    """1,100K params: the nearest single-blocktype WRN-40-2 is G(4) at 814.6K or G(2) at 1359.0K,
    both far outside +-2.5 %; the plan trains none and says so."""
    from blockswap.planning.plan import plan_notes

    config = load("config/paper-cifar10.yaml")
    config["baselines"]["moonshine"] = "auto"
    config["search"].update(budgets=[1_100_000], use_released_genotypes=False)
    config["ablation"].update(random_students=0, samples=[])
    name, note = closest_single_blocktype(config, 1_100_000)
    assert name is None and "no single-blocktype wrn-40-2 lies within +-2.5% of 1100000 params" in note
    assert not [p for p in plan_networks(config, GENOTYPES, "r").values() if p.method == "moonshine"]
    assert plan_notes(config) == [note]


def test_a_budget_without_a_released_genotype_is_a_clear_error():
    config = load("config/paper-cifar10.yaml")
    with pytest.raises(BlockswapError, match="no released wrn-40-2 genotype lies within"):
        released_for_budget(config, GENOTYPES, 1_000_000)


def test_every_transcribed_genotype_has_its_attribution():
    for path in GENOTYPES.glob("*.yaml"):
        meta = yaml.safe_load(path.read_text())
        assert "BayesWatch/pytorch-blockswap" in meta["source"] and Genotype.load(path)


def test_resolved_config_round_trip(tmp_path):
    from blockswap.planning.config_file import (
        config_key,
        save_resolved_config,
        use_resolved_config,
    )

    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    key = config_key(raw)
    resolved = load("config/config.yaml")
    assert config_key(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())) == key  # stable
    save_resolved_config(resolved, tmp_path / f"{key}.yaml")
    on_node = dict(raw)
    use_resolved_config(on_node, tmp_path / f"{key}.yaml")
    assert on_node == resolved and on_node["training"]["gpus"] == 1  # a default the file leaves unset


def test_plan_command_counts_runs_and_epochs_by_stage(capsys):
    from blockswap.cli import main

    assert main(["plan", str(ROOT / "config" / "paper-cifar10.yaml")]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    # 3 teachers; 3 seeds x 6 BlockSwap; 3 x (3 reduced + 21 Moonshine + 6 SNIP); 300 random + 3 seeds x 3 best-of-N.
    assert lines["teacher"][1:3] == ["3", "600"] and lines["students"][1:3] == ["18", "3600"]
    assert lines["baselines"][1:3] == ["90", "18000"] and lines["ablation"][1:3] == ["309", "61800"]
    # Guided-search comparison: 3 budgets x 3 search seeds x (2 winners + 4 best-of-N), teacher 0.
    assert lines["comparison"][1:3] == ["54", "10800"]
    assert lines["total"][1:3] == ["474", "94800"] and 300 < float(lines["total"][3]) < 500
    assert main(["plan", str(ROOT / "config" / "paper-imagenet.yaml")]) == 0
    out = capsys.readouterr().out
    assert "teacher                          0         0" in out  # torchvision's pretrained teacher: no training
    assert (
        main(["plan", str(ROOT / "config" / "paper-imagenet.yaml"), str(ROOT / "tests/miniature/paper-imagenet.yaml")])
        == 0
    )
    assert "total                            5         5" in capsys.readouterr().out  # the overlay's 1 epoch


def test_plan_command_rejects_a_bad_config(tmp_path, capsys):
    from blockswap.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {epochs: 0}\n")
    assert main(["plan", str(bad)]) == 2
    assert "training.epochs: 0 is less than the minimum of 1" in capsys.readouterr().err


def test_random_students_train_under_student_seeds_from_one_teacher():
    config = load("config/config.yaml")
    config["seeds"] = [3, 4]
    config["ablation"].update(random_students=5, seeds=[4], student_seeds=[0, 1, 2])
    plans = plan_networks(config, GENOTYPES, "r")
    random = [p for p in plans.values() if p.method == "random"]
    assert random and all(p.seeds == (0, 1, 2) and p.teacher_seed == 4 for p in random)
    assert [random[0].teacher_of(s) for s in (0, 1, 2)] == [4, 4, 4]
    # Every other network's run of seed s is distilled from teacher s.
    blockswap = next(p for p in plans.values() if p.method == "blockswap")
    assert blockswap.seeds == (3, 4) and blockswap.teacher_of(3) == 3
    config["ablation"]["student_seeds"] = None
    plans = plan_networks(config, GENOTYPES, "r")
    assert all(p.seeds == (4,) and p.teacher_of(4) == 4 for p in plans.values() if p.method == "random")


def test_lockstep_groups_chunk_each_budgets_random_students():
    config = load("config/config.yaml")
    config["ablation"].update(random_students=5, lockstep=2, budgets=None)  # the search budgets
    plans = plan_networks(config, GENOTYPES, "r")
    groups = lockstep_groups(config, plans)
    budgets = config["search"]["budgets"]
    assert list(groups) == [f"lockstep_{b}_{i}" for b in budgets for i in range(3)]
    assert groups[f"lockstep_{budgets[0]}_2"] == [f"random-{budgets[0]}-4"]
    random = sorted(p.name for p in plans.values() if p.method == "random")
    assert sorted(n for g in groups.values() for n in g) == random
    config["ablation"]["lockstep"] = 1
    assert lockstep_groups(config, plans) == {}


def test_lockstep_shares_the_teachers_forward_pass_in_the_gpu_hours():
    config = load("config/paper-cifar10.yaml")
    config["ablation"]["lockstep"] = 1
    alone = {s.stage: s.gpu_hours for s in plan_cost(config, plan_networks(config, GENOTYPES, "r"))}
    config["ablation"]["lockstep"] = 25
    together = {s.stage: s.gpu_hours for s in plan_cost(config, plan_networks(config, GENOTYPES, "r"))}
    assert together["ablation"] < 0.9 * alone["ablation"]
    assert together["baselines"] == alone["baselines"]  # only random students share a job
