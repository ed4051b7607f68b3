"""``scaling-search studies``: the studies of a storage, each stage an Optuna study, with its trials."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "studies", help="list the studies and stages of a storage with their trial counts",
        description="List every study of a storage (default: every studies/*.db here), each stage as the Optuna "
                    "study that holds it (optuna.load_study(study_name='<study>:grid', storage=...)), with its "
                    "objective's name and its trials by state.")
    parser.add_argument("--storage", help="an Optuna storage URL or journal file (default: every studies/*.db)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scaling_search.cli.common import CliError, print_table
    from scaling_search.search.catalog import catalog, local_storages
    from scaling_search.settings import mask_credentials

    urls = [args.storage] if args.storage else local_storages()
    if not urls:
        raise CliError("no studies/*.db here; give --storage (a URL or journal file), or run a study first")
    rows = []
    for url in urls:
        for stage in catalog(url):
            rows.append({"storage": mask_credentials(url), "study": stage.study, "stage": stage.stage,
                         "optuna_study_name": stage.optuna_name, "objective": stage.metric or "",
                         "complete": stage.trials.get("complete", 0),
                         "other": ", ".join(f"{n} {state}" for state, n in sorted(stage.trials.items())
                                            if state != "complete")})
    print_table(rows, args.format)
    return 0


__all__ = ["register", "run"]
