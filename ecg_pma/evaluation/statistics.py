"""
Test-set statistics with bootstrap confidence intervals, as the PTB-XL benchmark (Strodthoff et al. 2021) computes
them, with two documented differences.

- Resamples: `num_resamples` draws of the test records with replacement from `numpy.random.default_rng(seed)`
  (`rng.integers(0, N, N)` each). As the benchmark's `get_appropriate_bootstrap_samples` does, a resample in which a
  class has no positive is discarded and drawn again (the benchmark checks positives only; here negatives too, which
  AUROC equally needs). Classes without both a positive and a negative among all test records cannot be scored in
  any resample: they are left out of every macro mean and listed as unscored (the benchmark would loop forever).
- Intervals: the 2.5th and 97.5th percentiles of the resampled values (95 %; the benchmark's `evaluate` reports the
  5th and 95th, a 90 % interval). The point estimate is the full test set's value.

Every score is computed on resample weights (how often each record was drawn), which equals computing it on the
resampled records: AUROC from tie-grouped cumulative sums (the Mann-Whitney statistic), average precision as
scikit-learn's step sum, F1 from weighted confusion counts. Paired differences (head A - head B, or model A - model B)
use the same resamples for both, so the interval is that of the difference itself.
"""

from __future__ import annotations

import numpy as np


CONFIDENCE = 0.95
MAX_DRAWS_PER_RESAMPLE = 100


def scored_classes(references: np.ndarray) -> list[int]:
    """The classes (columns of `references (N, C)`) with at least one positive and one negative."""
    positives = references.sum(axis=0)
    return [label for label in range(references.shape[1]) if 0 < positives[label] < len(references)]


def bootstrap_indices(references: np.ndarray, num_resamples: int, seed: int) -> np.ndarray:
    """
    `(num_resamples, N)` record indices: each row a draw of N of the N test records with replacement, redrawn while a
    scored class has no positive or no negative in it (see the module docstring).
    """
    references = np.asarray(references)
    classes = scored_classes(references)
    rng = np.random.default_rng(seed)
    size = len(references)
    resamples, draws = [], 0
    while len(resamples) < num_resamples:
        draws += 1
        if draws > MAX_DRAWS_PER_RESAMPLE * num_resamples:
            positives = references[:, classes].sum(axis=0)
            rare = [c for c, count in zip(classes, positives) if min(count, size - count) < 2]
            raise ValueError(
                f"Bootstrap: fewer than 1 in {MAX_DRAWS_PER_RESAMPLE} resamples of the {size} test records keep a "
                f"positive and a negative of every scored class (classes {rare} have a single positive or negative); "
                "the test set is too small for these classes."
            )
        index = rng.integers(0, size, size)
        chosen = references[index][:, classes]
        if (chosen.sum(axis=0) > 0).all() and (chosen.sum(axis=0) < size).all():
            resamples.append(index)
    return np.asarray(resamples, dtype=np.int64).reshape(num_resamples, size)


def resample_weights(indices: np.ndarray, size: int) -> np.ndarray:
    """`(B, N)` indices -> `(B, N)` how often each record is drawn (as float64, the scores' dtype)."""
    offsets = np.arange(len(indices))[:, None] * size
    counts = np.bincount((indices + offsets).ravel(), minlength=len(indices) * size)
    return counts.reshape(len(indices), size).astype(np.float64)


def grouped_weights(scores: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per distinct score in ascending order, `(B, G)` each, for one class."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ordered = weights[:, order]
    positive = np.add.reduceat(ordered * truth[order], starts, axis=1)
    return positive, np.add.reduceat(ordered, starts, axis=1) - positive


def auroc_of_groups(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """AUROC from `grouped_weights` -> `(B,)`: pairs ranked right, ties counting one half."""
    negatives_below = np.cumsum(negative, axis=1) - negative
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    return (positive * (negatives_below + 0.5 * negative)).sum(axis=1) / pairs


def average_precision_of_groups(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's: precision summed over recall steps) from `grouped_weights` -> `(B,)`."""
    positive, negative = positive[:, ::-1], negative[:, ::-1]  # thresholds from the highest score down
    true_positives = np.cumsum(positive, axis=1)
    predicted = true_positives + np.cumsum(negative, axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(predicted), where=predicted > 0)
    return (positive * precision).sum(axis=1) / positive.sum(axis=1)


def weighted_auroc(scores: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one class under each row of `weights (B, N)` -> `(B,)`; ties count one half."""
    return auroc_of_groups(*grouped_weights(scores, truth, np.asarray(weights, dtype=np.float64)))


def weighted_average_precision(scores: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of one class under each row of `weights (B, N)` -> `(B,)`."""
    return average_precision_of_groups(*grouped_weights(scores, truth, np.asarray(weights, dtype=np.float64)))


def weighted_f1(decisions: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """F1 of one class's 0/1 `decisions` under each row of `weights` -> `(B,)`; 0 where nothing is predicted or true."""
    true_positives = weights @ (decisions & truth).astype(np.float64)
    wrong = weights @ (decisions ^ truth).astype(np.float64)
    denominator = 2 * true_positives + wrong
    return np.divide(2 * true_positives, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def interval(values: np.ndarray) -> list[float]:
    """The central `CONFIDENCE` percentile interval of resampled values."""
    tail = 100 * (1 - CONFIDENCE) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def resampled_scores(
    references: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """
    Macro AUROC / average precision / F1 (over the scored classes) and per-class AUROC under each row of
    `weights (B, N)`: `{"macro_auroc": (B,), "macro_auprc": (B,), "macro_f1": (B,), "per_class_auroc": (B, C)}`
    (NaN in the columns of unscored classes).
    """
    references = np.asarray(references).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = scored_classes(references)
    if not classes:
        raise ValueError("No class has both a positive and a negative test record: nothing to score.")
    decisions = probabilities >= np.asarray(thresholds)[None, :]
    weights = np.asarray(weights, dtype=np.float64)
    per_class = np.full((len(weights), references.shape[1]), np.nan)
    precision, f1 = [], []
    for label in classes:
        truth = references[:, label]
        positive, negative = grouped_weights(probabilities[:, label], truth, weights)  # shared by both scores
        per_class[:, label] = auroc_of_groups(positive, negative)
        precision.append(average_precision_of_groups(positive, negative))
        f1.append(weighted_f1(decisions[:, label], truth.astype(bool), weights))
    return {
        "macro_auroc": per_class[:, classes].mean(axis=1),
        "macro_auprc": np.mean(precision, axis=0),
        "macro_f1": np.mean(f1, axis=0),
        "per_class_auroc": per_class,
    }


def score_with_intervals(
    references: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray, indices: np.ndarray
) -> tuple[dict, dict[str, np.ndarray]]:
    """
    Point estimates on all test records with their bootstrap intervals over the resamples `indices (B, N)`:
    `{"macro_auroc": {"value", "ci"}, "macro_auprc": ..., "macro_f1": ..., "per_class_auroc": [{"value", "ci"} or
    None], "scored_classes": [...]}`, and the resampled values (for paired differences).
    """
    point = resampled_scores(references, probabilities, thresholds, np.ones((1, len(references))))
    resampled = resampled_scores(references, probabilities, thresholds, resample_weights(indices, len(references)))
    summary = {
        name: {"value": float(point[name][0]), "ci": interval(resampled[name])}
        for name in ("macro_auroc", "macro_auprc", "macro_f1")
    }
    summary["per_class_auroc"] = [
        None
        if np.isnan(point["per_class_auroc"][0, label])
        else {
            "value": float(point["per_class_auroc"][0, label]),
            "ci": interval(resampled["per_class_auroc"][:, label]),
        }
        for label in range(np.asarray(references).shape[1])
    ]
    summary["scored_classes"] = scored_classes(np.asarray(references))
    return summary, resampled


def paired_difference(a: dict, b: dict, resampled_a: np.ndarray, resampled_b: np.ndarray, metric: str) -> dict:
    """
    A - B on `metric` with the interval of the resampled differences (A and B scored on the same resamples), and the
    fraction of resamples where A does not exceed B (a one-sided bootstrap p-value).
    """
    differences = resampled_a - resampled_b
    return {
        "difference": a[metric]["value"] - b[metric]["value"],
        "ci": interval(differences),
        "fraction_not_above_zero": float(np.mean(differences <= 0)),
    }


def mean_and_sd(values: list[float]) -> dict:
    """Mean and sample standard deviation over seeds (sd None for a single seed)."""
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
        "num_seeds": len(values),
    }
