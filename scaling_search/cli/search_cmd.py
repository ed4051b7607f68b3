"""``scaling-search run | baseline | grid | export``: the search pipeline on one study (parse, call, print)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scaling_search.cli.common import CliError, positive_float, positive_int, print_table, workers_arg
from scaling_search.cli.train_cmd import add_data_args
from scaling_search.confidence import SEPARATED_AT
from scaling_search.runtimes import RUNTIMES

RUN_EXAMPLES = """examples:
  scaling-search run --budget 2x                              # quick preset, synthetic data, B0 at 224 px
  scaling-search run --budget 800M --data cifar10.npz --subset 5000
  scaling-search run --budget 2x --baseline b0 --family 0:7   # skip stage 1; export a B0..B7-like family
  scaling-search run --budget 0.5x --baseline b0 --resolution 192
"""


def add_study_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command that works on a study (run, baseline, grid, export, ablate)."""
    parser.add_argument("--preset", default="quick", help="smoke, quick, standard, or a study .toml file (default: quick)")
    parser.add_argument("--study", help="study name (default: <preset>-<data>)")
    parser.add_argument("--storage", help="any Optuna storage URL (default: sqlite:///studies/<study>.db)")
    parser.add_argument("--output", default="reports", help="reports folder (default: ./reports)")
    add_data_args(parser)
    group = parser.add_argument_group("deployment scale (what you will train and ship)")
    group.add_argument("--network", help="the deployment network stage 1 searches around: b0..b7 or a spec/config "
                       "file (default: b0)")
    group.add_argument("--resolution", type=positive_int,
                       help="deployment input resolution in pixels (default: the network's own, 224 for b0)")
    group.add_argument("--depth-rounding", choices=("nearest", "ceil"),
                       help="rounding of scaled repeats (default: nearest; ceil is the official rule)")
    group = parser.add_argument_group("proxy (what is trained to measure each candidate)")
    group.add_argument("--proxy-resolution", type=positive_int,
                       help="pixels the deployment baseline is trained at; every candidate shrinks by the same factor")
    group.add_argument("--proxy-width", type=positive_float, help="width factor of every proxy, in (0, 1]")
    group.add_argument("--proxy-depth", type=positive_float, help="depth factor of every proxy, in (0, 1]")
    group.add_argument("--epochs", type=positive_int, help="proxy training epochs (default: the preset's)")
    group.add_argument("--seed", type=int, help="seed of the sampler and of training (default: 0)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    group.add_argument("--threads", type=positive_int, help="CPU threads per worker (default: cores / workers)")
    group = parser.add_argument_group("search")
    group.add_argument("--baseline", help="'search' runs stage 1 (default); b0..b7 or a spec/config file skips it "
                       "and uses that network as the deployment baseline")
    group.add_argument("--cost", choices=("macs", "latency"),
                       help="what the reward and the budget measure: MACs (default) or predicted latency")
    group.add_argument("--target-latency", type=positive_float, help="stage-1 reward target in ms (--cost latency)")
    group.add_argument("--latency-runtime", choices=RUNTIMES,
                       help="the runtime whose calibrated table predicts latency (--cost latency): torch (default) or "
                            "onnxruntime (pip install \"scaling-search[onnx]\")")
    group.add_argument("--trials", type=positive_int, help="stage-1 trials (default: the preset's)")
    group.add_argument("--screen", type=int, metavar="N",
                       help="stage 1 scores N sampled candidates untrained (NASWOT) and trains the --trials best "
                            "instead of sampling each trial (default: the preset's, 0 = off)")
    group.add_argument("--target-macs", type=positive_int,
                       help="stage-1 reward target in deployment MACs (default: the deployment network's)")
    group.add_argument("--grid-step", type=positive_float, help="spacing of alpha, beta, gamma (default: the preset's)")
    group.add_argument("--grid-max", type=positive_float, help="largest alpha, beta or gamma (default: 2)")
    group.add_argument("--grid-tol", type=float, help="how far from 2 alpha*beta^2*gamma^2 and the achieved "
                       "deployment MACs ratio may be (default: 0.1)")
    group.add_argument("--pruner", choices=("none", "median", "asha", "hyperband"),
                       help="Optuna pruner on per-epoch accuracy (default: the preset's)")
    group.add_argument("--repeats", type=positive_int, help="training seeds per grid point (default: 1)")
    group.add_argument("--race", type=int, metavar="N", dest="race_seeds",
                       help="up to N extra trainings after the grid, each a new seed of a point that could still "
                            "win, until the winner is separated at 95%% (default: the preset's, 0 = off)")
    group.add_argument("--workers", type=workers_arg,
                       help="processes training grid points at once on this machine, or 'auto' (this machine's "
                            "measured plan, cached; workers and threads) (default: the preset's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-trial lines")


def _add_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", default="2x", help="deployment cost of the exported model: a ratio to the "
                        "baseline (2x, 0.5x), MACs (800M, 1.2G), or with --cost latency a latency (25ms); phi is "
                        "bisected on the achieved cost (default: 2x)")
    parser.add_argument("--budget-tol", type=positive_float,
                        help="relative tolerance of the exported cost around the budget (default: 0.05)")
    parser.add_argument("--family", help="also export phi in a range (0:7, -1:3) or a list (0,1,2.5)")


def _add_strategy(parser: argparse.ArgumentParser) -> None:
    from scaling_search.rules import RULES

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


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, help_text, handler, budget in (
        ("run", "all stages: baseline search, coefficient grid, export at deployment scale", run_all, True),
        ("baseline", "stage 1 only: search a baseline", run_stage_baseline, False),
        ("grid", "stage 2: the coefficient grid (finishes stage 1 first if needed)", run_stage_grid, False),
        ("export", "stage 3: export configs from a finished study (no training)", run_export, True),
    ):
        parser = subparsers.add_parser(name, help=help_text, description=help_text,
                                       epilog=RUN_EXAMPLES if name == "run" else None,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        add_study_args(parser)
        if budget:
            _add_budget(parser)
        if name == "run":
            _add_strategy(parser)
        parser.set_defaults(handler=handler)


def study_config(args: argparse.Namespace) -> Any:
    """The frozen study config from the preset and the flags."""
    from scaling_search.settings.study import load_study_config

    if args.grid_tol is not None and not args.grid_tol >= 0:
        raise CliError("--grid-tol must be >= 0")
    baseline = getattr(args, "baseline", None)
    network = args.network
    if baseline not in (None, "search"):
        network = baseline
    overrides = {
        "data": {"source": args.data_source, "format": args.data_format, "subset": args.subset,
                 "val_fraction": args.val_fraction, "seed": args.data_seed},
        "deployment": {"network": network, "resolution": args.resolution, "depth_rounding": args.depth_rounding},
        "proxy": {"resolution": args.proxy_resolution, "width": args.proxy_width, "depth": args.proxy_depth},
        "train": {"epochs": args.epochs, "seed": args.seed, "device": args.device, "threads": args.threads},
        "search": {"baseline": None if baseline is None else ("search" if baseline == "search" else "network"),
                   "cost": args.cost, "target_latency_ms": args.target_latency,
                   "latency_runtime": args.latency_runtime,
                   "trials": args.trials, "screen": args.screen, "target_macs": args.target_macs,
                   "grid_step": args.grid_step,
                   "grid_max": args.grid_max, "grid_tol": args.grid_tol,
                   "budget_tol": getattr(args, "budget_tol", None), "pruner": args.pruner, "repeats": args.repeats,
                   "race_seeds": getattr(args, "race_seeds", None),
                   "seed": args.seed, "workers": args.workers},
    }
    if args.data_source not in (None, "synthetic") and args.data_format is None:
        overrides["data"]["format"] = ""
    return load_study_config(args.preset, overrides, args.study, args.storage)


def _budget(args: argparse.Namespace) -> tuple[Any, list[float] | None]:
    from scaling_search.budget import parse_budget
    from scaling_search.search.export import parse_family

    return parse_budget(args.budget), parse_family(args.family)


def _quiet_optuna() -> None:
    """Optuna's own log off below errors: its 'Trial failed' warning prints a traceback for Ctrl-C (and for a
    diverged trial, which the stage's progress line already reports in one line)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _describe_scales(prepared: Any) -> str:
    from scaling_search.network.cost import count_cost
    from scaling_search.proxy import to_proxy

    network = prepared.network
    proxy = to_proxy(network, prepared.transform)
    deployed, trained = count_cost(network), count_cost(proxy)
    config = prepared.config
    return (f"study {config.name} | {prepared.data.describe()}\n"
            f"deployment baseline: {config.deployment.network} at {network.resolution} px "
            f"({deployed.macs / 1e6:,.1f}M MACs, {deployed.params / 1e6:.2f}M params; depth rounding "
            f"{config.deployment.depth_rounding}); the data's native {prepared.data.native_resolution} px images are "
            f"resized to it (--resolution changes it)\n"
            f"proxy: {proxy.resolution} px, width x{prepared.transform.width:g}, depth x{prepared.transform.depth:g} "
            f"({trained.macs / 1e6:,.2f}M MACs), {config.train.epochs} epoch(s)\n{_describe_execution(config)}")


def _describe_execution(config: Any) -> str:
    threads = f" x {config.train.threads} thread(s)" if config.train.threads else ""
    if not config.plan:
        return f"execution: {config.search.workers} worker(s){threads}"
    measured = ", ".join(f"{name} {rate:.0f}" for name, rate in
                         sorted(config.plan["measured"].items(), key=lambda item: -item[1]))
    return (f"execution: {config.search.workers} worker(s){threads}, this machine's measured plan (training "
            f"images/s by workers x threads: {measured}; cached, see study.json)")


def run_stage_baseline(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.network.arch import encode_arch
    from scaling_search.search import runner

    _quiet_optuna()
    prepared = runner.prepare(config)
    print(_describe_scales(prepared), file=sys.stderr)
    baseline, info = runner.search_baseline(prepared, progress=not args.no_progress)
    folder = Path(args.output) / prepared.config.name
    prepared.config.write(folder)
    runner.write_tables(prepared.config, folder)
    print(json.dumps({"baseline": info, "arch": encode_arch(baseline)}, indent=2))
    return 0


def run_stage_grid(args: argparse.Namespace) -> int:
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.search import runner

    _quiet_optuna()
    prepared = runner.prepare(config)
    print(_describe_scales(prepared), file=sys.stderr)
    baseline, _ = runner.search_baseline(prepared, progress=not args.no_progress)
    grid = runner.search_grid(prepared, baseline, progress=not args.no_progress)
    folder = Path(args.output) / prepared.config.name
    prepared.config.write(folder)
    runner.write_tables(prepared.config, folder, grid.rows)
    _print_grid(grid)
    return 0


def run_all(args: argparse.Namespace) -> int:
    budget, family = _budget(args)  # flags, budget and preset checked before torch and Optuna load
    config = study_config(args)
    _check_strategy(args, budget, config)
    from scaling_search.report import build_report
    from scaling_search.search import runner

    _quiet_optuna()
    prepared = runner.prepare(config, budget=budget)
    print(_describe_scales(prepared), file=sys.stderr)
    baseline, info = runner.search_baseline(prepared, progress=not args.no_progress)
    print(_describe_baseline(info))
    if args.strategy in ("compound", "v2"):
        runner.search_grid(prepared, baseline, progress=not args.no_progress)
    if args.strategy == "compound":
        grid, paths = runner.export(prepared.config, budget, family, Path(args.output), prepared.data.name)
    else:
        grid, paths = runner.export_by_rule(prepared.config, budget, family, Path(args.output), prepared.data.name,
                                            baseline, args.strategy, max_resolution=args.max_resolution,
                                            long_training=args.long_training)
    if grid is not None:
        _print_grid(grid)
    _print_exported(paths)
    trained = grid is not None or prepared.config.search.baseline == "search"
    index = build_report(prepared.config.name, prepared.config.storage, Path(args.output)) if trained else None
    _print_summary(grid, paths, index, args)
    return 0


def _describe_baseline(info: dict[str, Any]) -> str:
    """One line on where the baseline came from: stage 1's best trial (and its screen), or the network as given."""
    if info.get("source") != "stage 1 search":
        return f"baseline: {info.get('source', 'as given')}"
    cost = (f"{info['target']:.1f} ms target" if info.get("cost") == "latency"
            else f"{info['macs'] / 1e6:,.0f}M deployment MACs")
    line = (f"baseline: stage 1 trial {info['trial']}, reward {info['reward']:.4f} (proxy val top-1 "
            f"{info['accuracy']:.2%}, {cost})")
    screen = info.get("screen")
    if screen:
        line += (f"; screened {screen['sampled']} candidates untrained ({screen['signal']} score, "
                 f"{screen['in_band']} within {screen['band']:.0%} of the target's MACs, {screen['seconds']:.0f} s) "
                 f"and trained the best {screen['trained']}")
    return line


def _check_strategy(args: argparse.Namespace, budget: Any, config: Any) -> None:
    """Refuse, before any training, a rule that cannot meet this budget or whose parameters are wrong."""
    if args.strategy == "compound":
        return
    if budget.kind == "latency" or config.search.cost == "latency":
        raise CliError(f"--strategy {args.strategy} scales to a MAC budget; drop --cost latency and give a ratio "
                       "or a MAC count, or use --strategy compound for a latency budget")
    if args.strategy == "v2":
        from scaling_search.network.family import PAPER_COEFFICIENTS
        from scaling_search.rules import parse_rule

        try:
            parse_rule("v2", coefficients=PAPER_COEFFICIENTS, base_resolution=config.deployment.network_spec().resolution,
                       max_resolution=args.max_resolution)
        except ValueError as error:
            raise CliError(f"--max-resolution: {error}") from None


def run_export(args: argparse.Namespace) -> int:
    budget, family = _budget(args)  # flags, budget and preset checked before torch and Optuna load
    config = study_config(args)
    from scaling_search.report import build_report
    from scaling_search.search import runner

    _quiet_optuna()
    grid, paths = runner.export(config, budget, family, Path(args.output))
    _print_grid(grid)
    _print_exported(paths)
    _print_summary(grid, paths, build_report(config.name, config.storage, Path(args.output)), args)
    return 0


def _print_grid(grid: Any) -> None:
    columns = ("point", "state", "alpha", "beta", "gamma", "nominal_ratio", "achieved_ratio", "resolution", "macs",
               "proxy_resolution", "proxy_macs", "accuracy", "accuracy_std")
    print_table([{k: _rounded(row.get(k)) for k in columns} for row in grid.rows], "table")
    for collision in grid.collisions:
        kind = "deployment networks" if collision["same_deployment"] else "proxies"
        print(f"collision: alpha, beta, gamma = {tuple(collision['dropped'])} has the same {kind} as "
              f"{tuple(collision['kept'])}; trained once")
    summary = grid.summary
    winner = summary["winner"]
    alpha, beta, gamma = grid.coefficients
    print(f"coefficients: alpha={alpha:g} beta={beta:g} gamma={gamma:g} (alpha*beta^2*gamma^2 = "
          f"{alpha * beta**2 * gamma**2:.3f}; {winner['achieved_ratio']:.3f}x the baseline's deployment MACs at phi=1)")
    line = f"winner: proxy val top-1 {winner['accuracy']:.4f}"
    if summary.get("runner_up") is not None:
        line += f", {summary['gap']:.4f} ahead of the runner-up"
    if summary.get("p_best") is not None:
        verdict = "separated from the rest" if summary["separated"] else \
            f"NOT separated at {SEPARATED_AT:.0%} (more seeds where they decide it: --race N)"
        line += f"; P(best) {summary['p_best']:.2f}, {verdict}; noise counted: {summary['noise']}"
        raced = sum(row.get("race_seeds", 0) for row in grid.rows)
        if raced:
            line += f"; {raced} extra seed(s) raced on the leaders ({winner['seeds']} on the winner)"
    elif summary.get("runner_up") is not None:
        line += " (no noise known: the trials record neither seeds nor validation size)"
    print(line)


def _print_summary(grid: Any, paths: list[Path], index: Path | None, args: argparse.Namespace) -> None:
    """The last lines: what was found, where it was written, what to run next."""
    budgeted = [p for p in paths if (json.loads(p.read_text()).get("budget") or {}).get("text") == args.budget]
    model = budgeted[0] if budgeted else paths[0]
    data = f" --data {args.data_source}" if args.data_source not in (None, "synthetic") else ""
    strategy = getattr(args, "strategy", "compound")
    if strategy == "compound":
        alpha, beta, gamma = grid.coefficients
        print(f"found: alpha={alpha:g} beta={beta:g} gamma={gamma:g}; the {args.budget} model is {model}")
    else:
        rule = json.loads(model.read_text())["rule"]
        parameters = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in rule.items()
                               if k not in ("rule", "source"))
        print(f"scaled by the {strategy} rule ({parameters}; {rule['source']}); the {args.budget} model is {model}")
    fidelities = (json.loads(model.read_text()).get("evidence") or {}).get("proxy_fidelity")
    if strategy == "compound":
        print(_fidelity_line(fidelities))
    if index is not None:
        print(f"report: {index}")
    else:
        print(f"report: none (nothing was trained: a given baseline scaled by the {strategy} rule needs no training; "
              f"'scaling-search compare' trains the rules side by side on your data)")
    print(f"next: scaling-search train --config {model}{data}   (trains the deployment-scale network)")


def _fidelity_line(fidelities: list[dict[str, Any]] | None) -> str:
    """How far the proxy's ranking was measured to hold, from the exported evidence."""
    from scaling_search.search.fidelity import describe_tau

    if not fidelities:
        return ("proxy fidelity: not measured (scaling-search fidelity trains the grid in a longer regime and "
                "scores the proxy's ranking)")
    parts = []
    for measured in fidelities:
        regime = f"{measured['reference']['epochs']} epoch(s) at {measured['reference']['proxy_resolution']} px"
        if measured["kendall_tau"] is None:
            parts.append(f"undefined against {regime} (the reference ranks nothing)")
        else:
            parts.append(f"{describe_tau(measured['kendall_tau'], measured['kendall_interval'])} against {regime} "
                         f"over {measured['candidates']} grid points")
    return "proxy fidelity: " + "; ".join(parts)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _print_exported(paths: list[Path]) -> None:
    rows = []
    for path in paths:
        data = json.loads(path.read_text())
        budget = data["budget"] or {}
        rows.append({"file": str(path), "phi": data["phi"], "resolution": data["spec"]["resolution"],
                     "blocks": sum(s["repeats"] for s in data["spec"]["stages"]),
                     "params": data["cost"]["params"], "macs": data["cost"]["macs"],
                     "macs_ratio": round(data["macs_ratio"], 3), "budget": budget.get("text", ""),
                     "vs_budget": f"{budget['relative_error']:+.1%}" if budget else "",
                     "proxy_px": data["proxy"]["spec"]["resolution"]})
        if "latency" in data:
            rows[-1].update({"predicted_ms": round(data["latency"]["predicted_ms"], 3),
                             "measured_ms": round(data["latency"]["measured_ms"], 3)})
    print_table(rows, "table")


__all__ = ["add_study_args", "register", "study_config"]
