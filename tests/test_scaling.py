import pytest

from scaling_search.network.family import EFFICIENTNET_B0, FAMILY, efficientnet
from scaling_search.network.scaling import compound, round_filters, round_repeats, round_resolution, scale


@pytest.mark.parametrize(
    ("channels", "expected"),
    [(32, 32), (35.2, 32), (36, 40), (16 * 1.1, 16), (24 * 1.1, 24), (40 * 1.1, 48), (320 * 1.8, 576), (4, 8),
     (1280 * 1.1, 1408), (112 * 1.2, 136)],
)
def test_round_filters_matches_official_rule(channels, expected):
    assert round_filters(channels) == expected


def test_round_filters_never_below_ninety_percent():
    for tenths in range(10, 400):
        channels = tenths / 10 * 8
        rounded = round_filters(channels)
        assert rounded % 8 == 0 and rounded >= 0.9 * channels


def test_round_repeats_is_ceil_without_float_noise():
    assert round_repeats(2, 1.1) == 3
    assert round_repeats(5, 1.4) == 7  # 5 * 1.4 == 7.000000000000001 in floats
    assert round_repeats(1, 1.0) == 1


def test_round_repeats_nearest_keeps_depth_fine_grained():
    assert [round_repeats(r, 1.2, "nearest") for r in (1, 2, 2, 3, 3, 4, 1)] == [1, 2, 2, 4, 4, 5, 1]
    assert [round_repeats(r, 1.2) for r in (1, 2, 2, 3, 3, 4, 1)] == [2, 3, 3, 4, 4, 5, 2]  # official ceil
    assert round_repeats(1, 0.3, "nearest") == 1 and round_repeats(5, 1.4, "nearest") == 7
    with pytest.raises(ValueError, match="depth rounding must be one of"):
        round_repeats(2, 1.2, "up")


def test_paper_coefficients_at_phi_1_cost_about_twice_b0_with_nearest_depth():
    from scaling_search import EFFICIENTNET_B0, count_cost

    base = count_cost(EFFICIENTNET_B0).macs
    assert base == 385_814_752
    nearest = count_cost(compound(EFFICIENTNET_B0, 1.2, 1.1, 1.15, 1, depth_rounding="nearest")).macs / base
    official = count_cost(compound(EFFICIENTNET_B0, 1.2, 1.1, 1.15, 1)).macs / base
    assert abs(nearest - 2) <= 0.2  # 2.05x
    assert official > 2.5  # 2.57x: ceil adds a block to every stage of B0


def test_round_resolution_to_multiple():
    assert round_resolution(32 * 1.15, 8) == 40
    assert round_resolution(36.7, 1) == 37
    assert round_resolution(3, 8) == 8


def test_scale_identity_and_purity():
    assert scale(EFFICIENTNET_B0) == EFFICIENTNET_B0
    wider = scale(EFFICIENTNET_B0, width=2.0)
    assert EFFICIENTNET_B0.stem_channels == 32  # the input spec is untouched
    assert wider.stem_channels == 64 and wider.head_channels == 2560
    assert [s.out_channels for s in wider.stages] == [32, 48, 80, 160, 224, 384, 640]


def test_scale_depth_and_resolution():
    deeper = scale(EFFICIENTNET_B0, depth=2.0, resolution=1.5)
    assert [s.repeats for s in deeper.stages] == [2, 4, 4, 6, 6, 8, 2]
    assert deeper.resolution == 336


def test_compound_is_scale_with_powers():
    alpha, beta, gamma = 1.2, 1.1, 1.15
    assert compound(EFFICIENTNET_B0, alpha, beta, gamma, 2) == scale(
        EFFICIENTNET_B0, depth=alpha**2, width=beta**2, resolution=gamma**2
    )
    assert compound(EFFICIENTNET_B0, alpha, beta, gamma, 0) == EFFICIENTNET_B0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_scale_rejects_bad_multipliers(bad):
    with pytest.raises(ValueError, match="width multiplier must be a positive number"):
        scale(EFFICIENTNET_B0, width=bad)


def test_family_table_is_official():
    assert {k: tuple(v) for k, v in FAMILY.items()} == {
        "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
        "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
        "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
    }


def test_family_member_scales_stem_and_head():
    b7 = efficientnet("b7")
    assert (b7.stem_channels, b7.head_channels, b7.resolution, b7.dropout) == (64, 2560, 600, 0.5)
    assert efficientnet("EfficientNet_B0") == EFFICIENTNET_B0


def test_unknown_family_member():
    with pytest.raises(ValueError, match="unknown model 'b8'"):
        efficientnet("b8")
