"""
Scores some suites report beside macro AUROC, on the same bootstrap resamples as `statistics.score_with_intervals`:

- per class at the validation-tuned thresholds: F1 with its interval, and precision, recall and specificity — the
  columns of Table 2 of Ribeiro et al. 2020 (the CODE-test paper, which reports them per class at thresholds that
  maximise F1 on a validation set, and no AUROC);
- the PhysioNet 2021 challenge metric (`challenge_metric`) with its interval, when the challenge's `weights.csv` is
  given, on the same binary decisions;
- for `icbeb2018`, the PTB-XL benchmark's ICBEB columns (Strodthoff et al. 2021, its leaderboard section 7): macro
  F-beta and G-beta with beta = 2, the PhysioNet/CinC 2020 forms in which each record counts 1 / (its number of
  labels), at the benchmark's thresholds: per class the point of the ROC curve of the *training* predictions that
  maximises sensitivity + specificity (Youden), a record above no threshold taking its highest class.
"""

from __future__ import annotations

import numpy as np

from .challenge_metric import challenge_metric, class_columns, load_challenge_weights, to_challenge_classes
from .statistics import interval, resample_weights, weighted_f1


BETA = 2


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


def youden_thresholds(references: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per class, the ROC threshold with the largest sensitivity + specificity (a class with one value: 0.5)."""
    from sklearn.metrics import roc_curve

    thresholds = np.full(references.shape[1], 0.5)
    for label in range(references.shape[1]):
        if 0 < references[:, label].sum() < len(references):
            false_positive_rate, true_positive_rate, cuts = roc_curve(references[:, label], probabilities[:, label])
            thresholds[label] = cuts[np.argmax(true_positive_rate - false_positive_rate)]
    return thresholds


def top_class_decisions(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """`probabilities > thresholds`; a record above none takes its highest class (the benchmark's rule)."""
    decisions = probabilities > thresholds[None, :]
    empty = ~decisions.any(axis=1)
    decisions[empty, np.argmax(probabilities[empty], axis=1)] = True
    return decisions


def beta_scores(references: np.ndarray, decisions: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """
    Macro F-beta and G-beta (beta = `BETA`) under each row of `weights (B, N)` -> `(B,)` each: per class, TP / FP /
    FN summed with each record counting 1 / (its number of labels), then F = (1 + b^2) TP / ((1 + b^2) TP + FP +
    b^2 FN), G = TP / (TP + FP + b FN), averaged over the classes where defined.
    """
    truth = references.astype(bool)
    share = 1.0 / np.maximum(truth.sum(axis=1), 1)[:, None]
    true_positive = weights @ ((truth & decisions) * share)
    false_positive = weights @ ((~truth & decisions) * share)
    false_negative = weights @ ((truth & ~decisions) * share)
    with np.errstate(invalid="ignore", divide="ignore"):
        f_beta = (
            (1 + BETA**2) * true_positive / ((1 + BETA**2) * true_positive + false_positive + BETA**2 * false_negative)
        )
        g_beta = true_positive / (true_positive + false_positive + BETA * false_negative)
    return {"f_beta": np.nanmean(f_beta, axis=1), "g_beta": np.nanmean(g_beta, axis=1)}


def benchmark_beta_scores(train: tuple[np.ndarray, np.ndarray], references, probabilities, weights) -> dict:
    """`beta_scores` at the benchmark's thresholds (Youden on the training predictions), with intervals."""
    thresholds = youden_thresholds(np.asarray(train[0]), np.asarray(train[1]))
    decisions = top_class_decisions(np.asarray(probabilities), thresholds)
    point = beta_scores(references, decisions, np.ones((1, len(references))))
    resampled = beta_scores(references, decisions, weights)
    return {
        **{f"macro_{name}{BETA}": {"value": float(point[name][0]), "ci": interval(resampled[name])} for name in point},
        "youden_thresholds": thresholds.tolist(),
    }


def suite_scores(
    references: np.ndarray,
    probabilities: np.ndarray,
    thresholds: np.ndarray,
    indices: np.ndarray,
    challenge: ChallengeScorer | None = None,
    train: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """
    The scores above for one run's test `probabilities (N, C)` at `thresholds (C,)` over resamples `indices`;
    `train` (the training labels and the run's probabilities for them) adds the benchmark's F-beta and G-beta.
    """
    references = np.asarray(references).astype(np.int64)
    decisions = np.asarray(probabilities) >= np.asarray(thresholds)[None, :]
    weights = resample_weights(indices, len(references))
    f1, table = per_class_decision_scores(references, decisions, weights)
    scores = {"per_class_f1": f1, "per_class_at_thresholds": table}
    if challenge is not None:
        scores["challenge_metric"] = challenge(references, decisions, weights)
    if train is not None:
        scores.update(benchmark_beta_scores(train, references, probabilities, weights))
    return scores
