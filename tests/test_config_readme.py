"""config/README.md documents exactly the keys of the configuration schema, with their defaults, and
every shipped config."""

import re

import pytest
import yaml
from helpers import ROOT

from blockswap.planning.config_file import SCHEMA

README = ROOT / "config" / "README.md"

# A row of a key table: | `dotted.key` | meaning | allowed values | default |
ROW = re.compile(r"^\|\s*`([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)`\s*\|(.*)\|\s*$")


def schema_keys(properties: dict, prefix: str = "") -> dict[str, dict]:
    """Every property of the schema, nested ones included, by dotted name."""
    keys = {}
    for name, spec in properties.items():
        keys[prefix + name] = spec
        keys.update(schema_keys(spec.get("properties", {}), f"{prefix}{name}."))
    return keys


def readme_rows() -> dict[str, list[str]]:
    """The cells after the key of every key-table row of the README, by key."""
    rows = {}
    for line in README.read_text().splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is documented twice"
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


SCHEMA_KEYS = schema_keys(yaml.safe_load(SCHEMA.read_text())["properties"])


def test_schema_walk_reaches_nested_keys():
    # The walk must go below the sections, or the comparison below would miss most keys.
    assert {"run", "search", "search.budget_kind", "search.limits.latency", "detection.seed"} <= set(SCHEMA_KEYS)


def test_every_schema_key_is_documented():
    missing = sorted(set(SCHEMA_KEYS) - set(readme_rows()))
    assert not missing, f"config/README.md does not document {missing}"


def test_no_documented_key_is_unknown_to_the_schema():
    unknown = sorted(set(readme_rows()) - set(SCHEMA_KEYS))
    assert not unknown, f"config/README.md documents keys the schema does not have: {unknown}"


@pytest.mark.parametrize("key", sorted(SCHEMA_KEYS))
def test_documented_default_is_the_schema_default(key):
    cells = readme_rows().get(key)
    if cells is None:
        pytest.skip("undocumented: reported by test_every_schema_key_is_documented")
    assert len(cells) == 3, f"{key}: expected meaning, allowed values and default, got {cells}"
    default = cells[2]
    assert default.startswith("`") and default.endswith("`"), f"{key}: default {default!r} is not in backticks"
    assert yaml.safe_load(default.strip("`")) == SCHEMA_KEYS[key]["default"], key


def test_every_shipped_configuration_is_described():
    text = README.read_text()
    shipped = sorted((ROOT / "config").glob("*.yaml"))
    for path in shipped:
        name = path.relative_to(ROOT).as_posix()
        label = f"`{name}/`" if path.is_dir() else f"`{name}`"
        assert f"| {label} |" in text, f"config/README.md has no row for {label}"
