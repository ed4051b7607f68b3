import pytest

from scaling_search.network.arch import decode_arch, decode_stage, encode_arch
from scaling_search.network.family import EFFICIENTNET_B0, efficientnet

# timm/models/efficientnet.py, _gen_efficientnet: the EfficientNet-B0 arch_def (nested one-element lists).
TIMM_B0_ARCH_DEF = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]


def test_timm_b0_definition_decodes_to_our_b0():
    assert decode_arch([row[0] for row in TIMM_B0_ARCH_DEF]) == EFFICIENTNET_B0


def test_our_b0_encodes_to_timm_strings():
    assert encode_arch(EFFICIENTNET_B0) == [row[0] for row in TIMM_B0_ARCH_DEF]


def test_round_trip_of_scaled_member():
    b5 = efficientnet("b5")
    decoded = decode_arch(encode_arch(b5), stem_channels=b5.stem_channels, head_channels=b5.head_channels,
                          resolution=b5.resolution, dropout=b5.dropout)
    assert decoded == b5


def test_no_se_is_omitted_and_decodes_to_zero():
    stage = decode_stage("ir_r1_k5_s1_e4_c24", 24)
    assert stage.se_ratio == 0.0
    assert encode_arch(decode_arch(["ir_r1_k5_s1_e4_c24"], stem_channels=24)) == ["ir_r1_k5_s1_e4_c24"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("er_r1_k3_s1_e4_c24", "block type 'er' is not supported"),
        ("ir_r1_k3_s1_e4", "missing c"),
        ("ir_r1_k3_s1_e4_c24_noskip", "cannot read 'noskip'"),
        ("ir_r1_k4_s1_e4_c24", "kernel must be odd"),
        ("ds_r1_k3_s1_e6_c24", "a 'ds' block has expand ratio 1"),
        ("ir_r1.5_k3_s1_e6_c24", "r must be a whole number"),
    ],
)
def test_malformed_strings_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        decode_stage(text, 32)
