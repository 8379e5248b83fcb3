"""`Genotype`: one block type per block of a network, read and written in every form users meet.

Forms read (`Genotype.load`):
- a whitespace-separated list of block names, or a single name (all blocks of that type);
- JSON or YAML: a list of names, or a mapping with a `genotype` key (other keys are metadata);
- the released code's CSV: one row whose `convs` cell is a Python-literal list of names (commas
  with or without spaces, as in `bs_imagenet_1.csv`).
Printing gives paper notation, space separated.
"""

from __future__ import annotations

import ast
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import BlockswapError
from ..validation import read_text
from .blocks import BlockType, parse_block


@dataclass(frozen=True)
class Genotype:
    blocks: tuple[BlockType, ...]

    def __post_init__(self):
        if not self.blocks:
            raise BlockswapError("a genotype needs at least one block type")

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def of(cls, names: Iterable[str | BlockType]) -> Genotype:
        return cls(tuple(parse_block(n) for n in names))

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """A whitespace-separated list of block names (paper notation or released aliases)."""
        return cls.of(text.split())

    @classmethod
    def uniform(cls, block: str | BlockType, length: int) -> Genotype:
        return cls((parse_block(block),) * length)

    @classmethod
    def from_data(cls, data, source: str = "genotype") -> Genotype:
        if isinstance(data, dict):
            if "genotype" not in data:
                raise BlockswapError(f"{source}: a mapping needs a 'genotype' key with a list of block names")
            data = data["genotype"]
        if isinstance(data, str):
            return cls.parse(data)
        if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
            raise BlockswapError(f"{source}: expected a list of block names, got {type(data).__name__}")
        return cls.of(data)

    @classmethod
    def from_csv(cls, text: str, source: str = "genotype CSV") -> Genotype:
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as err:  # a NUL byte, a stray carriage return
            raise BlockswapError(f"{source}: not a CSV ({err})") from None
        if len(rows) != 1 or "convs" not in rows[0]:
            raise BlockswapError(f"{source}: expected the released format, one row with a 'convs' column")
        try:
            names = ast.literal_eval(rows[0]["convs"])
        except (ValueError, SyntaxError):
            raise BlockswapError(f"{source}: the 'convs' cell is not a list literal of block names") from None
        return cls.from_data(names, source)

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        """Read a genotype file: .json, .yaml/.yml, or the released .csv format."""
        text, _ = read_text(path, "genotype file")  # a searched or picked genotype is checked against its seal
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return cls.from_csv(text, str(path))
        try:
            data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as err:
            raise BlockswapError(f"{path}: not valid {suffix.lstrip('.') or 'YAML'}: {err}".splitlines()[0]) from None
        return cls.from_data(data, str(path))

    @classmethod
    def from_spec(cls, spec: str, length: int) -> Genotype:
        """CLI form: a file path, a list of names, or one name meaning `length` blocks of it."""
        if Path(spec).suffix.lower() in {".json", ".yaml", ".yml", ".csv"}:
            return cls.load(spec)
        names = spec.split()
        if len(names) == 1:
            return cls.uniform(names[0], length)
        return cls.of(names)

    # --- output ---------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    def __str__(self) -> str:
        return " ".join(self.names)

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self):
        return iter(self.blocks)

    def __getitem__(self, i):
        return self.blocks[i]

    def to_json(self, **metadata) -> str:
        return json.dumps({**metadata, "genotype": self.names}, indent=2) + "\n"

    def to_yaml(self, **metadata) -> str:
        return yaml.safe_dump({**metadata, "genotype": self.names}, sort_keys=False)

    def to_csv(self) -> str:
        """The released code's format (released names where they exist, paper notation otherwise)."""
        names = [b.released_name or b.name for b in self.blocks]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["", "index", "convs", "fisher"])
        writer.writerow([0, 0, repr(names), 0.0])
        return out.getvalue()
