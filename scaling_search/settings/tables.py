"""The frozen settings tables of a preset or study file: ``[data]``, ``[proxy]`` and ``[train]``.

``[data]`` is :class:`DataSettings` (below), ``[proxy]`` is :class:`scaling_search.network.proxy.ProxySettings` and
``[train]`` is :class:`scaling_search.training.TrainSettings`. ``scaling-search train`` and every study trial use
them; a study adds ``[deployment]`` and ``[search]`` (:mod:`scaling_search.settings.study`).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from scaling_search.data.formats import FORMATS
from scaling_search.errors import UserError
from scaling_search.settings.proxy import ProxySettings
from scaling_search.settings.train import TrainSettings

if TYPE_CHECKING:
    from scaling_search.data.base import ImageData


@dataclass(frozen=True)
class DataSettings:
    """Where the images come from and how much of them to use.

    Attributes:
        source: ``"synthetic"`` or a path (``.npz``, CIFAR directory, ImageFolder tree).
        format: force a reader (one of ``synthetic, npz, folder, cifar``); empty to infer from the path.
        subset: class-balanced number of training images to keep (0 keeps all).
        val_fraction: held-out share of each class when the source has no validation split.
        seed: data seed (synthetic rendering, subsets, hold-out).
        train_share: share of the training images a proxy trains on (class-balanced, seeded; the validation
            split is kept whole): a proxy of less data, as EcoNAS compared (``fidelity --candidates data=0.5``).
        synthetic_train_per_class / synthetic_val_per_class: size of the synthetic dataset.
    """

    source: str = "synthetic"
    format: str = ""
    subset: int = 0
    val_fraction: float = 0.1
    seed: int = 0
    synthetic_train_per_class: int = 400
    synthetic_val_per_class: int = 100
    train_share: float = 1.0

    def __post_init__(self) -> None:
        if self.format and self.format not in FORMATS:
            raise UserError(f"data format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.subset < 0:
            raise UserError(f"data subset must be >= 0, got {self.subset}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.synthetic_train_per_class < 1 or self.synthetic_val_per_class < 1:
            raise UserError("synthetic dataset sizes must be >= 1 per class")
        if not 0 < self.train_share <= 1:
            raise UserError(f"train_share must be in (0, 1], got {self.train_share}")

    def load(self) -> ImageData:
        from scaling_search.data.loading import load_dataset

        data = load_dataset(
            self.source,
            data_format=self.format or None,
            subset=self.subset or None,
            val_fraction=self.val_fraction,
            seed=self.seed,
            synthetic_train_per_class=self.synthetic_train_per_class,
            synthetic_val_per_class=self.synthetic_val_per_class,
        )
        return data if self.train_share == 1.0 else data.with_train_share(self.train_share, self.seed)


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
               type(None): "unset"}


def check_value_type(table: str, key: str, value: Any, hint: Any) -> None:
    """Refuse a TOML/flag value whose type does not fit the field (a float where an integer is expected too)."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for kind in allowed:
        if kind not in _TYPE_NAMES:
            return  # a structured field: its class validates it
        if kind is type(None) and value is None:
            return
        if kind in (bool, str) and isinstance(value, kind):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UserError(f"[{table}] {key} must be a finite number, got {value!r}")
            return
    expected = " or ".join(_TYPE_NAMES[kind] for kind in allowed)
    raise UserError(f"[{table}] {key} must be {expected}, got {value!r} ({type(value).__name__})")


def section_from_table(cls: type, values: dict[str, Any] | None, name: str) -> Any:
    """A frozen settings object from a TOML table, naming unknown keys and badly typed values."""
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown key(s) in [{name}]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        check_value_type(name, key, value, hints[key])
    return cls(**values)


def sections_from_toml(document: dict[str, Any]) -> tuple[DataSettings, ProxySettings, TrainSettings]:
    """The three frozen settings objects from a preset/study document's tables."""
    return (
        section_from_table(DataSettings, document.get("data"), "data"),
        section_from_table(ProxySettings, document.get("proxy"), "proxy"),
        section_from_table(TrainSettings, document.get("train"), "train"),
    )


def with_overrides(obj: Any, **overrides: Any) -> Any:
    """``dataclasses.replace`` with the overrides that are not None (CLI flags left unset)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(obj, **changes) if changes else obj


__all__ = ["DataSettings", "check_value_type", "section_from_table", "sections_from_toml", "with_overrides"]
