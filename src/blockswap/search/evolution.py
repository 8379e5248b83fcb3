"""Guided search: regularised (aging) evolution inside the budget band, beside random
sampling, both written as one history format so that they compare evaluation by evaluation.

A search makes `samples` proxy evaluations of distinct genotypes, all strictly within +-tolerance
of the budget (docs/evolution.md):

- random: the first `samples` candidates `sample_candidates` draws with the search seed (so the
  random history of the configured search seed lists the same networks as `candidates.csv`);
- evolution (Real et al. 2019, aging evolution): the first P evaluations are the first P of
  those random candidates; then, at every step, S members of the population (the P most recent
  evaluations) are drawn without replacement, the fittest is the parent, and the child is the
  parent with one block's type changed. A child must lie inside the band and be new (not yet
  evaluated): it is drawn uniformly among the parent's single-block mutants that are, which is
  what redrawing an outside (or repeated) mutant until one fits amounts to, without a retry
  limit. A parent with no such mutant passes to the next fittest of the tournament, then of the
  population; a population none of whose members has one stops the search with one error.

Every random choice of step t comes from a stream seeded by (search seed, t), and the population
is the last P rows of the history, so the history alone is the search's state: an interrupted
search replays its rows (checking that each is what this search proposes) and continues with the
identical sequence.

Fitness is any proxy of the proxy registry, measured by `Scorer` (its `higher_is_better` gives
the sign). A network's initialisation is seeded by its genotype (`genotype_key`), not by its
position in the history, so the proxy is one fixed function of the genotype that every method and
every search seed optimises alike.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BlockswapError
from ..networks.genotype import Genotype
from ..provenance import (
    check_result_name,
    input_digests,
    json_digest,
    provenance,
    write_result_text,
)
from ..seeds import derive_seed
from ..validation import parse_csv, read_csv_table
from .sampling import BUDGET_KINDS, CostTable, check_budget, sample_candidates
from .score_files import PARTIAL_SUFFIX, locked_partial, partial_preamble

SEARCH_METHODS = ("random", "evolution")
DEFAULT_POPULATION = 64  # Real et al. (2019) use populations of this order and tournaments of ~10
DEFAULT_TOURNAMENT = 10
DEFAULT_PROXY = "fisher"
# At most this share of the evaluations goes to evolution's random initial population.
INITIAL_SHARE = 3
EVOLUTION_STREAM = 13  # stream label of the per-step generators: derive_seed(seed, EVOLUTION_STREAM, t)
HISTORY_COLUMNS = ["evaluation", "genotype", "params", "macs", "ops", "parent", "slot", "fitness", "fisher", "seconds"]
HISTORY_KINDS = {
    "evaluation": "int",
    "genotype": "text",
    "params": "int",
    "macs": "int",
    "ops": "int",
    "parent": "int?",
    "slot": "int?",
    "fitness": "number",
    "fisher": "number",
    "seconds": "number",
}


def scaled_sizes(
    samples: int, population: int = DEFAULT_POPULATION, tournament: int = DEFAULT_TOURNAMENT
) -> tuple[int, int]:
    """Population P and tournament S used for `samples` evaluations: P is the configured one, but
    at most a third of the evaluations (at least 2), so evolution has steps left to take; S keeps
    its configured share of P (10 of 64), at least 2 and at most P."""
    if population < 2 or tournament < 1:
        raise BlockswapError(
            f"evolution needs a population of at least 2 and a tournament of at least 1, got "
            f"{population} and {tournament}"
        )
    if tournament > population:
        raise BlockswapError(f"the tournament ({tournament}) cannot be larger than the population ({population})")
    p = min(population, max(2, samples // INITIAL_SHARE))
    s = min(p, max(2, round(tournament * p / population)))
    return p, s


@dataclass(frozen=True)
class SearchSettings:
    method: str
    budget: float
    samples: int
    seed: int
    budget_kind: str = "params"
    tolerance: float = 0.025
    population: int = DEFAULT_POPULATION
    tournament: int = DEFAULT_TOURNAMENT
    proxy: str = DEFAULT_PROXY
    higher_is_better: bool = True

    def __post_init__(self):
        if self.method not in SEARCH_METHODS:
            raise BlockswapError(f"search method must be one of {', '.join(SEARCH_METHODS)}, got {self.method!r}")
        if self.budget_kind not in BUDGET_KINDS:
            raise BlockswapError(f"budget kind must be one of {', '.join(BUDGET_KINDS)}, got {self.budget_kind!r}")
        if self.samples < 1:
            raise BlockswapError(f"a search needs at least 1 evaluation, got {self.samples}")
        if not 0 < self.tolerance < 1:
            raise BlockswapError(f"tolerance must be a fraction between 0 and 1, got {self.tolerance}")
        scaled_sizes(self.samples, self.population, self.tournament)

    def sizes(self) -> tuple[int, int]:
        return scaled_sizes(self.samples, self.population, self.tournament)


def genotype_key(table: CostTable, choice) -> int:
    """A genotype's number in the space (mixed radix over the slots' type counts): the same genotype
    has the same number in every search, and it seeds the genotype's initialisation."""
    key = 0
    for slot, index in enumerate(choice):
        key = key * len(table.types[slot]) + int(index)
    return key


def choice_of(table: CostTable, genotype: Genotype) -> np.ndarray:
    if len(genotype) != len(table.types):
        raise BlockswapError(f"genotype has {len(genotype)} blocks but {table.arch.name} has {len(table.types)}")
    try:
        return np.array([table.types[s].index(t) for s, t in enumerate(genotype)], dtype=np.int64)
    except ValueError:
        raise BlockswapError(f"genotype {genotype} uses a block type that is not a candidate here") from None


@dataclass(frozen=True)
class Proposal:
    choice: np.ndarray
    parent: int | None  # evaluation index of the parent; None for a random (initial) network
    slot: int | None  # the block whose type the mutation changed


class Proposer:
    """What a search evaluates at step t, given the evaluations before it (deterministic)."""

    def __init__(self, table: CostTable, settings: SearchSettings):
        self.table, self.settings = table, settings
        check_budget(
            table, settings.budget, settings.budget_kind, settings.tolerance, settings.samples, "samples (evaluations)"
        )
        self.low = settings.budget * (1 - settings.tolerance)
        self.high = settings.budget * (1 + settings.tolerance)
        self.column = table.column(settings.budget_kind)
        self.population, self.tournament = settings.sizes()
        first = settings.samples if settings.method == "random" else min(self.population, settings.samples)
        frame = sample_candidates(
            table, settings.budget, first, settings.seed, settings.budget_kind, settings.tolerance
        )
        self.initial = [choice_of(table, Genotype.parse(g)) for g in frame["genotype"]]

    def cost(self, choice: np.ndarray) -> np.ndarray:
        return self.table.totals(choice[None, :])[0]

    def in_band(self, choice: np.ndarray) -> bool:
        total = self.cost(choice)[self.column]
        return bool(self.low < total < self.high)

    def mutants(self, choice: np.ndarray, seen: set) -> list[tuple[int, int]]:
        """(slot, type) of every single-block mutant of `choice` inside the band and not in `seen`."""
        total = int(self.cost(choice)[self.column])
        found = []
        for slot, costs in enumerate(self.table.costs):
            column = costs[:, self.column]
            totals = total - column[choice[slot]] + column
            for index in np.flatnonzero((totals > self.low) & (totals < self.high)):
                if index == choice[slot]:
                    continue
                child = choice.copy()
                child[slot] = index
                if child.astype(np.uint8).tobytes() not in seen:
                    found.append((slot, int(index)))
        return found

    def propose(self, step: int, choices: Sequence[np.ndarray], fitness: Sequence[float], seen: set) -> Proposal:
        if step < len(self.initial):
            return Proposal(self.initial[step], None, None)
        p, s = self.population, self.tournament
        rng = np.random.default_rng(derive_seed(self.settings.seed, EVOLUTION_STREAM, step))
        members = [step - p + int(i) for i in rng.choice(p, size=s, replace=False)]
        sign = 1.0 if self.settings.higher_is_better else -1.0

        def rank(i):
            return (-sign * fitness[i], i)

        rest = [i for i in range(step - p, step) if i not in members]
        for parent in sorted(members, key=rank) + sorted(rest, key=rank):
            options = self.mutants(choices[parent], seen)
            if options:
                slot, index = options[int(rng.integers(len(options)))]
                child = choices[parent].copy()
                child[slot] = index
                return Proposal(child, parent, slot)
        raise BlockswapError(
            f"evolution stopped at evaluation {step}: no member of the population of {p} has a single-block mutant "
            f"inside +-{self.settings.tolerance:.1%} of {self.settings.budget:g} {self.settings.budget_kind} that was "
            "not evaluated yet; the band is too narrow for evolution: widen the tolerance or ask for fewer evaluations"
        )


Evaluate = Callable[[int, np.ndarray], dict]  # (genotype key, choice) -> {"fitness", "fisher", "seconds"}


def run_search(
    table: CostTable,
    settings: SearchSettings,
    evaluate: Evaluate,
    done: pd.DataFrame | None = None,
    record: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """The history of a search: `done` (rows of an interrupted run) is replayed, every row checked
    against what this search proposes at its step, and the search goes on from there; each new
    row is passed to `record` (e.g. appended to a checkpoint) as soon as it is measured."""
    proposer = Proposer(table, settings)
    done = done if done is not None else pd.DataFrame(columns=HISTORY_COLUMNS)
    choices, fitness, rows, seen = [], [], [], set()
    for step in range(settings.samples):
        proposal = proposer.propose(step, choices, fitness, seen)
        genotype = str(table.genotype(proposal.choice))
        if step < len(done):
            row = {c: done.iloc[step][c] for c in HISTORY_COLUMNS}
            parent = None if pd.isna(row["parent"]) else int(row["parent"])
            if row["genotype"] != genotype or parent != proposal.parent or int(row["evaluation"]) != step:
                raise BlockswapError(
                    f"evaluation {step} of the interrupted search is not what this search proposes "
                    f"there ({row['genotype']} instead of {genotype}): it belongs to another search"
                )
        else:
            if not proposer.in_band(proposal.choice):  # cannot happen; a guard against a broken proposer
                raise BlockswapError(f"evaluation {step} ({genotype}) lies outside the budget band")
            params, macs, ops = (int(v) for v in proposer.cost(proposal.choice)[:3])  # a latency column may follow
            measured = evaluate(genotype_key(table, proposal.choice), proposal.choice)
            row = {
                "evaluation": step,
                "genotype": genotype,
                "params": params,
                "macs": macs,
                "ops": ops,
                "parent": proposal.parent,
                "slot": proposal.slot,
                "fitness": measured["fitness"],
                "fisher": measured["fisher"],
                "seconds": measured["seconds"],
            }
            if not math.isfinite(row["fitness"]):
                raise BlockswapError(
                    f"the proxy {settings.proxy} of {genotype} is {row['fitness']}, not a finite number"
                )
            if record is not None:
                record(row)
        rows.append(row)
        choices.append(proposal.choice)
        fitness.append(float(row["fitness"]))
        seen.add(proposal.choice.astype(np.uint8).tobytes())
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    for column in ("parent", "slot"):
        frame[column] = frame[column].astype("Int64")
    return frame


# --- the resumable file ---------------------------------------------------------------------------


def fingerprint(settings: SearchSettings, extra: dict) -> str:
    return json_digest({"search": asdict(settings), **extra})


def _afresh(partial: Path) -> str:
    return f"delete it to start this search afresh: rm {partial}"


def read_checkpoint(fh, partial: Path, preamble: bytes) -> pd.DataFrame:
    """The whole rows of an interrupted search's checkpoint (open as `fh`); a last line cut short by
    a kill is cut off, a checkpoint of another search is refused."""
    fh.seek(0)
    data = fh.read()
    complete = data[: data.rfind(b"\n") + 1]
    if not complete.startswith(preamble):
        if preamble.startswith(complete):
            fh.truncate(0)
            return pd.DataFrame(columns=HISTORY_COLUMNS)
        raise BlockswapError(f"{partial} is the checkpoint of another search (other settings); {_afresh(partial)}")
    if len(complete) < len(data):
        fh.truncate(len(complete))
    try:
        text = complete[complete.index(b"\n") + 1 :].decode("utf-8")
        return parse_csv(text, partial, HISTORY_KINDS, HISTORY_COLUMNS, first_line=2)
    except UnicodeDecodeError:
        raise BlockswapError(f"{partial} is damaged (not text); {_afresh(partial)}") from None
    except BlockswapError as err:
        raise BlockswapError(f"{err}; {_afresh(partial)}") from None


def search_to_file(
    table: CostTable, settings: SearchSettings, evaluate: Evaluate, out: Path, extra: dict | None = None, device=None
) -> pd.DataFrame:
    """Run (or resume) a search into `out` (sealed CSV, its record in the sidecar). Every evaluation
    is appended to `out.partial` as soon as it is measured (under a lock: one process per search),
    and `out` appears only when the search is complete."""
    out = Path(out)
    if out.is_dir():
        raise BlockswapError(f"{out} is a folder, not a file the history can be written to")
    check_result_name(out)
    extra = extra or {}
    key = fingerprint(settings, extra)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    preamble = partial_preamble(key, HISTORY_COLUMNS)
    start = time.perf_counter()
    with locked_partial(partial, out) as fh:
        done = read_checkpoint(fh, partial, preamble)
        resumed = len(done)

        def record(row: dict) -> None:
            if os.fstat(fh.fileno()).st_size == 0:
                fh.write(preamble)
            fh.write(pd.DataFrame([row], columns=HISTORY_COLUMNS).to_csv(index=False, header=False).encode())
            fh.flush()

        history = run_search(table, settings, evaluate, done, record)
        population, tournament = settings.sizes()
        meta = {
            "search": asdict(settings),
            "population_used": population if settings.method == "evolution" else None,
            "tournament_used": tournament if settings.method == "evolution" else None,
            "evaluations": len(history),
            "resumed_from": resumed,
            "fingerprint": key,
            **extra,
            "provenance": provenance(seed=settings.seed, device=device, seconds=time.perf_counter() - start),
        }
        write_result_text(out, history.to_csv(index=False), meta)
        partial.unlink()
    return history


def read_history(path) -> tuple[pd.DataFrame, dict]:
    """A search history (`blockswap search --out`), checked: seal, columns, cells, and its record."""
    frame, record = read_csv_table(path, "search history", HISTORY_KINDS, HISTORY_COLUMNS)
    if not record or not isinstance(record.get("search"), dict):
        raise BlockswapError(f"{path} has no search record beside it (its .provenance.json); rerun the search")
    search = record["search"]
    if frame["evaluation"].tolist() != list(range(len(frame))):
        raise BlockswapError(f"{path}: the evaluations are not numbered 0, 1, 2, ... in order")
    if search.get("samples") != len(frame):
        raise BlockswapError(f"{path} has {len(frame)} evaluations but its record says {search.get('samples')}")
    return frame, record


def best_so_far(fitness: Sequence[float], higher_is_better: bool) -> np.ndarray:
    """The best proxy value among the first n evaluations, for n = 1, 2, ..."""
    values = np.asarray(fitness, dtype=float)
    return np.maximum.accumulate(values) if higher_is_better else np.minimum.accumulate(values)


def history_winner(path, first: int | None = None) -> dict:
    """The selection record (as `blockswap select` writes) of a history's fittest evaluation (of the
    first `first` only: best-of-N); ties go to the earlier evaluation."""
    frame, record = read_history(path)
    search = record["search"]
    if first is not None:
        if not 1 <= first <= len(frame):
            raise BlockswapError(f"--first must be between 1 and the {len(frame)} evaluations of {path}, got {first}")
        frame = frame.head(first)
    sign = 1.0 if search["higher_is_better"] else -1.0
    ranked = frame.assign(_key=-sign * frame["fitness"]).sort_values(["_key", "evaluation"], kind="stable")
    best = ranked.iloc[0]
    return {
        "genotype": best["genotype"].split(),
        "candidate": int(best["evaluation"]),
        "fisher": float(best["fisher"]),
        "fitness": float(best["fitness"]),
        "proxy": search["proxy"],
        "params": int(best["params"]),
        "macs": int(best["macs"]),
        "ops": int(best["ops"]),
        "method": search["method"],
        "search_seed": search["seed"],
        "candidates": len(frame),
        "of_total": int(search["samples"]),
        "rank_table": ranked.head(10)[["evaluation", "genotype", "params", "fitness"]].to_dict(orient="records"),
        "sources": input_digests([path]),
    }
