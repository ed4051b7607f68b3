"""What the commands that work on a study share: their flags, the config they make, and the lines they print.

A pipeline of :mod:`scaling_search.search.runner` reports what it finds through ``on_event``; :func:`printer`
turns those events into the lines below, so every command prints a study the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from scaling_search.cli.common import CliError, add_data_args, positive_float, positive_int, print_table, workers_arg
from scaling_search.errors import UserError
from scaling_search.search.confidence import SEPARATED_AT
from scaling_search.runtimes import RUNTIMES

#: ``--baseline`` values that run stage 1 (any other names the deployment network and skips it).
STAGE_ONE_BASELINES = ("challenge", "search")


def add_study_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command that works on a study (run, baseline, grid, export, ablate, compare,
    fidelity)."""
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
    group.add_argument("--proxy-images", choices=("native", "shrunk", "matched"),
                       help="what proxy inputs are made from: the native images, or images first resampled so a "
                            "resolution step changes the proxy's information as it changes the deployment "
                            "network's (shrunk: by the resolution factor; matched: only where deployment gains "
                            "information) (default: the preset's)")
    group.add_argument("--proxy-depth", type=positive_float, help="depth factor of every proxy, in (0, 1]")
    group.add_argument("--epochs", type=positive_int, help="proxy training epochs (default: the preset's)")
    group.add_argument("--seed", type=int, help="seed of the sampler and of training (default: 0)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    group.add_argument("--threads", type=positive_int, help="CPU threads per worker (default: cores / workers)")
    group = parser.add_argument_group("search")
    group.add_argument("--baseline", help="'challenge' runs stage 1 and keeps the deployment network unless a "
                       "searched candidate beats it at 95%% (the presets' default); 'search' takes stage 1's best "
                       "reward; b0..b7 or a spec/config file skips stage 1 and uses that network as the baseline")
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
    group.add_argument("--rungs", type=_rungs, metavar="REGIMES",
                       help="the decision ladder's rungs above the grid, cheapest first: 'none', or regimes separated "
                            "by ';', each 'epochs=K[,resolution=PX][,width=W][,seeds=N]' (K times the proxy's epochs, "
                            "PX proxy pixels for the baseline) (default: the preset's)")
    group.add_argument("--tie-break", choices=("cost", "none"),
                       help="among points tied with the best at the top rung: cost (lowest predicted latency where "
                            "a calibrated table exists, else fewest activations; the default) or none (accuracy)")
    group.add_argument("--workers", type=workers_arg,
                       help="processes training grid points at once on this machine, or 'auto' (this machine's "
                            "measured plan, cached; workers and threads) (default: the preset's); at most this "
                            "machine's cores")
    group.add_argument("--oversubscribe", action="store_true", default=None,
                       help="allow more --workers than cores (each extra one shares a core with another)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-trial lines")


def _budget(text: str) -> Any:
    from scaling_search.network.budget import parse_budget

    try:
        return parse_budget(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _family(text: str) -> list[float] | None:
    from scaling_search.network.budget import parse_family

    try:
        return parse_family(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_budget_args(parser: argparse.ArgumentParser) -> None:
    """``--budget``, ``--budget-tol`` and ``--family``: what stage 3 exports (read into a ``Budget`` and a list of
    phi as the flags are parsed)."""
    parser.add_argument("--budget", type=_budget, default="2x", help="deployment cost of the exported model: a ratio to the "
                        "baseline (2x, 0.5x), MACs (800M, 1.2G), or with --cost latency a latency (25ms); phi is "
                        "bisected on the achieved cost (default: 2x)")
    parser.add_argument("--budget-tol", type=positive_float,
                        help="relative tolerance of the exported cost around the budget (default: 0.05)")
    parser.add_argument("--family", type=_family, help="also export phi in a range (0:7, -1:3) or a list (0,1,2.5)")


def _rungs(text: str) -> list[dict[str, Any]]:
    """``--rungs``: ``none`` or ``epochs=2;epochs=2,resolution=56`` -> the rungs' tables (checked by the settings)."""
    if text.strip().lower() == "none":
        return []
    rungs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        table: dict[str, Any] = {}
        for item in part.split(","):
            key, _, value = item.partition("=")
            key = key.strip()
            if key not in ("epochs", "resolution", "width", "seeds") or not value.strip():
                raise argparse.ArgumentTypeError(f"rung {part!r}: each item is epochs=K, resolution=PX, width=W or "
                                                 "seeds=N")
            try:
                table[key] = float(value) if key == "width" else int(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f"rung {part!r}: {key} must be a number, got {value.strip()!r}") \
                    from None
        rungs.append(table)
    return rungs


def study_config(args: argparse.Namespace) -> Any:
    """The frozen study config from the preset and the flags (checked before torch and Optuna load)."""
    from scaling_search.settings import load_study_config

    if args.grid_tol is not None and not args.grid_tol >= 0:
        raise CliError("--grid-tol must be >= 0")
    baseline = getattr(args, "baseline", None)
    network = args.network
    if baseline not in (None, *STAGE_ONE_BASELINES):
        if network not in (None, baseline):
            raise CliError(f"--network {network} and --baseline {baseline} both name the deployment network; give "
                           "one (--baseline NETWORK skips stage 1, --network NETWORK searches around it)")
        network = baseline
    overrides = {
        "data": {"source": args.data_source, "format": args.data_format, "subset": args.subset,
                 "val_fraction": args.val_fraction, "seed": args.data_seed},
        "deployment": {"network": network, "resolution": args.resolution, "depth_rounding": args.depth_rounding},
        "proxy": {"resolution": args.proxy_resolution, "width": args.proxy_width, "depth": args.proxy_depth,
                  "images": args.proxy_images},
        "train": {"epochs": args.epochs, "seed": args.seed, "device": args.device, "threads": args.threads},
        "search": {"baseline": None if baseline is None else (baseline if baseline in STAGE_ONE_BASELINES
                                                              else "network"),
                   "cost": args.cost, "target_latency_ms": args.target_latency,
                   "latency_runtime": args.latency_runtime,
                   "trials": args.trials, "screen": args.screen, "target_macs": args.target_macs,
                   "grid_step": args.grid_step,
                   "grid_max": args.grid_max, "grid_tol": args.grid_tol,
                   "budget_tol": getattr(args, "budget_tol", None), "pruner": args.pruner, "repeats": args.repeats,
                   "race_seeds": getattr(args, "race_seeds", None), "rungs": getattr(args, "rungs", None),
                   "tie_break": getattr(args, "tie_break", None),
                   "seed": args.seed, "workers": args.workers, "oversubscribe": getattr(args, "oversubscribe", None)},
    }
    if args.data_source not in (None, "synthetic") and args.data_format is None:
        overrides["data"]["format"] = ""
    return load_study_config(args.preset, overrides, args.study, args.storage)


def quiet_optuna() -> None:
    """Optuna's own log off below errors: its 'Trial failed' warning prints a traceback for Ctrl-C (and for a
    diverged trial, which the stage's progress line already reports in one line)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def describe_scales(ctx: Any) -> str:
    """The study, its data, its deployment baseline and its proxy, and how it will run: a run's first lines."""
    from scaling_search.network.cost import count_cost
    from scaling_search.network.proxy import to_proxy

    network = ctx.network
    proxy = to_proxy(network, ctx.transform)
    deployed, trained = count_cost(network), count_cost(proxy)
    config = ctx.config
    return (f"study {config.name} | {ctx.data.describe()}\n"
            f"deployment baseline: {config.deployment.network} at {network.resolution} px "
            f"({deployed.macs / 1e6:,.1f}M MACs, {deployed.params / 1e6:.2f}M params; depth rounding "
            f"{config.deployment.depth_rounding}); the data's native {ctx.data.native_resolution} px images are "
            f"resized to it (--resolution changes it)\n"
            f"proxy: {proxy.resolution} px, width x{ctx.transform.width:g}, depth x{ctx.transform.depth:g} "
            f"({trained.macs / 1e6:,.2f}M MACs), {config.train.epochs} epoch(s)\n{describe_execution(config)}")


def describe_execution(config: Any) -> str:
    threads = f" x {config.train.threads} thread(s)" if config.train.threads else ""
    if not config.plan:
        return f"execution: {config.search.workers} worker(s){threads}"
    measured = ", ".join(f"{name} {rate:.0f}" for name, rate in
                         sorted(config.plan["measured"].items(), key=lambda item: -item[1]))
    if config.plan.get("unsure"):
        return (f"execution: {config.search.workers} worker(s){threads}, this machine's measured plan (training "
                f"images/s by workers x threads: {measured}); NOT cached: {config.plan['unsure']} twice, so the "
                "machine was busy; it is measured again next run (a quieter machine measures it once)")
    return (f"execution: {config.search.workers} worker(s){threads}, this machine's measured plan (training "
            f"images/s by workers x threads: {measured}; cached, see study.json)")


def describe_baseline(info: dict[str, Any]) -> str:
    """One line on where the baseline came from: stage 1's best trial (and its screen), or the network as given."""
    if info.get("source") != "stage 1 search":
        return f"baseline: {info.get('source', 'as given')}"
    cost = (f"{info['target']:.1f} ms target" if info.get("cost") == "latency"
            else f"{info['macs'] / 1e6:,.0f}M deployment MACs")
    line = (f"baseline: stage 1 trial {info['trial']}, reward {info['reward']:.4f} (proxy val top-1 "
            f"{info['accuracy']:.2%}, {cost})")
    challenge = info.get("challenge")
    if challenge:
        line += "; " + describe_challenge(challenge)
    screen = info.get("screen")
    if screen:
        line += (f"; screened {screen['sampled']} candidates untrained ({screen['signal']} score, "
                 f"{screen['in_band']} within {screen['band']:.0%} of the target's MACs, {screen['seconds']:.0f} s) "
                 f"and trained the best {screen['trained']}")
    return line


def describe_challenge(challenge: dict[str, Any]) -> str:
    """Why stage 1 kept the deployment network or replaced it (``search.baseline = "challenge"``)."""
    if challenge.get("incumbent") is None:
        return f"searched: {challenge['why']}"
    if challenge.get("challenger") is None:
        return f"the deployment network, kept: {challenge['why']}"
    versus = (f"trial {challenge['challenger']} reward {challenge['challenger_reward']:.4f} against "
              f"{challenge['incumbent_reward']:.4f}, needs more than +{challenge['margin']:.4f}")
    confirmed = challenge.get("confirmed")
    if confirmed:
        versus += (f"; at the top rung, {confirmed['regime']}: {confirmed['challenger_reward']:.4f} against "
                   f"{confirmed['incumbent_reward']:.4f}, needs more than +{confirmed['margin']:.4f}")
    if challenge["kept"]:
        return f"the deployment network, kept: {challenge['why']} ({versus})"
    return f"searched: {challenge['why']} ({versus})"


def describe_budget(budget: Any, info: dict[str, Any], cost: str = "macs") -> str:
    """The budget and what it multiplies: the baseline by name (searched, or given), its MACs, blocks and size."""
    if (info.get("challenge") or {}).get("kept"):
        reference = f"the deployment network, kept by stage 1 (trial {info['trial']})"
    elif info.get("source") == "stage 1 search":
        reference = f"the searched baseline (stage 1 trial {info['trial']})"
    else:
        reference = info.get("source", "the baseline")
    shape = (f"{info['macs'] / 1e6:,.1f}M deployment MACs, {info['blocks']} blocks at {info['resolution']} px"
             if "blocks" in info else f"{info.get('macs', 0) / 1e6:,.1f}M deployment MACs")
    if budget.kind == "ratio" and cost == "latency":
        return f"budget: {budget.text} the predicted latency of {reference} ({shape})"
    if budget.kind == "ratio":
        return f"budget: {budget.text} of {reference} ({shape}) = {budget.target(info['macs']) / 1e6:,.1f}M MACs"
    unit = "ms predicted latency" if budget.kind == "latency" else "MACs"
    value = f"{budget.value:g} ms" if budget.kind == "latency" else f"{budget.value / 1e6:,.1f}M"
    return f"budget: {value} {unit.removeprefix('ms ')}; the baseline it scales is {reference} ({shape})"


def print_grid(grid: Any) -> None:
    """The grid's table (rung 0, and each point's standing on the ladder), its collisions, the ladder's rungs and
    the fidelity between them, the tied set, the decision and the chosen point's evidence."""
    columns = ("point", "state", "alpha", "beta", "gamma", "nominal_ratio", "achieved_ratio", "resolution", "macs",
               "proxy_resolution", "proxy_macs", "accuracy", "accuracy_std", "seeds", "rung", "rung_accuracy", "tied")
    print_table([{k: _rounded(row.get(k)) for k in columns} for row in grid.rows], "table")
    for collision in grid.collisions:
        kind = "deployment networks" if collision["same_deployment"] else "proxies"
        print(f"collision: alpha, beta, gamma = {tuple(collision['dropped'])} has the same {kind} as "
              f"{tuple(collision['kept'])}; trained once")
    from scaling_search.search.decision import describe_decision

    for line in describe_decision(grid.decision.to_dict()):
        print(line)
    summary, chosen = grid.summary, grid.decision.chosen
    alpha, beta, gamma = grid.coefficients
    print(f"coefficients: alpha={alpha:g} beta={beta:g} gamma={gamma:g} (alpha*beta^2*gamma^2 = "
          f"{alpha * beta**2 * gamma**2:.3f}; {chosen['achieved_ratio']:.3f}x the baseline's deployment MACs at phi=1)")
    top = grid.decision.rungs[-1]
    line = f"chosen: proxy val top-1 {chosen['accuracy']:.4f} at rung {top.index} over {chosen.get('seeds', 1)} seed(s)"
    if chosen.get("p_best") is not None:
        most = max(r.get("p_best", 0.0) for r in top.rows)
        verdict = ("separated from the rest" if chosen["p_best"] >= SEPARATED_AT else
                   f"not separated at {SEPARATED_AT:.0%}")
        line += (f"; P(best) {chosen['p_best']:.2f} ({verdict}; the most likely best has {most:.2f}); noise counted: "
                 f"{summary['noise']}")
        raced = sum(row.get("race_seeds", 0) for row in top.rows)
        if raced:
            line += f"; {raced} extra seed(s) raced on the leaders"
    print(line)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def print_exported(paths: list[Path]) -> None:
    """One row per exported config: its file, phi, resolution, blocks, cost and distance to the budget."""
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


def print_summary(grid: Any, paths: list[Path], index: Path | None, args: argparse.Namespace,
                  config: Any = None) -> None:
    """The last lines: what was found, where it was written, where Optuna finds it, what to run next."""
    budgeted = [p for p in paths if (json.loads(p.read_text()).get("budget") or {}).get("text") == args.budget.text]
    model = budgeted[0] if budgeted else paths[0]
    data = f" --data {args.data_source}" if args.data_source not in (None, "synthetic") else ""
    strategy = getattr(args, "strategy", "compound")
    if strategy == "compound":
        alpha, beta, gamma = grid.coefficients
        if grid.decision.winner:
            print(f"found: alpha={alpha:g} beta={beta:g} gamma={gamma:g} ({grid.decision.choice.summary}); "
                  f"the {args.budget.text} model is {model}")
        else:
            print(f"no winner: no grid point is above chance ({grid.decision.chance:.1%}) at 95%; exported "
                  f"alpha={alpha:g} beta={beta:g} gamma={gamma:g}, the cheapest ({grid.decision.choice.decided_by}), "
                  f"as the {args.budget.text} model {model}")
    else:
        rule = json.loads(model.read_text())["rule"]
        parameters = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in rule.items()
                               if k not in ("rule", "source"))
        print(f"scaled by the {strategy} rule ({parameters}; {rule['source']}); the {args.budget.text} model is {model}")
    fidelities = (json.loads(model.read_text()).get("evidence") or {}).get("proxy_fidelity")
    if strategy == "compound":
        print(fidelity_line(fidelities))
    if index is not None:
        print(f"report: {index}")
    else:
        print(f"report: none (nothing was trained: a given baseline scaled by the {strategy} rule needs no training; "
              f"'scaling-search compare' trains the rules side by side on your data)")
    if config is not None and grid is not None:
        from scaling_search.settings import mask_credentials

        storage = mask_credentials(config.storage)
        print(f"optuna: each stage is an Optuna study ({config.name}:baseline, {config.name}:grid, ...; "
              f"scaling-search studies lists them): optuna.load_study(study_name='{config.name}:grid', "
              f"storage='{storage}')")
    print(f"next: scaling-search train --config {model}{data} --save trained/   (trains the deployment-scale "
          "network and keeps it)")


def fidelity_line(fidelities: list[dict[str, Any]] | None) -> str:
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
            tau = describe_tau(measured["kendall_tau"], measured["kendall_interval"], measured.get("p_value"),
                               measured["candidates"])
            parts.append(f"{tau} against {regime} over {measured['candidates']} candidates")
    return "proxy fidelity: " + "; ".join(parts)


def printer(*kinds: str, budget: Any = None) -> Callable[[str, Any], None]:
    """An ``on_event`` handler that prints the events of ``kinds`` (all of them when none is named): the study's
    scales to stderr, the baseline (and what ``budget`` multiplies), the grid and the exported configs to stdout."""
    cost = "macs"

    def on_event(kind: str, payload: Any) -> None:
        nonlocal cost
        if kinds and kind not in kinds:
            return
        if kind == "prepared":
            cost = payload.config.search.cost
            print(describe_scales(payload), file=sys.stderr)
        elif kind == "baseline":
            print(describe_baseline(payload))
            if budget is not None:
                print(describe_budget(budget, payload, cost))
        elif kind == "grid":
            print_grid(payload)
        elif kind == "exported":
            print_exported(payload)

    return on_event


def build_report(config: Any, output: str, static: tuple[str, ...] = ()) -> Path:
    """The study's report rebuilt from its storage (:func:`scaling_search.report.build_report`)."""
    from scaling_search.report import build_report as build

    return build(config.name, config.storage, Path(output), static)


__all__ = ["add_budget_args", "add_study_args", "build_report", "describe_baseline", "describe_budget",
           "describe_execution", "describe_scales", "fidelity_line", "print_exported", "print_grid",
           "print_summary", "printer", "quiet_optuna", "study_config"]
