"""The ``scaling-search`` command line: one module per subcommand, one error path for all of them."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from scaling_search import __version__
from scaling_search.cli import (ablate_cmd, baseline_cmd, compare_cmd, cost_cmd, dashboard_cmd, export_cmd, fidelity_cmd,
                                grid_cmd, latency_cmd, onnx_cmd, report_cmd, run_cmd, studies_cmd, train_cmd)
from scaling_search.cli.common import OneLineParser
from scaling_search.errors import NonFiniteLossError, UserError, no_room_left
from scaling_search.search.interrupt import install_interrupt_handler

_COMMANDS = (run_cmd, baseline_cmd, grid_cmd, export_cmd, ablate_cmd, compare_cmd, report_cmd, studies_cmd, dashboard_cmd,
             fidelity_cmd, cost_cmd, train_cmd, onnx_cmd, latency_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="scaling-search",
        description="EfficientNet-style compound scaling (Tan & Le, 2019) for your data and your budget.",
    )
    parser.add_argument("--version", action="version", version=f"scaling-search {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for module in _COMMANDS:
        module.register(subparsers)
    return parser


#: Flags whose values may start with '-' (a negative budget to refuse clearly, a family range such as -1:3).
_SIGNED_VALUES = ("--budget", "--family")


def _join_signed_values(argv: list[str]) -> list[str]:
    """``--family -1:3`` -> ``--family=-1:3``: argparse would read the value as an unknown flag."""
    joined: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in _SIGNED_VALUES and index + 1 < len(argv) and argv[index + 1].startswith("-"):
            joined.append(f"{token}={argv[index + 1]}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 training diverged, 2 bad input, 3 no space left on a device,
    130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(_join_signed_values(list(sys.argv[1:] if argv is None else argv)))
    previous = install_interrupt_handler()  # Ctrl-C never lands inside a storage write (see search.interrupt)
    try:
        return int(args.handler(args) or 0)
    except UserError as error:  # a user's mistake (CliError and DataError too); a bug keeps its traceback
        print(f"scaling-search {args.command}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"scaling-search {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scaling-search {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as error:  # a full disk is the machine's state: one line; anything else is a bug
        full = no_room_left(error)
        if full is None:
            raise
        print(f"scaling-search {args.command}: error: {full}; free some space and re-run the same command (what "
              "was saved before is unchanged)", file=sys.stderr)
        return 3
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def console() -> None:
    """The ``scaling-search`` command: :func:`main`, then exit with its code.

    After an interrupt (code 130) the process exits at once instead of waiting for library threads: a Ctrl-C
    that lands while Optuna starts a trial's heartbeat thread (a non-daemon thread) leaves that thread beating
    forever, and the interpreter's normal exit would wait for it. The storage is transactional, so an unfinished write is rolled back, not half-saved.
    """
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


__all__ = ["build_parser", "console", "main"]
