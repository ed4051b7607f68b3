"""A candidate of the search: a deployment-scale spec, the proxy trained for it, and how it is measured.

Every trial of every stage records both specs and both costs, so a study answers in deployment units while
showing exactly which network was trained.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import optuna

from scaling_search.network.cost import count_cost
from scaling_search.data.base import ImageData
from scaling_search.errors import NonFiniteLossError
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.network.spec import NetworkSpec
from scaling_search.training import EpochMetrics, TrainResult, TrainSettings


class Trainer(Protocol):
    """What trains a proxy: :func:`scaling_search.training.train_proxy`, or a fake injected by tests."""

    def __call__(self, spec: NetworkSpec, data: ImageData, settings: TrainSettings,
                 on_epoch: Callable[[int, EpochMetrics], None] | None = None) -> TrainResult: ...


@dataclass(frozen=True)
class Candidate:
    """A deployment-scale network and its proxy (``to_proxy(deployment, transform)``)."""

    deployment: NetworkSpec
    proxy: NetworkSpec

    @classmethod
    def of(cls, deployment: NetworkSpec, transform: ProxyTransform) -> Candidate:
        return cls(deployment, to_proxy(deployment, transform))

    def to_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment.to_dict(), "proxy": self.proxy.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(NetworkSpec.from_dict(data["deployment"]), NetworkSpec.from_dict(data["proxy"]))

    def cost_attrs(self) -> dict[str, Any]:
        """Deployment costs (``macs``, ``params``, ...) and proxy costs (``proxy_macs``, ...), both specs."""
        deployed, trained = count_cost(self.deployment), count_cost(self.proxy)
        return {"spec": self.deployment.to_dict(), "proxy_spec": self.proxy.to_dict(),
                "macs": deployed.macs, "params": deployed.params, "activations": deployed.activations,
                "resolution": self.deployment.resolution,
                "proxy_macs": trained.macs, "proxy_params": trained.params,
                "proxy_resolution": self.proxy.resolution}


@dataclass(frozen=True)
class Measured:
    """Proxy accuracy over seeds, and what the training cost."""

    mean: float
    std: float
    per_seed: tuple[float, ...]
    images_per_s: float
    wall_s: float
    train_loss: float  # the last epoch's, averaged over seeds
    train_loss_sum: float | None  # summed over epochs, averaged over seeds (a ranking signal: search.fidelity);
    # None when the trainer kept no epoch history
    accuracy_by_epoch: list[float] | None = None  # val accuracy after each epoch, averaged over seeds (early-epoch
    # accuracy, another signal search.fidelity scores); None without a full history from every seed

    def attrs(self) -> dict[str, Any]:
        return {"accuracy": self.mean, "accuracy_std": self.std, "accuracy_per_seed": list(self.per_seed),
                "images_per_s": self.images_per_s, "train_wall_s": self.wall_s, "train_loss": self.train_loss,
                "train_loss_sum": self.train_loss_sum, "accuracy_by_epoch": self.accuracy_by_epoch}


#: What :func:`measure` records on a trial (a twin of the same network copies these).
MEASURED_ATTRS = ("accuracy", "accuracy_std", "accuracy_per_seed", "images_per_s", "train_wall_s", "train_loss",
                  "train_loss_sum", "accuracy_by_epoch", "val_images")


def record(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def measure(trial: optuna.Trial, candidate: Candidate, data: ImageData, settings: TrainSettings, repeats: int,
            trainer: Trainer, objective: Callable[[float], float]) -> Measured:
    """Train the candidate's proxy under ``repeats`` seeds; the first seed's epochs feed Optuna's pruner.

    ``objective`` maps an epoch's val accuracy to the value the stage reports (the reward in stage 1).
    """
    record(trial, candidate.cost_attrs())
    accuracies, speeds, losses, loss_sums, curves, wall = [], [], [], [], [], 0.0
    for repeat in range(repeats):
        seeded = replace(settings, seed=settings.seed + repeat)

        def on_epoch(epoch: int, metrics: EpochMetrics, first: bool = repeat == 0) -> None:
            if first:
                trial.report(objective(metrics.val_top1), epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_at_epoch", epoch)
                    raise optuna.TrialPruned()

        try:
            result = trainer(candidate.proxy, data, seeded, on_epoch=on_epoch)
        except NonFiniteLossError as error:
            trial.set_user_attr("error", str(error))
            raise
        accuracies.append(result.val_top1)
        speeds.append(result.images_per_s)
        losses.append(result.train_loss)
        loss_sums.append(sum(epoch.train_loss for epoch in result.history) if result.history else None)
        curves.append([epoch.val_top1 for epoch in result.history])
        wall += result.wall_s
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    full = all(len(curve) == settings.epochs and None not in curve for curve in curves)
    measured = Measured(statistics.fmean(accuracies), std, tuple(accuracies), statistics.median(speeds), wall,
                        statistics.fmean(losses), None if None in loss_sums else statistics.fmean(loss_sums),
                        [statistics.fmean(at_epoch) for at_epoch in zip(*curves)] if full else None)
    record(trial, measured.attrs())
    trial.set_user_attr("val_images", len(data.val_labels))  # for intervals: the validation sampling error
    return measured


__all__ = ["Candidate", "MEASURED_ATTRS", "Measured", "Trainer", "measure", "record"]
