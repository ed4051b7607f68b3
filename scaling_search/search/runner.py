"""The search as library calls: :func:`run` (all stages), :func:`export`, :func:`ablate`.

The CLI parses flags into a :class:`~scaling_search.settings.study.StudyConfig` and calls these; tests call them
with a fake ``trainer`` so the orchestration runs in seconds without training.
"""

from __future__ import annotations

import math
import multiprocessing
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import optuna

from scaling_search.atomic import write_json_atomically, write_text_atomically
from scaling_search.budget import Budget, BudgetMiss
from scaling_search.confidence import SEPARATED_AT
from scaling_search.data.base import ImageData
from scaling_search.errors import UserError
from scaling_search.proxy import ProxyTransform, to_proxy
from scaling_search.search import ablations
from scaling_search.search.baseline import run_baseline
from scaling_search.search.candidate import Trainer
from scaling_search.settings.study import StudyConfig, mask_credentials
from scaling_search.search.export import export_models, export_rule_models, fit_budget
from scaling_search.search.fidelity import (Fidelity, Reference, fidelity_evidence, reference_points, score_fidelity,
                                            stored_fidelities)
from scaling_search.search.grid import (choose_coefficients, describe_grid_point, grid_of, prepare_grid,
                                        run_grid)
from scaling_search.search.interrupt import interrupt_outside_storage, raise_outside_storage
from scaling_search.search.proxy_candidates import (TARGET_TAU, CandidateRegime, Recommendation, candidate_stage,
                                                    preset_text, recommend)
from scaling_search.search.queue import prepare_points, train_points
from scaling_search.search.race import raced_rows, run_race
from scaling_search.search.storage import check_existing, load_stage, open_storage, open_study
from scaling_search.network.spec import NetworkSpec, load_spec
from scaling_search.training import check_trainable, choose_device, default_threads, train_proxy


@dataclass(frozen=True)
class Prepared:
    """What every stage needs, checked before any work: the config, the data, the deployment network and the
    study's proxy factors."""

    config: StudyConfig
    data: ImageData
    network: NetworkSpec
    transform: ProxyTransform


@dataclass(frozen=True)
class GridResult:
    study: optuna.Study
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    baseline: NetworkSpec
    collisions: list[dict[str, Any]]

    @property
    def coefficients(self) -> tuple[float, float, float]:
        winner = self.summary["winner"]
        return winner["alpha"], winner["beta"], winner["gamma"]


@dataclass(frozen=True)
class RunResult:
    """What ``scaling-search run`` found and wrote."""

    config: StudyConfig
    baseline: NetworkSpec
    baseline_info: dict[str, Any]
    grid: GridResult | None  # None for a strategy that needs no grid (fast, rs, width, depth, resolution)
    exported: list[Path]
    folder: Path
    report: Path | None = None
    strategy: str = "compound"


def prepare(config: StudyConfig, data: ImageData | None = None, budget: Budget | None = None) -> Prepared:
    """Validate everything cheap before any training or storage write, then load the data.

    Checked: the device, the stored settings, the deployment network and its proxy's size, a non-empty grid,
    a latency table where the cost is latency, a budget within reach, and the data (by loading it).
    """
    choose_device(config.train.device)
    check_existing(config)
    probe = config.deployment.network_spec()  # a bad network name or file fails before the data is loaded
    transform = config.proxy_transform(probe)
    grid_of(config, probe, transform)  # an empty grid fails before any training
    latency = _latency_table(config)
    if budget is not None:
        _check_reachable(config, probe, budget, latency)
    data = data if data is not None else config.data.load()
    network = config.deployment_network(data.num_classes, data.channels)
    transform = config.proxy_transform(network)
    check_trainable(to_proxy(network, transform), len(data.train_labels) + len(data.val_labels),
                    config.train.batch_size)
    return Prepared(with_execution_plan(config, to_proxy(network, transform)), data, network, transform)


def with_execution_plan(config: StudyConfig, proxy: NetworkSpec) -> StudyConfig:
    """``workers = "auto"`` resolved: the machine's measured plan on the CPU (workers, and threads unless set;
    cached after the first measurement), one worker on a GPU or with data-parallel ``processes`` (whose ranks
    take the cores). Results do not depend on it."""
    if config.search.workers != "auto":
        return config
    if choose_device(config.train.device).type != "cpu" or config.train.processes > 1:
        return replace(config, search=replace(config.search, workers=1))
    from scaling_search.training.plan import machine_plan

    plan = machine_plan(proxy, config.train.batch_size)
    return replace(config, search=replace(config.search, workers=plan.workers),
                   train=replace(config.train, threads=config.train.threads or plan.threads), plan=plan.to_dict())


def _check_reachable(config: StudyConfig, network: NetworkSpec, budget: Budget, latency: Any) -> None:
    """Refuse a budget no compound scaling can reach (beyond phi = +-16) before anything is trained.

    The coefficients are not known yet; any with alpha, beta, gamma >= 1 reach the same range, so the paper's
    stand in. Whether rounding lets the chosen ones land within tolerance is checked at export.
    """
    from scaling_search.network.family import PAPER_COEFFICIENTS

    try:
        fit_budget(config, network, PAPER_COEFFICIENTS, budget, latency, tolerance=math.inf)
    except BudgetMiss as miss:
        raise UserError(f"budget {budget.text} is out of reach of compound scaling: {miss}") from None


def with_worker_threads(config: StudyConfig) -> StudyConfig:
    """Split the cores between grid workers unless threads were set explicitly (results do not depend on it)."""
    workers = config.search.workers
    if workers > 1 and config.train.threads is None:
        # Measured on 2 cores: two 1-thread processes train about twice the images/s of one 2-thread process.
        config = replace(config, train=replace(config.train, threads=max(1, default_threads() // workers)))
    return config


def _worker(stage: str, config: StudyConfig, baseline: dict[str, Any] | None, trainer: Trainer,
            progress: bool) -> None:
    """Entry point of an extra worker process: the same stage against the same storage, no progress bar.

    The parent stops it with SIGTERM (on Ctrl-C or an error); it then exits normally, releasing what it holds.
    A parent that dies without stopping it (SIGKILL, SIGTERM) stops it too: a worker never goes on training a
    study unseen (one did, for 12 minutes, after its parent was killed).
    """
    signal.signal(signal.SIGTERM, _exit_quietly)
    _exit_with_parent()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if stage == "grid":
        prepared = prepare(config)
        run_grid(config, prepared.data, NetworkSpec.from_dict(baseline or {}), prepared.transform, trainer,
                 progress=progress, bar=False)
    else:  # an ablation figure, the comparison or a fidelity reference: its points are already enqueued, and the
        # parent checked the study. (prepare() here would check stages 1 and 2 against a fidelity reference's
        # settings, which differ by design, and the worker died on it.)
        study = open_study(config, open_storage(config), stage)
        describe = describe_grid_point if stage.startswith("fidelity") else describe_point
        train_points(config, config.data.load(), study, _stage_label(stage), describe, trainer,
                     progress=progress, bar=False)


def _stage_label(stage: str) -> str:
    if stage.startswith("fidelity"):
        return "reference"
    return "comparison" if stage == "compare" else f"figure {stage[3:]}"


def _exit_quietly(signum: int, frame: Any) -> None:
    raise_outside_storage(signum, frame, SystemExit(0))


def _exit_with_parent() -> None:
    """Send this process SIGTERM when its parent process exits (a daemon thread waits on the parent's sentinel)."""
    import os
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _with_workers(stage: str, config: StudyConfig, baseline: NetworkSpec | None, trainer: Trainer,
                  main: Callable[[], Any], progress: bool = False) -> Any:
    workers = config.search.workers
    if workers <= 1:
        return main()
    if ":memory:" in config.storage:
        raise UserError("--workers needs a shared storage; an in-memory SQLite URL cannot be shared")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker,
                                 args=(stage, config, baseline and baseline.to_dict(), trainer, progress))
                 for _ in range(workers - 1)]
    # Workers start with SIGINT ignored (kept across exec, so Python installs no handler): Ctrl-C reaches the
    # whole terminal group, and a worker still importing torch would print a 60-line traceback. The parent
    # reports the interruption and stops them; their trials go stale and are retried by the next run.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, previous)

    def interrupted(signum: int, frame: Any) -> None:
        # Stop the workers first: one may be mid-write on the storage, and the parent's own unwinding
        # (Optuna joins the trial's heartbeat thread, which writes to the storage) must not wait on its lock.
        for process in processes:
            process.terminate()
        interrupt_outside_storage(signum, frame)

    signal.signal(signal.SIGINT, interrupted)
    try:
        result = main()
        for process in processes:  # a Ctrl-C while waiting here stops the workers too
            process.join()
    except BaseException:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():  # still importing or stuck: not left to finish the grid unseen
                process.kill()
                process.join()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    return result


def search_baseline(prepared: Prepared, trainer: Trainer = train_proxy,
                    progress: bool = True) -> tuple[NetworkSpec, dict[str, Any]]:
    """Stage 1 (or the deployment network as it is, with ``search.baseline = "network"``)."""
    return run_baseline(prepared.config, prepared.data, prepared.network, prepared.transform, trainer, progress)


def search_grid(prepared: Prepared, baseline: NetworkSpec, trainer: Trainer = train_proxy,
                progress: bool = True) -> GridResult:
    """Stage 2 on ``search.workers`` processes; every point trained once."""
    config = with_worker_threads(prepared.config)
    grid = prepare_grid(config, baseline, prepared.transform)  # enqueue the points once, before any worker starts
    _with_workers("grid", config, baseline, trainer,
                  lambda: run_grid(config, prepared.data, baseline, prepared.transform, trainer, progress), progress)
    result = load_grid(config)  # refuses an unfinished grid before racing it
    if config.search.race_seeds:
        # extra seeds where they decide the winner: one process, every core (threads never change the numbers)
        run_race(replace(config, train=replace(config.train, threads=None)), prepared.data, grid, trainer, progress)
        result = load_grid(config)
    return result


def load_grid(config: StudyConfig) -> GridResult:
    """The finished grid of a study, with its winner; refuses an unfinished one."""
    study = load_stage(config, "grid")
    if study is None or "points" not in study.user_attrs:
        raise UserError(f"study {config.name!r} has no coefficient grid in {mask_credentials(config.storage)}; "
                        "run 'scaling-search grid' (or 'run') first")
    rows = raced_rows(config, study)  # the grid's seeds and the race's extra ones
    expected = len(study.user_attrs["points"])
    if len(rows) < expected:
        raise UserError(f"stage 2 of study {config.name!r} has {len(rows)} of {expected} points finished; "
                        "rerun 'scaling-search grid' (or 'run') to finish it")
    return GridResult(study, rows, choose_coefficients(rows), NetworkSpec.from_dict(study.user_attrs["baseline"]),
                      list(study.user_attrs.get("collisions", [])))


def _latency_table(config: StudyConfig) -> Any:
    """The calibrated latency table of ``search.latency_device`` with ``cost = "latency"``; refuses an
    uncalibrated one (its raw sums are not latencies)."""
    if config.search.cost != "latency":
        return None
    from scaling_search.latency import LatencyTable

    return LatencyTable.open_calibrated(config.search.latency_device, 1, runtime=config.search.latency_runtime)


def export(config: StudyConfig, budget: Budget, family: list[float] | None = None, output: Path = Path("reports"),
           dataset: str | None = None) -> tuple[GridResult, list[Path]]:
    """Stage 3 from a finished grid (no training): ``model-phi*.json`` at deployment scale, and the tables.

    A study made with other settings is refused first; :func:`export_models` fits the budget before it
    writes anything, and study.json and the tables are written only after it.
    """
    check_existing(config)
    grid = load_grid(config)
    latency = _latency_table(config)
    transform = config.proxy_transform(grid.baseline)
    summary = grid.summary
    evidence = {"grid_winner": summary["winner"], "runner_up": summary.get("runner_up"),
                "gap": summary.get("gap"), "p_best": summary.get("p_best"), "noise": summary.get("noise"),
                "separated": summary.get("separated"), "separated_at": SEPARATED_AT,
                "seeds_per_point": config.search.repeats, "proxy_epochs": config.train.epochs,
                "measured_at": "the phi = 1 grid point's proxy",
                "proxy_fidelity": [fidelity_evidence(measured)
                                   for measured in stored_fidelities(config.name, open_storage(config))]}
    provenance = {"dataset": dataset or config.data.source, "preset": config.preset, "seed": config.search.seed,
                  "storage": mask_credentials(config.storage), "study": config.name,
                  "grid_study": f"{config.name}:grid", "grid_trial": summary["winner"]["trial"]}
    folder = output / config.name
    paths = export_models(folder, config, grid.baseline, transform, grid.coefficients, budget, family, evidence,
                          provenance, latency)
    config.write(folder)
    write_tables(config, folder, grid.rows)
    return grid, paths


def write_tables(config: StudyConfig, folder: Path, grid_rows: list[dict[str, Any]] | None = None) -> None:
    """``<stage>_trials.csv`` for stage 1 and 2 and ``grid_summary.csv``, written atomically."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    for stage in ("baseline", "grid"):
        study = load_stage(config, stage)
        if study is None:
            continue
        frame = study.trials_dataframe(attrs=("number", "value", "state", "duration", "params", "user_attrs"))
        frame = frame.drop(columns=[c for c in frame.columns if c in ("user_attrs_spec", "user_attrs_proxy_spec")])
        _write_csv(frame, folder / f"{stage}_trials.csv")
    if grid_rows is not None:
        _write_csv(pd.DataFrame(grid_rows), folder / "grid_summary.csv")


def _write_csv(frame: Any, path: Path) -> None:
    temporary = path.with_suffix(".csv.tmp")
    frame.to_csv(temporary, index=False)
    temporary.replace(path)


def export_by_rule(config: StudyConfig, budget: Budget, family: list[float] | None, output: Path, dataset: str,
                   baseline: NetworkSpec, strategy: str, *, max_resolution: int = 480,
                   long_training: bool = False) -> tuple[GridResult | None, list[Path]]:
    """Stage 3 by a published rule (:mod:`scaling_search.rules`) instead of compound scaling's phi:
    ``model-<rule>-phi*.json``, recording the rule and its parameters. v2 takes the grid's coefficients (the grid
    must be finished); the other rules need no grid, only the baseline."""
    from scaling_search.rules import parse_rule

    grid = load_grid(config) if strategy == "v2" else None
    if grid is not None:
        baseline = grid.baseline
    rule = parse_rule(strategy, coefficients=grid.coefficients if grid else None, base_resolution=baseline.resolution,
                      max_resolution=max_resolution, long_training=long_training)
    measured = ("the grid's winning coefficients, capped at the resolution given" if grid else
                "stage 1's baseline only: the rule's multipliers are its paper's, not fitted to this data "
                "('scaling-search compare' trains each rule's networks on it)")
    evidence: dict[str, Any] = {"strategy": strategy, "measured": measured}
    if grid is not None:
        evidence.update(grid_winner=grid.summary["winner"], seeds_per_point=config.search.repeats,
                        proxy_epochs=config.train.epochs)
    provenance = {"dataset": dataset, "preset": config.preset, "seed": config.search.seed,
                  "storage": mask_credentials(config.storage), "study": config.name,
                  "baseline_study": f"{config.name}:baseline"}
    if grid is not None:
        provenance.update(grid_study=f"{config.name}:grid", grid_trial=grid.summary["winner"]["trial"])
    folder = output / config.name
    paths = export_rule_models(folder, config, baseline, config.proxy_transform(baseline), rule, budget, family,
                               evidence, provenance)
    config.write(folder)
    write_tables(config, folder, grid.rows if grid else None)
    return grid, paths


def run(config: StudyConfig, budget: Budget, family: list[float] | None = None, output: Path = Path("reports"), *,
        trainer: Trainer = train_proxy, progress: bool = True, data: ImageData | None = None,
        report: bool = True, strategy: str = "compound", max_resolution: int = 480,
        long_training: bool = False) -> RunResult:
    """All stages: baseline search, coefficient grid (compound and v2 only), export at deployment scale by
    ``strategy`` (compound scaling, or another rule of :mod:`scaling_search.rules`), report."""
    prepared = prepare(config, data, budget)
    config = prepared.config  # workers = "auto" resolved to this machine's plan
    baseline, info = search_baseline(prepared, trainer, progress)
    if strategy in ("compound", "v2"):
        search_grid(prepared, baseline, trainer, progress)
    if strategy == "compound":
        grid, paths = export(config, budget, family, output, prepared.data.name)
    else:
        grid, paths = export_by_rule(config, budget, family, output, prepared.data.name, baseline, strategy,
                                     max_resolution=max_resolution, long_training=long_training)
    folder = output / config.name
    index = None
    if report and (grid is not None or config.search.baseline == "search"):  # else nothing was trained
        from scaling_search.report import build_report

        index = build_report(config.name, config.storage, output)
    return RunResult(config, baseline, info, grid, paths, folder, index, strategy)


def ablate(config: StudyConfig, figures: tuple[str, ...], *, widths: tuple[float, ...], depths: tuple[float, ...],
           resolutions: tuple[float, ...], phis: tuple[float, ...], base_path: str | None = None,
           output: Path = Path("reports"), trainer: Trainer = train_proxy, progress: bool = True,
           data: ImageData | None = None) -> Path:
    """The paper's Figures 3, 4 and 8 as resumable studies at deployment scale; returns the report's index."""
    from scaling_search.network.family import PAPER_COEFFICIENTS
    from scaling_search.report import build_report

    given = load_spec(base_path) if base_path else None  # a bad file fails before the data is loaded
    if given is not None:
        config = replace(config, deployment=replace(config.deployment, network=str(base_path), resolution=0))
    prepared = prepare(config, data)
    base, transform = prepared.network, prepared.transform
    config = with_worker_threads(prepared.config)
    coefficients, source = _study_coefficients(config) or (PAPER_COEFFICIENTS, "paper")
    on = f"baseline {Path(base_path).name}" if base_path else ""
    notes = {
        "3": "; ".join(filter(None, (on, _trimmed("width", widths, ablations.PAPER_WIDTHS),
                                     _trimmed("depth", depths, ablations.PAPER_DEPTHS),
                                     _trimmed("resolution", resolutions, ablations.PAPER_RESOLUTIONS)))),
        "4": "; ".join(filter(None, (on, _trimmed("width", widths, ablations.PAPER_WIDTHS)))),
        "8": "; ".join(filter(None, (on, f"alpha, beta, gamma = {', '.join(f'{c:g}' for c in coefficients)} "
                                         f"from the {source}"))),
    }
    deployment = config.deployment
    for figure in figures:
        if figure == "3":
            points = ablations.figure3_points(base, deployment, transform, widths, depths, resolutions)
        elif figure == "4":
            points = ablations.figure4_points(base, deployment, transform, widths)
        else:
            points = ablations.figure8_points(base, deployment, transform, coefficients, phis, source)
        study = prepare_points(config, f"fig{figure}", points, {"baseline": base.to_dict(), "note": notes[figure]})
        _with_workers(f"fig{figure}", config, None, trainer,
                      lambda: train_points(config, prepared.data, study, f"figure {figure}", describe_point, trainer,
                                           progress), progress)
    return build_report(config.name, config.storage, output)


def compare(config: StudyConfig, rule_names: tuple[str, ...], budgets: tuple[float, ...], *,
            max_resolution: int = 480, long_training: bool = False, output: Path = Path("reports"),
            trainer: Trainer = train_proxy, progress: bool = True, data: ImageData | None = None) -> Path:
    """Published scaling rules at equal deployment MACs on the study's data, as a resumable study; returns the
    report's index. Compound and V2-style scaling use this study's grid coefficients when a finished run exists
    in the storage, else the paper's."""
    from scaling_search.network.family import PAPER_COEFFICIENTS
    from scaling_search.report import build_report
    from scaling_search.rules import RULES, parse_rule
    from scaling_search.search.compare import compare_points, point_latencies

    prepared = prepare(config, data)
    base, transform = prepared.network, prepared.transform
    config = with_worker_threads(prepared.config)
    coefficients, source = _study_coefficients(config) or (PAPER_COEFFICIENTS, "paper")
    try:
        rules = [parse_rule(name, coefficients=coefficients, base_resolution=base.resolution,
                            max_resolution=max_resolution, long_training=long_training) for name in rule_names]
    except ValueError as error:
        raise UserError(str(error)) from None
    points = compare_points(base, config.deployment, transform, rules, budgets)
    note = (f"alpha, beta, gamma = {', '.join(f'{c:g}' for c in coefficients)} from the {source}; "
            f"{config.search.repeats} seed(s) per point")
    study = prepare_points(config, "compare", points, {"baseline": base.to_dict(), "note": note,
                                                       "rules": list(rule_names), "budgets": list(budgets)},
                           growable=("rules", "budgets"),  # another budget or rule extends the comparison
                           choices={"figure": ["compare"], "method": ["baseline", *RULES]})
    study.set_user_attr("predicted_latency", point_latencies(study.user_attrs["points"],
                                                             config.search.latency_device,
                                                             config.search.latency_runtime))
    _with_workers("compare", config, None, trainer,
                  lambda: train_points(config, prepared.data, study, _stage_label("compare"), describe_point, trainer,
                                       progress),
                  progress)
    return build_report(config.name, config.storage, output)


def fidelity(config: StudyConfig, reference: Reference, *, output: Path = Path("reports"),
             trainer: Trainer = train_proxy, progress: bool = True, prepared: Prepared | None = None) -> Fidelity:
    """The proxy's ranking of the grid scored against ``reference`` (see :mod:`scaling_search.search.fidelity`).

    Stage 1 and 2 run (or are reused) as in :func:`run`; the reference trains the grid's candidates as the stage
    ``fidelity-<regime>`` of the same study. Writes ``fidelity.json`` beside the study's report tables.
    ``prepared`` is :func:`prepare`'s result for ``config`` where the caller already has it.
    """
    prepared = prepared or prepare(config)
    config = prepared.config
    reference_config = with_worker_threads(reference.config(config))
    transform = reference.transform(config, prepared.network)  # refused before any training
    baseline, _ = search_baseline(prepared, trainer, progress)
    grid = search_grid(prepared, baseline, trainer, progress)
    stage = reference.stage(config)
    study = prepare_points(reference_config, stage, reference_points(grid.study, transform),
                           {"baseline": baseline.to_dict()})
    _with_workers(stage, reference_config, None, trainer,
                  lambda: train_points(reference_config, prepared.data, study, _stage_label(stage),
                                       describe_grid_point, trainer, progress),
                  progress)
    result = score_fidelity(grid.study, study)
    folder = output / config.name
    config.write(folder)
    write_json_atomically(folder / "fidelity.json", result.to_dict())
    return result


def compare_proxies(config: StudyConfig, reference: Reference, candidates: list[CandidateRegime], *,
                    target_tau: float = TARGET_TAU, output: Path = Path("reports"), trainer: Trainer = train_proxy,
                    progress: bool = True, prepared: Prepared | None = None) -> Recommendation:
    """:func:`fidelity`, then every candidate regime trained on the same grid candidates (stage
    ``candidate-<regime>``) and scored against the same reference; the cheapest reaching ``target_tau`` is
    recommended (:mod:`scaling_search.search.proxy_candidates`). Writes ``proxies.json`` and
    ``recommended-proxy.toml`` beside ``fidelity.json``."""
    prepared = prepared or prepare(config)
    config = prepared.config
    trained = [candidate.config(config) for candidate in candidates]
    # a regime no proxy can have (below the network's stride, say) is refused before anything trains
    transforms = [regime.proxy_transform(prepared.network) for regime in trained]
    own = fidelity(config, reference, output=output, trainer=trainer, progress=progress, prepared=prepared)
    grid, reference_study = load_stage(config, "grid"), load_stage(config, reference.stage(config))
    assert grid is not None and reference_study is not None  # fidelity() just finished both
    baseline = grid.user_attrs["baseline"]
    scored = [own]
    for regime, transform in zip(trained, transforms):
        candidate_config = with_worker_threads(regime)
        stage = candidate_stage(regime)
        data = prepared.data if candidate_config.data == config.data else candidate_config.data.load()
        study = prepare_points(candidate_config, stage, reference_points(grid, transform), {"baseline": baseline})
        study.set_user_attr("target_tau", target_tau)  # the report's recommendation uses the command's target
        _with_workers(stage, candidate_config, None, trainer,
                      lambda: train_points(candidate_config, data, study, _stage_label(stage),
                                           describe_grid_point, trainer, progress),
                      progress)
        scored.append(score_fidelity(study, reference_study))
    result = recommend(scored, target_tau)
    folder = output / config.name
    write_json_atomically(folder / "proxies.json", result.to_dict())
    write_text_atomically(folder / "recommended-proxy.toml", preset_text(config, result))
    return result


def describe_point(attrs: dict[str, Any]) -> str:
    """An ablation point in a log line: its method or dimension and multiplier, and its deployment MACs."""
    label = attrs.get("method") or f"{attrs.get('dimension')} x{attrs.get('multiplier'):g}"
    if attrs.get("figure") == "compare" and label != "baseline":
        label = f"{label} at {attrs.get('budget'):g}x"
    return f"{label} ({attrs.get('point_macs', 0) / 1e6:,.1f}M deployment MACs)"


def _trimmed(label: str, values: tuple[float, ...], paper: tuple[float, ...]) -> str:
    """``"width 1, 1.4 of the paper's 1, 1.4, ..., 5"`` when a preset trimmed the paper's set, else ``""``."""
    def listed(numbers: tuple[float, ...]) -> str:
        return ", ".join(f"{v:g}" for v in numbers)

    return "" if tuple(values) == tuple(paper) else f"{label} {listed(values)} of the paper's {listed(paper)}"


def _study_coefficients(config: StudyConfig) -> tuple[tuple[float, float, float], str] | None:
    """The winning coefficients of this study's grid, when a finished run exists in the same storage."""
    try:
        grid = load_grid(config)
    except UserError:
        return None
    return grid.coefficients, f"study's grid (trial {grid.summary['winner']['trial']})"


__all__ = ["GridResult", "Prepared", "RunResult", "ablate", "compare", "export", "export_by_rule", "fidelity",
           "load_grid", "prepare", "run", "search_baseline", "search_grid", "with_worker_threads", "write_tables"]
