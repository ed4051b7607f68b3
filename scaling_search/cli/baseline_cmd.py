"""``scaling-search baseline``: stage 1 alone, the baseline searched around the deployment network."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scaling_search.cli.study import add_study_args, printer, quiet_optuna, study_config


def register(subparsers: argparse._SubParsersAction) -> None:
    help_text = "stage 1 only: search a baseline"
    parser = subparsers.add_parser("baseline", help=help_text, description=help_text)
    add_study_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.network.arch import encode_arch
    from scaling_search.search import runner

    quiet_optuna()
    baseline, info = runner.baseline(config, Path(args.output), progress=not args.no_progress,
                                     on_event=printer("prepared"))
    print(json.dumps({"baseline": info, "arch": encode_arch(baseline)}, indent=2))
    return 0


__all__ = ["register", "run"]
