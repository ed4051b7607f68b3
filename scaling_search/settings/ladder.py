"""Training regimes above the study's proxy: the rungs of the decision ladder and the fidelity references.

A regime trains the same deployment-scale candidates as the study's proxy does, with ``epochs`` times its
epochs and, optionally, another proxy resolution (pixels for the deployment baseline) or width factor. The
ladder (:mod:`scaling_search.search.ladder`) trains every grid point at the study's own regime (rung 0) and
promotes the points that could still be best to each rung a preset names; ``fidelity`` scores the proxy
against one such regime.

The promotion rule is successive halving (Jamieson & Talwalkar 2016; Li et al. 2018, "Hyperband"): a rung keeps
at most ``1 / REDUCTION`` of the points below it, with Hyperband's default reduction factor 3.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from scaling_search.errors import UserError

#: Hyperband's default reduction factor (Li et al. 2018, eta = 3): a rung trains at most a third of the points
#: of the rung below it (never fewer than two, so that there is something to decide).
REDUCTION = 3
#: Longest regime a rung or a reference may ask for, in multiples of the study's epochs.
MAX_EPOCH_FACTOR = 100


def regime_config(config: Any, epochs: int, resolution: int | None, width: float | None,
                  images: str | None = None) -> Any:
    """``config`` (a :class:`~scaling_search.settings.StudyConfig`) trained ``epochs`` times as long, at another
    proxy resolution or width where given (and proxy ``images`` made another way), and never pruned: every
    candidate it trains is compared."""
    proxy = replace(config.proxy, resolution=resolution or config.proxy.resolution, width=width or config.proxy.width,
                    images=images or config.proxy.images)
    return replace(config, proxy=proxy, train=replace(config.train, epochs=config.train.epochs * epochs),
                   search=replace(config.search, pruner="none"))


def regime_stage(prefix: str, config: Any) -> str:
    """A regime's stage name, unique per regime: ``<prefix>-e9-r40-w0.5`` (epochs, proxy px, proxy width; then
    ``-shrunk`` or ``-matched`` where the proxy's images are not the native ones)."""
    return (f"{prefix}-e{config.train.epochs}-r{config.proxy.resolution}-w{config.proxy.width:g}"
            + ("" if config.proxy.images == "native" else f"-{config.proxy.images}"))


@dataclass(frozen=True)
class Rung:
    """One rung above the grid: ``epochs`` times the study's epochs, at ``resolution`` proxy pixels for the
    deployment baseline and ``width`` (None: the study's), every point under ``seeds`` seeds (at least the
    study's ``repeats``).

    In a preset: ``rungs = [{epochs = 2}, {epochs = 2, resolution = 56, seeds = 2}]`` under ``[search]``.
    """

    epochs: int = 1
    resolution: int | None = None
    width: float | None = None
    seeds: int = 1

    def __post_init__(self) -> None:
        whole = isinstance(self.epochs, int) and not isinstance(self.epochs, bool)
        if not whole or not 1 <= self.epochs <= MAX_EPOCH_FACTOR:
            raise UserError(f"search settings: a rung's epochs must be a whole multiple of the study's in "
                            f"1..{MAX_EPOCH_FACTOR}, got {self.epochs!r}")
        if self.resolution is not None and (isinstance(self.resolution, bool) or not isinstance(self.resolution, int)
                                            or not 8 <= self.resolution <= 1024):
            raise UserError(f"search settings: a rung's resolution must be proxy pixels in 8..1024, got "
                            f"{self.resolution!r}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or not 1 <= self.seeds <= 100:
            raise UserError(f"search settings: a rung's seeds must be a whole number in 1..100, got {self.seeds!r}")
        if self.width is not None and (isinstance(self.width, bool) or not isinstance(self.width, (int, float))
                                       or not 0 < self.width <= 1):
            raise UserError(f"search settings: a rung's width must be a proxy width factor in (0, 1], got "
                            f"{self.width!r}")

    @classmethod
    def from_table(cls, table: Any) -> Rung:
        """A rung from its preset table (``{epochs = 2, resolution = 56}``), naming unknown keys."""
        if isinstance(table, Rung):
            return table
        if not isinstance(table, dict):
            raise UserError(f"search settings: each rung is a table such as {{epochs = 2}}, got {table!r}")
        unknown = sorted(set(table) - {"epochs", "resolution", "width", "seeds"})
        if unknown:
            raise UserError(f"search settings: unknown rung key(s) {', '.join(unknown)} (known: epochs, resolution, "
                            "width, seeds)")
        return cls(**table)

    def config(self, config: Any) -> Any:
        """The study's config trained as this rung (:func:`regime_config`), under its seeds."""
        trained = regime_config(config, self.epochs, self.resolution, self.width)
        return replace(trained, search=replace(trained.search, repeats=max(self.seeds, trained.search.repeats)))

    def describe(self, config: Any) -> str:
        """``"6 epoch(s) at 40 px, width x0.5"``."""
        trained = self.config(config)
        return (f"{trained.train.epochs} epoch(s) at {trained.proxy.resolution} px, width x{trained.proxy.width:g}, "
                f"{trained.search.repeats} seed(s)")


def promotion_cap(points: int) -> int:
    """How many of ``points`` a rung may promote: a :data:`REDUCTION`-th, rounded up, and at least two."""
    return min(points, max(2, -(-points // REDUCTION)))


__all__ = ["MAX_EPOCH_FACTOR", "REDUCTION", "Rung", "promotion_cap", "regime_config", "regime_stage"]
