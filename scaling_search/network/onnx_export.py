"""A network to ONNX, for deployment runtimes: BatchNorm folded, named input and output, a dynamic batch axis,
and checked against PyTorch in ONNX Runtime before it is kept.

The check runs the exported graph and the eval-mode PyTorch network (BatchNorm not folded, so the folding is
checked too) on fixed inputs at several batch sizes. It needs weights that make the outputs differ: trained ones,
or :func:`scaling_search.network.model.seeded_weights` (an untrained EfficientNet's outputs are near 1e-11 and
compare nothing).
"""

from __future__ import annotations

import copy
import importlib
import io
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scaling_search.atomic import write_bytes_atomically
from scaling_search.errors import UserError
from scaling_search.network.model import fold_batchnorm

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
#: ONNX opset used unless asked otherwise (supported by ONNX Runtime 1.17 and later).
DEFAULT_OPSET = 17
#: Largest absolute difference between ONNX Runtime's and PyTorch's outputs accepted by the check.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class OnnxExport:
    """The export and how it compared: the largest absolute output difference at each checked batch (``path`` is
    written only where every difference is within :data:`TOLERANCE`)."""

    path: Path
    opset: int
    max_abs_diff: dict[int, float]
    export_s: float

    @property
    def within_tolerance(self) -> bool:
        return all(diff <= TOLERANCE for diff in self.max_abs_diff.values())


def _require_runtime() -> None:
    """The ``onnx`` extra: torch's exporter writes through ``onnx``, the check runs in ``onnxruntime``."""
    for name in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise UserError(f"the ONNX route needs {name}: pip install \"scaling-search[onnx]\"") from None


def export_onnx(model: nn.Module, resolution: int, path: Path, *, opset: int = DEFAULT_OPSET,
                batches: tuple[int, ...] = (1, 7), seed: int = 0) -> OnnxExport:
    """Export ``model`` (eval mode, BatchNorm folded) with a dynamic batch axis and compare ONNX Runtime's
    outputs with PyTorch's on seeded inputs of each size in ``batches``; the file is written to ``path``
    (atomically) only where they agree within :data:`TOLERANCE`."""
    _require_runtime()
    import onnxruntime

    reference = model.eval()
    channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    folded = fold_batchnorm(copy.deepcopy(model))
    example = torch.zeros(1, channels, resolution, resolution)
    buffer = io.BytesIO()
    started = time.perf_counter()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    torch.onnx.export(folded, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes=axes, opset_version=opset, dynamo=False)
    export_s = time.perf_counter() - started
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    diffs = {}
    for batch in batches:
        images = torch.randn(batch, channels, resolution, resolution, generator=generator)
        with torch.no_grad():
            expected = reference(images)
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])
        diffs[batch] = float((got - expected).abs().max())
    result = OnnxExport(path, opset, diffs, export_s)
    if result.within_tolerance:
        write_bytes_atomically(path, buffer.getvalue())
    return result


__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME", "OnnxExport", "TOLERANCE", "export_onnx"]
