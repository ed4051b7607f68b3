"""Random but valid network specs for property-style tests (seeded, so failures reproduce)."""

from __future__ import annotations

import random

from scaling_search.network.spec import NetworkSpec, StageSpec


def random_spec(seed: int, max_resolution: int = 96) -> NetworkSpec:
    rng = random.Random(seed)
    stem = rng.choice([8, 12, 16, 24, 32])
    stages = []
    channels = stem
    for _ in range(rng.randint(1, 5)):
        out = rng.choice([channels, 8, 16, 20, 24, 40])  # equal widths exercise the residual path
        stages.append(
            StageSpec(
                expand_ratio=rng.choice([1, 3, 4, 6]),
                kernel=rng.choice([1, 3, 5, 7]),
                stride=rng.choice([1, 2]),
                in_channels=channels,
                out_channels=out,
                repeats=rng.randint(1, 3),
                se_ratio=rng.choice([0.0, 0.25, 0.5]),
            )
        )
        channels = out
    return NetworkSpec(
        stem_channels=stem,
        stages=tuple(stages),
        head_channels=rng.choice([32, 64, 100, 128]),
        resolution=rng.randint(16, max_resolution),
        num_classes=rng.choice([2, 10, 100]),
        dropout=rng.choice([0.0, 0.2]),
        drop_connect=rng.choice([0.0, 0.2]),
        input_channels=rng.choice([1, 3]),
    )
