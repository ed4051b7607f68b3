"""``scaling-search compare``: published scaling rules at equal deployment cost on your data."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_search.cli.study import add_study_args, build_report, printer, quiet_optuna, study_config


def _ratios(text: str) -> tuple[float, ...]:
    from scaling_search.network.budget import parse_budget
    from scaling_search.errors import UserError

    try:
        budgets = [parse_budget(part.strip()) for part in text.split(",") if part.strip()]
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not budgets or any(b.kind != "ratio" or b.value <= 1 for b in budgets):
        raise argparse.ArgumentTypeError(f"{text!r}: give ratios above 1 to the baseline's deployment MACs, "
                                         "comma-separated, such as 2x,4x")
    return tuple(sorted({b.value for b in budgets}))


def _rule_names(text: str) -> tuple[str, ...]:
    from scaling_search.network.rules import RULES

    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in RULES]
    if len(names) < 2 or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: name two or more of {', '.join(RULES)}, comma-separated")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="published scaling rules compared at equal deployment MACs on your data",
        description="Scale the deployment baseline to each budget by each rule -- compound (Tan & Le 2019), fast "
                    "compound (Dollar et al. 2021), EfficientNetV2-style capped resolution, ResNet-RS-style, and "
                    "the single dimensions -- train every network through the study's proxy with the study's "
                    "seeds, and report accuracy against deployment MACs, a table and a verdict per budget. "
                    "Compound and v2 use the study's grid coefficients when a finished run exists, else the "
                    "paper's. Resumable like every study.")
    add_study_args(parser)
    parser.add_argument("--strategies", type=_rule_names, default=("compound", "fast", "v2", "rs", "width", "depth",
                                                                    "resolution"),
                        help="rules to compare, comma-separated (default: compound,fast,v2,rs,width,depth,resolution)")
    parser.add_argument("--budget", type=_ratios, default=(2.0, 4.0),
                        help="budgets as ratios to the baseline's deployment MACs, comma-separated (default: 2x,4x)")
    parser.add_argument("--max-resolution", type=int, default=480,
                        help="v2: the resolution cap in pixels (EfficientNetV2: 480 at ImageNet scale; default 480)")
    parser.add_argument("--long-training", action="store_true",
                        help="rs: training is long enough to overfit, so the rule scales depth (default: width)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.search import runner

    quiet_optuna()
    runner.compare(config, args.strategies, args.budget, max_resolution=args.max_resolution,
                   long_training=args.long_training, output=Path(args.output), progress=not args.no_progress,
                   on_event=printer())
    print(f"report: {build_report(config, args.output)}")
    return 0


__all__ = ["register", "run"]
