"""Rank agreement of a cheap signal with a reference regime (scaling_search.search.rank_agreement)."""

import numpy as np
import pytest
from scipy import stats

from scaling_search.search.rank_agreement import permutation_p_value, correlations, rank_agreement


def test_vectorised_tau_and_rho_equal_scipys_with_and_without_ties():
    generator = np.random.default_rng(1)
    compared = 0
    for _ in range(300):
        n = int(generator.integers(3, 15))
        x, y = generator.integers(0, 4, n).astype(float), generator.integers(0, 5, n).astype(float)  # many ties
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        tau, rho = correlations(x, y)
        assert tau == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
        assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        compared += 1
    assert compared > 250
    rows_x, rows_y = generator.normal(size=(5, 8)), generator.normal(size=(5, 8))
    taus, rhos = correlations(rows_x, rows_y)  # row by row, as the bootstrap calls it
    assert list(taus) == pytest.approx([stats.kendalltau(a, b).statistic for a, b in zip(rows_x, rows_y)])
    assert list(rhos) == pytest.approx([stats.spearmanr(a, b).statistic for a, b in zip(rows_x, rows_y)])


def test_same_and_reversed_rankings():
    same = rank_agreement([0.1, 0.3, 0.2, 0.5], [0.4, 0.6, 0.5, 0.9])
    assert (same.kendall_tau, same.spearman_rho, same.top1_agrees, same.top3_overlap) == (1.0, 1.0, True, 1.0)
    assert same.kendall_interval is None and "too few" in same.note  # four candidates: no interval
    assert same.p_value == pytest.approx(1 / 24) and same.min_p_value == pytest.approx(1 / 24)
    reversed_ = rank_agreement([4, 3, 2, 1], [1, 2, 3, 4])
    assert (reversed_.kendall_tau, reversed_.top1_agrees) == (-1.0, False)
    assert reversed_.top3_overlap == pytest.approx(2 / 3)  # of 4 candidates, two sit in both top 3s


def test_a_noisy_signal_has_an_interval_around_its_tau_and_the_same_seed_gives_the_same_interval():
    generator = np.random.default_rng(0)
    reference = generator.normal(size=12)
    signal = reference + generator.normal(scale=0.7, size=12)
    first, again = rank_agreement(signal, reference, seed=3), rank_agreement(signal, reference, seed=3)
    assert first == again
    low, high = first.kendall_interval
    assert low < first.kendall_tau < high and high - low > 0.2  # twelve candidates leave a wide interval
    assert first.kendall_tau == pytest.approx(stats.kendalltau(signal, reference).statistic)


def test_a_reference_at_chance_ranks_nothing():
    flat = rank_agreement([0.1, 0.4, 0.2], [0.1, 0.1, 0.1])
    assert not flat.defined and flat.to_dict()["kendall_tau"] is None and flat.top1_agrees is None
    assert not rank_agreement([0.3, 0.3, 0.3], [0.1, 0.2, 0.3]).defined
    with pytest.raises(ValueError):
        rank_agreement([0.1, 0.2], [0.1, 0.2])


@pytest.mark.parametrize("n", [3, 4, 5])
def test_five_or_fewer_candidates_never_get_an_interval_that_excludes_zero(n):
    perfect = rank_agreement(list(range(n)), list(range(n)))
    assert perfect.kendall_tau == 1.0 and perfect.kendall_interval is None and perfect.spearman_interval is None
    if n == 3:  # 1/3! = 0.17: no ordering of three is significant
        assert not perfect.significant and "no tau of 3 can be significant" in perfect.note


def test_the_permutation_p_value_is_exact_for_few_candidates_and_near_it_for_many():
    generator = np.random.default_rng(1)
    reference = generator.normal(size=7)
    signal = reference + generator.normal(scale=1.0, size=7)
    exact = permutation_p_value(signal, reference)
    assert exact == pytest.approx(stats.kendalltau(signal, reference, alternative="greater",
                                                   method="exact").pvalue, abs=1e-9)
    many_ref = generator.normal(size=14)
    assert permutation_p_value(many_ref, many_ref) < 1e-3  # a perfect ranking of 14 is far above chance
    shuffled = generator.permutation(many_ref)
    assert 0.0 < permutation_p_value(shuffled, many_ref) <= 1.0


def test_seed_noise_widens_the_interval():
    generator = np.random.default_rng(0)
    reference = np.linspace(0.40, 0.50, 16)
    signal = reference + generator.normal(scale=0.01, size=16)
    quiet = rank_agreement(signal, reference, seed=0)
    noisy = rank_agreement(signal, reference, seed=0, signal_sd=[0.03] * 16, reference_sd=[0.03] * 16)
    assert quiet.kendall_tau == noisy.kendall_tau  # the point estimate is the measured one
    assert noisy.kendall_interval[1] - noisy.kendall_interval[0] > quiet.kendall_interval[1] - quiet.kendall_interval[0]
    assert "redrawn" in noisy.note and "not counted" in quiet.note
