"""``scaling-search cost``: params, MACs and activations of named or custom networks."""

from __future__ import annotations

import argparse

from scaling_search.cli.common import add_network_args, print_table, selected_networks
from scaling_search.network.counters import COUNTERS, count_with


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="count params, MACs and activations",
        description="Count params, MACs (the paper's FLOPS) and activations at batch 1.",
    )
    add_network_args(parser, many=True)
    parser.add_argument("--counter", choices=list(COUNTERS), default="analytic",
                        help="analytic (exact, from the spec; default), torch, fvcore or ptflops (build and trace)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output: an aligned table (default), CSV or JSON")
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
    _add_predicted_latency(rows, [n.spec for n in selected_networks(args)])
    print_table(rows, args.format)
    return 0


def _add_predicted_latency(rows: list[dict], specs: list) -> None:
    """A ``latency_ms`` column (CPU, batch 1) when a calibrated table predicts every row; no column otherwise."""
    from scaling_search.cache import cache_root

    if not any((cache_root() / "latency").glob("cpu*_b1.json")):
        return  # no table: do not pay for importing torch
    from scaling_search.latency import LatencyTable

    table = LatencyTable.open("cpu", 1)
    if not table.calibrated:
        return  # raw sums of parts are not latencies
    try:
        predicted = [round(table.predict(spec, measure_missing=False), 3) for spec in specs]
    except KeyError:
        return  # a part this table never measured: no column rather than a column with gaps
    for row, value in zip(rows, predicted):
        row["latency_ms"] = value
