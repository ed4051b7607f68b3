"""The frozen description of an MBConv network: the one object every other module consumes.

A :class:`NetworkSpec` is enough to build the PyTorch module (:mod:`scaling_search.network.model`), count its cost
exactly (:mod:`scaling_search.network.cost`), train it (:mod:`scaling_search.training`) and export it
(:mod:`scaling_search.search.export`). Nothing in the package mutates a spec: variants come from
:func:`dataclasses.replace` or from the pure functions in :mod:`scaling_search.network.scaling`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from scaling_search.errors import UserError

SPEC_FORMAT = "scaling-search/network-spec"
SPEC_VERSION = 1

_STAGE_FIELDS = ("expand_ratio", "kernel", "stride", "in_channels", "out_channels", "repeats", "se_ratio")
_NETWORK_FIELDS = (
    "stem_channels",
    "stages",
    "head_channels",
    "resolution",
    "num_classes",
    "dropout",
    "drop_connect",
    "input_channels",
    "activation",
    "bn_eps",
    "bn_momentum",
)
#: The activations a spec may name: SiLU (swish), the official EfficientNet's (Ramachandran et al., 2017).
ACTIVATIONS = ("silu",)
#: Layer settings written only when they differ from the official code's (``to_dict(explicit=False)``), so the
#: stored description of every network made before they existed is unchanged.
_LAYER_DEFAULTS = {"activation": "silu", "bn_eps": 1e-3, "bn_momentum": 0.01}


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _require_rate(name: str, value: object, upper_inclusive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or value > 1 or (value == 1 and not upper_inclusive):
        raise ValueError(f"{name} must be in [0, 1), got {value}")


@dataclass(frozen=True)
class StageSpec:
    """One stage of identical MBConv blocks (a row of the paper's Table 1).

    The first block of a stage maps ``in_channels -> out_channels`` with ``stride``; the remaining
    ``repeats - 1`` blocks map ``out_channels -> out_channels`` with stride 1, as in the official code.

    Attributes:
        expand_ratio: width of the inverted bottleneck relative to the block input (1 skips the 1x1 expansion).
        kernel: depthwise kernel size (odd).
        stride: stride of the first block (1 or 2).
        in_channels: input channels of the first block.
        out_channels: output channels of every block.
        repeats: number of blocks.
        se_ratio: squeeze-excitation width relative to the block's *input* channels (0 disables SE).
    """

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int
    se_ratio: float = 0.25

    def __post_init__(self) -> None:
        _require_int("expand_ratio", self.expand_ratio, 1)
        _require_int("kernel", self.kernel, 1)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride!r}")
        _require_int("in_channels", self.in_channels, 1)
        _require_int("out_channels", self.out_channels, 1)
        _require_int("repeats", self.repeats, 1)
        _require_rate("se_ratio", self.se_ratio)

    def block_inputs(self) -> tuple[int, ...]:
        """Input channels of each block of the stage, first block first."""
        return (self.in_channels,) + (self.out_channels,) * (self.repeats - 1)


@dataclass(frozen=True)
class NetworkSpec:
    """An EfficientNet-style network: stem, MBConv stages, 1x1 head, pooling, dropout, classifier.

    Attributes:
        stem_channels: output channels of the 3x3 stride-2 stem convolution.
        stages: the MBConv stages, input to output.
        head_channels: output channels of the final 1x1 convolution.
        resolution: square input resolution in pixels.
        num_classes: classifier outputs.
        dropout: dropout rate before the classifier.
        drop_connect: stochastic-depth rate of the last block; block ``i`` of ``n`` uses ``rate * i / n``.
        input_channels: image channels (3 for RGB).
        activation: the blocks' activation (official code: swish, i.e. SiLU).
        bn_eps: BatchNorm epsilon (official code: 1e-3).
        bn_momentum: BatchNorm momentum in PyTorch's convention (official code: TF decay 0.99, i.e. 0.01); the
            network to ship is built with it, proxy training sets its own.
    """

    stem_channels: int
    stages: tuple[StageSpec, ...]
    head_channels: int
    resolution: int
    num_classes: int = 1000
    dropout: float = 0.2
    drop_connect: float = 0.2
    input_channels: int = 3
    activation: str = "silu"
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        _require_int("stem_channels", self.stem_channels, 1)
        _require_int("head_channels", self.head_channels, 1)
        _require_int("resolution", self.resolution, 1)
        _require_int("num_classes", self.num_classes, 1)
        _require_int("input_channels", self.input_channels, 1)
        _require_rate("dropout", self.dropout)
        _require_rate("drop_connect", self.drop_connect)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        _require_rate("bn_momentum", self.bn_momentum, upper_inclusive=True)
        if isinstance(self.bn_eps, bool) or not isinstance(self.bn_eps, (int, float)) or not 0 < self.bn_eps < 1:
            raise ValueError(f"bn_eps must be a number in (0, 1), got {self.bn_eps!r}")
        if not self.stages:
            raise ValueError("a network needs at least one stage")
        previous = self.stem_channels
        for index, stage in enumerate(self.stages):
            if not isinstance(stage, StageSpec):
                raise ValueError(f"stage {index} must be a StageSpec, got {type(stage).__name__}")
            if stage.in_channels != previous:
                raise ValueError(
                    f"stage {index} takes {stage.in_channels} channels but receives {previous}; "
                    "in_channels must equal the previous stage's out_channels (the stem's for stage 0)"
                )
            previous = stage.out_channels

    @property
    def num_blocks(self) -> int:
        """Total number of MBConv blocks (the depth the paper scales)."""
        return sum(stage.repeats for stage in self.stages)

    @property
    def total_stride(self) -> int:
        """Product of all strides, stem included (32 for B0)."""
        return 2 * math.prod(stage.stride for stage in self.stages)

    def to_dict(self, explicit: bool = False) -> dict[str, Any]:
        """A JSON-ready, versioned dictionary; :meth:`from_dict` inverts it exactly. The layer settings
        (activation, BatchNorm epsilon and momentum) are written where they differ from the official code's, or
        always with ``explicit`` (exported configs and saved models state them)."""
        body = asdict(self)
        body["stages"] = [asdict(stage) for stage in self.stages]
        if not explicit:
            for key, default in _LAYER_DEFAULTS.items():
                if body[key] == default:
                    del body[key]
        return {"format": SPEC_FORMAT, "version": SPEC_VERSION, **body}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkSpec:
        """Rebuild a spec from :meth:`to_dict` output, with clear errors for anything else."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a network spec must be a JSON object, got {type(data).__name__}")
        if data.get("format", SPEC_FORMAT) != SPEC_FORMAT:
            raise ValueError(f"not a network spec: format is {data.get('format')!r}, expected {SPEC_FORMAT!r}")
        version = data.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(f"network spec version {version!r} is not supported (this tool reads {SPEC_VERSION})")
        body = {k: v for k, v in data.items() if k not in ("format", "version")}
        unknown = sorted(set(body) - set(_NETWORK_FIELDS))
        if unknown:
            raise ValueError(f"unknown network spec field(s): {', '.join(unknown)}")
        stages_raw = body.get("stages")
        if not isinstance(stages_raw, (list, tuple)):
            raise ValueError("network spec field 'stages' must be a list of stage objects")
        stages = []
        for index, raw in enumerate(stages_raw):
            if not isinstance(raw, Mapping):
                raise ValueError(f"stage {index} must be an object")
            extra = sorted(set(raw) - set(_STAGE_FIELDS))
            missing = sorted(set(_STAGE_FIELDS) - set(raw) - {"se_ratio"})
            if extra or missing:
                raise ValueError(f"stage {index}: unknown field(s) {extra}, missing field(s) {missing}")
            stages.append(StageSpec(**raw))
        missing = sorted({"stem_channels", "head_channels", "resolution"} - set(body))
        if missing:
            raise ValueError(f"network spec is missing field(s): {', '.join(missing)}")
        return cls(**{**body, "stages": tuple(stages)})


def squeeze_channels(in_channels: int, se_ratio: float) -> int:
    """Width of the SE bottleneck: ``max(1, int(in_channels * se_ratio))`` (official ``num_reduced_filters``)."""
    return max(1, int(in_channels * se_ratio))


def load_spec(source: NetworkSpec | str | Path) -> NetworkSpec:
    """A spec from a spec object, a spec JSON file, or an exported model config (``model-phi*.json``)."""
    if isinstance(source, NetworkSpec):
        return source
    path = Path(source)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read config file {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"config file {path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(data, dict) and "spec" in data:  # an exported model config wraps the spec
        data = data["spec"]
    try:
        return NetworkSpec.from_dict(data)
    except (TypeError, ValueError) as error:
        raise UserError(f"config file {path}: {error}") from None


__all__ = ["ACTIVATIONS", "NetworkSpec", "SPEC_FORMAT", "SPEC_VERSION", "StageSpec", "load_spec", "squeeze_channels"]
