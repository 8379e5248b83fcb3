"""The `blockswap` command: one subcommand per step of the paper's pipeline.

Each module registers its subcommands in a `COMMANDS` table of (add arguments, run) pairs:
`networks` (blocks, cost, data), `search` (sample, score, pick, select), `training` (train,
evaluate), `results` (report, figure, reseal) and `workflow` (plan). A user's mistake
(`BlockswapError`, or a bad argument) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional

from ..errors import BlockswapError
from . import networks, results, search, training, workflow

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C

COMMANDS: dict[str, tuple[Callable, Callable]] = {
    **networks.COMMANDS,
    **search.COMMANDS,
    **training.COMMANDS,
    **results.COMMANDS,
    **workflow.COMMANDS,
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage dump) and exit code 2."""

    def error(self, message: str):
        raise BlockswapError(f"{message} (see '{self.prog} --help')")


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="blockswap", description="BlockSwap: Fisher-guided block substitution.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        COMMANDS[args.command][1](args)
    except BlockswapError as err:
        print(f"blockswap: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("blockswap: interrupted", file=sys.stderr)
        return INTERRUPTED
    return 0
