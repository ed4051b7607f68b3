"""``scaling-search latency``: measure (or predict) latency; ``latency calibrate`` builds the device's table."""

from __future__ import annotations

import argparse

from scaling_search.cli.common import add_network_args, positive_int, print_table, selected_networks


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "latency",
        help="measure or predict latency ('latency calibrate' builds the lookup table)",
        description="Measure latency by one protocol (eval, no grad, warm-up discarded, synchronised timers, "
                    "median with p10/p90), or predict it from the device's lookup table with --predict. "
                    "'scaling-search latency calibrate' measures the table for the parts of the B0 family and of "
                    "random search-space networks, and fits its correction.",
    )
    add_network_args(parser, many=True)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--runs", type=positive_int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=positive_int, help="CPU threads (recorded with the result)")
    parser.add_argument("--predict", action="store_true", help="predict from the lookup table instead of measuring")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from scaling_search.latency import LatencyTable, latency_dict, measure_latency
    from scaling_search.train import choose_device

    if args.warmup < 0:
        raise ValueError("--warmup must be >= 0")
    device = choose_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.models == ["calibrate"]:
        return _calibrate(args, device)
    rows = []
    table = LatencyTable.open(str(device), args.batch) if args.predict else None
    for network in selected_networks(args):
        row = {"name": network.name, "resolution": network.spec.resolution, "batch": args.batch}
        if table is not None:
            row["predicted_ms"] = round(table.predict(network.spec), 4)
            row["device"] = str(device)
        else:
            row.update(latency_dict(measure_latency(network.spec, device, batch=args.batch, warmup=args.warmup,
                                                    runs=args.runs)))
        rows.append(row)
    print_table(rows, args.format)
    return 0


def _calibrate(args: argparse.Namespace, device) -> int:
    from scaling_search.latency import LatencyTable, calibration_specs

    table = LatencyTable.open(str(device), args.batch)
    specs = calibration_specs()
    pairs = table.calibrate(specs, runs=args.runs)
    print_table([{"raw_sum_ms": round(raw, 3), "measured_ms": round(measured, 3)} for raw, measured in pairs],
                args.format)
    print(f"correction: latency = {table.correction[0]:.4f} * sum + {table.correction[1]:.4f} ms; "
          f"table {table.path} ({len(table.entries)} parts)")
    return 0
