"""Stage 3: scale the deployment baseline with the chosen coefficients and write buildable model configs.

An exported config (``model-phi<phi>.json``) describes the network to train and ship, at deployment scale: its
full spec, timm-style arch strings, and deployment params/MACs. Beside it, labelled as such, sit the proxy
spec that stands for it in training and the proxy evidence the coefficients were chosen on.
:func:`scaling_search.build_model` and ``scaling-search cost|train --config`` accept the file directly.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from scaling_search import __version__
from scaling_search.network.arch import encode_arch
from scaling_search.atomic import write_json_atomically
from scaling_search.network.budget import Budget, BudgetFit, BudgetMiss
from scaling_search.network.budget import fit_budget as fit_network_budget
from scaling_search.network.cost import count_cost
from scaling_search.errors import UserError
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.network.rules import ScalingRule, apply_rule, fit_rule
from scaling_search.search.confidence import SEPARATED_AT
from scaling_search.network.spec import NetworkSpec
from scaling_search.network.timm_compat import pretrained_cfg, timm_config
from scaling_search.search.context import StudyStore
from scaling_search.search.decision import GridResult, load_grid
from scaling_search.search.fidelity import fidelity_evidence, stored_fidelities
from scaling_search.search.tables import write_tables
from scaling_search.settings.study import StudyConfig, mask_credentials

CONFIG_FORMAT = "scaling-search/model-config"
CONFIG_VERSION = 2


def phi_label(phi: float) -> str:
    """``1.0`` -> ``"1"``, ``0.511`` -> ``"0.511"``, ``-1.5`` -> ``"-1.5"`` (phi lies on a 0.001 grid)."""
    return f"{phi + 0.0:.3f}".rstrip("0").rstrip(".")


def fit_budget(config: StudyConfig, baseline: NetworkSpec, coefficients: tuple[float, float, float],
               budget: Budget, latency: Any = None, tolerance: float | None = None) -> BudgetFit:
    """The phi whose compound-scaled deployment network meets ``budget`` within ``search.budget_tol``
    (:func:`scaling_search.network.budget.fit_budget`; ``latency``: a calibrated latency table)."""
    member = partial(config.deployment.compound, baseline, *coefficients)
    return fit_network_budget(baseline, member, budget, latency.predict if latency is not None else None,
                              config.search.budget_tol if tolerance is None else tolerance)


def budget_reference(config: StudyConfig, baseline: NetworkSpec) -> dict[str, Any]:
    """What a ratio budget multiplies: the deployment baseline, named (stage 1's searched network, the deployment
    network stage 1 kept, or the deployment network as given), with its MACs, blocks and resolution."""
    given = config.deployment_network(baseline.num_classes, baseline.input_channels)
    searched = config.search.baseline != "network" and baseline != given
    kept = ", kept by stage 1" if config.search.baseline != "network" else " as given"
    return {"network": "the searched baseline (stage 1)" if searched else
            f"the deployment network {config.deployment.network}{kept}",
            "searched": searched, "macs": count_cost(baseline).macs, "blocks": baseline.num_blocks,
            "resolution": baseline.resolution}


def _budget_record(config: StudyConfig, baseline: NetworkSpec,
                   fit: tuple[Budget, BudgetFit] | None) -> dict[str, Any] | None:
    """The ``budget`` entry of the member the budget was fitted for (None for the others)."""
    if fit is None:
        return None
    parsed, fitted = fit
    return {"text": parsed.text, "kind": parsed.kind, "target": fitted.target, "achieved": fitted.achieved,
            "relative_error": fitted.relative_error, "tolerance": config.search.budget_tol,
            "unit": "ms" if parsed.kind == "latency" or config.search.cost == "latency" else "MACs",
            "reference": budget_reference(config, baseline)}


def _pretrained_cfg(spec: NetworkSpec, data: dict[str, Any] | None) -> dict[str, Any]:
    """How to feed the exported network: its input size and interpolation, and the study data's normalisation
    and class names where the study recorded them (``search_grid`` does)."""
    data = data or {}
    return pretrained_cfg(spec, data.get("pixel_mean"), data.get("pixel_std"), data.get("classes"))


def _config_body(config: StudyConfig, baseline: NetworkSpec, transform: ProxyTransform, spec: NetworkSpec,
                 scaling: dict[str, Any], nominal_ratio: float, fit: tuple[Budget, BudgetFit] | None, note: str,
                 evidence: dict[str, Any], provenance: dict[str, Any], file_name: str) -> dict[str, Any]:
    """What every exported config holds: ``spec`` at deployment scale, its costs and budget, its proxy beside it;
    ``scaling`` says how it was scaled (compound's coefficients and phi, or a rule)."""
    budget = _budget_record(config, baseline, fit)
    proxy = to_proxy(spec, transform)
    cost, proxy_cost, base_macs = count_cost(spec), count_cost(proxy), count_cost(baseline).macs
    return {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_VERSION,
        "scale": "deployment",
        "usage": {
            "train": f"scaling-search train --config {file_name} --data <your data>",
            "python": f"from scaling_search import build_model; model = build_model('{file_name}')",
            "note": note,
        },
        **scaling,
        "rounding": {"depth": config.deployment.depth_rounding, "resolution_multiple":
                     config.deployment.resolution_multiple, "channel_divisor": 8},
        "spec": spec.to_dict(explicit=True),
        "arch": encode_arch(spec),
        "timm": timm_config(spec),
        "pretrained_cfg": _pretrained_cfg(spec, provenance.get("data")),
        "stem_channels": spec.stem_channels,
        "head_channels": spec.head_channels,
        "cost": {"params": cost.params, "macs": cost.macs, "activations": cost.activations},
        "baseline_macs": base_macs,
        "macs_ratio": cost.macs / base_macs,
        "nominal_ratio": nominal_ratio,
        "budget": budget,
        "proxy": {
            "note": "the proxy of this network (not the one to ship): what the study's training would measure",
            "spec": proxy.to_dict(),
            "cost": {"params": proxy_cost.params, "macs": proxy_cost.macs, "activations": proxy_cost.activations},
            "resolution_factor": transform.resolution_factor, "width_factor": transform.width,
            "depth_factor": transform.depth,
        },
        "evidence": evidence,
        "provenance": {"tool": "scaling-search", "version": __version__, **provenance},
    }


def _write_configs(configs: list[tuple[Path, dict[str, Any]]]) -> list[Path]:
    """Write every config, each atomically, once all of them were computed (a refusal writes nothing)."""
    return [write_json_atomically(path, body) for path, body in configs]


def model_config(config: StudyConfig, baseline: NetworkSpec, transform: ProxyTransform,
                 coefficients: tuple[float, float, float], phi: float, fit: tuple[Budget, BudgetFit] | None,
                 evidence: dict[str, Any], provenance: dict[str, Any], file_name: str) -> dict[str, Any]:
    """The exported description of the baseline scaled to ``phi``, at deployment scale, with its proxy beside it."""
    alpha, beta, gamma = coefficients
    spec = config.deployment.compound(baseline, alpha, beta, gamma, phi)
    scaling = {"alpha": alpha, "beta": beta, "gamma": gamma, "phi": phi, "product": alpha * beta**2 * gamma**2,
               "multipliers": {"depth": alpha**phi, "width": beta**phi, "resolution": gamma**phi}}
    note = ("spec, arch, cost and budget describe the network to train and ship; 'proxy' is the smaller network "
            "that stood for it during the search, and 'evidence' what the coefficients were chosen on")
    return _config_body(config, baseline, transform, spec, scaling, (alpha * beta**2 * gamma**2) ** phi, fit, note,
                        evidence, provenance, file_name)


def export_models(folder: Path, config: StudyConfig, baseline: NetworkSpec, transform: ProxyTransform,
                  coefficients: tuple[float, float, float], budget: Budget, family: list[float] | None,
                  evidence: dict[str, Any], provenance: dict[str, Any], latency: Any = None) -> list[Path]:
    """Write ``model-phi1.json`` (the measured grid point), the budget's model and each ``family`` phi.

    Every config is computed (and the budget fitted) before any file is written; each write is atomic, so a
    refused budget leaves earlier exports as they were.
    """
    fit = fit_budget(config, baseline, coefficients, budget, latency)
    phis = [1.0, fit.phi] + [phi for phi in family or []]
    unique = sorted(set(phis))
    configs = []
    for phi in unique:
        name = f"model-phi{phi_label(phi)}.json"
        body = model_config(config, baseline, transform, coefficients, phi,
                            (budget, fit) if phi == fit.phi else None, evidence, provenance, name)
        body["evidence"] = {**evidence, "measured_here": phi == 1.0}
        if latency is not None:
            from scaling_search.latency import measure_latency

            spec = NetworkSpec.from_dict(body["spec"])
            measured = measure_latency(spec, latency.device, batch=latency.batch, runtime=latency.runtime)
            body["latency"] = {"predicted_ms": latency.predict(spec), "measured_ms": measured.ms,
                               "measured_median_ms": measured.median_ms, "measured_spread": measured.spread,
                               "device": measured.device, "runtime": measured.runtime, "threads": measured.threads,
                               "batch": latency.batch, "baseline_predicted_ms": latency.predict(baseline)}
        configs.append((folder / name, body))
    return _write_configs(configs)


def rule_config(config: StudyConfig, baseline: NetworkSpec, transform: ProxyTransform, rule: ScalingRule,
                phi: float, spec: NetworkSpec, fit: tuple[Budget, BudgetFit] | None, evidence: dict[str, Any],
                provenance: dict[str, Any], file_name: str) -> dict[str, Any]:
    """The exported description of ``spec``, ``baseline`` scaled by ``rule`` for a FLOPs multiplier
    ``s = 2^phi`` (the paper's phi, where MACs grow ~ 2^phi), at deployment scale, with its proxy beside it."""
    s = 2.0**phi
    multipliers = rule.multipliers(s)
    scaling = {"rule": {**rule.record(), "s": s}, "phi": phi,
               "multipliers": {"depth": multipliers.depth, "width": multipliers.width,
                               "resolution": multipliers.resolution, "late_depth": multipliers.late_depth}}
    note = (f"the baseline scaled by the {rule.name} rule; spec, arch, cost and budget describe the network to "
            "train and ship, 'proxy' the smaller network that would stand for it in training")
    return _config_body(config, baseline, transform, spec, scaling, s, fit, note, evidence, provenance, file_name)


def export_rule_models(folder: Path, config: StudyConfig, baseline: NetworkSpec, transform: ProxyTransform,
                       rule: ScalingRule, budget: Budget, family: list[float] | None, evidence: dict[str, Any],
                       provenance: dict[str, Any]) -> list[Path]:
    """Write ``model-<rule>-phi<phi>.json`` for the budget (``s`` fitted on achieved deployment MACs, see
    :func:`scaling_search.network.rules.fit_rule`) and for each ``family`` phi (``s = 2^phi``). All configs are
    computed, and the budget fitted, before anything is written; each write is atomic."""
    if budget.kind == "latency" or config.search.cost == "latency":
        raise UserError(f"the {rule.name} rule scales to a MAC budget; use a ratio or a MAC count without "
                        "--cost latency, or the compound strategy for a latency budget")
    base_macs = count_cost(baseline).macs
    rounding = {"resolution_multiple": config.deployment.resolution_multiple,
                "depth_rounding": config.deployment.depth_rounding}
    try:
        _, _, fit = fit_rule(baseline, rule, budget.target(base_macs), lambda n: float(count_cost(n).macs),
                             tolerance=config.search.budget_tol, **rounding)
    except BudgetMiss as miss:
        raise UserError(f"budget {budget.text} by the {rule.name} rule: {miss}") from None
    members: dict[float, tuple[Budget, BudgetFit] | None] = {fit.phi: (budget, fit)}
    for phi in family or []:
        members.setdefault(phi, None)
    configs = []
    for phi, fitted in sorted(members.items()):
        name = f"model-{rule.name}-phi{phi_label(phi)}.json"
        spec = apply_rule(baseline, rule, 2.0**phi, **rounding)
        configs.append((folder / name, rule_config(config, baseline, transform, rule, phi, spec, fitted, evidence,
                                                   provenance, name)))
    return _write_configs(configs)


def latency_table(config: StudyConfig) -> Any:
    """The calibrated latency table of ``search.latency_device`` with ``cost = "latency"`` (None with MACs);
    refuses an uncalibrated one (its raw sums are not latencies)."""
    if config.search.cost != "latency":
        return None
    from scaling_search.latency import LatencyTable

    return LatencyTable.open_calibrated(config.search.latency_device, 1, runtime=config.search.latency_runtime)


def grid_repeats(grid: GridResult) -> int:
    """The seeds per point the grid was trained with (its own settings: another command may ask for others)."""
    return int(grid.study.user_attrs.get("settings", {}).get("search", {}).get("repeats", 1))


def grid_evidence(store: StudyStore, grid: GridResult) -> dict[str, Any]:
    """What an exported config records of the decision: the ladder's choice, tied set, rungs and the fidelity
    between them (as ``decision.json``), the chosen point, the runner-up, P(best) and the noise it counted, and
    every proxy fidelity measured for the study."""
    config, summary = store.config, grid.summary
    decision = grid.decision.to_dict()
    return {"decision": {"chosen": decision["chosen"], "tied": decision["tied"], "winner": decision["winner"],
                         "rungs": [rung["regime"] for rung in decision["rungs"]], "fidelity": decision["fidelity"]},
            "grid_winner": summary["winner"], "runner_up": summary.get("runner_up"),
            "gap": summary.get("gap"), "p_best": summary.get("p_best"), "noise": summary.get("noise"),
            "separated": summary.get("separated"), "separated_at": SEPARATED_AT,
            "seeds_per_point": grid_repeats(grid), "proxy_epochs": config.train.epochs,
            "measured_at": "the phi = 1 grid point's proxy",
            "proxy_fidelity": [fidelity_evidence(measured)
                               for measured in stored_fidelities(config.name, store.storage)]}


def _provenance(config: StudyConfig, dataset: str) -> dict[str, Any]:
    return {"dataset": dataset, "preset": config.preset, "seed": config.search.seed,
            "storage": mask_credentials(config.storage), "study": config.name}


def export_grid(store: StudyStore, budget: Budget, family: list[float] | None, output: Path,
                dataset: str | None = None) -> tuple[GridResult, list[Path]]:
    """Stage 3 by compound scaling from the finished grid: ``model-phi*.json``, ``study.json`` and the tables.

    The budget is fitted before anything is written; study.json and the tables are written after the configs.
    ``dataset`` defaults to the data's name the grid recorded, so exporting again rewrites a config unchanged.
    """
    config = store.config
    grid = load_grid(store)
    data = grid.study.user_attrs.get("data") or {}
    dataset = dataset or data.get("name") or config.data.source  # as the run that trained the grid named it
    evidence, latency = grid_evidence(store, grid), latency_table(config)
    provenance = {**_provenance(config, dataset), "grid_study": f"{config.name}:grid",
                  "grid_trial": grid.summary["winner"]["trial"]}
    if "data" in grid.study.user_attrs:
        provenance["data"] = grid.study.user_attrs["data"]
    folder = output / config.name
    transform = ProxyTransform.for_baseline(config.proxy, grid.baseline)
    paths = export_models(folder, config, grid.baseline, transform, grid.coefficients, budget, family, evidence,
                          provenance, latency)
    write_tables(store, folder, grid.rows, grid.decision.to_dict())
    return grid, paths


def export_by_rule(store: StudyStore, budget: Budget, family: list[float] | None, output: Path, dataset: str,
                   baseline: NetworkSpec, strategy: str, *, max_resolution: int = 480,
                   long_training: bool = False) -> tuple[GridResult | None, list[Path]]:
    """Stage 3 by a published rule (:mod:`scaling_search.network.rules`) instead of compound scaling's phi:
    ``model-<rule>-phi*.json``, recording the rule and its parameters. v2 takes the grid's coefficients (the grid
    must be finished); the other rules need no grid, only the baseline."""
    from scaling_search.network.rules import parse_rule

    config = store.config
    grid = load_grid(store) if strategy == "v2" else None
    if grid is not None:
        baseline = grid.baseline
    rule = parse_rule(strategy, coefficients=grid.coefficients if grid else None, base_resolution=baseline.resolution,
                      max_resolution=max_resolution, long_training=long_training)
    measured = ("the grid's winning coefficients, capped at the resolution given" if grid else
                "stage 1's baseline only: the rule's multipliers are its paper's, not fitted to this data "
                "('scaling-search compare' trains each rule's networks on it)")
    evidence: dict[str, Any] = {"strategy": strategy, "measured": measured}
    if grid is not None:
        evidence.update(grid_winner=grid.summary["winner"], seeds_per_point=grid_repeats(grid),
                        proxy_epochs=config.train.epochs)
    provenance = {**_provenance(config, dataset), "baseline_study": f"{config.name}:baseline"}
    if grid is not None:
        provenance.update(grid_study=f"{config.name}:grid", grid_trial=grid.summary["winner"]["trial"])
    folder = output / config.name
    transform = ProxyTransform.for_baseline(config.proxy, baseline)
    paths = export_rule_models(folder, config, baseline, transform, rule, budget, family, evidence, provenance)
    write_tables(store, folder, grid.rows if grid else None, grid.decision.to_dict() if grid else None)
    return grid, paths


__all__ = ["CONFIG_FORMAT", "CONFIG_VERSION", "export_by_rule", "export_grid", "export_models", "export_rule_models",
           "budget_reference", "fit_budget", "grid_evidence", "latency_table", "mask_credentials", "model_config",
           "phi_label", "rule_config"]
