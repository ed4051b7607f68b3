"""How sure a search is of its winner: each candidate's probability of being the best, given its noise.

A candidate's proxy accuracy is a mean over its seeds, measured on ``n`` validation images. Its uncertainty is
the validation sampling error (binomial, ``p (1 - p) / n``) plus, with several seeds, the seed variance of the
mean: the model behind the report's intervals. P(best) is the share of joint draws -- one normal draw per
candidate, independent, 20,000 draws from a fixed seed -- in which the candidate is the most accurate: a
parametric bootstrap over validation images and seeds. With one seed the training noise is not measured, so
P(best) counts the validation noise alone and overstates the confidence; callers say so.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A normal's 97.5th percentile: the half-width of every 95% interval, in standard errors.
Z95 = 1.96
#: Joint draws behind P(best); its Monte Carlo error is below 0.004 at any probability.
DRAWS = 20_000
#: A winner whose P(best) reaches this is called separated from the rest.
SEPARATED_AT = 0.95


def accuracy_variance(accuracy: float, val_images: float | None, std: float | None, seeds: int) -> float | None:
    """The variance of a mean proxy accuracy: validation sampling plus seed spread; None when neither the
    validation size nor a seed spread is known."""
    if not val_images and seeds <= 1:
        return None
    sampling = accuracy * (1 - accuracy) / val_images if val_images else 0.0
    training = (std or 0.0) ** 2 / seeds if seeds > 1 else 0.0
    return sampling + training


def probability_best(means: Sequence[float], variances: Sequence[float], draws: int = DRAWS,
                     seed: int = 0) -> list[float]:
    """Each candidate's share of joint normal draws in which it is the most accurate (ties go to the lower
    index, as the grid's argmax does). Deterministic for a given ``seed``."""
    import numpy as np

    if len(means) != len(variances) or not means:
        raise ValueError("need one variance per mean, and at least one candidate")
    scale = np.sqrt(np.maximum(np.asarray(variances, dtype=float), 0.0))
    sample = np.random.default_rng(seed).normal(np.asarray(means, dtype=float), scale, size=(draws, len(means)))
    wins = np.bincount(sample.argmax(axis=1), minlength=len(means))
    return [float(w) / draws for w in wins]


__all__ = ["DRAWS", "SEPARATED_AT", "Z95", "accuracy_variance", "probability_best"]
