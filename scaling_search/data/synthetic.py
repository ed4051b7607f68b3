"""A deterministic synthetic dataset in which depth, width *and* resolution matter.

Each class is a (shape, texture) pair: five silhouettes (disk, square, triangle, ring, cross) filled with one
of two sinusoidal textures (a 1-D grating or a 2-D product grating) whose period is drawn per image between
3 and 12 native pixels. Shapes sit at random positions, sizes and rotations on a smooth coloured
background, with sensor noise and an untextured distractor shape.

Why it serves the paper's ablations: images are rendered at 96 px, well above proxy resolutions. Below a
period of 2 px a grating is beyond Nyquist, so antialiased down-sampling erases it; the share of images whose
texture survives grows with input resolution (none at 16 px for the 12 px periods, all at 64 px), and
small silhouettes blur together at low resolution. Telling the classes apart needs a receptive field that
covers the silhouette (depth) and filters for oriented frequencies (width).
"""

from __future__ import annotations

import math

import torch

from scaling_search.data.base import ImageData

SHAPES = ("disk", "square", "triangle", "ring", "cross")
TEXTURES = ("stripes", "checker")
NATIVE_RESOLUTION = 96
_CHUNK = 256


def _shape_masks(kind: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Soft-edged (1 px) masks of each image's shape from rotated, radius-normalised coordinates ``u, v``."""
    r = torch.sqrt(u**2 + v**2)
    half_planes = torch.stack(
        [u * math.cos(a) + v * math.sin(a) for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)]
    ).amax(0)
    distances = torch.stack([
        r - 1.0,                                                        # disk
        torch.maximum(u.abs(), v.abs()) - 0.8,                          # square
        half_planes - 0.5,                                              # triangle
        torch.maximum(r - 1.0, 0.55 - r),                               # ring
        torch.minimum(torch.maximum(u.abs() - 0.3, v.abs() - 1.0),      # cross
                      torch.maximum(v.abs() - 0.3, u.abs() - 1.0)),
    ])
    chosen = distances.gather(0, kind.view(1, -1, 1, 1).expand(1, *u.shape)).squeeze(0)
    return chosen


def _render(labels: torch.Tensor, resolution: int, generator: torch.Generator) -> torch.Tensor:
    n = labels.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=generator)

    shape_kind = labels // len(TEXTURES)
    texture_kind = labels % len(TEXTURES)
    axis = torch.arange(resolution, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    x, y = x.expand(n, -1, -1), y.expand(n, -1, -1)

    # Background: a smooth colour gradient.
    base = uniform(0.2, 0.8, 3, 1, 1)
    gradient = uniform(-0.25, 0.25, 3, 1, 1)
    direction = uniform(0, 2 * math.pi, 1, 1)
    ramp = ((x * torch.cos(direction) + y * torch.sin(direction)) / resolution - 0.5).unsqueeze(1)
    image = base + gradient * ramp

    # Distractor: an untextured shape of a random kind, smaller, somewhere else.
    def place(radius_low: float, radius_high: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cx, cy = uniform(0.3, 0.7, 1, 1) * resolution, uniform(0.3, 0.7, 1, 1) * resolution
        radius = uniform(radius_low, radius_high, 1, 1) * resolution
        angle = uniform(0, 2 * math.pi, 1, 1)
        dx, dy = (x - cx) / radius, (y - cy) / radius
        u = dx * torch.cos(angle) + dy * torch.sin(angle)
        v = -dx * torch.sin(angle) + dy * torch.cos(angle)
        return u, v, radius

    du, dv, dradius = place(0.08, 0.14)
    distractor_kind = torch.randint(0, len(SHAPES), (n,), generator=generator)
    distractor = (-_shape_masks(distractor_kind, du, dv) * dradius).clamp(0, 1).unsqueeze(1)
    distractor = distractor * (torch.rand(n, 1, 1, 1, generator=generator) < 0.3)
    distractor_colour = uniform(0.1, 0.9, 3, 1, 1)
    image = image * (1 - distractor) + distractor_colour * distractor

    # The labelled object: silhouette filled with a textured colour that contrasts with the background.
    u, v, radius = place(0.26, 0.38)
    mask = (-_shape_masks(shape_kind, u, v) * radius).clamp(0, 1).unsqueeze(1)
    sign = torch.where(torch.rand(n, 1, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
    fill = (base + sign * uniform(0.25, 0.4, 3, 1, 1)).clamp(0.05, 0.95)
    period = uniform(3.0, 12.0, 1, 1)
    orientation = uniform(-0.25, 0.25, 1, 1)  # near-horizontal wave fronts: one filter family per texture
    phase = uniform(0, 2 * math.pi, 1, 1)
    along = (x * torch.cos(orientation) + y * torch.sin(orientation)) * (2 * math.pi / period)
    across = (-x * torch.sin(orientation) + y * torch.cos(orientation)) * (2 * math.pi / period)
    stripes = torch.sin(along + phase)
    checker = torch.sin(along + phase) * torch.sin(across + phase) * 1.6  # matched contrast
    texture = torch.where((texture_kind == 0).view(n, 1, 1), stripes, checker).unsqueeze(1)
    amplitude = uniform(0.2, 0.3, 1, 1, 1)
    image = image * (1 - mask) + (fill + amplitude * texture) * mask

    image = image + 0.03 * torch.randn(image.shape, generator=generator)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def _render_split(count_per_class: int, resolution: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    num_classes = len(SHAPES) * len(TEXTURES)
    labels = torch.arange(num_classes).repeat_interleave(count_per_class)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    images = torch.empty(len(labels), 3, resolution, resolution, dtype=torch.uint8)
    for start in range(0, len(labels), _CHUNK):
        images[start:start + _CHUNK] = _render(labels[start:start + _CHUNK], resolution, generator)
    return images, labels


def synthetic_dataset(
    train_per_class: int = 400,
    val_per_class: int = 100,
    seed: int = 0,
    resolution: int = NATIVE_RESOLUTION,
) -> ImageData:
    """Render the synthetic dataset; the same arguments always give the same bytes."""
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError("synthetic dataset needs at least one train and one val image per class")
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = _render_split(train_per_class, resolution, generator)
    val_images, val_labels = _render_split(val_per_class, resolution, generator)
    classes = tuple(f"{shape}-{texture}" for shape in SHAPES for texture in TEXTURES)
    return ImageData(f"synthetic(seed={seed})", classes, train_images, train_labels, val_images, val_labels)


__all__ = ["NATIVE_RESOLUTION", "SHAPES", "TEXTURES", "synthetic_dataset"]
