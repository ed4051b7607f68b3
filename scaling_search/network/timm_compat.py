"""What timm needs to build the same network: ``timm.models.efficientnet.EfficientNet``'s arguments, as JSON.

:func:`scaling_search.network.model.build_model` names its modules as timm's ``EfficientNet`` does, so a state
dict moves between the two with ``load_state_dict(strict=True)``. timm builds the network from a nested arch
definition (one list of block strings per stage, decoded by ``timm.models._efficientnet_builder.decode_arch_def``)
and keyword arguments; :func:`timm_config` writes both, and :func:`timm_gap` says where timm would build another
network: timm rounds every block's output and expanded channels to a multiple of 8
(``_efficientnet_builder.round_channels``, ``make_divisible``) and sizes SE from the expanded channels, rounded
(``round(mid * se_ratio / exp_ratio)``).

Building it in timm (``benchmarks/record_timm_fixture.py`` does exactly this)::

    from functools import partial
    import torch.nn as nn
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet
    timm_cfg = config["timm"]  # an exported model-phi*.json, or a saved model's config.json
    model = EfficientNet(decode_arch_def(timm_cfg["arch_def"]), act_layer=nn.SiLU,
                         norm_layer=partial(nn.BatchNorm2d, **timm_cfg["norm_kwargs"]), **timm_cfg["kwargs"])
"""

from __future__ import annotations

from typing import Any

from scaling_search.network.arch import encode_stage
from scaling_search.network.spec import NetworkSpec, squeeze_channels

#: timm's channel divisor (``make_divisible(v, divisor=8)``).
TIMM_DIVISOR = 8


def timm_gap(spec: NetworkSpec) -> str | None:
    """Why timm would build another network from this spec's arch definition, or None when it builds this one."""
    if spec.stem_channels % TIMM_DIVISOR:
        return f"the stem has {spec.stem_channels} channels; timm's builder rounds to multiples of {TIMM_DIVISOR}"
    for index, stage in enumerate(spec.stages):
        expanded = stage.in_channels * stage.expand_ratio
        if stage.out_channels % TIMM_DIVISOR or (stage.expand_ratio != 1 and expanded % TIMM_DIVISOR):
            return (f"stage {index} has {stage.out_channels} output and {expanded:g} expanded channels; timm rounds "
                    f"both to multiples of {TIMM_DIVISOR}")
        if stage.se_ratio > 0:
            for channels in stage.block_inputs():
                mid = channels * stage.expand_ratio
                if round(mid * stage.se_ratio / stage.expand_ratio) != squeeze_channels(channels, stage.se_ratio):
                    return (f"stage {index}'s squeeze-excitation has {squeeze_channels(channels, stage.se_ratio)} "
                            "channels where timm's rounding gives another width")
    return None


def timm_config(spec: NetworkSpec) -> dict[str, Any]:
    """The arguments of ``timm.models.efficientnet.EfficientNet`` for ``spec`` (see the module's example), or the
    reason timm cannot build it (``{"unavailable": ...}``)."""
    gap = timm_gap(spec)
    if gap is not None:
        return {"unavailable": gap}
    return {
        "class": "timm.models.efficientnet.EfficientNet",
        "arch_def": [[encode_stage(stage)] for stage in spec.stages],
        "kwargs": {"num_classes": spec.num_classes, "num_features": spec.head_channels,
                   "in_chans": spec.input_channels, "stem_size": spec.stem_channels, "fix_stem": True,
                   "drop_rate": spec.dropout, "drop_path_rate": spec.drop_connect},
        "act_layer": spec.activation,
        "norm_kwargs": {"eps": spec.bn_eps, "momentum": spec.bn_momentum},
    }


def pretrained_cfg(spec: NetworkSpec, mean: list[float] | None = None, std: list[float] | None = None,
                   classes: list[str] | None = None) -> dict[str, Any]:
    """How an inference pipeline feeds the network, as timm's ``pretrained_cfg``: the input size, the
    interpolation the images were resized with (antialiased bilinear, the whole image: ``crop_pct`` 1), the
    normalisation (``mean``/``std`` on the 0..1 scale, from the training data's per-channel statistics in pixel
    units) and the classifier's size and module names."""
    cfg: dict[str, Any] = {"input_size": [spec.input_channels, spec.resolution, spec.resolution],
                           "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": spec.num_classes,
                           "first_conv": "conv_stem", "classifier": "classifier"}
    if mean is not None and std is not None:
        cfg.update(mean=[round(m / 255.0, 6) for m in mean], std=[round(s / 255.0, 6) for s in std])
    if classes is not None:
        cfg["label_names"] = list(classes)
    return cfg


__all__ = ["TIMM_DIVISOR", "pretrained_cfg", "timm_config", "timm_gap"]
