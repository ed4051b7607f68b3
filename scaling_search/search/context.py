"""The study context: what every stage of one study needs, built once and handed down.

:func:`scaling_search.search.runner.prepare` checks a :class:`~scaling_search.settings.StudyConfig`, loads the data
and builds one :class:`StudyContext`: the frozen config, the data, the deployment network, the study's proxy
transform, how to train and report, and a :class:`StudyStore` (the storage, opened once on first use, and its
stages). The stages (baseline, grid, race, references, ablations, comparisons) take it instead of rebuilding each
part from the config, as Optuna hands one ``Study`` to ``_optimize`` and ``_tell``.

A variant for one stage (another config, as a fidelity reference trains; another transform) is
:meth:`StudyContext.derive`: a new frozen context that keeps the opened storage where its URL is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

import optuna

from scaling_search.data.base import ImageData
from scaling_search.settings.proxy import information_pixels
from scaling_search.network.spec import NetworkSpec
from scaling_search.network.proxy import ProxyTransform
from scaling_search.search.candidate import Trainer
from scaling_search.search.storage import create_or_load, open_storage, storage_file
from scaling_search.settings.study import StudyConfig

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from scaling_search.search.pool import WorkerPool

#: ``on_event(kind, payload)``: how a pipeline reports what it found while it runs (the CLI prints it).
EventHandler = Callable[[str, Any], None]


def ignore_event(kind: str, payload: Any) -> None:
    """The default :data:`EventHandler`: a library call reports nothing while it runs, it returns what it found."""


@dataclass(frozen=True)
class StudyStore:
    """The stages ``<study>:<stage>`` of one study in its storage (opened once, on first use; nothing is created
    until a stage is opened for writing)."""

    config: StudyConfig

    @cached_property
    def storage(self) -> BaseStorage:
        return open_storage(self.config)

    def open(self) -> StudyStore:
        """The storage opened now (a new SQLite file made), so that a storage that cannot be opened fails here."""
        _ = self.storage
        return self

    def stage(self, name: str) -> optuna.Study | None:
        """The stage as stored, with its trials, or None (creates nothing: not even a SQLite file)."""
        path = storage_file(self.config.storage)
        if path is not None and not path.exists():
            return None
        try:
            return optuna.load_study(study_name=f"{self.config.name}:{name}", storage=self.storage)
        except KeyError:
            return None

    def open_stage(self, name: str, sampler: optuna.samplers.BaseSampler | None = None,
                   metric: str = "proxy_val_top1", seeded: bool = True) -> tuple[optuna.Study, bool]:
        """``(study, created)``: the stage created or loaded (refused in one line if made with other settings, or,
        where it trains ``seeded`` points, with other seeds per point), its objective named ``metric``;
        ``created`` is True in exactly one of the processes that open a new stage at the same moment."""
        return create_or_load(self.config, self.storage, name, sampler, metric, seeded)

    def with_config(self, config: StudyConfig) -> StudyStore:
        """The same stages read and written under ``config`` (its settings are what a new stage records)."""
        store = StudyStore(config)
        if config.storage == self.config.storage and "storage" in self.__dict__:
            store.__dict__["storage"] = self.storage  # the opened storage is shared, never reopened
        return store


@dataclass(frozen=True)
class StudyContext:
    """One study's config, data, deployment network, proxy transform and stages, and how it trains and reports.

    Attributes:
        config: the study's frozen config (``workers = "auto"`` already resolved).
        data: the study's images, loaded once.
        network: the deployment network (the data's classes and channels), at deployment scale.
        transform: the study's proxy factors, fixed by that network (:func:`scaling_search.network.proxy.to_proxy`).
        trainer: what trains a proxy (:func:`scaling_search.training.train_proxy`, or a test's fake).
        progress: progress bars (on a TTY) or one line per trial; False for none.
        bar: False in a worker process, which logs no bar of its own.
        on_event: receives ``(kind, payload)`` as a pipeline finds things.
        store: the study's stages.
        pool: the worker processes this command's stages share (:func:`scaling_search.search.workers.kept_workers`),
            or None: each stage spawns its own.
    """

    config: StudyConfig
    data: ImageData
    network: NetworkSpec
    transform: ProxyTransform
    trainer: Trainer
    progress: bool = True
    bar: bool = True
    on_event: EventHandler = ignore_event
    store: StudyStore = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    pool: WorkerPool | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.store is None or self.store.config is not self.config:
            object.__setattr__(self, "store", (self.store or StudyStore(self.config)).with_config(self.config))

    def stage(self, name: str) -> optuna.Study | None:
        """The stage ``<study>:<name>`` as stored, or None (see :meth:`StudyStore.stage`)."""
        return self.store.stage(name)

    def proxy_data(self, deployment: NetworkSpec) -> ImageData:
        """The images the proxy of ``deployment`` trains on: the data as it is, or resampled first as ``[proxy]
        images`` says (:func:`scaling_search.settings.proxy.information_pixels`)."""
        pixels = information_pixels(self.config.proxy.images, self.data.native_resolution,
                                    self.transform.resolution_factor, deployment.resolution, self.network.resolution)
        return self.data if pixels is None else self.data.resampled(pixels)

    def emit(self, kind: str, payload: Any) -> None:
        self.on_event(kind, payload)

    def derive(self, **changes: Any) -> StudyContext:
        """A context for one stage with some fields replaced (a config, a transform, data); the opened storage
        is kept where the config's storage URL is unchanged."""
        return replace(self, **changes)

    def recipe(self) -> WorkerRecipe:
        """What a worker process needs to rebuild this context (the data is loaded again there, from its cache)."""
        return WorkerRecipe(self.config, self.network.to_dict(), self.transform, self.trainer, self.progress)


@dataclass(frozen=True)
class WorkerRecipe:
    """A :class:`StudyContext` without its data or storage: what is sent to a worker process, which rebuilds
    the context from it (:mod:`scaling_search.search.workers`)."""

    config: StudyConfig
    network: dict[str, Any]
    transform: ProxyTransform
    trainer: Trainer
    progress: bool

    def build(self) -> StudyContext:
        return StudyContext(self.config, self.config.data.load(), NetworkSpec.from_dict(self.network), self.transform,
                            self.trainer, self.progress, bar=False)


__all__ = ["EventHandler", "StudyContext", "StudyStore", "WorkerRecipe", "ignore_event"]
