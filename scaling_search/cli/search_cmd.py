"""``scaling-search run | baseline | grid | export``: the search pipeline on one study."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from scaling_search.cli.common import positive_float, positive_int, print_table
from scaling_search.cli.train_cmd import add_data_args


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", help="smoke, quick (default), standard, or a study .toml file")
    parser.add_argument("--study", help="study name (default: <preset>-<data>)")
    parser.add_argument("--storage", help="any Optuna storage URL (default: sqlite:///studies/<study>.db)")
    parser.add_argument("--output", default="reports", help="reports folder (default: ./reports)")
    add_data_args(parser)
    group = parser.add_argument_group("proxy training")
    group.add_argument("--epochs", type=positive_int)
    group.add_argument("--seed", type=int, help="seed of the sampler and of training")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    group.add_argument("--threads", type=positive_int, help="CPU threads per worker")
    group.add_argument("--proxy-resolution", type=positive_int, help="the baseline's proxy input resolution")
    group.add_argument("--proxy-width", type=positive_float, help="width multiplier of the proxy baseline")
    group.add_argument("--resolution-multiple", type=positive_int, help="round scaled resolutions to this multiple")
    group = parser.add_argument_group("search")
    group.add_argument("--baseline", choices=("search", "b0"), help="'b0' skips stage 1 and uses the reference B0")
    group.add_argument("--cost", choices=("macs", "latency"),
                       help="what the reward and the budget measure: MACs (default) or predicted latency")
    group.add_argument("--target-latency", type=positive_float, help="stage-1 reward target in ms (--cost latency)")
    group.add_argument("--trials", type=positive_int, help="stage-1 trials")
    group.add_argument("--target-macs", type=positive_int, help="stage-1 reward target (default: B0's MACs at the proxy)")
    group.add_argument("--grid-step", type=positive_float, help="spacing of alpha, beta, gamma")
    group.add_argument("--grid-max", type=positive_float, help="largest alpha, beta or gamma")
    group.add_argument("--grid-tol", type=float, help="allowed distance of the MACs ratio from 2")
    group.add_argument("--constraint", choices=("nominal", "achieved"), help="filter the grid on the nominal "
                       "product alpha*beta^2*gamma^2 or on the achieved MACs ratio after rounding")
    group.add_argument("--pruner", choices=("none", "median", "asha", "hyperband"))
    group.add_argument("--repeats", type=positive_int, help="training seeds per grid point")
    group.add_argument("--workers", type=positive_int,
                       help="processes training grid points at once on this machine (default: the preset's)")
    parser.add_argument("--no-progress", action="store_true")


def _add_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", default="2x", help="2x, 4x, 1.5x (phi = log2 ratio), MACs such as 800M, 1.2G, "
                        "or with --cost latency a latency such as 25ms")
    parser.add_argument("--family", help="also export phi in a range (0:7) or a list (0,1,2)")


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, help_text, handler, budget in (
        ("run", "all stages: baseline search, coefficient grid, export", run_all, True),
        ("baseline", "stage 1 only: search a baseline", run_stage_baseline, False),
        ("grid", "stage 2: the coefficient grid (finishes stage 1 first if needed)", run_stage_grid, False),
        ("export", "stage 3: export configs from a finished study (no training)", run_export, True),
    ):
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        _add_common(parser)
        if budget:
            _add_budget(parser)
        parser.set_defaults(handler=handler)


def _config(args: argparse.Namespace):
    from scaling_search.study import load_study_config

    if args.grid_tol is not None and args.grid_tol < 0:
        raise ValueError("--grid-tol must be >= 0")
    overrides = {
        "data": {"source": args.data_source, "format": args.data_format, "subset": args.subset,
                 "val_fraction": args.val_fraction, "seed": args.data_seed},
        "proxy": {"resolution": args.proxy_resolution, "width": args.proxy_width,
                  "resolution_multiple": args.resolution_multiple},
        "train": {"epochs": args.epochs, "seed": args.seed, "device": args.device, "threads": args.threads},
        "search": {"baseline": args.baseline, "cost": args.cost, "target_latency_ms": args.target_latency,
                   "trials": args.trials, "target_macs": args.target_macs,
                   "grid_step": args.grid_step, "grid_max": args.grid_max, "grid_tol": args.grid_tol,
                   "constraint": args.constraint, "pruner": args.pruner, "repeats": args.repeats,
                   "seed": args.seed, "workers": args.workers},
    }
    if args.data_source not in (None, "synthetic") and args.data_format is None:
        overrides["data"]["format"] = ""
    config = load_study_config(args.preset, overrides, args.study, args.storage)
    if config.search.workers > 1 and ":memory:" in config.storage:
        raise ValueError("--workers needs a shared storage; an in-memory SQLite URL cannot be shared")
    return config


def _check_budget(args: argparse.Namespace):
    from scaling_search.budget import parse_budget
    from scaling_search.export import parse_family

    return parse_budget(args.budget), parse_family(args.family)


def _worker(stage: str, config: Any, baseline_dict: dict[str, Any] | None) -> None:
    """Entry point of an extra worker process: the same stage against the same storage, no progress bar."""
    import optuna

    from scaling_search import pipeline
    from scaling_search.spec import NetworkSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = config.data.load()
    if stage == "grid":
        pipeline.run_grid(config, data, NetworkSpec.from_dict(baseline_dict), progress=False)
    else:  # an ablation figure: its points are already enqueued in the study
        study = pipeline.open_study(config, pipeline.open_storage(config), stage)
        pipeline.train_points(config, data, study, stage, lambda attrs: "", progress=False)


def _with_workers(stage: str, config: Any, workers: int, baseline: Any, main_fn) -> Any:
    if workers <= 1:
        return main_fn()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(stage, config, baseline and baseline.to_dict()))
                 for _ in range(workers - 1)]
    for process in processes:
        process.start()
    try:
        return main_fn()
    finally:
        for process in processes:
            process.join()


def _stage1(args, config, data):
    from scaling_search import pipeline

    return pipeline.run_baseline(config, data, progress=not args.no_progress)


def _per_worker_threads(config):
    """Split the cores between workers unless threads were set explicitly."""
    from scaling_search.train import default_threads

    workers = config.search.workers
    if workers > 1 and config.train.threads is None:
        # Measured on 2 cores: two 1-thread processes train about twice the images/s of one 2-thread process.
        config = replace(config, train=replace(config.train, threads=max(1, default_threads() // workers)))
    return config


def _stage2(args, config, data, baseline):
    from scaling_search import pipeline

    config = _per_worker_threads(config)
    workers = config.search.workers
    pipeline.prepare_grid(config, baseline)  # enqueue the points once, before any worker starts
    return _with_workers("grid", config, workers, baseline,
                         lambda: pipeline.run_grid(config, data, baseline, progress=not args.no_progress))


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _prepare(args: argparse.Namespace, budget: Any = None):
    """Validate everything that can be checked before work starts, then load the data."""
    from scaling_search.pipeline import check_settings

    _quiet_optuna()
    config = _config(args)
    if budget is not None:
        _check_budget_fits_cost(budget, config)
    check_settings(config)
    data = config.data.load()
    return config, data


def run_stage_baseline(args: argparse.Namespace) -> int:
    config, data = _prepare(args)
    baseline, info = _stage1(args, config, data)
    folder = Path(args.output) / config.name
    config.write(folder)
    _write_tables(config, folder)
    print(json.dumps({"baseline": info, "arch": __import__("scaling_search").encode_arch(baseline)}, indent=2))
    return 0


def run_stage_grid(args: argparse.Namespace) -> int:
    config, data = _prepare(args)
    baseline, _ = _stage1(args, config, data)
    _stage2(args, config, data, baseline)
    folder = Path(args.output) / config.name
    config.write(folder)
    _write_tables(config, folder)
    _print_grid_summary(config)
    return 0


def run_all(args: argparse.Namespace) -> int:
    budget, family = _check_budget(args)
    config, data = _prepare(args, budget)
    print(f"study {config.name} | {data.describe()} | storage {config.storage}", file=sys.stderr)
    baseline, _ = _stage1(args, config, data)
    _stage2(args, config, data, baseline)
    return _export(args, config, budget, family, data.name)


def _check_budget_fits_cost(budget, config) -> None:
    if budget.kind == "latency" and config.search.cost != "latency":
        raise ValueError(f"budget {budget.text} is a latency: add --cost latency")
    if budget.kind == "macs" and config.search.cost == "latency":
        raise ValueError(f"budget {budget.text} is a MAC count: use a ratio or a latency with --cost latency")


def run_export(args: argparse.Namespace) -> int:
    _quiet_optuna()
    budget, family = _check_budget(args)
    config = _config(args)
    _check_budget_fits_cost(budget, config)
    return _export(args, config, budget, family, None)


def _load_finished_grid(config):
    import optuna

    from scaling_search import pipeline

    storage = pipeline.open_storage(config)
    try:
        study = optuna.load_study(study_name=f"{config.name}:grid", storage=storage)
    except KeyError:
        raise ValueError(f"study {config.name!r} has no coefficient grid in {config.storage}; "
                         "run 'scaling-search grid' (or 'run') first") from None
    rows = pipeline.grid_table(study)
    expected = len(study.user_attrs.get("points", []))
    if len(rows) < expected:
        raise ValueError(f"stage 2 of study {config.name!r} has {len(rows)} of {expected} points finished; "
                         "rerun 'scaling-search grid' (or 'run') to finish it")
    return study, rows


def _print_grid_summary(config) -> dict[str, Any]:
    from scaling_search import pipeline

    study, rows = _load_finished_grid(config)
    print_table(rows, "table")
    summary = pipeline.choose_coefficients(rows)
    winner = summary["winner"]
    line = (f"winner: alpha={winner['alpha']} beta={winner['beta']} gamma={winner['gamma']} "
            f"acc {winner['accuracy']:.4f} at {winner['achieved_ratio']:.2f}x MACs")
    if summary.get("runner_up") is not None:
        if summary.get("separated") is None:
            line += f"; {summary['gap']:.4f} ahead of the runner-up (one seed: no spread measured, use --repeats)"
        else:
            verdict = "more" if summary["separated"] else "NOT more"
            line += (f"; {summary['gap']:.4f} ahead of the runner-up, {verdict} than the seed spread "
                     f"({summary['spread']:.4f})")
    print(line)
    return {"study": study, "rows": rows, "summary": summary}


def _write_tables(config, folder: Path) -> None:
    import optuna

    from scaling_search import pipeline

    storage = pipeline.open_storage(config)
    for stage in ("baseline", "grid"):
        try:
            study = optuna.load_study(study_name=f"{config.name}:{stage}", storage=storage)
        except KeyError:
            continue
        frame = study.trials_dataframe(attrs=("number", "value", "state", "duration", "params", "user_attrs"))
        frame = frame.drop(columns=[c for c in frame.columns if c in ("user_attrs_spec",)])
        path = folder / f"{stage}_trials.csv"
        frame.to_csv(path.with_suffix(".csv.tmp"), index=False)
        path.with_suffix(".csv.tmp").replace(path)


def _export(args, config, budget, family, data_name) -> int:
    from scaling_search.export import export_models
    from scaling_search.spec import NetworkSpec

    result = _print_grid_summary(config)
    study, rows, summary = result["study"], result["rows"], result["summary"]
    baseline = NetworkSpec.from_dict(study.user_attrs["baseline"])
    winner = summary["winner"]
    folder = Path(args.output) / config.name
    metrics = {"grid_winner": winner, "runner_up": summary.get("runner_up"), "separated": summary.get("separated")}
    provenance = {"dataset": data_name or config.data.source, "preset": config.preset, "seed": config.search.seed,
                  "storage": config.storage, "study": config.name, "grid_study": f"{config.name}:grid",
                  "grid_trial": winner["trial"]}
    latency = None
    if config.search.cost == "latency":
        from scaling_search.latency import LatencyTable

        latency = LatencyTable.open(config.search.latency_device, 1)
    paths = export_models(folder, baseline, (winner["alpha"], winner["beta"], winner["gamma"]), budget, family,
                          config.proxy.resolution_multiple, metrics, provenance, latency)
    config.write(folder)
    _write_tables(config, folder)
    import pandas as pd

    pd.DataFrame(rows).to_csv(folder / "grid_summary.csv", index=False)
    exported = []
    for path in paths:
        data = json.loads(path.read_text())
        exported.append({"file": str(path), "phi": data["phi"], "resolution": data["spec"]["resolution"],
                         "params": data["cost"]["params"], "macs": data["cost"]["macs"],
                         "macs_ratio": round(data["macs_ratio"], 3),
                         "target_macs": (data["budget"] or {}).get("target_macs")})
        if "latency" in data:
            exported[-1].update({"predicted_ms": round(data["latency"]["predicted_ms"], 3),
                                 "measured_ms": round(data["latency"]["measured_ms"], 3),
                                 "target_ms": (data["budget"] or {}).get("target_latency_ms")})
    print_table(exported, "table")
    from scaling_search.cli.report_cmd import build_report

    print(f"report: {build_report(config.name, config.storage, Path(args.output))}")
    return 0
