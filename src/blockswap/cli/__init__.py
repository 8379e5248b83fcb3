"""The `blockswap` command: one subcommand per step of the paper's pipeline.

Each module registers its subcommands in a `COMMANDS` table of (add arguments, run) pairs:
`networks` (blocks, cost, data), `search` (sample, score, pick, select), `training` (train,
evaluate), `reporting` (report, figure, reseal), `workflow` (plan) and `detection` (Table 4: search, train,
evaluate, table), `compress` (a user's own network). A user's mistake
(`BlockswapError`, or a bad argument) is one line on stderr and exit code 2, and so is a file the
system refuses to read or write (a read-only folder, a name too long, a full disk: `OSError`). The
line is bounded: a huge value it quotes from a damaged input is cut in the middle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..errors import BlockswapError, os_error_message
from . import compress, deploy, detection, networks, reporting, search, training, workflow

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C
MAX_MESSAGE = 1000  # characters of an error line, at most (about)

COMMANDS: dict[str, tuple[Callable, Callable]] = {
    **networks.COMMANDS,
    **search.COMMANDS,
    **training.COMMANDS,
    **reporting.COMMANDS,
    **workflow.COMMANDS,
    **deploy.COMMANDS,
    **detection.COMMANDS,
    **compress.COMMANDS,
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


def one_line(message: str) -> str:
    """`message` as one line of bounded length: a value it quotes from a damaged input (a 1 MB CSV
    cell, a config value) is cut in the middle, keeping the start and the advice at the end."""
    message = " ".join(message.splitlines())
    if len(message) <= MAX_MESSAGE:
        return message
    head, tail = MAX_MESSAGE * 2 // 3, MAX_MESSAGE // 4
    return f"{message[:head]} [... {len(message) - head - tail} characters ...] {message[-tail:]}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        COMMANDS[args.command][1](args)
    except BlockswapError as err:
        print(f"blockswap: error: {one_line(str(err))}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as err:
        print(f"blockswap: error: {one_line(os_error_message(err))}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("blockswap: interrupted", file=sys.stderr)
        return INTERRUPTED
    return 0
