"""The layer plan is the one layout: the builder's modules, the cost and the latency parts all follow it."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from scaling_search.network.cost import count_cost, layer_cost
from scaling_search.network.family import EFFICIENTNET_B0, efficientnet
from scaling_search.network.layers import ConvLayer, LinearLayer, plan_network
from scaling_search.network.model import build_model, fold_batchnorm


def test_b0_plan_follows_table_1():
    plan = plan_network(EFFICIENTNET_B0)
    assert (plan.stem.stride, plan.stem.input_size, plan.stem.output_size) == (2, 224, 112)
    assert len(plan.blocks) == 16
    # Table 1's resolution column is each stage's input size: 112, 112, 56, 28, 14, 14, 7
    firsts = [next(b for b in plan.blocks if b.stage == s) for s in range(7)]
    assert [b.input_size for b in firsts] == [112, 112, 56, 28, 14, 14, 7]
    assert [b.conv_dw.stride for b in firsts] == [1, 2, 2, 2, 1, 2, 1]
    assert all(b.conv_dw.stride == 1 for b in plan.blocks if b not in firsts)  # stride only in a stage's first
    assert firsts[0].conv_pw is None and firsts[1].conv_pw.out_channels == 96
    assert firsts[1].se.reduce.out_channels == 4  # SE from the block's input channels: 16 * 0.25
    assert plan.head.conv.input_size == 7 and plan.head.classifier == LinearLayer(1280, 1000)
    assert [b.residual for b in plan.blocks[:4]] == [False, False, True, False]


@pytest.mark.parametrize("name", ["b0", "b3"])
def test_builder_makes_exactly_the_planned_convolutions_in_order(name):
    spec = replace(efficientnet(name), resolution=64)
    planned = [layer for layer in plan_network(spec).layers() if isinstance(layer, ConvLayer)]
    built = [m for m in build_model(spec).modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.groups, c.bias is not None)
            for c in built] == [(p.in_channels, p.out_channels, p.kernel, p.stride, p.groups, p.bias)
                                for p in planned]


def test_planned_sizes_are_the_sizes_a_forward_pass_sees():
    spec = replace(EFFICIENTNET_B0, resolution=99)
    model = build_model(spec).eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1])) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(1, 3, 99, 99))
    for hook in hooks:
        hook.remove()
    assert seen == [layer.input_size for layer in plan_network(spec).layers() if isinstance(layer, ConvLayer)]


def test_cost_is_the_sum_of_the_planned_layers():
    spec = replace(EFFICIENTNET_B0, resolution=128)
    layers = list(plan_network(spec).layers())
    assert count_cost(spec).macs == sum(layer_cost(layer).macs for layer in layers)
    assert count_cost(spec).params == sum(p.numel() for p in build_model(spec).parameters())


def test_block_layers_have_names_and_initialisation_uses_them():
    from scaling_search.training.loop import _zero_init

    model = build_model(EFFICIENTNET_B0)
    blocks = [block for stage in model.blocks for block in stage]
    residual = next(b for b in blocks if b.has_skip)
    assert {"conv_pw", "bn1", "conv_dw", "bn2", "se", "conv_pwl", "bn3"} <= dict(residual.named_children()).keys()
    _zero_init(model)

    def last_bn(block):  # an InvertedResidual's projection BatchNorm is bn3, a DepthwiseSeparableConv's bn2
        return block.bn3 if hasattr(block, "bn3") else block.bn2

    assert all(float(last_bn(b).weight.detach().abs().sum()) == 0 for b in blocks if b.has_skip)
    assert all(float(last_bn(b).weight.detach().abs().sum()) > 0 for b in blocks if not b.has_skip)


def test_folding_batchnorm_keeps_the_eval_outputs():
    model = build_model(replace(EFFICIENTNET_B0, resolution=64, num_classes=10))
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # BatchNorm statistics far from the identity, so folding has work to do
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(module.num_features, generator=generator))
    x = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        expected = model.eval()(x)
        folded = fold_batchnorm(model)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-4)
