import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from scaling_search import latency
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.errors import UserError
from scaling_search.latency import LatencyTable, measure_latency, network_parts, time_interleaved
from scaling_search.network.scaling import scale

SMALL = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=32, num_classes=10)


class CountingModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.modes = []

    def forward(self, x):
        self.calls += 1
        self.modes.append((self.training, torch.is_grad_enabled()))
        return x


def counting_runner(module, example):
    def run():
        with torch.no_grad():
            return module(example)
    return run


def test_warmup_runs_are_not_timed_and_clock_brackets_each_run():
    module = CountingModule().eval()
    ticks = iter(range(1000))
    events = []
    medians = time_interleaved([counting_runner(module, torch.zeros(1))], rounds=2, warmup=4, runs=3,
                               synchronize=lambda: events.append("sync"), clock=lambda: float(next(ticks)))
    assert module.calls == 4 + 2 * 3 and medians == [[1000.0, 1000.0]]  # one tick (1 s) per timed run
    assert module.modes == [(False, False)] * 10  # eval mode, no grad
    assert events.count("sync") == 1 + 2 * 2 * 3  # after warm-up, then before and after every timed run


def test_items_are_timed_interleaved_in_rounds_with_before_each_untimed():
    order = []
    ticks = iter(range(1000))
    runners = [lambda: order.append("A"), lambda: order.append("B")]
    time_interleaved(runners, rounds=2, runs=2, warmup=1, clock=lambda: order.append("clock") or float(next(ticks)),
                     before_each=lambda: order.append("flush"))
    timed = ["flush", "clock", "A", "clock"] * 2 + ["flush", "clock", "B", "clock"] * 2
    assert order == ["A", "B"] + timed * 2  # warm-up of each, then A A B B in every round


def test_the_reported_latency_is_the_lowest_round_median():
    samples = iter([5, 9, 7,  30, 31, 29,  6, 6, 8])  # round 2 hit by a noisy neighbour
    clock_values = []
    for value in samples:
        clock_values += [0.0, value / 1000.0]
    clock = iter(clock_values)
    [medians] = time_interleaved([lambda: None], rounds=3, runs=3, warmup=0, clock=lambda: next(clock))
    assert medians == pytest.approx([7.0, 30.0, 6.0])
    assert latency.robust_ms(medians) == pytest.approx(6.0)


def test_cpu_tables_flush_the_cache_before_each_timed_part(tmp_path, monkeypatch):
    flushes = []
    table = LatencyTable.open("cpu", 1, cache_dir=tmp_path)
    assert isinstance(table._flush, latency.CacheFlush) and table._flush.buffer.numel() * 4 >= 8 << 20
    monkeypatch.setattr(table, "_flush", lambda: flushes.append(1))
    table.raw_sum(SMALL)
    assert len(flushes) == table.rounds * table.runs * len({key for key, _ in network_parts(SMALL)})


def test_networks_are_timed_with_batchnorm_folded(monkeypatch):
    from scaling_search.latency import measure

    seen = []
    original = measure.prepare_runner

    def spy(module, example, runtime="torch"):
        seen.append(module)
        return original(module, example, runtime)

    monkeypatch.setattr(measure, "prepare_runner", spy)
    measure_latency(SMALL, "cpu", rounds=1, runs=1, warmup=0)
    [model] = seen
    assert not model.training and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_calibration_set_mixes_the_family_and_the_search_space():
    specs = latency.calibration_specs(samples=5)
    assert len(specs) == 10 and len({spec for spec in specs}) == 10
    assert sorted({spec.resolution for spec in specs}) == [64, 96, 128, 160, 192, 224]
    assert latency.calibration_specs(samples=5) == specs  # seeded
    assert not set(latency.random_specs(30, seed=123)) & set(latency.calibration_specs())  # the benchmark's set


def test_cuda_synchronisation_is_used_for_cuda_devices(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    sync = latency.synchronizer(torch.device("cuda:0"))
    sync()
    assert calls == [torch.device("cuda:0")]
    latency.synchronizer(torch.device("cpu"))()
    assert len(calls) == 1


def test_measure_latency_reports_the_protocol():
    previous = torch.get_num_threads()
    result = measure_latency(SMALL, "cpu", batch=2, warmup=2, rounds=3, runs=5, threads=1)
    assert 0 < result.ms <= result.median_ms and result.spread >= 0
    assert (result.rounds, result.runs, result.warmup, result.batch, result.resolution, result.threads) == (
        3, 5, 2, 2, 32, 1)
    assert result.device.startswith("cpu:") and result.device.endswith(":1t") and result.runtime == "torch"
    assert torch.get_num_threads() == previous  # restored


def test_parts_cover_every_layer_of_the_plan():
    from scaling_search.network.cost import count_cost

    parts = network_parts(SMALL)
    assert len(parts) == SMALL.num_blocks + 2
    assert parts[0][0].startswith("stem:") and parts[-1][0].startswith("head:")
    # the parts, built and counted, are the whole network: no layer lost or doubled between table and builder
    params = sum(p.numel() for _, factory in parts for p in factory()[0].parameters())
    assert params == count_cost(SMALL).params


def test_table_cache_second_call_does_not_measure(tmp_path):
    table = LatencyTable.open("cpu", 1, cache_dir=tmp_path)
    first = table.predict(SMALL)
    assert table.measurements == len({key for key, _ in network_parts(SMALL)}) and first > 0
    reopened = LatencyTable.open("cpu", 1, cache_dir=tmp_path)
    assert reopened.predict(SMALL) == first
    assert reopened.measurements == 0


def test_calibration_fits_a_correction(tmp_path):
    table = LatencyTable.open("cpu", 1, cache_dir=tmp_path)
    pairs = table.calibrate([SMALL, replace(SMALL, resolution=48)], rounds=2, runs=3)
    assert len(pairs) == 2 and table.correction != latency.Correction()
    assert table.correction.ms_per_mparam == 0.0  # two networks are too few for the weights term
    assert LatencyTable.open("cpu", 1, cache_dir=tmp_path).correction == pytest.approx(table.correction)


def test_a_table_adapts_to_another_machine_from_whole_network_measurements(tmp_path, monkeypatch):
    """A table from a machine three times slower, adapted here on two networks measured whole, predicts what a
    table calibrated here predicts (its parts are kept, only the correction moves), and a part the source lacks
    is stored in the source's units."""
    specs = [SMALL, replace(SMALL, resolution=48), replace(SMALL, resolution=40)]
    native = LatencyTable.open("cpu", 1, cache_dir=tmp_path / "here")
    native.calibrate(specs, rounds=2, runs=3)
    source = json.loads(native.path.read_text())
    source["entries"] = {key: 3.0 * ms for key, ms in source["entries"].items()}
    source["device"] = "cpu:a slower machine:1t"

    adapted = LatencyTable.open("cpu", 1, cache_dir=tmp_path / "adapted")
    pairs = adapted.adapt(source, specs, rounds=2, runs=3)
    assert len(pairs) == 3 and adapted.adapted_from == "cpu:a slower machine:1t" and adapted.calibrated
    assert adapted.entries == source["entries"]  # no part measured here
    assert 0.5 < adapted.predict(SMALL, measure_missing=False) / native.predict(SMALL, measure_missing=False) < 2.0
    reopened = LatencyTable.open("cpu", 1, cache_dir=tmp_path / "adapted")
    assert reopened.adapted_from == adapted.adapted_from and reopened.correction == pytest.approx(adapted.correction)

    monkeypatch.setattr(LatencyTable, "_measure_parts", lambda self, factories: [1.0] * len(factories))
    new = replace(SMALL, resolution=56)
    assert adapted.fill([new]) > 0
    assert all(adapted.entries[key] == pytest.approx(1.0 / adapted.correction[0])
               for key, _ in network_parts(new) if key not in source["entries"])

    for broken, message in ((dict(source, batch=8), "at batch 8"), (dict(source, version=1), "version 1"),
                            ({"entries": {}}, "not a scaling-search latency table")):
        with pytest.raises(UserError, match=message):
            LatencyTable.open("cpu", 1, cache_dir=tmp_path / "x").adapt(broken, specs)
    with pytest.raises(UserError, match="has the parts of 0 of the 1"):
        LatencyTable.open("cpu", 1, cache_dir=tmp_path / "x").adapt(source, [replace(SMALL, resolution=64)])


def test_relative_fit_recovers_a_line_and_weighs_small_networks_like_large_ones():
    assert latency.fit_relative([(x, 1.5 * x + 2.0) for x in (1.0, 5.0, 40.0)]) == pytest.approx((1.5, 2.0))
    assert latency.fit_relative([(4.0, 6.0)]) == (1.5, 0.0)
    # one large network 10% off the line of three small ones: the small ones stay within 3%
    a, b = latency.fit_relative([(1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (100.0, 111.0)])
    assert all(abs(a * x + b - y) / y < 0.03 for x, y in [(1.0, 2.0), (2.0, 3.0), (3.0, 4.0)])


def test_the_correction_fits_the_weights_term_from_enough_networks_and_otherwise_keeps_the_line():
    """A device where each million parameters adds 0.3 ms to a whole network (weights streamed from memory once per
    pass) is recovered from six networks; with five the line of fit_relative stands, with no weights term."""
    rows = [(raw, params, 1.2 * raw + 0.5 + 0.3 * params / 1e6)
            for raw, params in ((2.0, 1_000_000), (5.0, 4_000_000), (9.0, 2_500_000), (14.0, 7_000_000),
                                (20.0, 3_000_000), (30.0, 9_000_000))]
    fitted = latency.fit_correction(rows)
    assert fitted == pytest.approx((1.2, 0.5, 0.3))
    assert fitted.apply(10.0, 2_000_000) == pytest.approx(1.2 * 10.0 + 0.5 + 0.3 * 2.0)
    few = latency.fit_correction(rows[:5])
    assert few.ms_per_mparam == 0.0
    assert (few.slope, few.intercept) == pytest.approx(latency.fit_relative([(raw, ms) for raw, _, ms in rows[:5]]))
    # where parameters make a network *faster* (noise, or nothing to stream), the weights term is not fitted
    cheaper = [(raw, params, 1.2 * raw + 2.0 - 0.2 * params / 1e6) for raw, params, _ in rows]
    assert latency.fit_correction(cheaper).ms_per_mparam == 0.0


def test_a_table_saved_with_a_two_term_correction_still_opens(tmp_path):
    table = LatencyTable.open("cpu", 1, cache_dir=tmp_path)
    table.correction, table.calibrated, table.entries = latency.Correction(2.0, 1.0), True, {"stem:x": 1.0}
    table.save()
    body = json.loads(table.path.read_text())
    body["correction"] = [2.0, 1.0]  # as versions before the weights term wrote it
    table.path.write_text(json.dumps(body))
    assert LatencyTable.open("cpu", 1, cache_dir=tmp_path).correction == latency.Correction(2.0, 1.0, 0.0)


def test_a_noisy_calibration_that_reverses_the_order_keeps_latency_growing_with_the_parts():
    pairs = [(10.0, 12.0), (20.0, 11.0), (30.0, 10.5)]  # a busy machine measured the bigger networks faster
    slope, intercept = latency.fit_relative(pairs)
    assert slope > 0 and intercept == 0.0
    assert slope == pytest.approx(sum(y / x for x, y in pairs) / 3)  # the proportional fit
    assert slope * 1e6 + intercept > 0  # a network far beyond the calibration still costs time


def test_missing_entry_without_measuring_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="calibrate first"):
        LatencyTable.open("cpu", 1, cache_dir=tmp_path).predict(SMALL, measure_missing=False)


def test_cost_cli_adds_latency_column_only_with_a_table(tmp_path, monkeypatch, capsys):
    import json

    from scaling_search.cli import main

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path))
    assert main(["cost", "b0", "--resolution", "32", "--width", "0.25", "--depth", "0.34", "--classes", "10",
                 "--format", "json"]) == 0
    assert "latency_ms" not in json.loads(capsys.readouterr().out)[0]
    table = LatencyTable.open("cpu", 1)
    assert table.path.parent == tmp_path / "latency"
    table.predict(SMALL)  # measures and saves the parts, but a sum of parts is not a latency yet
    argv = ["cost", "b0", "--resolution", "32", "--width", "0.25", "--depth", "0.34", "--classes", "10",
            "--format", "json"]
    assert main(argv) == 0
    assert "latency_ms" not in json.loads(capsys.readouterr().out)[0]
    table.calibrate([SMALL, replace(SMALL, resolution=48)], rounds=2, runs=3)
    assert LatencyTable.open("cpu", 1).calibrated
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["latency_ms"] == pytest.approx(table.predict(SMALL), abs=1e-3)
    assert main(["cost", "b0", "b7", "--format", "json"]) == 0  # b7's parts were never measured: no column
    assert all("latency_ms" not in row for row in json.loads(capsys.readouterr().out))


def test_prediction_refuses_an_uncalibrated_table(tmp_path, monkeypatch, capsys):
    from scaling_search.cli import main

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path))
    LatencyTable.open("cpu", 1).predict(SMALL)  # parts measured, no correction fitted
    assert main(["latency", "b0", "--resolution", "32", "--predict"]) == 2
    assert "run 'scaling-search latency calibrate --device cpu' first" in capsys.readouterr().err


def test_onnxruntime_runs_the_exported_network_and_has_its_own_table(tmp_path):
    pytest.importorskip("onnxruntime")
    from scaling_search.latency import prepare_runner
    from scaling_search.network.model import build_model, fold_batchnorm

    model = fold_batchnorm(build_model(SMALL))
    example = torch.randn(1, 3, 32, 32)
    [output] = prepare_runner(model, example, "onnxruntime")()
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(output), model(example), rtol=1e-4, atol=1e-4)
    result = measure_latency(SMALL, "cpu", rounds=2, runs=2, warmup=1, runtime="onnxruntime")
    assert result.runtime == "onnxruntime" and result.ms > 0
    onnx = LatencyTable.open("cpu", 1, cache_dir=tmp_path, runtime="onnxruntime")
    assert onnx.path != LatencyTable.open("cpu", 1, cache_dir=tmp_path).path and "onnxruntime" in onnx.path.name
    onnx.raw_sum(SMALL)
    reopened = LatencyTable.open("cpu", 1, cache_dir=tmp_path, runtime="onnxruntime")
    assert reopened.entries == onnx.entries and LatencyTable.open("cpu", 1, cache_dir=tmp_path).entries == {}


def test_a_missing_runtime_names_the_extra(monkeypatch):
    import importlib.util

    from scaling_search.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(UserError, match=r'pip install "scaling-search\[onnx\]"'):
        latency.check_runtime("onnxruntime", torch.device("cpu"))
    with pytest.raises(UserError, match="choose one of torch, onnxruntime"):
        latency.check_runtime("tflite", torch.device("cpu"))



def test_calibrate_measures_the_family_and_the_chosen_number_of_random_networks(tmp_path, monkeypatch, capsys):
    from scaling_search.cli import main

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path))
    seen = []
    monkeypatch.setattr(LatencyTable, "calibrate", lambda self, specs, **_: seen.append(specs) or [(1.0, 1.0)])
    assert main(["latency", "calibrate", "--networks", "3", "--runtime", "torch"]) == 0
    assert len(seen[0]) == 5 + 3 and "torch" in capsys.readouterr().out


def test_calibration_checks_itself_on_held_out_networks_and_measures_again_when_they_are_off(tmp_path, monkeypatch):
    """A device whose whole-network latencies follow 2 x parts + 1 ms is checked clean on held-out networks; one
    whose measurements are noise (a busy machine) is measured again and then reported, not silently saved."""
    from types import SimpleNamespace

    from scaling_search.latency import HELD_OUT_LIMIT
    from scaling_search.latency import table as table_module

    specs = [replace(SMALL, resolution=r) for r in (32, 40, 48, 56, 64, 72, 80, 88)]
    monkeypatch.setattr(LatencyTable, "_measure_parts", lambda self, factories: [0.25 * f()[1][0] for f in factories])
    calls = []

    def whole(noise):
        def measure(networks, device, **kwargs):
            calls.append(len(networks))
            probe = LatencyTable.open("cpu", 1, cache_dir=tmp_path / "probe")
            return [SimpleNamespace(ms=2.0 * probe.raw_sum(spec) + 1.0 + noise[i % len(noise)])
                    for i, spec in enumerate(networks)]
        return measure

    monkeypatch.setattr(table_module, "measure_latencies", whole([0.0]))
    clean = LatencyTable.open("cpu", 1, cache_dir=tmp_path / "clean")
    clean.calibrate(specs)
    assert calls == [8] and clean.held_out.networks == 2 and clean.held_out.median_error < 1e-6
    assert json.loads(clean.path.read_text())["held_out"]["networks"] == 2

    calls.clear()
    monkeypatch.setattr(table_module, "measure_latencies", whole([0.0, 40.0, -0.5, 25.0]))
    noisy = LatencyTable.open("cpu", 1, cache_dir=tmp_path / "noisy")
    noisy.calibrate(specs)
    assert calls == [8, 8] and noisy.held_out.measured_twice and noisy.held_out.median_error > HELD_OUT_LIMIT
