"""``scaling-search dashboard``: every stage of a study in optuna-dashboard, on this machine."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dashboard", help="serve a study's stages in optuna-dashboard on this machine",
                                   description="Serve every stage of a study (baseline, grid, figures, comparisons) "
                                               "in optuna-dashboard, on localhost: trials, params (alpha, beta, gamma; "
                                               "figure, method, multiplier), plots. Needs pip install "
                                               "'scaling-search[dashboard]'. Ctrl-C stops it.")
    parser.add_argument("study", help="study name")
    parser.add_argument("--storage", help="Optuna storage URL or journal file (default: sqlite:///studies/<study>.db)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scaling_search.search.dashboard import serve
    from scaling_search.settings import default_storage

    def ready(stages: list[str]) -> None:
        print(f"dashboard: http://{args.host}:{args.port}/dashboard ({', '.join(stages)}); Ctrl-C stops it",
              file=sys.stderr, flush=True)

    serve(args.study, args.storage or default_storage(args.study), args.host, args.port, ready)
    return 0


__all__ = ["register", "run"]
