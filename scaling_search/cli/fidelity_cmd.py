"""``scaling-search fidelity``: how faithfully the study's proxy ranks the grid against a longer regime."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scaling_search.cli.study import add_study_args, build_report, printer, quiet_optuna, study_config

_DESCRIPTION = (
    "Train the grid's candidates (stage 2, shared with 'run') under the study's proxy and again under a reference "
    "regime -- k times the epochs, optionally a larger proxy resolution or width -- and report how faithfully the "
    "proxy ranks them: Kendall's tau and Spearman's rho with 95% bootstrap intervals, top-1 and top-3 agreement, "
    "the cost ratio, and the same scores for the proxy's training loss. The reference is a stage of the study: "
    "resumable, and reused by the next call. Writes reports/<study>/fidelity.json and rebuilds the report.")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fidelity", help="score the proxy's ranking of the grid against a longer regime",
                                   description=_DESCRIPTION)
    add_study_args(parser)
    parser.add_argument("--reference-epochs", type=int, default=3,
                        help="the reference trains this many times the proxy's epochs (default: 3)")
    parser.add_argument("--reference-resolution", type=int, default=None,
                        help="the reference proxy's resolution for the baseline, in pixels (default: the study's)")
    parser.add_argument("--reference-width", type=float, default=None,
                        help="the reference proxy's width factor, in (0, 1] (default: the study's)")
    parser.add_argument("--reference-images", choices=("native", "shrunk", "matched"), default=None,
                        help="what the reference's proxy inputs are made from ([proxy] images; native: as a "
                             "deployment network sees them) (default: as the study's proxy)")
    parser.add_argument("--candidates", nargs="+", metavar="REGIME", default=(),
                        help="cheaper proxies to compare against the same reference, each key=value pairs joined by "
                             "commas (keys epochs, resolution, width, data: the share of the training images), "
                             "e.g. epochs=1 resolution=32 data=0.5 epochs=2,width=0.25; the cheapest reaching "
                             "--target-tau is written as a preset, "
                             "reports/<study>/recommended-proxy.toml")
    parser.add_argument("--target-tau", type=_tau, default=None,
                        help="Kendall tau a recommended proxy must reach against the reference (default: 0.8)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text lines (default) or the JSON of fidelity.json on stdout (with --candidates: "
                             "{\"fidelity\": ..., \"proxies\": ...})")
    parser.set_defaults(handler=run_fidelity)


def _tau(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not -1 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a Kendall tau in [-1, 1], got {value:g}")
    return value


def run_fidelity(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.search import runner
    from scaling_search.search.fidelity import Reference, describe_fidelity
    from scaling_search.search.proxy_candidates import TARGET_TAU, CandidateRegime, describe_recommendation

    reference = Reference(args.reference_epochs, args.reference_resolution, args.reference_width,
                          args.reference_images)
    candidates = [CandidateRegime.parse(text) for text in args.candidates]
    quiet_optuna()
    if not candidates:
        result = runner.fidelity(config, reference, output=Path(args.output), progress=not args.no_progress,
                                 on_event=printer())
        print(json.dumps(result.to_dict(), indent=2) if args.format == "json" else describe_fidelity(result))
    else:
        target_tau = TARGET_TAU if args.target_tau is None else args.target_tau
        compared = runner.compare_proxies(config, reference, candidates, target_tau=target_tau,
                                          output=Path(args.output), progress=not args.no_progress,
                                          on_event=printer())
        own = compared.scored[0]
        if args.format == "json":
            print(json.dumps({"fidelity": own.to_dict(), "proxies": compared.to_dict()}, indent=2))
        else:
            print(describe_fidelity(own))
            print(describe_recommendation(compared))
        print(f"preset: {Path(args.output) / config.name / 'recommended-proxy.toml'}", file=sys.stderr)
    print(f"report: {build_report(config, args.output)}", file=sys.stderr)
    return 0


__all__ = ["register", "run_fidelity"]
