"""A workflow configuration as a file: read and validated against its schema (SCHEMA, with the
number checks JSON Schema cannot make), keyed by a hash, and handed resolved to remote jobs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import BlockswapError
from ..provenance import atomic_write_text, json_digest
from ..validation import load_yaml

# The schema of a workflow configuration: package data (pyproject.toml), so that `blockswap plan`
# validates a configuration wherever the package is installed, and the workflow validates with it.
SCHEMA = Path(__file__).resolve().with_name("schema.yaml")


def config_key(config: dict) -> str:
    """A short hash of a configuration as given (before schema defaults are applied)."""
    return json_digest(config)[:16]


def config_error_message(err: Exception) -> str:
    """One line for a configuration the workflow cannot run: the schema violation (jsonschema's
    ValidationError, which Snakemake's `validate` wraps) with the key it concerns, or our own error."""
    import jsonschema  # a Snakemake dependency; only needed when a config is wrong

    for cause in (err, err.__cause__, err.__context__):
        if isinstance(cause, jsonschema.ValidationError):
            where = ".".join(str(part) for part in cause.absolute_path)
            return f"{where}: {cause.message}" if where else cause.message
    return str(err).splitlines()[0]


def save_resolved_config(config: dict, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def use_resolved_config(config: dict, path: Path) -> None:
    """Replace `config` in place by the resolved configuration saved by the main process."""
    resolved = yaml.safe_load(Path(path).read_text())
    config.clear()
    config.update(resolved)


@lru_cache(maxsize=1)
def load_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def _schema_types(node: dict) -> set[str]:
    """The JSON types a schema node allows, its oneOf/anyOf branches included; empty means any."""
    types: set[str] = set()
    for branch in (node, *node.get("oneOf", ()), *node.get("anyOf", ())):
        declared = branch.get("type", ())
        types |= {declared} if isinstance(declared, str) else set(declared)
    return types


def number_problems(value, node: dict, path: tuple = ()) -> Iterator[str]:
    """What JSON Schema lets through but no job can use, key by key: non-finite numbers (YAML .inf,
    .nan pass `minimum` and friends, as every comparison with NaN is false) and floats where the
    schema wants an integer (jsonschema counts 2.0 as an integer, but `--epochs 2.0` is no int)."""
    where = ".".join(str(part) for part in path)
    if isinstance(value, float):
        types = _schema_types(node)
        if not math.isfinite(value):
            yield f"{where}: {value} is not a finite number; allowed: finite numbers (no .inf or .nan)"
        elif types and "number" not in types:
            yield f"{where}: {value} is not an integer; allowed: a whole number, no decimal point (e.g. {int(value)})"
    elif isinstance(value, dict):
        properties = node.get("properties", {})
        for key, item in value.items():
            yield from number_problems(item, properties.get(key, {}), (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from number_problems(item, node.get("items", {}), (*path, index))


def check_numbers(config: dict) -> None:
    problem = next(number_problems(config, load_schema()), None)
    if problem:
        raise BlockswapError(problem)


def load_config(paths: list[Path]) -> dict:
    """A workflow configuration from one or more files (later ones override, nested keys merged,
    as Snakemake merges --configfile), validated and with the schema's defaults applied."""
    from snakemake.utils import update_config, validate  # Snakemake is slow to import: only for a configuration

    config: dict = {}
    for path in paths:
        loaded = load_yaml(path, "configuration") or {}
        if not isinstance(loaded, dict):
            raise BlockswapError(f"{path}: a configuration is a mapping of keys")
        update_config(config, loaded)
    try:
        validate(config, str(SCHEMA))
    except Exception as err:  # Snakemake wraps jsonschema's error; the message names the key
        raise BlockswapError(f"config error: {config_error_message(err)}") from None
    return config
