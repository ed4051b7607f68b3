"""``scaling-search run``: every stage of a study (baseline search, coefficient grid, export), then its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_search.cli.study import (add_budget_args, add_study_args, build_report, print_summary,
                                      printer, quiet_optuna, study_config)

EXAMPLES = """examples:
  scaling-search run --budget 2x                              # quick preset, synthetic data, B0 at 224 px
  scaling-search run --budget 800M --data cifar10.npz --subset 5000
  scaling-search run --budget 2x --baseline b0 --family 0:7   # skip stage 1; export a B0..B7-like family
  scaling-search run --budget 0.5x --baseline b0 --resolution 192
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from scaling_search.network.rules import RULES

    help_text = "all stages: baseline search, coefficient grid, export at deployment scale"
    parser = subparsers.add_parser("run", help=help_text, description=help_text, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(parser)
    add_budget_args(parser)
    group = parser.add_argument_group("scaling rule")
    group.add_argument("--strategy", choices=RULES, default="compound",
                       help="how the exported family is scaled: compound (default; the grid's alpha, beta, gamma), "
                            "fast (Dollar et al. 2021), v2 (compound, resolution capped), rs (ResNet-RS-style), or "
                            "one dimension; only compound and v2 run the grid. 'scaling-search compare' trains them "
                            "side by side on your data")
    group.add_argument("--max-resolution", type=int, default=480,
                       help="v2: the resolution cap in pixels (EfficientNetV2: 480 at ImageNet scale; default 480)")
    group.add_argument("--long-training", action="store_true",
                       help="rs: training is long enough to overfit, so the rule scales depth (default: width)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags, budget and preset checked before torch and Optuna load
    from scaling_search.search import runner

    quiet_optuna()
    result = runner.run(config, args.budget, args.family, Path(args.output), progress=not args.no_progress,
                        strategy=args.strategy, max_resolution=args.max_resolution,
                        long_training=args.long_training, on_event=printer(budget=args.budget))
    index = build_report(result.config, args.output) if result.trained else None
    print_summary(result.grid, result.exported, index, args, result.config)
    return 0


__all__ = ["register", "run"]
