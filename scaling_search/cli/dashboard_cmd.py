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
    import optuna

    from scaling_search.errors import UserError
    from scaling_search.settings.study import mask_credentials
    from scaling_search.search.storage import open_for_reading

    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("the dashboard needs optuna-dashboard: pip install 'scaling-search[dashboard]'") from None
    url = args.storage or f"sqlite:///studies/{args.study}.db"
    storage = open_for_reading(url)
    stages = sorted(name for name in optuna.get_all_study_names(storage) if name.startswith(f"{args.study}:"))
    if not stages:
        raise UserError(f"no study {args.study!r} in {mask_credentials(url)}; give its --storage or run it first")
    print(f"dashboard: http://{args.host}:{args.port}/dashboard ({', '.join(stages)}); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as error:
        raise UserError(f"cannot serve on {args.host}:{args.port} ({error.strerror}); choose another --port") from None
    return 0


__all__ = ["register", "run"]
