"""``scaling-search report``: a study's report folder rebuilt from its storage alone."""

from __future__ import annotations

import argparse
from pathlib import Path


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = sorted(set(formats) - {"png", "svg", "pdf"})
    if not formats or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: choose png, svg and/or pdf, comma-separated")
    return formats


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="rebuild reports/<study>/ from the storage",
                                   description="Rebuild reports/<study>/ (index.html, figures, CSV tables) "
                                               "from the study's storage alone.")
    parser.add_argument("study", help="study name")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db)")
    parser.add_argument("--output", default="reports", help="reports folder (default: ./reports)")
    parser.add_argument("--static", type=_formats, default=(),
                        help="also write each figure as png, svg and/or pdf (comma-separated) for papers and slides; "
                             "needs pip install 'scaling-search[static]' and Chrome or Chromium (default: none)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scaling_search.report import build_report
    from scaling_search.settings import default_storage

    storage = args.storage or default_storage(args.study)
    print(f"report: {build_report(args.study, storage, Path(args.output), args.static)}")
    return 0


__all__ = ["register", "run"]
