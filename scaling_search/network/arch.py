"""timm-style block strings (``ir_r2_k3_s2_e6_c24_se0.25``) for stages, both ways.

timm (``timm/models/_efficientnet_builder.py``, ``_decode_block_str``) describes a stage as
``<type>_r<repeats>_k<kernel>_s<stride>_e<expand>_c<out channels>[_se<ratio>]``. We speak the subset that
EfficientNet-B0..B7 use: ``ds`` (depthwise-separable, expand ratio 1) and ``ir`` (inverted residual).
Input channels are not part of a string: they chain from the stem width.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec, StageSpec

_TOKEN = re.compile(r"^(r|k|s|e|c|se)(\d+(?:\.\d+)?)$")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def encode_stage(stage: StageSpec) -> str:
    """The timm string of one stage (``ds_...`` when the expand ratio is 1, else ``ir_...``)."""
    kind = "ds" if stage.expand_ratio == 1 else "ir"
    text = f"{kind}_r{stage.repeats}_k{stage.kernel}_s{stage.stride}_e{stage.expand_ratio}_c{stage.out_channels}"
    if stage.se_ratio > 0:
        text += f"_se{_number(stage.se_ratio)}"
    return text


def encode_arch(spec: NetworkSpec) -> list[str]:
    """One timm string per stage of ``spec``."""
    return [encode_stage(stage) for stage in spec.stages]


def decode_stage(text: str, in_channels: int) -> StageSpec:
    """Parse one timm stage string; ``in_channels`` comes from the previous stage (or the stem)."""
    parts = text.strip().split("_")
    kind, options = parts[0], parts[1:]
    if kind not in ("ds", "ir"):
        raise UserError(f"arch string {text!r}: block type {kind!r} is not supported (use 'ds' or 'ir')")
    values: dict[str, float] = {}
    for option in options:
        match = _TOKEN.match(option)
        if not match:
            raise UserError(
                f"arch string {text!r}: cannot read {option!r} (expected r<repeats>, k<kernel>, s<stride>, "
                "e<expand>, c<channels> or se<ratio>)"
            )
        values[match.group(1)] = float(match.group(2))
    missing = [key for key in ("r", "k", "s", "c") if key not in values]
    if missing:
        raise UserError(f"arch string {text!r}: missing {', '.join(missing)} (e.g. 'ir_r2_k3_s2_e6_c24_se0.25')")
    expand = values.get("e", 1.0)
    if kind == "ds" and expand != 1:
        raise UserError(f"arch string {text!r}: a 'ds' block has expand ratio 1")
    for key in ("r", "k", "s", "c", "e"):
        if key in values and not values[key].is_integer():
            raise UserError(f"arch string {text!r}: {key} must be a whole number")
    stride = int(values["s"])
    try:
        return StageSpec(
            expand_ratio=int(expand),
            kernel=int(values["k"]),
            stride=stride,
            in_channels=in_channels,
            out_channels=int(values["c"]),
            repeats=int(values["r"]),
            se_ratio=values.get("se", 0.0),
        )
    except ValueError as error:
        raise UserError(f"arch string {text!r}: {error}") from None


def decode_arch(
    stages: Sequence[str],
    *,
    stem_channels: int = 32,
    head_channels: int = 1280,
    resolution: int = 224,
    num_classes: int = 1000,
    dropout: float = 0.2,
    drop_connect: float = 0.2,
) -> NetworkSpec:
    """A spec from timm stage strings (one per stage, or timm's nested one-element lists flattened)."""
    if not stages:
        raise UserError("an arch needs at least one stage string")
    decoded: list[StageSpec] = []
    channels = stem_channels
    for text in stages:
        stage = decode_stage(text, channels)
        decoded.append(stage)
        channels = stage.out_channels
    return NetworkSpec(
        stem_channels=stem_channels,
        stages=tuple(decoded),
        head_channels=head_channels,
        resolution=resolution,
        num_classes=num_classes,
        dropout=dropout,
        drop_connect=drop_connect,
    )


__all__ = ["decode_arch", "decode_stage", "encode_arch", "encode_stage"]
