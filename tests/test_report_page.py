"""The landing page's gathering (scaling_search/report/page.py): intervals, verdicts, the answer, the family."""

import math

import pandas as pd
import pytest

from scaling_search.report import page


def test_difference_interval_from_validation_sampling_and_seeds():
    one_seed = page.difference_interval({"accuracy": 0.5, "val_images": 1000}, {"accuracy": 0.45, "val_images": 1000})
    half = 1.96 * math.sqrt(0.25 / 1000 + 0.45 * 0.55 / 1000)
    assert one_seed.difference == pytest.approx(0.05) and one_seed.low == pytest.approx(0.05 - half)
    assert not one_seed.seeds_measured
    seeded = page.difference_interval({"accuracy": 0.5, "val_images": 1000, "accuracy_std": 0.03, "seeds": 3},
                                      {"accuracy": 0.45, "val_images": 1000, "accuracy_std": 0.03, "seeds": 3})
    assert seeded.seeds_measured and seeded.high - seeded.low > one_seed.high - one_seed.low
    assert "separated" in page.describe_interval(one_seed) and "not separated" in page.describe_interval(
        page.difference_interval({"accuracy": 0.5, "val_images": 100}, {"accuracy": 0.49, "val_images": 100}))


def test_no_interval_is_claimed_without_an_error_estimate():
    unknown = page.difference_interval({"accuracy": 0.5}, {"accuracy": 0.45})
    assert unknown.low is None and "no interval" in page.describe_interval(unknown)


def test_figure8_verdict_compares_compound_with_the_best_single_dimension():
    rows = [("baseline", 0.0, 0.40), ("compound (paper)", 1.0, 0.50), ("depth only", 1.0, 0.44),
            ("width only", 1.0, 0.47), ("resolution only", 1.0, 0.46)]
    frame = pd.DataFrame([{"state": "complete", "method": m, "phi": phi, "accuracy": acc, "macs": 770e6,
                           "val_images": 1250, "accuracy_std": 0.0} for m, phi, acc in rows])
    [sentence] = page.figure8_verdicts(frame)
    assert "compound scaling reached 50.0%" in sentence and "47.0% for the best single dimension (width only)" in sentence
    assert "+3.0 points, 95% interval" in sentence


def test_family_rows_are_in_phi_order_with_their_files():
    def config(phi, file):
        return {"_file": file, "phi": phi, "budget": None, "spec": {"resolution": 224, "stages": [{"repeats": 2}]},
                "multipliers": {"width": 1.0}, "cost": {"params": 1, "macs": 2}, "macs_ratio": 1.0,
                "proxy": {"spec": {"resolution": 40}}, "evidence": {"measured_here": phi == 1.0,
                                                                    "grid_winner": {"accuracy": 0.5}}}
    rows = page.family_rows([config(2.0, "b.json"), config(1.0, "a.json"), config(0.0, "c.json")])
    assert [r["phi"] for r in rows] == [0.0, 1.0, 2.0] and [r["file"] for r in rows] == ["c.json", "a.json", "b.json"]
    assert [r["proxy_accuracy"] for r in rows] == [None, 0.5, None]  # only phi = 1 was measured


def test_comparison_verdict_never_compares_a_rule_with_its_own_network():
    def row(method, accuracy, arch, resolution=224):
        return {"method": method, "budget": 2.0, "state": "complete", "accuracy": accuracy, "accuracy_std": 0.01,
                "seeds": 2, "val_images": 1000, "macs": 770e6, "arch": arch, "resolution": resolution}

    frame = pd.DataFrame([row("baseline", 0.30, "b"), row("compound", 0.45, "c", 257), row("v2", 0.45, "c", 257),
                          row("fast", 0.40, "f", 232), row("depth", 0.35, "d")])
    [sentence] = page.comparison_verdicts(frame)
    assert sentence.startswith("At 2x the baseline's deployment MACs, compound (and v2: the same network) reached "
                               "45.0%")
    assert "against 40.0% for fast (770M MACs), the runner-up: +5.0 points" in sentence
    assert "separated" in sentence and "(seeds and validation sampling)" in sentence
    # the twins as the runner-up are named together too (CIFAR at 4x: resolution first, then compound = v2)
    frame = pd.DataFrame([row("resolution", 0.44, "r", 448), row("v2", 0.43, "c", 303), row("compound", 0.43, "c", 303),
                          row("fast", 0.42, "f")])
    [sentence] = page.comparison_verdicts(frame)
    assert "against 43.0% for v2 (and compound: the same network) (770M MACs), the runner-up" in sentence
    # with predicted latencies, each side of the comparison carries its own
    frame["latency_ms"] = [31.25, 20.0, 20.0, 18.5]
    [sentence] = page.comparison_verdicts(frame)
    assert "reached 44.0% proxy val top-1 (770M MACs, 31.2 ms predicted) against 43.0%" in sentence
    assert "(770M MACs, 20.0 ms predicted), the runner-up" in sentence
