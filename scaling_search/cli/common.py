"""Pieces shared by the subcommands: the one-line argument parser, argument types, data flags, network selection
and table output. What the study commands share besides is :mod:`scaling_search.cli.study`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from scaling_search.network.arch import decode_arch
from scaling_search.errors import UserError
from scaling_search.network.family import FAMILY, efficientnet
from scaling_search.network.scaling import scale
from scaling_search.network.spec import NetworkSpec, load_spec


class CliError(UserError):
    """A user error found by the CLI itself: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit code 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


#: The largest extra width or depth multiplier a command takes: B7 is 3.1x B0's depth and 2x its width; 100x
#: is a typo that would build a network of thousands of blocks.
MAX_MULTIPLIER = 100.0


def multiplier(text: str) -> float:
    """``--width`` / ``--depth``: a positive number up to :data:`MAX_MULTIPLIER`."""
    value = positive_float(text)
    if value > MAX_MULTIPLIER:
        raise argparse.ArgumentTypeError(f"{text!r} is above {MAX_MULTIPLIER:g}x (B7 is 3.1x B0's depth)")
    return value


def workers_arg(text: str) -> int | str:
    """``--workers``: a whole number of processes, or ``auto``."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1 or 'auto'") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """Flags that override a preset's [data] table."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", dest="data_source", help="'synthetic' (default) or a path: .npz, CIFAR dir, image tree")
    group.add_argument("--data-format", choices=("synthetic", "npz", "folder", "cifar"), help="override the inferred format")
    group.add_argument("--subset", type=positive_int, help="keep this many training images, class-balanced")
    group.add_argument("--val-fraction", type=positive_float, help="held-out share when there is no val split")
    group.add_argument("--data-seed", type=int, help="seed of synthetic rendering, subsets and hold-outs")


def add_network_args(parser: argparse.ArgumentParser, *, many: bool) -> None:
    """Arguments that pick networks: named models, ``--arch`` strings or ``--config``, plus multipliers."""
    parser.add_argument(
        "models",
        nargs="*" if many else "?",
        metavar="MODEL",
        help=f"named model(s): {', '.join(FAMILY)}",
    )
    parser.add_argument("--arch", help="timm-style stage strings separated by spaces, e.g. 'ds_r1_k3_s1_e1_c16_se0.25 ...'")
    parser.add_argument("--config", help="a network spec JSON or an exported model config (model-phi*.json)")
    parser.add_argument("--stem", type=positive_int, default=32, help="stem width for --arch (default 32)")
    parser.add_argument("--head", type=positive_int, default=1280, help="head width for --arch (default 1280)")
    parser.add_argument("--classes", type=positive_int, default=None, help="classifier outputs (default 1000)")
    parser.add_argument("--resolution", type=positive_int, help="input resolution in pixels (overrides the model's)")
    parser.add_argument("--width", type=multiplier, default=1.0, help="extra width multiplier (up to 100)")
    parser.add_argument("--depth", type=multiplier, default=1.0, help="extra depth multiplier (up to 100)")


@dataclass(frozen=True)
class SelectedNetwork:
    name: str
    spec: NetworkSpec
    width: float
    depth: float


def selected_networks(args: argparse.Namespace) -> list[SelectedNetwork]:
    """The networks the arguments of :func:`add_network_args` describe, multipliers applied."""
    names = args.models if isinstance(args.models, list) else ([args.models] if args.models else [])
    sources = bool(names) + (args.arch is not None) + (args.config is not None)
    if sources != 1:
        raise CliError("name model(s) such as 'b0', or give --arch, or give --config (exactly one of them)")
    base: list[tuple[str, NetworkSpec, float, float]] = []
    if args.arch is not None:
        spec = decode_arch(args.arch.split(), stem_channels=args.stem, head_channels=args.head)
        base.append(("custom", spec, 1.0, 1.0))
    elif args.config is not None:
        base.append((args.config, load_spec(args.config), 1.0, 1.0))
    else:
        for name in names:
            spec = efficientnet(name)
            row = FAMILY[name.lower().removeprefix("efficientnet_").removeprefix("efficientnet-")]
            base.append((name, spec, row.width, row.depth))
    selected = []
    for name, spec, width, depth in base:
        spec = scale(spec, depth=args.depth, width=args.width)
        changes: dict[str, Any] = {}
        if args.resolution is not None:
            changes["resolution"] = args.resolution
        if args.classes is not None:
            changes["num_classes"] = args.classes
        if changes:
            spec = replace(spec, **changes)
        selected.append(SelectedNetwork(name, spec, width * args.width, depth * args.depth))
    return selected


def print_table(rows: list[dict[str, Any]], fmt: str) -> None:
    """Print rows as an aligned table, CSV or a JSON list of objects."""
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    import pandas as pd  # imported here: it costs a second of start-up that error paths should not pay

    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        print(frame.to_string(index=False))


__all__ = ["CliError", "OneLineParser", "SelectedNetwork", "add_data_args", "add_network_args", "positive_float",
           "multiplier", "positive_int", "print_table", "selected_networks", "workers_arg"]
