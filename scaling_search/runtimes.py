"""The inference runtimes latency is measured and predicted in (torch-free, so settings can check names)."""

#: ``torch``: eager PyTorch; ``onnxruntime``: the network exported to ONNX, run by ONNX Runtime's CPU provider.
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")

__all__ = ["RUNTIMES"]
