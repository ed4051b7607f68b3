"""The stage-1 search space around B0 and the one function that turns an Optuna trial into a spec.

A factorised per-stage space in the manner of MnasNet (Tan et al., 2019), which the EfficientNet paper used
to find B0 (Section 4): kernel {3, 5}, expand ratio {1, 4, 6} (the first stage keeps B0's 1), SE {0, 0.25},
repeats B0's +-1 (at least 1) and a width factor {0.75, 1.0, 1.25} per stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from scaling_search.network.scaling import round_filters
from scaling_search.network.spec import NetworkSpec, StageSpec

if TYPE_CHECKING:
    import optuna

KERNELS = (3, 5)
EXPAND_RATIOS = (1, 4, 6)
SE_RATIOS = (0.0, 0.25)
WIDTH_FACTORS = (0.75, 1.0, 1.25)


def suggest_spec(trial: optuna.Trial, base: NetworkSpec) -> NetworkSpec:
    """Sample a network from the space around ``base`` (the only place that calls ``trial.suggest_*``)."""
    stages: list[StageSpec] = []
    channels = base.stem_channels
    for index, stage in enumerate(base.stages):
        prefix = f"s{index}_"
        kernel = trial.suggest_categorical(prefix + "kernel", KERNELS)
        expand = stage.expand_ratio if index == 0 else trial.suggest_categorical(prefix + "expand", EXPAND_RATIOS)
        se_ratio = trial.suggest_categorical(prefix + "se", SE_RATIOS)
        repeats = trial.suggest_int(prefix + "repeats", max(1, stage.repeats - 1), stage.repeats + 1)
        width = trial.suggest_categorical(prefix + "width", WIDTH_FACTORS)
        out = stage.out_channels if width == 1.0 else round_filters(stage.out_channels * width)
        stages.append(StageSpec(expand, kernel, stage.stride, channels, out, repeats, se_ratio))
        channels = out
    return replace(base, stages=tuple(stages))


def incumbent_params(base: NetworkSpec) -> dict[str, Any] | None:
    """The params under which :func:`suggest_spec` returns ``base`` itself (every stage as it is, width factor 1),
    so that stage 1 can train the deployment network as one of its trials; None when ``base`` lies outside the
    space (a kernel, expand ratio or SE ratio the space does not offer)."""
    params: dict[str, Any] = {}
    for index, stage in enumerate(base.stages):
        prefix = f"s{index}_"
        if stage.kernel not in KERNELS or stage.se_ratio not in SE_RATIOS or \
                (index and stage.expand_ratio not in EXPAND_RATIOS):
            return None
        params[prefix + "kernel"] = stage.kernel
        if index:
            params[prefix + "expand"] = stage.expand_ratio
        params[prefix + "se"] = stage.se_ratio
        params[prefix + "repeats"] = stage.repeats
        params[prefix + "width"] = 1.0
    import optuna

    return params if suggest_spec(optuna.trial.FixedTrial(params), base) == base else None


def reward(accuracy: float, macs: float, target_macs: float, w: float = -0.07) -> float:
    """MnasNet's soft-constrained reward ``ACC(m) * (FLOPS(m) / T) ** w`` (paper Section 4, w = -0.07)."""
    return accuracy * (macs / target_macs) ** w


__all__ = ["EXPAND_RATIOS", "KERNELS", "SE_RATIOS", "WIDTH_FACTORS", "incumbent_params", "reward", "suggest_spec"]
