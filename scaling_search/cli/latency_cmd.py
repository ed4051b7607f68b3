"""``scaling-search latency``: measure (or predict) latency; ``latency calibrate`` builds the device's table."""

from __future__ import annotations

import argparse

from scaling_search.cli.common import CliError, add_network_args, positive_int, print_table, selected_networks


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
    parser.add_argument("--batch", type=positive_int, default=1, help="images per timed run (default: 1)")
    parser.add_argument("--runs", type=positive_int, default=30, help="timed runs; the median is reported (default: 30)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default: 10)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (recorded with the result)")
    parser.add_argument("--predict", action="store_true", help="predict from the lookup table instead of measuring")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output: an aligned table (default), CSV or JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scaling_search.latency import LatencyTable
    from scaling_search.train import choose_device

    if args.warmup < 0:
        raise CliError("--warmup must be >= 0")
    device = choose_device(args.device)
    if args.models == ["calibrate"]:
        return _with_threads(args.threads, lambda: _calibrate(args, device))
    table = LatencyTable.open_calibrated(str(device), args.batch) if args.predict else None
    networks = selected_networks(args)
    for network in networks:
        check_measurable(network.spec, args.batch)
    return _with_threads(args.threads, lambda: _measure(args, device, table, networks))


def _with_threads(threads: int | None, work):
    """Run ``work`` with ``threads`` CPU threads, restoring the previous setting afterwards."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return work()
    finally:
        torch.set_num_threads(previous)


def check_measurable(spec, batch: int) -> None:
    """Refuse a resolution below the network's stride, or one whose activations cannot fit in memory."""
    from scaling_search.cost import count_cost
    from scaling_search.train import available_memory_bytes, check_resolution

    check_resolution(spec)
    need = count_cost(spec).activations * batch * 4 * 2
    if need > 0.9 * available_memory_bytes():
        raise CliError(f"a forward pass at {spec.resolution} px and batch {batch} needs about {need / 2**30:,.1f} GiB; "
                       "lower --resolution or --batch")


def _measure(args: argparse.Namespace, device, table, networks) -> int:
    from scaling_search.latency import latency_dict, measure_latency

    rows = []
    for network in networks:
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
