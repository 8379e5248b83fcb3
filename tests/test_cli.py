"""The `blockswap` command: blocks, cost, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest
from helpers import GENOTYPES, RELEASED

from blockswap.cli import main
from blockswap.networks.blocks import ALLOWED_FORMS


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_blocks_lists_the_zoo(capsys):
    code, out, _ = run(capsys, "blocks")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["paper", "released", "family"]
    # 21 paper + 3 released-only BG(4,.) + 14 bottleneck-only + MBConv(6), and a pretrained ResNet's T, T(4)
    assert len(lines) == 1 + 41
    assert any(line.split()[:2] == ["BG(2,M/8)", "G8B2"] for line in lines)


def test_blocks_of_one_set(capsys):
    _, out, _ = run(capsys, "blocks", "--set", "released")
    assert len(out.strip().splitlines()) == 1 + 23


def test_cost_of_the_teacher(capsys):
    code, out, _ = run(capsys, "cost", "--arch", "wrn-40-2")
    assert code == 0
    result = json.loads(out)
    assert result == {
        "arch": "wrn-40-2",
        "genotype": ["S"] * 18,
        "params": 2243546,
        "macs": 327599360,
        "ops": 328303882,
    }


@pytest.mark.parametrize(
    "spec",
    [str(RELEASED / "bs200k.csv"), str(GENOTYPES / "blockswap-217k.yaml")],
)
def test_cost_reads_genotype_files(capsys, spec):
    _, out, _ = run(capsys, "cost", "--arch", "wrn-40-2", "--genotype", spec)
    assert json.loads(out)["params"] == 217050


def test_cost_with_name_list_single_name_and_dataset(capsys):
    _, out, _ = run(capsys, "cost", "--arch", "wrn-16-1", "--genotype", "S G(2) B(2) DConv ConvB4 S")
    assert json.loads(out)["genotype"] == ["S", "G(2)", "B(2)", "G(N)", "B(4)", "S"]
    _, out, _ = run(capsys, "cost", "--arch", "resnet-34", "--genotype", "G(N)", "--dataset", "imagenet")
    assert json.loads(out)["params"] == 3129832
    _, small, _ = run(capsys, "cost", "--arch", "wrn-16-1", "--dataset", "digits", "--image-size", "8")
    _, large, _ = run(capsys, "cost", "--arch", "wrn-16-1", "--dataset", "cifar100")
    assert json.loads(small)["macs"] < json.loads(large)["macs"]
    assert json.loads(large)["params"] - json.loads(small)["params"] == 90 * (64 + 1)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["cost"], "the following arguments are required: --arch"),
        (["cost", "--arch", "wrn-40-3x"], "unknown architecture"),
        (["cost", "--arch", "wrn-16-1", "--genotype", "S S"], "genotype has 2 block types"),
        (["cost", "--arch", "wrn-16-1", "--genotype", "Foo"], "unknown block type 'Foo'"),
        (["cost", "--arch", "wrn-16-1", "--genotype", "missing.yaml"], "missing.yaml does not exist"),
        (["cost", "--arch", "wrn-16-1", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["cost", "--arch", "wrn-16-1", "--image-size", "0"], "--image-size must be a positive"),
        (["blocks", "--set", "mine"], "invalid choice: 'mine'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("blockswap: error: ") and message in err


@pytest.mark.slow
def test_console_script_without_traceback(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text("genotype: [S, Nope]")
    proc = subprocess.run(
        [sys.executable, "-m", "blockswap.cli", "cost", "--arch", "wrn-16-1", "--genotype", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"blockswap: error: unknown block type 'Nope'; allowed: {ALLOWED_FORMS}"


def test_every_command_is_listed_with_the_module_that_defines_it():
    """The command line imports only the chosen command's module, found in COMMAND_MODULES: a
    command a module adds but the table lacks would be unreachable."""
    import importlib
    import pkgutil

    from blockswap import cli
    from blockswap.cli import COMMAND_MODULES

    defined = {}
    for module in sorted(info.name for info in pkgutil.iter_modules(cli.__path__) if info.name != "__main__"):
        commands = getattr(importlib.import_module(f"blockswap.cli.{module}"), "COMMANDS", {})
        defined.update(dict.fromkeys(commands, module))
    assert defined == COMMAND_MODULES


def test_an_unknown_command_lists_every_command(capsys):
    assert main(["nope"]) == 2
    message = capsys.readouterr().err
    assert "invalid choice: 'nope'" in message and "'select'" in message and "'compress'" in message


@pytest.mark.slow
def test_help_on_every_command(capsys):
    """Each command's help in this process; the program's help as a terminal shows it."""
    from blockswap.cli import COMMAND_MODULES

    for argv in [[name, "--help"] for name in COMMAND_MODULES]:
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0 and "usage:" in capsys.readouterr().out, argv
    proc = subprocess.run([sys.executable, "-m", "blockswap.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout


def test_pick_writes_several_candidates_or_none(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    assert main(
        [
            "sample",
            "--arch",
            "wrn-10-1",
            "--budget",
            "30000",
            "--tolerance",
            "0.1",
            "--samples",
            "4",
            "--dataset",
            "digits",
            "--image-size",
            "8",
            "--out",
            str(csv),
        ]
    ) in (0, None)
    outs = [str(tmp_path / f"random-{i}.json") for i in range(3)]
    assert main(["pick", str(csv), "--candidate", "0", "1", "2", "--out", *outs]) in (0, None)
    picked = [json.loads(open(o).read()) for o in outs]
    assert [p["candidate"] for p in picked] == [0, 1, 2] and len({" ".join(p["genotype"]) for p in picked}) == 3
    # A missing candidate (or a count mismatch) stops before any file is written.
    fresh = [str(tmp_path / f"other-{i}.json") for i in range(2)]
    assert main(["pick", str(csv), "--candidate", "1", "9", "--out", *fresh]) == 2
    assert main(["pick", str(csv), "--candidate", "1", "2", "--out", fresh[0]]) == 2
    assert not any((tmp_path / f"other-{i}.json").exists() for i in range(2))
    assert "has no candidate 9" in capsys.readouterr().err
