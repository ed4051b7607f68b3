"""``scaling-search onnx``: a network to ONNX (BatchNorm folded, dynamic batch), checked in ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_search.cli.common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "onnx", help="export a network to ONNX and check it against PyTorch in ONNX Runtime",
        description="Export a network (an exported model config, a saved model's config.json or a spec JSON) to "
                    "ONNX: BatchNorm folded, input 'images' and output 'logits' with a dynamic batch axis. Before "
                    "the file is kept, ONNX Runtime's outputs are compared with PyTorch's at batch 1 and 7, with "
                    "the trained weights of --weights, else seeded ones. Needs pip install \"scaling-search[onnx]\".")
    parser.add_argument("config", help="model-phi*.json, a saved model's config.json, or a spec JSON")
    parser.add_argument("--weights", metavar="DIR", help="the folder 'scaling-search train --save DIR' wrote "
                        "(default: seeded weights, for checking the export only)")
    parser.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default: 17)")
    parser.add_argument("--output", help="where to write the model (default: the config's name with .onnx)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scaling_search.network.model import build_model, seeded_weights
    from scaling_search.network.onnx_export import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, TOLERANCE, export_onnx
    from scaling_search.network.spec import load_spec
    from scaling_search.training.saved import load_into

    spec = load_spec(args.config)
    model = build_model(spec)
    if args.weights:
        load_into(model, Path(args.weights))
        weights = f"trained weights from {args.weights}"
    else:
        seeded_weights(model)
        weights = "seeded weights (no --weights: the file checks the export, it is not a trained network)"
    output = Path(args.output) if args.output else Path(args.config).with_suffix(".onnx")
    result = export_onnx(model, spec.resolution, output, opset=args.opset or DEFAULT_OPSET)
    diffs = ", ".join(f"batch {batch} {diff:.2e}" for batch, diff in result.max_abs_diff.items())
    print(f"onnx: {result.path} (opset {result.opset}, input '{INPUT_NAME}' [batch, {spec.input_channels}, "
          f"{spec.resolution}, {spec.resolution}], output '{OUTPUT_NAME}' [batch, {spec.num_classes}], BatchNorm "
          f"folded; {weights}; exported in {result.export_s:.1f} s)")
    verdict = "agree" if result.within_tolerance else f"DISAGREE beyond {TOLERANCE:g}, so nothing was written"
    print(f"check: ONNX Runtime and PyTorch {verdict}: largest absolute output difference {diffs}")
    return 0 if result.within_tolerance else 1


__all__ = ["register", "run"]
