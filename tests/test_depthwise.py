import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scaling_search.network.depthwise import DepthwiseConv2d, _DepthwiseByTaps, weight_grad_by_taps
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.network.model import build_model


def _onednn_grads(inputs, weight, grad_output, stride):
    padding = weight.shape[-1] // 2
    return torch.ops.aten.convolution_backward(grad_output, inputs, weight, None, [stride, stride], [padding, padding],
                                               [1, 1], False, [0, 0], weight.shape[0], [True, True, False])[:2]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (7, 7), (2, 5)])
def test_the_weight_gradient_by_taps_equals_onednns(memory_format, kernel, stride, size):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(6, 8, *size, generator=generator).contiguous(memory_format=memory_format)
    weight = torch.randn(8, 1, kernel, kernel, generator=generator).contiguous(memory_format=memory_format)
    out = F.conv2d(inputs, weight, None, stride, kernel // 2, 1, 8)
    grad_output = torch.randn(out.shape, generator=generator).contiguous(memory_format=memory_format)
    expected = _onednn_grads(inputs, weight, grad_output, stride)[1]
    mine = weight_grad_by_taps(inputs, grad_output, weight, stride, kernel // 2)
    assert mine.shape == expected.shape and mine.stride() == weight.stride()
    torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-5)


def test_a_depthwise_layer_trains_like_the_plain_convolution_and_takes_the_taps_only_on_small_inputs():
    torch.manual_seed(0)
    layer = DepthwiseConv2d(16, 5, 1)
    plain = nn.Conv2d(16, 16, 5, 1, 2, groups=16, bias=False)
    plain.load_state_dict(layer.state_dict())  # the same parameters, the same names
    for size, by_taps in ((2, True), (4, True), (5, False), (12, False)):
        inputs = torch.randn(4, 16, size, size, requires_grad=True)
        out = layer(inputs)
        assert (type(out.grad_fn).__name__ == "_DepthwiseByTapsBackward") == by_taps
        grads = torch.autograd.grad(out.square().sum(), [inputs, layer.weight])
        expected = torch.autograd.grad(plain(inputs).square().sum(), [inputs, plain.weight])
        torch.testing.assert_close(grads, expected, rtol=1e-5, atol=1e-5)
    inputs = torch.randn(4, 16, 2, 2)
    with torch.no_grad():  # evaluation, latency measurement, export: the plain convolution
        torch.testing.assert_close(layer(inputs), plain(inputs))
    assert type(layer.eval()(inputs.requires_grad_()).grad_fn).__name__ != "_DepthwiseByTapsBackward"


@pytest.mark.parametrize("size,stride", [((1, 1), 1), ((2, 3), 1), ((3, 3), 2), ((4, 4), 2)])
def test_the_gradients_by_taps_pass_gradcheck(size, stride):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 1, 5, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: _DepthwiseByTaps.apply(x, w, stride, 2), (inputs, weight))


def test_it_trains_under_cpu_autocast():
    torch.manual_seed(0)
    layer = DepthwiseConv2d(8, 5, 1)
    inputs = torch.randn(4, 8, 2, 2, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(inputs)
    assert out.dtype == torch.bfloat16 and type(out.grad_fn).__name__ == "_DepthwiseByTapsBackward"
    grads = torch.autograd.grad(out.float().square().sum(), [inputs, layer.weight])
    assert grads[0].dtype == grads[1].dtype == torch.float32
    plain = nn.Conv2d(8, 8, 5, 1, 2, groups=8, bias=False)
    plain.load_state_dict(layer.state_dict())
    expected = torch.autograd.grad(plain(inputs).square().sum(), [inputs, plain.weight])
    torch.testing.assert_close(grads, expected, rtol=0.05, atol=0.05)  # bf16 forward


def test_the_builder_uses_it_for_every_depthwise_convolution_and_nothing_else():
    model = build_model(EFFICIENTNET_B0)
    depthwise = [name for name, module in model.named_modules() if isinstance(module, DepthwiseConv2d)]
    assert depthwise == [f"blocks.{s}.{b}.conv_dw" for s, stage in enumerate(model.blocks) for b in range(len(stage))]
    assert all(module.groups == 1 or isinstance(module, DepthwiseConv2d)
               for module in model.modules() if isinstance(module, nn.Conv2d))
