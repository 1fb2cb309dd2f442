"""
Scores some suites report beside macro AUROC, on the same bootstrap resamples as `statistics.score_with_intervals`:

- per class at the validation-tuned thresholds: F1 with its interval, and precision, recall and specificity — the
  columns of Table 2 of Ribeiro et al. 2020 (the CODE-test paper, which reports them per class at thresholds that
  maximise F1 on a validation set, and no AUROC);
- the PhysioNet 2021 challenge metric (`challenge_metric`) with its interval, when the challenge's `weights.csv` is
  given, on the same binary decisions.
"""

from __future__ import annotations

import numpy as np

from .challenge_metric import challenge_metric, class_columns, load_challenge_weights, to_challenge_classes
from .statistics import interval, resample_weights, weighted_f1


def ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def per_class_decision_scores(
    references: np.ndarray, decisions: np.ndarray, weights: np.ndarray
) -> tuple[list[dict], list[dict]]:
    """
    Per class: `{"value", "ci"}` of F1 (None for a class without positives among the test records), and the point
    precision, recall, specificity and F1 (None where undefined).
    """
    f1, table = [], []
    for label in range(references.shape[1]):
        truth, decided = references[:, label].astype(bool), decisions[:, label]
        true_positive = float(np.sum(truth & decided))
        false_positive = float(np.sum(~truth & decided))
        false_negative = float(np.sum(truth & ~decided))
        true_negative = float(np.sum(~truth & ~decided))
        table.append(
            {
                "precision": ratio(true_positive, true_positive + false_positive),
                "recall": ratio(true_positive, true_positive + false_negative),
                "specificity": ratio(true_negative, true_negative + false_positive),
                "f1": ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative),
            }
        )
        if not truth.any():
            f1.append(None)
            continue
        point = weighted_f1(decided, truth, np.ones((1, len(truth))))[0]
        f1.append({"value": float(point), "ci": interval(weighted_f1(decided, truth, weights))})
    return f1, table


class ChallengeScorer:
    """The challenge metric of a task's decisions, from `weights.csv` (`path`)."""

    def __init__(self, path, label_names: list[str]):
        self.path = str(path)
        self.classes, self.weights = load_challenge_weights(path)
        self.mapping = class_columns(label_names, self.classes)
        unmapped = [name for name, row in zip(label_names, self.mapping) if not row.any()]
        self.unscored_labels = unmapped

    def __call__(self, references: np.ndarray, decisions: np.ndarray, weights: np.ndarray) -> dict:
        labels = to_challenge_classes(references, self.mapping)
        outputs = to_challenge_classes(decisions, self.mapping)
        point = challenge_metric(labels, outputs, self.weights, self.classes)[0]
        resampled = challenge_metric(labels, outputs, self.weights, self.classes, weights)
        return {"value": float(point), "ci": interval(resampled), "weights_file": self.path}


def suite_scores(
    references: np.ndarray,
    probabilities: np.ndarray,
    thresholds: np.ndarray,
    indices: np.ndarray,
    challenge: ChallengeScorer | None = None,
) -> dict:
    """The scores above for one run's test `probabilities (N, C)` at `thresholds (C,)` over resamples `indices`."""
    references = np.asarray(references).astype(np.int64)
    decisions = np.asarray(probabilities) >= np.asarray(thresholds)[None, :]
    weights = resample_weights(indices, len(references))
    f1, table = per_class_decision_scores(references, decisions, weights)
    scores = {"per_class_f1": f1, "per_class_at_thresholds": table}
    if challenge is not None:
        scores["challenge_metric"] = challenge(references, decisions, weights)
    return scores
