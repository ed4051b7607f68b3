"""The study definition: one typed, validated, frozen config per study, from TOML plus CLI overrides.

A study document has the tables ``[data]`` (:class:`scaling_search.settings.DataSettings`), ``[deployment]``
(:class:`DeploymentSettings`: the network a user will train and ship), ``[proxy]``
(:class:`scaling_search.network.proxy.ProxySettings`: how candidates are shrunk for training), ``[train]``
(:class:`scaling_search.training.TrainSettings`) and ``[search]`` (:class:`SearchSettings`). Presets ship in the
package; ``studies/*.toml`` show how to write your own. The config is written into the run's output folder
(``study.json``) and its result-relevant part is stored in the Optuna study, so a rerun with different
settings is refused instead of silently mixing trials.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from scaling_search.atomic import write_json_atomically
from scaling_search.errors import UserError
from scaling_search.network.family import FAMILY, efficientnet
from scaling_search.settings.ladder import Rung
from scaling_search.settings.presets import load_toml
from scaling_search.network.proxy import ProxyTransform
from scaling_search.settings.proxy import ProxySettings
from scaling_search.runtimes import RUNTIMES
from scaling_search.network.scaling import DEPTH_ROUNDINGS, scale
from scaling_search.settings.tables import DataSettings, section_from_table, sections_from_toml
from scaling_search.network.spec import NetworkSpec, load_spec
from scaling_search.settings.train import RUN_ONLY_FIELDS, TrainSettings

PRUNERS = ("none", "median", "asha", "hyperband")
BASELINES = ("challenge", "search", "network")
COSTS = ("macs", "latency")
#: How the ladder chooses among points tied with the best at its top rung (:mod:`scaling_search.search.ties`).
TIE_BREAKS = ("cost", "none")
TABLES = ("data", "deployment", "proxy", "train", "search")
#: Bounds on what a study may ask for, so that a typo cannot exhaust the machine: a grid step of 0.01 up to 4
#: already holds about 3 * 10^4 candidate points; seeds are what torch and Optuna take.
MIN_GRID_STEP = 0.01
MAX_GRID_MAX = 4.0
MAX_TRIALS = 1_000
MAX_SCREEN = 100_000
MAX_REPEATS = 100
MAX_RACE = 1_000
MAX_RUNGS = 8
MAX_WORKERS = 64
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class DeploymentSettings:
    """The deployment baseline: the network a user will train and ship, at the resolution they will use.

    Costs, the ``alpha * beta**2 * gamma**2 ~= 2`` constraint, budgets, figures' MACs axes and exported configs
    are all at this scale.

    Attributes:
        network: ``"b0"`` .. ``"b7"`` or the path of a spec JSON / exported model config.
        resolution: input resolution in pixels; 0 keeps the network's own (224 for B0). Data of lower native
            resolution (CIFAR's 32 px) is upsampled to it, as when fine-tuning an ImageNet network: B0's
            stride-32 layout ends in a 7x7 map at 224 px, where resolution scaling moves MACs as gamma^2; at
            32 px it ends in 1x1 and MACs move in jumps.
        resolution_multiple: scaled deployment resolutions are rounded to a multiple of this (1: any pixel).
        depth_rounding: how scaled repeats are rounded (:func:`scaling_search.network.scaling.round_repeats`):
            ``"nearest"`` (default; the achieved MACs then follow alpha * beta^2 * gamma^2, median error 3.1%
            on B0's grid) or ``"ceil"`` (the official rule, 21%: B0's 1-4 blocks per stage all gain one).
    """

    network: str = "b0"
    resolution: int = 0
    resolution_multiple: int = 1
    depth_rounding: str = "nearest"

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not self.network:
            raise UserError(f"[deployment] network must be b0..b7 or a spec file, got {self.network!r}")
        for name, value, low in (("resolution", self.resolution, 0), ("resolution_multiple", self.resolution_multiple, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"[deployment] {name} must be a whole number >= {low}, got {value!r}")
        if self.depth_rounding not in DEPTH_ROUNDINGS:
            raise UserError(f"[deployment] depth_rounding must be one of {', '.join(DEPTH_ROUNDINGS)}, "
                            f"got {self.depth_rounding!r}")

    def scale(self, spec: NetworkSpec, *, depth: float = 1.0, width: float = 1.0,
              resolution: float = 1.0) -> NetworkSpec:
        """:func:`scaling_search.network.scaling.scale` with this study's deployment rounding rules."""
        return scale(spec, depth=depth, width=width, resolution=resolution,
                     resolution_multiple=self.resolution_multiple, depth_rounding=self.depth_rounding)

    def compound(self, spec: NetworkSpec, alpha: float, beta: float, gamma: float, phi: float) -> NetworkSpec:
        """Compound scaling (paper Eq. 3) with this study's deployment rounding rules."""
        return self.scale(spec, depth=alpha**phi, width=beta**phi, resolution=gamma**phi)

    def network_spec(self) -> NetworkSpec:
        """The named or loaded network at the deployment resolution (classes are set from the data later)."""
        key = self.network.lower().removeprefix("efficientnet_").removeprefix("efficientnet-")
        spec = efficientnet(key) if key in FAMILY else load_spec(self.network)
        return replace(spec, resolution=self.resolution) if self.resolution else spec


@dataclass(frozen=True)
class SearchSettings:
    """Stage 1 (baseline search), stage 2 (coefficient grid) and budget settings.

    Attributes:
        baseline: ``"challenge"`` runs stage 1 around the deployment network and keeps that network unless a
            searched candidate's reward is higher at 95% among stage 1's trials and again at the ladder's top rung
            (:mod:`scaling_search.search.baseline`); ``"search"``
            takes stage 1's best reward whatever its margin; ``"network"`` uses the deployment network as it is.
        cost: what the stage-1 reward and the budget measure: ``"macs"`` (the paper) or ``"latency"``
            (MnasNet's choice: batch-1 latency of the deployment network predicted by the device's table).
        target_latency_ms: stage-1 reward target with ``cost = "latency"``; 0 means the baseline's prediction.
        latency_device: the device whose latency table is used (``"cpu"``, ``"cuda"``).
        latency_runtime: the runtime of that table: ``"torch"`` (eager) or ``"onnxruntime"`` (the ``onnx`` extra).
        trials: stage-1 trials (TPE, seeded; with a screen, the best-scored candidates in order).
        screen: stage-1 candidates scored untrained before any is trained (:mod:`scaling_search.search.screen`:
            the NASWOT score of each proxy at initialisation); the ``trials`` best are trained. 0: no screen.
        screen_band: the screen keeps candidates whose deployment MACs are within this of the reward's target.
        screen_batch: training images each screened candidate is scored on.
        target_macs: stage-1 reward target in deployment MACs; 0 means the deployment network's.
        reward_exponent: w in ``acc * (macs / target) ** w`` (paper Section 4: -0.07).
        grid_step: spacing of alpha, beta, gamma values from 1.
        grid_max: largest alpha, beta or gamma value.
        grid_tol: how far from 2 both the nominal product ``alpha * beta**2 * gamma**2`` and the achieved
            deployment MACs ratio of a grid point may be.
        budget_tol: relative tolerance of an exported network's cost around its budget.
        pruner: Optuna pruner on per-epoch val accuracy.
        repeats: training seeds per grid point.
        race_seeds: extra trainings, at the top rung, for the points that could still win, round by round until
            the winner is separated (:mod:`scaling_search.search.race`); 0 turns racing off. Counted in trainings
            of the grid's regime: a seed at a rung of twice the epochs spends two.
        rungs: the decision ladder's regimes above the grid (:class:`scaling_search.settings.ladder.Rung`), cheapest
            first; the points that could still be best climb them and the decision is made at the top one. Empty:
            the grid decides.
        tie_break: among the points tied with the best at the top rung, ``"cost"`` chooses the lowest predicted
            latency where a calibrated table exists, else the fewest activations; ``"none"`` the most accurate.
        seed: seed of the sampler and of training.
        heartbeat_s / grace_s: a trial whose process stopped beating for ``grace_s`` is failed and retried.
        workers: processes that train stage-2 grid points at once on this machine, each with
            ``cores // workers`` threads (stage 1 runs in one process so that its TPE history, and so its
            samples, do not depend on timing); ``"auto"``: the machine's measured execution plan
            (:mod:`scaling_search.training.plan`), workers and threads both. Neither changes the numbers.
        oversubscribe: allow more ``workers`` than the cores this process may use (refused otherwise: each worker
            trains on at least one core, so the extra ones only slow the others down).
    """

    baseline: str = "challenge"
    cost: str = "macs"
    target_latency_ms: float = 0.0
    latency_device: str = "cpu"
    latency_runtime: str = "torch"
    trials: int = 4
    screen: int = 0
    screen_band: float = 0.1
    screen_batch: int = 64
    target_macs: int = 0
    reward_exponent: float = -0.07
    grid_step: float = 0.1
    grid_max: float = 2.0
    grid_tol: float = 0.1
    budget_tol: float = 0.05
    pruner: str = "median"
    repeats: int = 1
    race_seeds: int = 0
    rungs: tuple[Rung, ...] = ()
    tie_break: str = "cost"
    seed: int = 0
    heartbeat_s: int = 2
    grace_s: int = 8
    workers: int | str = 1
    oversubscribe: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rungs, (list, tuple)):
            raise UserError(f"search settings: rungs must be a list of tables such as [{{epochs = 2}}], got "
                            f"{self.rungs!r}")
        object.__setattr__(self, "rungs", tuple(Rung.from_table(rung) for rung in self.rungs))
        checks = [
            (self.baseline in BASELINES, f"baseline must be one of {', '.join(BASELINES)}"),
            (self.cost in COSTS, f"cost must be one of {', '.join(COSTS)}"),
            (self.target_latency_ms >= 0, "target_latency_ms must be >= 0"),
            (self.latency_runtime in RUNTIMES, f"latency_runtime must be one of {', '.join(RUNTIMES)}"),
            (1 <= self.trials <= MAX_TRIALS, f"trials must be in 1..{MAX_TRIALS}"),
            (0 <= self.screen <= MAX_SCREEN, f"screen must be in 0..{MAX_SCREEN} (0: no screen)"),
            (0 < self.screen_band <= 1, "screen_band must be in (0, 1]"),
            (self.screen_batch >= 2, "screen_batch must be >= 2 (the score compares images with each other)"),
            (self.target_macs >= 0, "target_macs must be >= 0"),
            (self.reward_exponent <= 0, "reward_exponent must be <= 0"),
            (MIN_GRID_STEP <= self.grid_step <= 1, f"grid_step must be in [{MIN_GRID_STEP}, 1]"),
            (1 < self.grid_max <= MAX_GRID_MAX, f"grid_max must be in (1, {MAX_GRID_MAX}]"),
            (self.grid_tol >= 0, "grid_tol must be >= 0"),
            (0 < self.budget_tol < 1, "budget_tol must be in (0, 1)"),
            (self.pruner in PRUNERS, f"pruner must be one of {', '.join(PRUNERS)}"),
            (1 <= self.repeats <= MAX_REPEATS, f"repeats must be in 1..{MAX_REPEATS}"),
            (0 <= self.race_seeds <= MAX_RACE, f"race_seeds must be in 0..{MAX_RACE}"),
            (len(self.rungs) <= MAX_RUNGS, f"rungs: at most {MAX_RUNGS}"),
            (self.tie_break in TIE_BREAKS, f"tie_break must be one of {', '.join(TIE_BREAKS)}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}"),
            (self.heartbeat_s >= 1 and self.grace_s > self.heartbeat_s, "grace_s must exceed heartbeat_s >= 1"),
            (self.workers == "auto" or (isinstance(self.workers, int) and 1 <= self.workers <= MAX_WORKERS),
             f'workers must be in 1..{MAX_WORKERS} or "auto"'),
            (isinstance(self.oversubscribe, bool), "oversubscribe must be true or false"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"search settings: {message}")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study's results, plus where it is stored."""

    name: str
    preset: str
    data: DataSettings
    deployment: DeploymentSettings
    proxy: ProxySettings
    train: TrainSettings
    search: SearchSettings
    storage: str
    plan: dict[str, Any] | None = None  # the measured execution plan behind workers = "auto" (recorded only)

    def __post_init__(self) -> None:
        check_study_name(self.name)

    def result_settings(self) -> dict[str, Any]:
        """The settings that change trial results (not storage, threads, device or CUDA graphs): the study's
        fingerprint."""
        train = asdict(self.train)
        for key in RUN_ONLY_FIELDS:
            train.pop(key)
        search = asdict(self.search)
        # racing and the ladder's rungs are stages of their own, with their own settings; the tie-break only reads
        for key in ("heartbeat_s", "grace_s", "workers", "oversubscribe", "budget_tol", "race_seeds", "rungs",
                    "tie_break"):
            search.pop(key)
        if not self.search.screen:  # studies made before the screen existed keep their fingerprint
            for key in ("screen", "screen_band", "screen_batch"):
                search.pop(key)
        data = asdict(self.data)
        if self.data.train_share == 1.0:  # studies made before the key existed keep their fingerprint
            data.pop("train_share")
        proxy = asdict(self.proxy)
        if self.proxy.images == "native":  # studies made before the key existed keep their fingerprint
            proxy.pop("images")
        return {"data": data, "deployment": asdict(self.deployment), "proxy": proxy,
                "train": train, "search": search}

    def to_dict(self) -> dict[str, Any]:
        body = {"name": self.name, "preset": self.preset, "storage": mask_credentials(self.storage),
                **{table: asdict(getattr(self, table)) for table in TABLES}}
        if self.plan is not None:
            body["execution_plan"] = self.plan
        return body

    def write(self, folder: Path) -> Path:
        return write_json_atomically(folder / "study.json", self.to_dict())  # never half-written

    def deployment_network(self, num_classes: int, channels: int) -> NetworkSpec:
        """The deployment network with the data's classes and channels (stage 1 searches around it)."""
        return replace(self.deployment.network_spec(), num_classes=num_classes, input_channels=channels)

    def proxy_transform(self, deployment_baseline: NetworkSpec) -> ProxyTransform:
        """The study's proxy factors, fixed by the deployment baseline (see :func:`scaling_search.network.proxy.to_proxy`)."""
        return ProxyTransform.for_baseline(self.proxy, deployment_baseline)


#: The longest study name: it names files (``studies/<name>.db``, ``reports/<name>/``) on every filesystem.
MAX_NAME_LENGTH = 100


def check_study_name(name: str) -> str:
    """A study name names folders and files, so it is never a path: letters, digits, '.', '_' or '-', starting
    with a letter or digit, at most :data:`MAX_NAME_LENGTH` characters."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or len(name) > MAX_NAME_LENGTH:
        raise UserError(f"study name {name!r} must be letters, digits, '.', '_' or '-', starting with a letter or "
                        f"digit, at most {MAX_NAME_LENGTH} characters")
    return name


def mask_credentials(text: str) -> str:
    """Every URL password in ``text`` masked, in the user part and in the query string:
    ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``, ``...?password=secret`` ->
    ``...?password=***``."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"([?&](?:password|passwd|pwd|pass)=)[^&\s]*", r"\1***", text, flags=re.IGNORECASE)


def default_storage(name: str) -> str:
    """Where a study lives unless ``--storage`` says otherwise: an SQLite file under ``./studies``."""
    return f"sqlite:///studies/{name}.db"


def default_study_name(preset: str, source: str) -> str:
    stem = "synthetic" if source == "synthetic" else Path(source).stem or "data"
    preset_stem = Path(preset).stem
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{preset_stem}-{stem}")


def load_study_config(preset: str, overrides: dict[str, dict[str, Any]], name: str | None,
                      storage: str | None) -> StudyConfig:
    """Preset (or TOML file) -> overrides (only values that are not None) -> validated, frozen config."""
    document = load_toml(preset)
    unknown = sorted(set(document) - set(TABLES))
    if unknown:
        raise UserError(f"{preset}: unknown table(s) {', '.join(unknown)} (known: {', '.join(TABLES)})")
    for table, values in overrides.items():
        document.setdefault(table, {})
        document[table] = {**document[table], **{k: v for k, v in values.items() if v is not None}}
    data, proxy, train = sections_from_toml(document)
    deployment = section_from_table(DeploymentSettings, document.get("deployment"), "deployment")
    search = section_from_table(SearchSettings, document.get("search"), "search")
    name = name if name is not None else default_study_name(preset, data.source)
    storage = storage or default_storage(name)
    return StudyConfig(name=name, preset=preset, data=data, deployment=deployment, proxy=proxy, train=train,
                       search=search, storage=storage)


__all__ = ["BASELINES", "COSTS", "PRUNERS", "TIE_BREAKS", "DeploymentSettings", "SearchSettings", "StudyConfig",
           "check_study_name", "default_storage", "default_study_name", "load_study_config", "mask_credentials"]
