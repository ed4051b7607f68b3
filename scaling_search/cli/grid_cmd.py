"""``scaling-search grid``: stage 2, the coefficient grid (stage 1 first where it is not finished)."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_search.cli.study import add_study_args, print_grid, printer, quiet_optuna, study_config


def register(subparsers: argparse._SubParsersAction) -> None:
    help_text = "stage 2: the coefficient grid (finishes stage 1 first if needed)"
    parser = subparsers.add_parser("grid", help=help_text, description=help_text)
    add_study_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.search import runner

    quiet_optuna()
    print_grid(runner.grid(config, Path(args.output), progress=not args.no_progress, on_event=printer("prepared")))
    return 0


__all__ = ["register", "run"]
