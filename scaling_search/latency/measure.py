"""Latency measurement: one protocol for whole networks and for their parts, built for a noisy shared host.

Protocol:
    - The module runs as deployment runtimes run it: eval mode, BatchNorm folded into the convolution before
      it (:func:`scaling_search.network.model.fold_batchnorm`), no grad, channels_last, at a fixed batch; in eager
      PyTorch (``runtime="torch"``) or exported to ONNX and run by ONNX Runtime (``"onnxruntime"``).
    - Every item is warmed up, then the items are timed *interleaved in rounds* (A B C, A B C, ...): each round
      runs ``runs`` timed passes of every item in turn, the device synchronised around every pass. Drift of a
      shared host (another process, a frequency change) then lands on all items alike instead of on whichever
      was being measured at that moment.
    - An item's latency is the *lowest of its round medians*. Interference on a host only ever adds time, so
      the lowest sustained figure is the least contaminated one (the argument of Python's ``timeit`` docs for
      the minimum), and a median inside each round keeps one lucky pass from counting. The median of the
      round medians and the spread ``max/min - 1`` of the round medians are reported beside it, with the
      thread count, the device and the runtime.
"""

from __future__ import annotations

import importlib.util
import io
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from scaling_search.errors import UserError
from scaling_search.runtimes import RUNTIMES
from scaling_search.network.spec import NetworkSpec


#: A prepared forward pass: calling it runs the module once on its example input.
Runner = Callable[[], object]


@dataclass(frozen=True)
class Latency:
    """A latency measurement in milliseconds (see the module docstring for the protocol)."""

    ms: float  # the lowest round median: the figure every prediction and budget uses
    median_ms: float  # the median of the round medians
    spread: float  # max/min - 1 of the round medians: the noise this measurement saw
    rounds: int
    runs: int  # timed passes per round
    warmup: int
    batch: int
    resolution: int
    threads: int
    device: str
    runtime: str


def describe_device(device: torch.device) -> str:
    """A stable name for the device: the GPU's name, or the CPU's model and thread count."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{device.type}:{cpu}:{torch.get_num_threads()}t"


def synchronizer(device: torch.device) -> Callable[[], None]:
    """The call that waits for ``device`` to finish its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def check_runtime(runtime: str, device: torch.device) -> None:
    """Refuse an unknown runtime, ONNX Runtime on a GPU, or ONNX Runtime when its extra is not installed."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown latency runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        if device.type != "cpu":
            raise UserError("--runtime onnxruntime times the CPU execution provider; use --device cpu")
        if importlib.util.find_spec("onnxruntime") is None:
            raise UserError("--runtime onnxruntime needs ONNX Runtime: pip install \"scaling-search[onnx]\"")


def prepare_runner(module: nn.Module, example: torch.Tensor, runtime: str = "torch") -> Runner:
    """A no-grad forward pass of ``module`` (BatchNorm already folded) on ``example`` in ``runtime``."""
    module.eval()
    if runtime == "onnxruntime":
        return _onnxruntime_runner(module, example)
    module = module.to(example.device, memory_format=torch.channels_last)
    example = example.contiguous(memory_format=torch.channels_last)

    def run() -> object:
        with torch.no_grad():
            return module(example)

    return run


def _onnxruntime_runner(module: nn.Module, example: torch.Tensor) -> Runner:
    import onnxruntime

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter: 1.3 s for B0 where the torch.export-based one takes 13 s and needs onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["x"])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": example.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def time_interleaved(runners: Sequence[Runner], *, rounds: int = 5, runs: int = 10, warmup: int = 5,
                     synchronize: Callable[[], None] = lambda: None,
                     clock: Callable[[], float] = time.perf_counter,
                     before_each: Callable[[], None] | None = None) -> list[list[float]]:
    """Each runner's round medians in ms: ``warmup`` untimed passes of each, then ``rounds`` rounds in which
    every runner in turn makes ``runs`` timed passes; ``before_each`` runs, untimed, before every timed pass."""
    if warmup < 0 or runs < 1 or rounds < 1:
        raise ValueError("warmup must be >= 0, runs >= 1 and rounds >= 1")
    for runner in runners:
        for _ in range(warmup):
            runner()
    synchronize()
    medians: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for runner, item_medians in zip(runners, medians):
            samples = []
            for _ in range(runs):
                if before_each is not None:
                    before_each()
                synchronize()
                start = clock()
                runner()
                synchronize()
                samples.append((clock() - start) * 1000.0)
            item_medians.append(statistics.median(samples))
    return medians


def robust_ms(round_medians: Sequence[float]) -> float:
    """The latency an item's round medians stand for: the lowest (see the module docstring)."""
    return min(round_medians)


def network_runner(spec: NetworkSpec, device: torch.device, batch: int = 1, runtime: str = "torch") -> Runner:
    """A prepared inference pass of ``spec``'s whole network (BatchNorm folded) on a random batch."""
    from scaling_search.network.model import build_model, fold_batchnorm

    model = fold_batchnorm(build_model(spec).to(device))
    example = torch.randn(batch, spec.input_channels, spec.resolution, spec.resolution, device=device)
    return prepare_runner(model, example, runtime)


def measure_latencies(specs: Sequence[NetworkSpec], device: str | torch.device = "cpu", *, batch: int = 1,
                      rounds: int = 5, runs: int = 10, warmup: int = 5, threads: int | None = None,
                      runtime: str = "torch") -> list[Latency]:
    """Latency of each whole network at its own resolution and ``batch``, timed interleaved (see above)."""
    device = torch.device(device)
    check_runtime(runtime, device)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        runners = [network_runner(spec, device, batch, runtime) for spec in specs]
        medians = time_interleaved(runners, rounds=rounds, runs=runs, warmup=warmup,
                                   synchronize=synchronizer(device))
        name = describe_device(device)
        return [Latency(robust_ms(m), statistics.median(m), max(m) / min(m) - 1, rounds, runs, warmup, batch,
                        spec.resolution, torch.get_num_threads(), name, runtime)
                for spec, m in zip(specs, medians)]
    finally:
        torch.set_num_threads(previous)


def measure_latency(spec: NetworkSpec, device: str | torch.device = "cpu", **protocol: Any) -> Latency:
    """:func:`measure_latencies` of one network."""
    return measure_latencies([spec], device, **protocol)[0]


def latency_dict(latency: Latency) -> dict[str, Any]:
    return asdict(latency)


__all__ = ["Latency", "RUNTIMES", "Runner", "check_runtime", "describe_device", "latency_dict", "measure_latencies",
           "measure_latency", "network_runner", "prepare_runner", "robust_ms", "synchronizer", "time_interleaved"]
