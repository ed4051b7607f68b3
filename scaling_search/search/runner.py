"""The pipelines: :func:`run` (all stages), :func:`baseline`, :func:`grid`, :func:`export`, :func:`ablate`,
:func:`compare`, :func:`fidelity` and :func:`compare_proxies`.

Each takes a study's :class:`~scaling_search.settings.StudyConfig`, checks everything it can before any work
(:func:`prepare`: the device, the stored settings, the network, the grid, the budget, the scaling rule, the data),
builds one :class:`~scaling_search.search.context.StudyContext` and hands it to the stages. What a pipeline finds
on the way reaches ``on_event(kind, payload)`` (``"prepared"``, ``"baseline"``, ``"grid"``, ``"exported"``), which
the CLI prints; the pipeline returns the result. Reports are built from the storage by the caller
(:func:`scaling_search.report.build_report`). Tests pass a fake ``trainer`` so the orchestration runs in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from scaling_search.atomic import check_writable_folder, write_json_atomically, write_text_atomically
from scaling_search.network.budget import Budget, BudgetMiss, fit_budget
from scaling_search.data.base import ImageData
from scaling_search.errors import UserError
from scaling_search.network.family import PAPER_COEFFICIENTS
from scaling_search.network.spec import NetworkSpec, load_spec
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.network.rules import check_rule
from scaling_search.search import ablations
from scaling_search.search.ablations import describe_point
from scaling_search.search.baseline import check_incumbent, run_baseline
from scaling_search.search.candidate import Trainer
from scaling_search.search.context import EventHandler, StudyContext, StudyStore, ignore_event
from scaling_search.search.decision import GridResult, check_grid_finished, load_grid
from scaling_search.search.export import export_by_rule, export_grid, latency_table
from scaling_search.search.fidelity import Fidelity, Reference, score_fidelity
from scaling_search.search.fidelity_points import FIDELITY_SEEDS, fidelity_candidates, regime_points
from scaling_search.search.grid import describe_grid_point, grid_of, prepare_grid
from scaling_search.search.ladder import climb, cost_factor, race_stage, rung_context, rung_stage
from scaling_search.search.proxy_candidates import (TARGET_TAU, CandidateRegime, Recommendation, candidate_stage,
                                                    preset_text, recommend)
from scaling_search.search.queue import prepare_points, train_stage
from scaling_search.search.race import run_race
from scaling_search.search.storage import check_existing
from scaling_search.search.tables import write_tables
from scaling_search.search.workers import (check_workers, kept_workers, with_execution_plan, with_worker_threads,
                                           with_workers)
from scaling_search.settings.ladder import regime_stage
from scaling_search.settings.study import StudyConfig
from scaling_search.training import check_trainable, choose_device, train_proxy

#: Scaling rules that need the coefficient grid (the others scale the baseline by their paper's multipliers).
GRID_RULES = ("compound", "v2")


@dataclass(frozen=True)
class RunResult:
    """What ``scaling-search run`` found and wrote.

    Attributes:
        trained: whether anything was trained (a rule other than compound or v2 on a given baseline trains
            nothing, and then there is no report to build).
    """

    config: StudyConfig
    baseline: NetworkSpec
    baseline_info: dict[str, Any]
    grid: GridResult | None  # None for a rule that needs no grid (fast, rs, width, depth, resolution)
    exported: list[Path]
    folder: Path
    trained: bool
    strategy: str = "compound"


def _check_reachable(config: StudyConfig, network: NetworkSpec, budget: Budget, latency: Any) -> None:
    """Refuse a budget no compound scaling can reach (beyond phi = +-16) before anything is trained.

    The coefficients are not known yet; any with alpha, beta, gamma >= 1 reach the same range, so the paper's
    stand in. Whether rounding lets the chosen ones land within tolerance is checked at export.
    """
    member = partial(config.deployment.compound, network, *PAPER_COEFFICIENTS)
    try:
        fit_budget(network, member, budget, latency.predict if latency is not None else None, tolerance=math.inf)
    except BudgetMiss as miss:
        raise UserError(f"budget {budget.text} is out of reach of compound scaling: {miss}") from None


def prepare(config: StudyConfig, data: ImageData | None = None, budget: Budget | None = None, *,
            strategy: str = "compound", max_resolution: int = 480, trainer: Trainer = train_proxy,
            progress: bool = True, on_event: EventHandler = ignore_event, stores: bool = True,
            seeded: tuple[str, ...] = ()) -> StudyContext:
    """Every cheap check before any training or storage write, then the data loaded and the context built.

    Checked: the scaling rule against the budget, the device, the stored settings, the deployment network, its
    proxy's size and (``baseline = "challenge"``) its place in stage 1's space, every rung's proxy, a non-empty
    grid, a latency table where the cost is latency, a budget within reach, the data (by loading it), and, where the pipeline ``stores`` trials, the storage (by opening it,
    so that one that cannot be made fails before any line is printed). The ``seeded`` stages, which the pipeline
    trains further, must have been trained with the config's seeds per point. ``workers = "auto"`` is resolved to
    this machine's plan.
    """
    check_existing(config, seeded=seeded)
    probe = config.deployment.network_spec()  # a bad network name or file fails before the data is loaded
    if budget is not None:
        check_rule(strategy, budget.kind, config.search.cost, probe.resolution, max_resolution)
    choose_device(config.train.device)
    check_workers(config.search)
    latency = latency_table(config)
    if budget is not None:
        _check_reachable(config, probe, budget, latency)
    grid_of(config, probe, ProxyTransform.for_baseline(config.proxy, probe))  # an empty grid fails before training
    check_incumbent(config, probe)  # its stages decide, not the data's classes: refused before the data loads
    data = data if data is not None else config.data.load()
    network = replace(probe, num_classes=data.num_classes, input_channels=data.channels)
    transform = ProxyTransform.for_baseline(config.proxy, network)
    proxy = to_proxy(network, transform)
    check_trainable(proxy, len(data.train_labels) + len(data.val_labels), config.train.batch_size)
    for index, rung in enumerate(config.search.rungs, start=1):  # a rung no proxy can have fails before training
        try:
            rung.config(config).proxy_transform(network)
        except UserError as error:
            raise UserError(f"rung {index} of the decision ladder ({rung.describe(config)}): {error}") from None
    ctx = StudyContext(with_execution_plan(config, proxy), data, network, transform, trainer, progress,
                       on_event=on_event)
    if stores:
        ctx.store.open()
    return ctx


def search_baseline(ctx: StudyContext) -> tuple[NetworkSpec, dict[str, Any]]:
    """Stage 1 (or the deployment network as it is, with ``search.baseline = "network"``)."""
    return run_baseline(ctx)


def search_grid(ctx: StudyContext, baseline: NetworkSpec) -> GridResult:
    """Stage 2 on ``search.workers`` processes, every point trained once; then the decision ladder's rungs
    (:mod:`scaling_search.search.ladder`) and racing at its top, where the preset asks."""
    ctx = ctx.derive(config=with_worker_threads(ctx.config))
    study = prepare_grid(ctx, baseline)  # the points enqueued once, before any worker starts
    if "data" not in study.user_attrs:  # what an exported network's pretrained_cfg tells an inference pipeline
        mean, std = ctx.data.pixel_statistics()
        study.set_user_attr("data", {"name": ctx.data.name, "classes": list(ctx.data.classes), "pixel_mean": mean,
                                     "pixel_std": std})
    with_workers(ctx, partial(train_stage, "grid", "grid", describe_grid_point))
    check_grid_finished(ctx.store, study)  # an unfinished grid is refused before it is climbed
    climb(ctx, study)
    config, top = ctx.config, len(ctx.config.search.rungs)
    if config.search.race_seeds:
        # extra seeds where they decide the winner, at the top rung: one process, every core (threads never change
        # the numbers); the budget counts trainings of the grid's regime
        raced = study if top == 0 else ctx.stage(rung_stage(config, top))
        assert raced is not None  # climb() just trained it
        budget = config.search.race_seeds if top == 0 else \
            int(config.search.race_seeds // cost_factor(config, config.search.rungs[-1]))
        race_ctx = rung_context(ctx, top)
        run_race(race_ctx.derive(config=replace(race_ctx.config, train=replace(race_ctx.config.train, threads=None))),
                 raced, budget, race_stage(config))
    return load_grid(ctx.store)


def run(config: StudyConfig, budget: Budget, family: list[float] | None = None, output: Path = Path("reports"), *,
        trainer: Trainer = train_proxy, progress: bool = True, data: ImageData | None = None,
        strategy: str = "compound", max_resolution: int = 480, long_training: bool = False,
        on_event: EventHandler = ignore_event) -> RunResult:
    """All stages: baseline search, coefficient grid (compound and v2 only), export at deployment scale by
    ``strategy`` (compound scaling, or another rule of :mod:`scaling_search.network.rules`)."""
    check_writable_folder(output)
    trains = strategy in GRID_RULES or config.search.baseline != "network"  # else no storage is made
    ctx = prepare(config, data, budget, strategy=strategy, max_resolution=max_resolution, trainer=trainer,
                  progress=progress, on_event=on_event, stores=trains, seeded=("grid",))
    with kept_workers(ctx) as ctx:
        ctx.emit("prepared", ctx)
        baseline_spec, info = search_baseline(ctx)
        ctx.emit("baseline", info)
        if strategy in GRID_RULES:
            search_grid(ctx, baseline_spec)
        if strategy == "compound":
            found, paths = export_grid(ctx.store, budget, family, output, ctx.data.name)
        else:
            found, paths = export_by_rule(ctx.store, budget, family, output, ctx.data.name, baseline_spec, strategy,
                                          max_resolution=max_resolution, long_training=long_training)
        if found is not None:
            ctx.emit("grid", found)
        ctx.emit("exported", paths)
        return RunResult(ctx.config, baseline_spec, info, found, paths, output / ctx.config.name, trains, strategy)


def baseline(config: StudyConfig, output: Path = Path("reports"), *, trainer: Trainer = train_proxy,
             progress: bool = True, on_event: EventHandler = ignore_event) -> tuple[NetworkSpec, dict[str, Any]]:
    """Stage 1 alone; writes ``study.json`` and the stage's table."""
    check_writable_folder(output)
    ctx = prepare(config, trainer=trainer, progress=progress, on_event=on_event)
    with kept_workers(ctx) as ctx:
        ctx.emit("prepared", ctx)
        found = search_baseline(ctx)
        write_tables(ctx.store, output / ctx.config.name)
        return found


def grid(config: StudyConfig, output: Path = Path("reports"), *, trainer: Trainer = train_proxy,
         progress: bool = True, on_event: EventHandler = ignore_event) -> GridResult:
    """Stage 2 (stage 1 first where it is not finished); writes ``study.json`` and the tables."""
    check_writable_folder(output)
    ctx = prepare(config, trainer=trainer, progress=progress, on_event=on_event, seeded=("grid",))
    with kept_workers(ctx) as ctx:
        ctx.emit("prepared", ctx)
        baseline_spec, _ = search_baseline(ctx)
        found = search_grid(ctx, baseline_spec)
        write_tables(ctx.store, output / ctx.config.name, found.rows, found.decision.to_dict())
        return found


def export(config: StudyConfig, budget: Budget, family: list[float] | None = None, output: Path = Path("reports"),
           dataset: str | None = None) -> tuple[GridResult, list[Path]]:
    """Stage 3 from a finished grid (no training): ``model-phi*.json`` at deployment scale, and the tables.

    A study made with other settings is refused first; the budget is fitted before anything is written.
    """
    check_writable_folder(output)
    check_existing(config)
    return export_grid(StudyStore(config), budget, family, output, dataset)


def _study_coefficients(store: StudyStore) -> tuple[tuple[float, float, float], str] | None:
    """The winning coefficients of this study's grid, when a finished run exists in the same storage."""
    try:
        found = load_grid(store)
    except UserError:
        return None
    return found.coefficients, f"study's grid (trial {found.summary['winner']['trial']})"


def _train_points(ctx: StudyContext, stage: str, points: list[dict[str, Any]], identity: dict[str, Any], label: str,
                  **queue: Any) -> None:
    """A stage of fixed points enqueued once and trained on ``search.workers`` processes."""
    prepare_points(ctx, stage, points, identity, **queue)
    with_workers(ctx, partial(train_stage, stage, label, describe_point))


def ablate(config: StudyConfig, figures: tuple[str, ...], *, widths: tuple[float, ...], depths: tuple[float, ...],
           resolutions: tuple[float, ...], phis: tuple[float, ...], base_path: str | None = None,
           output: Path = Path("reports"), trainer: Trainer = train_proxy, progress: bool = True,
           data: ImageData | None = None, on_event: EventHandler = ignore_event) -> Path:
    """The paper's Figures 3, 4 and 8 as resumable stages at deployment scale; returns the study's report folder
    (``build_report`` draws them)."""
    check_writable_folder(output)
    given = load_spec(base_path) if base_path else None  # a bad file fails before the data is loaded
    if given is not None:
        config = replace(config, deployment=replace(config.deployment, network=str(base_path), resolution=0))
    ctx = prepare(config, data, trainer=trainer, progress=progress, on_event=on_event,
                  seeded=tuple(f"fig{figure}" for figure in figures))
    with kept_workers(ctx) as ctx:
        ctx = ctx.derive(config=with_worker_threads(ctx.config))
        ctx.emit("prepared", ctx)
        base, transform, deployment = ctx.network, ctx.transform, ctx.config.deployment
        coefficients, source = _study_coefficients(ctx.store) or (PAPER_COEFFICIENTS, "paper")
        on = f"baseline {Path(base_path).name}" if base_path else ""
        notes = {
            "3": "; ".join(filter(None, (on, _trimmed("width", widths, ablations.PAPER_WIDTHS),
                                         _trimmed("depth", depths, ablations.PAPER_DEPTHS),
                                         _trimmed("resolution", resolutions, ablations.PAPER_RESOLUTIONS)))),
            "4": "; ".join(filter(None, (on, _trimmed("width", widths, ablations.PAPER_WIDTHS)))),
            "8": "; ".join(filter(None, (on, f"alpha, beta, gamma = {', '.join(f'{c:g}' for c in coefficients)} "
                                             f"from the {source}"))),
        }
        for figure in figures:
            if figure == "3":
                points = ablations.figure3_points(base, deployment, transform, widths, depths, resolutions)
            elif figure == "4":
                points = ablations.figure4_points(base, deployment, transform, widths)
            else:
                points = ablations.figure8_points(base, deployment, transform, coefficients, phis, source)
            _train_points(ctx, f"fig{figure}", points, {"baseline": base.to_dict(), "note": notes[figure]},
                          f"figure {figure}")
        return output / ctx.config.name


def compare(config: StudyConfig, rule_names: tuple[str, ...], budgets: tuple[float, ...], *,
            max_resolution: int = 480, long_training: bool = False, output: Path = Path("reports"),
            trainer: Trainer = train_proxy, progress: bool = True, data: ImageData | None = None,
            on_event: EventHandler = ignore_event) -> Path:
    """Published scaling rules at equal deployment MACs on the study's data, as a resumable stage; returns the
    study's report folder. Compound and V2-style scaling use this study's grid coefficients when a finished run
    exists in the storage, else the paper's."""
    check_writable_folder(output)
    from scaling_search.network.rules import RULES, parse_rule
    from scaling_search.search.compare import compare_points, point_latencies

    coefficients, source = _study_coefficients(StudyStore(config)) or (PAPER_COEFFICIENTS, "paper")
    try:  # refused before the data loads or a storage is made
        rules = [parse_rule(name, coefficients=coefficients,
                            base_resolution=config.deployment.network_spec().resolution,
                            max_resolution=max_resolution, long_training=long_training) for name in rule_names]
    except ValueError as error:
        raise UserError(str(error)) from None
    ctx = prepare(config, data, trainer=trainer, progress=progress, on_event=on_event, seeded=("compare",))
    with kept_workers(ctx) as ctx:
        ctx = ctx.derive(config=with_worker_threads(ctx.config))
        base, transform, search = ctx.network, ctx.transform, ctx.config.search
        ctx.emit("prepared", ctx)
        points = compare_points(base, ctx.config.deployment, transform, rules, budgets)
        note = (f"alpha, beta, gamma = {', '.join(f'{c:g}' for c in coefficients)} from the {source}; "
                f"{search.repeats} seed(s) per point")
        study = prepare_points(ctx, "compare", points, {"baseline": base.to_dict(), "note": note,
                                                        "rules": list(rule_names), "budgets": list(budgets)},
                               growable=("rules", "budgets"),  # another budget or rule extends the comparison
                               choices={"figure": ["compare"], "method": ["baseline", *RULES]})
        study.set_user_attr("predicted_latency", point_latencies(study.user_attrs["points"], search.latency_device,
                                                                 search.latency_runtime))
        with_workers(ctx, partial(train_stage, "compare", "comparison", describe_point))
        return output / ctx.config.name


@dataclass(frozen=True)
class _Scored:
    """A proxy fidelity and what it was scored over: the candidates and the two stages that trained them."""

    result: Fidelity
    candidates: list[dict[str, Any]]
    proxy_stage: str
    reference_stage: str
    suffix: str  # "-n16-s2": how many candidates and seeds, ending each of the stages' names


def _with_fidelity_seeds(config: StudyConfig) -> StudyConfig:
    """A regime's config for a fidelity stage: every candidate under at least two seeds, never pruned."""
    search = replace(config.search, repeats=max(FIDELITY_SEEDS, config.search.repeats), pruner="none")
    return with_worker_threads(replace(config, search=search))


def _fidelity(ctx: StudyContext, reference: Reference, output: Path) -> _Scored:
    """The fidelity candidates (the grid's points and more at the same budget: :mod:`.fidelity_points`), trained
    under the study's proxy and under the reference, both with two seeds or more, and scored (stages 1 and 2 run
    or reused first)."""
    baseline_spec, _ = search_baseline(ctx)
    found = search_grid(ctx, baseline_spec)
    candidates = fidelity_candidates(found.study.user_attrs["points"], ctx.config, baseline_spec, ctx.transform)
    identity = {"baseline": baseline_spec.to_dict()}
    proxy_ctx = ctx.derive(config=_with_fidelity_seeds(ctx.config))
    suffix = f"-n{len(candidates)}-s{proxy_ctx.config.search.repeats}"
    proxy_stage = regime_stage("proxy", proxy_ctx.config) + suffix
    proxy_study = prepare_points(proxy_ctx, proxy_stage, regime_points(candidates, proxy_ctx.transform), identity)
    with_workers(proxy_ctx, partial(train_stage, proxy_stage, "fidelity proxy", describe_grid_point))
    reference_ctx = ctx.derive(config=_with_fidelity_seeds(reference.config(ctx.config)),
                               transform=reference.transform(ctx.config, ctx.network))
    stage = reference.stage(ctx.config) + suffix
    study = prepare_points(reference_ctx, stage, regime_points(candidates, reference_ctx.transform),
                           {**identity, "proxy_stage": proxy_stage})
    with_workers(reference_ctx, partial(train_stage, stage, "reference", describe_grid_point))
    result = score_fidelity(proxy_study, study)
    folder = output / ctx.config.name
    ctx.config.write(folder)
    write_json_atomically(folder / "fidelity.json", result.to_dict())
    return _Scored(result, candidates, proxy_stage, stage, suffix)


def fidelity(config: StudyConfig, reference: Reference, *, output: Path = Path("reports"),
             trainer: Trainer = train_proxy, progress: bool = True,
             on_event: EventHandler = ignore_event) -> Fidelity:
    """The proxy's ranking of the grid scored against ``reference`` (see :mod:`scaling_search.search.fidelity`).

    Stages 1 and 2 run (or are reused) as in :func:`run`; the reference trains the grid's candidates as the stage
    ``fidelity-<regime>`` of the same study. Writes ``fidelity.json`` beside the study's report tables.
    """
    check_writable_folder(output)
    reference.config(config)  # a reference equal to the proxy, or a bad width, is refused before anything loads
    ctx = prepare(config, trainer=trainer, progress=progress, on_event=on_event, seeded=("grid",))
    with kept_workers(ctx) as ctx:
        reference.transform(ctx.config, ctx.network)  # refused before any training
        ctx.emit("prepared", ctx)
        return _fidelity(ctx, reference, output).result


def compare_proxies(config: StudyConfig, reference: Reference, candidates: list[CandidateRegime], *,
                    target_tau: float = TARGET_TAU, output: Path = Path("reports"), trainer: Trainer = train_proxy,
                    progress: bool = True, on_event: EventHandler = ignore_event) -> Recommendation:
    """:func:`fidelity`, then every candidate regime trained on the same grid candidates (stage
    ``candidate-<regime>``) and scored against the same reference; the cheapest reaching ``target_tau`` is
    recommended (:mod:`scaling_search.search.proxy_candidates`). Writes ``proxies.json`` and
    ``recommended-proxy.toml`` beside ``fidelity.json``."""
    check_writable_folder(output)
    if not -1 <= target_tau <= 1:
        raise UserError(f"--target-tau must be a Kendall tau in [-1, 1], got {target_tau:g}")
    reference.config(config)
    trained = [candidate.config(config) for candidate in candidates]
    ctx = prepare(config, trainer=trainer, progress=progress, on_event=on_event, seeded=("grid",))
    with kept_workers(ctx) as ctx:
        reference.transform(ctx.config, ctx.network)
        # a regime no proxy can have (below the network's stride, say) is refused before anything trains; each is
        # remade from the prepared config, whose workers = "auto" is resolved to this machine's plan
        trained = [candidate.config(ctx.config) for candidate in candidates]
        transforms = [regime.proxy_transform(ctx.network) for regime in trained]
        ctx.emit("prepared", ctx)
        own = _fidelity(ctx, reference, output)
        grid_study, reference_study = ctx.stage("grid"), ctx.stage(own.reference_stage)
        assert grid_study is not None and reference_study is not None  # _fidelity() just finished both
        baseline_attrs = grid_study.user_attrs["baseline"]
        scored = [own.result]
        for regime, transform in zip(trained, transforms):
            candidate_config = _with_fidelity_seeds(regime)
            data = ctx.data if candidate_config.data == ctx.config.data else candidate_config.data.load()
            candidate_ctx = ctx.derive(config=candidate_config, transform=transform, data=data)
            stage = candidate_stage(regime) + own.suffix  # the same candidates, seeds and reference
            study = prepare_points(candidate_ctx, stage, regime_points(own.candidates, transform),
                                   {"baseline": baseline_attrs, "reference_stage": own.reference_stage})
            study.set_user_attr("target_tau", target_tau)  # the report's recommendation uses the command's target
            with_workers(candidate_ctx, partial(train_stage, stage, "candidate proxy", describe_grid_point))
            scored.append(score_fidelity(study, reference_study))
        result = recommend(scored, target_tau)
        folder = output / ctx.config.name
        write_json_atomically(folder / "proxies.json", result.to_dict())
        write_text_atomically(folder / "recommended-proxy.toml", preset_text(ctx.config, result))
        return result


def _trimmed(label: str, values: tuple[float, ...], paper: tuple[float, ...]) -> str:
    """``"width 1, 1.4 of the paper's 1, 1.4, ..., 5"`` when a preset trimmed the paper's set, else ``""``."""
    def listed(numbers: tuple[float, ...]) -> str:
        return ", ".join(f"{v:g}" for v in numbers)

    return "" if tuple(values) == tuple(paper) else f"{label} {listed(values)} of the paper's {listed(paper)}"


__all__ = ["GRID_RULES", "RunResult", "ablate", "baseline", "compare", "compare_proxies",
           "export", "fidelity", "grid", "prepare", "run", "search_baseline", "search_grid"]
