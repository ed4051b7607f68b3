"""A training step's forward and backward pass captured once as a CUDA graph, then replayed every step.

At proxy sizes a GPU training step is bound by kernel launches, not arithmetic: on an H200, B0 at 64 px and
batch 256 trained at the speed of a plain fp32 loop (8,217 against 8,467 images/s), and bf16 bought nothing
(README, "On a GPU"). The forward and backward pass of an MBConv network is hundreds of small kernels, each
launched from Python. A CUDA graph launches them all as one.

This follows PyTorch's whole-network capture recipe (``torch.cuda.graphs``, "CUDA Graphs" in the CUDA
semantics notes), with two choices of ours:

* Only forward, loss and backward are captured. The optimizer step stays eager (a few foreach kernels), so the
  learning-rate schedule, a Python float set on the param groups each step, works unchanged.
* The warm-up passes the recipe asks for run on zeros and change nothing the run can see: BatchNorm's running
  statistics are restored afterwards and no optimizer step is taken, so a captured run starts from the same
  weights and buffers as an eager one. Gradients are left where the captured backward writes them; the caller
  must not set them to None between steps.

Dropout and stochastic depth draw from the CUDA generator inside the graph; PyTorch advances its offset on each
replay, so the draws differ per step and are seeded as in eager mode (not the same numbers as eager mode).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

WARMUP_PASSES = 3  # the recipe's warm-up on a side stream, before capture (cuDNN and the allocator settle)


class GraphedStep:
    """Forward, loss and backward of ``model`` on a fixed-shape batch, as one CUDA graph.

    Call it with a batch of images and labels (copied into the graph's static inputs); it returns the static
    logits and loss, which the next call overwrites: read or clone them before then.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 images: torch.Tensor, labels: torch.Tensor, autocast: bool) -> None:
        self.model, self.loss_fn, self.autocast = model, loss_fn, autocast
        self.images = torch.zeros_like(images)  # same shape, device and memory format
        self.labels = torch.zeros_like(labels)
        buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        try:
            side = torch.cuda.Stream(images.device)
            side.wait_stream(torch.cuda.current_stream(images.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_PASSES):
                    self._forward_backward()
            torch.cuda.current_stream(images.device).wait_stream(side)
            for parameter in model.parameters():
                parameter.grad = None  # the captured backward allocates the gradients it will write to
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits, self.loss = self._forward_backward()
        finally:
            with torch.no_grad():
                for name, buffer in model.named_buffers():
                    buffer.copy_(buffers[name])

    def _forward_backward(self) -> tuple[torch.Tensor, torch.Tensor]:
        # cache_enabled=False: autocast's cache of cast weights must not outlive a capture (PyTorch's advice)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False):
            logits = self.model(self.images)
            loss = self.loss_fn(logits.float(), self.labels)
        loss.backward()
        return logits, loss

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.images.copy_(images)
        self.labels.copy_(labels)
        self.graph.replay()
        return self.logits, self.loss


def use_cuda_graph(setting: str, device: torch.device, world: int) -> bool:
    """Whether a run captures its training step: ``"auto"`` on CUDA in one process, ``"on"`` demands CUDA."""
    return setting == "on" or (setting == "auto" and device.type == "cuda" and world == 1)


__all__ = ["GraphedStep", "WARMUP_PASSES", "use_cuda_graph"]
