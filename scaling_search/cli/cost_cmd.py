"""``scaling-search cost``: params, MACs and activations of named or custom networks."""

from __future__ import annotations

import argparse

from scaling_search.cli.common import add_network_args, print_table, selected_networks
from scaling_search.counters import COUNTERS, count_with


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="count params, MACs and activations",
        description="Count params, MACs (the paper's FLOPS) and activations at batch 1.",
    )
    add_network_args(parser, many=True)
    parser.add_argument("--counter", choices=list(COUNTERS), default="analytic",
                        help="analytic (exact, from the spec; default), torch, fvcore or ptflops (build and trace)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for network in selected_networks(args):
        count = count_with(args.counter, network.spec)
        rows.append({
            "name": network.name,
            "resolution": network.spec.resolution,
            "width": round(network.width, 6),
            "depth": round(network.depth, 6),
            "params": count.params,
            "macs": count.macs,
            "activations": count.activations,
            "counter": args.counter,
        })
    print_table(rows, args.format)
    return 0
