"""Augmentation on whole batches of tensors: random crop with padding and horizontal flip, no per-image Python."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Pad by ``padding`` (zeros, i.e. the normalised mean), crop back at a random offset per image, and
    flip half the images left-right. Randomness comes only from ``generator`` (on the CPU), so it is seeded."""
    n, _, height, width = images.shape
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(images.device)
        rows = offsets[0].view(n, 1) + torch.arange(height, device=images.device).view(1, height)
        cols = offsets[1].view(n, 1) + torch.arange(width, device=images.device).view(1, width)
        batch = torch.arange(n, device=images.device).view(n, 1, 1)
        # (n, h, w, c) gathered with advanced indexing, then back to NCHW
        images = padded.permute(0, 2, 3, 1)[batch, rows.view(n, height, 1), cols.view(n, 1, width)].permute(0, 3, 1, 2)
    if flip:
        flips = (torch.rand(n, generator=generator) < 0.5).to(images.device).view(n, 1, 1, 1)
        images = torch.where(flips, images.flip(3), images)
    return images
