"""``scaling-search export``: stage 3 from a finished study, no training: configs at deployment scale."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_search.cli.study import (add_budget_args, add_study_args, build_report, print_exported,
                                      print_grid, print_summary, quiet_optuna, study_config)


def register(subparsers: argparse._SubParsersAction) -> None:
    help_text = "stage 3: export configs from a finished study (no training)"
    parser = subparsers.add_parser("export", help=help_text, description=help_text)
    add_study_args(parser)
    add_budget_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags, budget and preset checked before torch and Optuna load
    from scaling_search.search import runner

    quiet_optuna()
    grid, paths = runner.export(config, args.budget, args.family, Path(args.output))
    print_grid(grid)
    print_exported(paths)
    print_summary(grid, paths, build_report(config, args.output), args, config)
    return 0


__all__ = ["register", "run"]
