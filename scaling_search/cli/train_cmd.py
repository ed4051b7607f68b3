"""``scaling-search train``: proxy-train one network and print what it measured."""

from __future__ import annotations

import argparse
from dataclasses import replace

from scaling_search.cli.common import (add_data_args, add_network_args, positive_float, positive_int, print_table,
                                      selected_networks)
from scaling_search.settings.presets import load_toml
from scaling_search.settings.tables import sections_from_toml, with_overrides
from scaling_search.settings.train import OPTIMIZERS


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Flags that override a preset's [train] table."""
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, help="passes over the training split (default: the preset's)")
    group.add_argument("--batch-size", type=positive_int, help="images per step (default: the preset's)")
    group.add_argument("--lr", type=positive_float, help="peak learning rate (default: the preset's)")
    group.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default: the preset's)")
    group.add_argument("--seed", type=int, help="training seed")
    group.add_argument("--device", help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    group.add_argument("--threads", type=positive_int, help="CPU threads (default: all available cores)")
    group.add_argument("--processes", type=positive_int, help="data-parallel CPU processes sharing the threads "
                       "(2 on a 2-core machine trains ~1.5x faster; results depend on it)")


def settings_from_args(args: argparse.Namespace):
    data, proxy, train = sections_from_toml(load_toml(args.preset))
    data = with_overrides(data, source=args.data_source, format=args.data_format, subset=args.subset,
                          val_fraction=args.val_fraction, seed=args.data_seed)
    if args.data_source is not None and args.data_source != "synthetic" and args.data_format is None:
        data = replace(data, format="")
    train = with_overrides(train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           optimizer=args.optimizer, seed=args.seed, device=args.device, threads=args.threads,
                           processes=args.processes)
    return data, proxy, train


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="proxy-train one network",
        description="Proxy-train one network and report val top-1, wall time and throughput. Named models and "
                    "--arch train at the preset's proxy resolution unless --resolution is given; --config "
                    "networks keep their own.",
    )
    add_network_args(parser, many=False)
    parser.add_argument("--preset", default="quick", help="smoke, quick (default), standard, or a .toml file")
    add_data_args(parser)
    add_train_args(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output: an aligned table (default) or JSON with the per-epoch history")
    parser.add_argument("--save", metavar="DIR",
                        help="keep what is trained: DIR/model.safetensors (timm's state-dict keys) and DIR/config.json "
                             "(spec, timm arguments, pretrained_cfg, classes, history); a checkpoint every epoch and "
                             "on Ctrl-C lets the same command resume with the same numbers")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    data_settings, proxy, train_settings = settings_from_args(args)  # checked before torch loads
    network = selected_networks(args)[0]
    from pathlib import Path

    from scaling_search.training import train_proxy
    from scaling_search.training.saved import checkpointer, save_trained

    data = data_settings.load()
    spec = network.spec
    if args.config is None and args.resolution is None:
        spec = replace(spec, resolution=proxy.resolution)
    spec = replace(spec, num_classes=data.num_classes, input_channels=data.channels)
    checkpoint = checkpointer(Path(args.save), spec, data, train_settings) if args.save else None
    result = train_proxy(spec, data, train_settings, progress=not args.no_progress, checkpoint=checkpoint)
    row = {"name": network.name, "data": data.name, "resolution": spec.resolution, "width": network.width,
           "depth": network.depth, **{k: v for k, v in result.to_dict().items() if k != "history"}}
    if args.format == "json":
        row["history"] = result.to_dict()["history"]
        print_table([row], "json")
    else:
        print_table([row], "table")
    if checkpoint is not None:
        weights, config = save_trained(checkpoint.folder, spec, data, train_settings, result, network.name)
        print(f"saved: {weights} and {config}")
    return 0


__all__ = ["add_train_args", "register", "run", "settings_from_args"]
