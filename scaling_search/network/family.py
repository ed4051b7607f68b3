"""EfficientNet-B0 and the named B0..B7 family.

B0 is the paper's Table 1 (Tan & Le, 2019) with the strides of the official code
(``efficientnet_builder.py``: ``'r1_k3_s11_e1_i32_o16_se0.25'`` ... ``'r1_k3_s11_e6_i192_o320_se0.25'``);
the table's resolution column lists each stage's *input* size, which the official strides reproduce.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from scaling_search.network.scaling import scale
from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec, StageSpec

#: EfficientNet-B0 (paper Table 1; strides, SE 0.25, head 1280, dropout 0.2, drop-connect 0.2 as the official code).
EFFICIENTNET_B0 = NetworkSpec(
    stem_channels=32,
    stages=(
        StageSpec(expand_ratio=1, kernel=3, stride=1, in_channels=32, out_channels=16, repeats=1, se_ratio=0.25),
        StageSpec(expand_ratio=6, kernel=3, stride=2, in_channels=16, out_channels=24, repeats=2, se_ratio=0.25),
        StageSpec(expand_ratio=6, kernel=5, stride=2, in_channels=24, out_channels=40, repeats=2, se_ratio=0.25),
        StageSpec(expand_ratio=6, kernel=3, stride=2, in_channels=40, out_channels=80, repeats=3, se_ratio=0.25),
        StageSpec(expand_ratio=6, kernel=5, stride=1, in_channels=80, out_channels=112, repeats=3, se_ratio=0.25),
        StageSpec(expand_ratio=6, kernel=5, stride=2, in_channels=112, out_channels=192, repeats=4, se_ratio=0.25),
        StageSpec(expand_ratio=6, kernel=3, stride=1, in_channels=192, out_channels=320, repeats=1, se_ratio=0.25),
    ),
    head_channels=1280,
    resolution=224,
    num_classes=1000,
    dropout=0.2,
    drop_connect=0.2,
)

#: The paper's compound coefficients for B0 (Section 4, STEP 1).
PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)


class FamilyRow(NamedTuple):
    """One row of the official ``efficientnet_params`` table."""

    width: float
    depth: float
    resolution: int
    dropout: float


#: Official ``efficientnet_model.efficientnet_params``: (width, depth, resolution, dropout).
FAMILY: dict[str, FamilyRow] = {
    "b0": FamilyRow(1.0, 1.0, 224, 0.2),
    "b1": FamilyRow(1.0, 1.1, 240, 0.2),
    "b2": FamilyRow(1.1, 1.2, 260, 0.3),
    "b3": FamilyRow(1.2, 1.4, 300, 0.3),
    "b4": FamilyRow(1.4, 1.8, 380, 0.4),
    "b5": FamilyRow(1.6, 2.2, 456, 0.4),
    "b6": FamilyRow(1.8, 2.6, 528, 0.5),
    "b7": FamilyRow(2.0, 3.1, 600, 0.5),
}


def efficientnet(name: str, num_classes: int = 1000) -> NetworkSpec:
    """The spec of a named family member, ``"b0"`` .. ``"b7"`` (case-insensitive, ``efficientnet_`` optional)."""
    key = name.lower().removeprefix("efficientnet_").removeprefix("efficientnet-")
    if key not in FAMILY:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(FAMILY)}")
    row = FAMILY[key]
    scaled = scale(EFFICIENTNET_B0, depth=row.depth, width=row.width)
    return replace(scaled, resolution=row.resolution, dropout=row.dropout, num_classes=num_classes)


__all__ = ["EFFICIENTNET_B0", "FAMILY", "FamilyRow", "PAPER_COEFFICIENTS", "efficientnet"]
