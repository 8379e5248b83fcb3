"""The `blockswap` command: one subcommand per step of the paper's pipeline.

Each module registers its subcommands in a `COMMANDS` table of (add arguments, run) pairs:
`networks` (blocks, cost, data), `search` (sample, pick, select, best), `scoring` (score, search),
`training` (train, evaluate), `reporting` (report, figure, reseal), `workflow` (plan), `deploy`
(latency, export, ...), `detection` (Table 4: search, train, evaluate, table) and `compress` (a
user's own network).
`COMMAND_MODULES` names each subcommand's module, so a run imports that module alone: a workflow
job that writes a table or picks a network does not pay for torch's import. A user's mistake
(`BlockswapError`, or a bad argument) is one line on stderr and exit code 2, and so is a file the
system refuses to read or write (a read-only folder, a name too long, a full disk: `OSError`). The
line is bounded: a huge value it quotes from a damaged input is cut in the middle.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable

from ..errors import BlockswapError, os_error_message

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C
MAX_MESSAGE = 1000  # characters of an error line, at most (about)

# Subcommand -> the module of blockswap.cli whose COMMANDS table defines it.
COMMAND_MODULES = {
    **dict.fromkeys(("blocks", "cost", "data"), "networks"),
    **dict.fromkeys(("sample", "pick", "select", "best"), "search"),
    **dict.fromkeys(("score", "search"), "scoring"),
    **dict.fromkeys(("train", "evaluate"), "training"),
    **dict.fromkeys(("report", "figure", "reseal"), "reporting"),
    "plan": "workflow",
    **dict.fromkeys(("latency", "latency-calibrate", "latency-check", "measure", "export"), "deploy"),
    "detection": "detection",
    "compress": "compress",
}


def commands(names: Iterable[str] | None = None) -> dict[str, tuple[Callable, Callable]]:
    """The (add arguments, run) pair of each subcommand in `names` (default: all), importing only
    their modules."""
    names = list(COMMAND_MODULES) if names is None else list(names)
    table = {}
    for module in dict.fromkeys(COMMAND_MODULES[name] for name in names):
        table.update(importlib.import_module(f".{module}", __name__).COMMANDS)
    return {name: table[name] for name in names}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage dump) and exit code 2."""

    def error(self, message: str):
        raise BlockswapError(f"{message} (see '{self.prog} --help')")


def make_parser(command: str | None = None) -> ArgumentParser:
    """The command line's parser. With `command`, only that subcommand's arguments are built (and
    its module imported); the others are listed by name, so an unknown name still gets the list."""
    parser = ArgumentParser(prog="blockswap", description="BlockSwap: Fisher-guided block substitution.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    if command is None:
        for add, _ in commands().values():
            add(sub)
        return parser
    for name in COMMAND_MODULES:
        if name == command:
            commands([name])[name][0](sub)
        else:
            sub.add_parser(name)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand `argv` names (its first word, since `blockswap` itself takes no options
    but --help), or None."""
    return argv[0] if argv and argv[0] in COMMAND_MODULES else None


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
        argv = sys.argv[1:] if argv is None else list(argv)
        args = make_parser(chosen_command(argv)).parse_args(argv)
        commands([args.command])[args.command][1](args)
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
