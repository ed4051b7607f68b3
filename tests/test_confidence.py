"""P(best): how sure the grid is of its winner (scaling_search.search.confidence, search.grid.choose_coefficients)."""

import pytest

from scaling_search.search.confidence import SEPARATED_AT, accuracy_variance, probability_best
from scaling_search.search.grid import choose_coefficients


def test_probabilities_sum_to_one_and_follow_the_gap():
    clear = probability_best([0.60, 0.40, 0.30], [1e-5, 1e-5, 1e-5])
    assert clear[0] == 1.0 and sum(clear) == pytest.approx(1.0)
    even = probability_best([0.5] * 4, [1e-3] * 4)
    assert all(abs(p - 0.25) < 0.02 for p in even)  # Monte Carlo error at 20,000 draws: about 0.003
    close = probability_best([0.46, 0.456], [0.46 * 0.54 / 1250] * 2)
    assert 0.5 < close[0] < 0.65  # 0.4 points apart with a 1.4-point standard error: nearly a coin toss
    assert probability_best([0.46, 0.456], [0.46 * 0.54 / 1250] * 2) == close  # fixed seed


def test_the_variance_counts_validation_sampling_and_the_seed_spread():
    assert accuracy_variance(0.5, 1000, None, 1) == pytest.approx(0.25 / 1000)
    assert accuracy_variance(0.5, 1000, 0.02, 4) == pytest.approx(0.25 / 1000 + 0.0004 / 4)
    assert accuracy_variance(0.5, None, None, 1) is None


def _row(point, accuracy, val_images=1250, std=None, seeds=1):
    return {"point": point, "state": "complete", "accuracy": accuracy, "accuracy_std": std, "seeds": seeds,
            "val_images": val_images}


def test_the_winner_is_separated_only_when_its_p_best_reaches_the_threshold():
    far = choose_coefficients([_row(0, 0.40), _row(1, 0.60), _row(2, 0.45)])
    assert far["winner"]["point"] == 1 and far["p_best"] >= SEPARATED_AT and far["separated"] is True
    assert "one seed" in far["noise"]
    near = choose_coefficients([_row(0, 0.456), _row(1, 0.460), _row(2, 0.450)])
    assert near["winner"]["point"] == 1 and near["separated"] is False and near["p_best"] < 0.6
    assert sum(row["p_best"] for row in [near["winner"], near["runner_up"]]) < 1.0  # the third point has a share
    seeded = choose_coefficients([_row(0, 0.456, std=0.01, seeds=3), _row(1, 0.46, std=0.01, seeds=3),
                                  _row(2, 0.45, std=0.01, seeds=3)])
    assert seeded["noise"] == "validation images and seeds"
    unknown = choose_coefficients([_row(0, 0.4, val_images=None), _row(1, 0.5, val_images=None)])
    assert unknown["separated"] is None and "p_best" not in unknown
