"""``scaling-search latency``: measure (or predict) latency; ``latency calibrate`` builds the device's table."""

from __future__ import annotations

import argparse
import sys

from scaling_search.cli.common import CliError, add_network_args, positive_int, print_table, selected_networks
from scaling_search.runtimes import RUNTIMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "latency",
        help="measure or predict latency ('latency calibrate' builds the lookup table)",
        description="Measure latency by one protocol: eval mode, BatchNorm folded, no grad, warm-up discarded, "
                    "networks timed interleaved in rounds of --runs passes, and the lowest round median reported "
                    "with the median and the spread of the round medians. --predict predicts from the device's "
                    "calibrated lookup table instead. 'scaling-search latency calibrate' measures the table for "
                    "the parts of the B0 family and of random search-space networks, and fits its correction.",
    )
    add_network_args(parser, many=True)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch",
                        help="torch (eager; default) or onnxruntime (the network exported to ONNX, run by ONNX "
                             "Runtime on the CPU; pip install \"scaling-search[onnx]\"); each has its own table")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per timed run (default: 1)")
    parser.add_argument("--rounds", type=positive_int, default=5,
                        help="interleaved rounds; the lowest round median is reported (default: 5)")
    parser.add_argument("--runs", type=positive_int, default=10, help="timed runs per round (default: 10)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    parser.add_argument("--networks", type=positive_int, default=10,
                        help="'latency calibrate': random search-space networks measured whole, beside five of the "
                             "B0 family, to fit the correction (default: 10; benchmarks/bench_latency.py prints how "
                             "the error falls with their number)")
    parser.add_argument("--from", dest="source", metavar="TABLE.json",
                        help="'latency calibrate': adapt another machine's table (the JSON file its calibrate saved): "
                             "keep its parts, refit only the correction on --networks networks measured here")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads (recorded with the result; each thread count has its own table)")
    parser.add_argument("--predict", action="store_true", help="predict from the lookup table instead of measuring")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output: an aligned table (default), CSV or JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scaling_search.latency import LatencyTable, check_runtime
    from scaling_search.training import choose_device

    if args.warmup < 0:
        raise CliError("--warmup must be >= 0")
    if args.source is not None and args.models != ["calibrate"]:
        raise CliError("--from adapts a table: use it with 'scaling-search latency calibrate --from TABLE.json'")
    device = choose_device(args.device)
    check_runtime(args.runtime, device)
    if args.models == ["calibrate"]:
        return _with_threads(args.threads, lambda: _calibrate(args, device))
    networks = selected_networks(args)
    for network in networks:
        check_measurable(network.spec, args.batch)
    if args.predict:
        table = _with_threads(args.threads, lambda: LatencyTable.open_calibrated(str(device), args.batch,
                                                                                 runtime=args.runtime))
    else:
        table = None
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
    from scaling_search.network.cost import count_cost
    from scaling_search.training import available_memory_bytes, check_resolution

    check_resolution(spec)
    need = count_cost(spec).activations * batch * 4 * 2
    if need > 0.9 * available_memory_bytes():
        raise CliError(f"a forward pass at {spec.resolution} px and batch {batch} needs about {need / 2**30:,.1f} GiB; "
                       "lower --resolution or --batch")


def _measure(args: argparse.Namespace, device, table, networks) -> int:
    from scaling_search.latency import latency_dict, measure_latencies

    if table is not None:
        rows = [{"name": n.name, "resolution": n.spec.resolution, "batch": args.batch,
                 "predicted_ms": round(table.predict(n.spec), 4), "runtime": args.runtime, "device": str(device)}
                for n in networks]
    else:
        measured = measure_latencies([n.spec for n in networks], device, batch=args.batch, rounds=args.rounds,
                                     runs=args.runs, warmup=args.warmup, runtime=args.runtime)
        rows = [{"name": n.name, **{k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in latency_dict(latency).items()}}
                for n, latency in zip(networks, measured)]
    print_table(rows, args.format)
    return 0


def _calibrate(args: argparse.Namespace, device) -> int:
    from scaling_search.latency import LatencyTable, calibration_specs

    table = LatencyTable.open(str(device), args.batch, runtime=args.runtime)
    specs = calibration_specs(samples=args.networks)
    if args.source is not None:
        pairs = table.adapt(_read_table(args.source), specs, rounds=args.rounds, runs=args.runs)
    else:
        pairs = table.calibrate(specs, rounds=args.rounds, runs=args.runs)
    print_table([{"raw_sum_ms": round(raw, 3), "measured_ms": round(measured, 3)} for raw, measured in pairs],
                args.format)
    origin = f"parts from {table.adapted_from}, " if table.adapted_from else ""
    slope, intercept, per_mparam = table.correction
    print(f"correction: latency = {slope:.4f} * sum + {intercept:.4f} ms + {per_mparam:.4f} ms per million "
          f"parameters, fitted on "
          f"{len(pairs)} networks; table {table.path} ({origin}{len(table.entries)} parts, {args.runtime})")
    check = table.held_out
    if check is not None:
        from scaling_search.latency import HELD_OUT_LIMIT

        again = " after measuring the networks again" if check.measured_twice else ""
        print(f"held-out check: fitted without {check.networks} of the networks, the correction predicts them with "
              f"a median error of {check.median_error:.1%} (largest {check.max_error:.1%}){again}")
        if check.median_error > HELD_OUT_LIMIT:
            print(f"warning: above {HELD_OUT_LIMIT:.0%}: this machine's measurements are too noisy for a reliable "
                  "table; calibrate again with --threads 1 or on a quieter machine", file=sys.stderr)
    return 0


def _read_table(path: str) -> dict:
    """The JSON body of a saved latency table, or a one-line refusal naming the problem."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CliError(f"--from {path}: no such file (copy the table that 'scaling-search latency calibrate' "
                       "printed on the other machine)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CliError(f"--from {path}: not a readable JSON latency table ({error})") from None
