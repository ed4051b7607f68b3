"""The ``scaling-search`` command line: one module per subcommand, one error path for all of them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scaling_search import __version__
from scaling_search.cli import cost_cmd, latency_cmd, report_cmd, search_cmd, train_cmd
from scaling_search.cli.common import CliError, OneLineParser
from scaling_search.errors import NonFiniteLossError, UserError

_COMMANDS = (search_cmd, report_cmd, cost_cmd, train_cmd, latency_cmd)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as error:
        print(f"scaling-search {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (UserError, ValueError) as error:  # validation raises UserError (a ValueError) with a full sentence
        print(f"scaling-search {args.command}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"scaling-search {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scaling-search {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
