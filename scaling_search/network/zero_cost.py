"""A zero-cost ranking signal: how an untrained network separates a batch of images (NASWOT).

Mellor et al., 2021, "Neural Architecture Search without Training" (ICML): feed a batch of N images through
the network at initialisation and record, at every rectified unit, which images switch it on. Two images
whose binary codes agree at many units are hard for the network to tell apart. The score is
``log |K|`` of the N x N kernel ``K[i, j] = number of units on which images i and j agree``; on NAS-Bench-201
(CIFAR-10) it ranked trained accuracy with Spearman ~0.8 at the cost of one forward pass.

EfficientNet's units are SiLU, not ReLU; SiLU(x) > 0 exactly where x > 0, so a unit's code is the sign of
its input, the ReLU network's code for the same pre-activations. Every SiLU counts, those inside
squeeze-and-excitation included. How well this signal ranks *this* search space's candidates under *this*
project's proxy is measured, not assumed: ``benchmarks/bench_screen.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from scaling_search.network.spec import NetworkSpec


def naswot_score(model: nn.Module, images: torch.Tensor) -> float:
    """``log |K|`` of the activation-pattern kernel of ``model`` on ``images`` (one forward pass, no grad).

    BatchNorm normalises with the batch (as at the start of training); everything else runs in evaluation mode, so
    dropout and stochastic depth do not make the score random. Every module is left in the mode it was in. A
    singular kernel (two images with identical codes) scores ``-inf``.
    """
    count = images.shape[0]
    kernel = torch.zeros(count, count, dtype=torch.float64)

    def record(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes = (inputs[0].detach().reshape(count, -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T).add_((1.0 - codes) @ (1.0 - codes).T)

    handles = [module.register_forward_pre_hook(record) for module in model.modules() if isinstance(module, nn.SiLU)]
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()
        with torch.no_grad():
            model(images)
    finally:
        for module, training in modes.items():
            module.training = training
        for handle in handles:
            handle.remove()
    if not handles:
        raise ValueError("the model has no SiLU unit: the NASWOT score reads their activation patterns")
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


def score_network(proxy: NetworkSpec, images: torch.Tensor, seed: int) -> float:
    """The NASWOT score of ``proxy`` at initialisation (weights from ``seed``, global RNG left as it was)."""
    from scaling_search.network.model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(proxy)
    return naswot_score(model, images)


__all__ = ["naswot_score", "score_network"]
