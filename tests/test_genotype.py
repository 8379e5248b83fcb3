"""Genotype parsing and printing in every supported form, incl. all released files as they are."""

import json

import pytest
import yaml
from helpers import GENOTYPES, RELEASED

from blockswap import BlockswapError, Genotype, parse_block

RELEASED_FILES = sorted(RELEASED.glob("*.csv"))


@pytest.mark.parametrize("path", RELEASED_FILES, ids=lambda p: p.name)
def test_every_released_file_loads_and_matches_its_transcription(path):
    genotype = Genotype.load(path)
    assert len(genotype) == (16 if "imagenet" in path.name else 18)
    transcriptions = {str(Genotype.load(p)) for p in GENOTYPES.glob("*.yaml")}
    assert str(genotype) in transcriptions


def test_malformed_spacing_of_bs_imagenet_1_is_read():
    text = (RELEASED / "bs_imagenet_1.csv").read_text()
    assert "'DConvG2','ConvB2'" in text  # the file really lacks the spaces
    assert Genotype.load(RELEASED / "bs_imagenet_1.csv").names[5:7] == ["G(N/2)", "B(2)"]


def test_paper_notation_prints_and_parses_back():
    g = Genotype.parse("S G(4) G(N/8) B(2) BG(2,M/4) BG(4,M/2) MBConv(6)")
    assert str(g) == "S G(4) G(N/8) B(2) BG(2,M/4) BG(4,M/2) MBConv(6)"
    assert Genotype.parse(str(g)) == g


def test_aliases_and_paper_names_mix():
    assert Genotype.parse("Conv G(4) DConvG8") == Genotype.parse("S DConvA4 G(N/8)")


@pytest.mark.parametrize("fmt", ["json", "yaml", "csv"])
def test_round_trip_through_files(tmp_path, fmt):
    g = Genotype.load(RELEASED / "bs150k.csv")
    text = {"json": g.to_json(arch="wrn-40-2"), "yaml": g.to_yaml(arch="wrn-40-2"), "csv": g.to_csv()}[fmt]
    path = tmp_path / f"g.{fmt}"
    path.write_text(text)
    assert Genotype.load(path) == g


def test_csv_output_is_the_released_format():
    g = Genotype.load(RELEASED / "bs800k.csv")
    assert g.to_csv() == (RELEASED / "bs800k.csv").read_text().rstrip("\n") + "\n"


def test_plain_list_files(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(["S", "G(2)"]))
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(["S", "DConvA2"]))
    assert Genotype.load(tmp_path / "g.json") == Genotype.load(tmp_path / "g.yaml")


def test_spec_one_name_means_every_block():
    assert Genotype.from_spec("G(4)", 6) == Genotype.uniform(parse_block("G(4)"), 6)
    assert len(Genotype.from_spec("S B(2)", 6)) == 2  # a list is taken as it is


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("g.json", "{not json", "not valid json"),
        ("g.yaml", "genome: [S]", "needs a 'genotype' key"),
        ("g.yaml", "genotype: 3", "expected a list of block names"),
        ("g.yaml", "genotype: [S, Q(2)]", "unknown block type 'Q\\(2\\)'"),
        ("g.csv", "a,b\n1,2\n", "one row with a 'convs' column"),
        ("g.csv", ",index,convs,fisher\n0,0,\"['Conv',\",0.0\n", "not a list literal"),
        ("g.yaml", "genotype: []", "at least one block type"),
    ],
)
def test_bad_genotype_files_are_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BlockswapError, match=message):
        Genotype.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(BlockswapError, match="does not exist"):
        Genotype.load(tmp_path / "nope.yaml")
