"""What the machine offers a training run: the device, the threads, the memory, and the checks that refuse a run
that cannot fit before anything is allocated."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

from scaling_search.network.cost import count_cost
from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA, then MPS, then CPU for ``"auto"``; otherwise the named device, checked to exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' requested but MPS is not available; use --device cpu or auto")
    return device


def default_threads() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def available_memory_bytes() -> int:
    """Memory the OS can give this process now (``MemAvailable`` on Linux, else free physical pages)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def training_memory_bytes(spec: NetworkSpec, images: int, batch_size: int) -> int:
    """An estimate of host memory for training ``spec``: the resized float32 images, the activations kept
    for the backward pass (about three tensors per conv output: conv, BatchNorm, activation) and the
    weights with their gradients and two optimizer moments."""
    cost = count_cost(spec)
    data = images * spec.input_channels * spec.resolution**2 * 4
    activations = cost.activations * batch_size * 4 * 3
    weights = cost.params * 4 * 4
    return data + activations + weights


def check_resolution(spec: NetworkSpec) -> None:
    """Refuse an input smaller than the network's total stride (its last stages would see padding only)."""
    if spec.resolution < spec.total_stride:
        raise UserError(f"resolution {spec.resolution} px is below the network's total stride ({spec.total_stride} px); "
                        f"use at least {spec.total_stride}")


def check_trainable(spec: NetworkSpec, images: int, batch_size: int) -> None:
    """Refuse, before anything is allocated, a resolution below the network's stride or a run that cannot fit."""
    check_resolution(spec)
    need, free = training_memory_bytes(spec, images, batch_size), available_memory_bytes()
    if need > 0.9 * free:
        raise UserError(f"training at {spec.resolution} px needs about {need / 2**30:,.1f} GiB of memory "
                        f"({images:,} images resized, batch {batch_size}) but {free / 2**30:,.1f} GiB is available; "
                        "lower the resolution, the batch size or --subset")


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim(0)``). A training frees its model,
    optimizer and activations when it ends, but the allocator keeps much of that memory for reuse, so a process that
    trains one network after another (a stage's worker, the parent) holds the largest training's memory, and the
    gaps between the next one's, for good. Nothing where the C library has no ``malloc_trim`` (not glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: the C library's on Linux
    except (OSError, AttributeError):
        return None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


__all__ = ["available_memory_bytes", "check_resolution", "check_trainable", "choose_device", "default_threads",
           "describe_device", "release_free_memory", "training_memory_bytes"]
