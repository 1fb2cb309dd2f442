"""
Multi-label ECG classification metrics as an `evaluate` module: macro AUROC (the PMA paper's headline), macro F1 at
per-label thresholds, macro average precision (mAP) and subset accuracy, with the windows of a record averaged
before scoring. scikit-learn computes every score. Load it offline by path:

    import evaluate, ecg_pma.metrics
    metric = evaluate.load(ecg_pma.metrics.ECG_MULTILABEL_PATH)
    metric.compute(predictions=probabilities, references=labels, record_ids=ids)
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score


_DESCRIPTION = """
Scores multi-label predictions (probabilities in [0, 1], one column per label) against multi-hot references.
Windows sharing a `record_ids` entry are averaged into one prediction per record first (their references must
agree). AUROC is undefined for a label with one class only among the references (no positive, or no negative,
in the split): by default (`single_class_auroc="exclude"`) macro AUROC and average precision are averaged over the
labels that have both classes; `single_class_auroc="half"` counts each such label as an AUROC of 0.5 in the macro
mean instead (the PMA authors' convention; average precision is unchanged). F1
and accuracy use `thresholds` (one per label, default 0.5), or thresholds tuned per label to maximise F1 on these
very references with `tune_thresholds=True` (use that on the validation split, then pass the returned thresholds
for the test split).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): probabilities, `(windows, labels)`.
    references (`list[list[int]]`): 0/1 labels, `(windows, labels)`.
    record_ids (`list[str]`, optional): the record of each window, for per-record averaging.
    thresholds (`list[float]`, optional): decision threshold per label for F1 and accuracy.
    tune_thresholds (`bool`): choose each label's threshold to maximise its F1 here (returned as `thresholds`).
    single_class_auroc (`str`): `"exclude"` (default) labels with one class from macro AUROC, or count them as
        `"half"` (0.5, the PMA authors' convention).
Returns:
    macro_auroc, macro_average_precision, macro_f1, accuracy (exact match), num_records, num_scored_labels,
    thresholds (`list[float]`), per_label_auroc (`list[float | None]`).
"""

_CITATION = """
@article{nguyen2025ecgsoup,
  title={Exploiting a Mixture-of-Layers in an Electrocardiography Foundation Model},
  author={Nguyen, Phu X. and Phan, Huy and Pham, Hieu and Chatzichristos, Christos and Vandenberk, Bert and De Vos, Maarten},
  journal={arXiv preprint arXiv:2509.00102},
  year={2025}
}
"""


def average_per_record(
    predictions: np.ndarray, references: np.ndarray, record_ids: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean prediction of each record's windows, in order of first appearance. References must agree per record."""
    if len(record_ids) != len(predictions):
        raise ValueError(f"{len(record_ids)} record ids for {len(predictions)} predictions.")
    order, index = [], {}
    for record_id in record_ids:
        if record_id not in index:
            index[record_id] = len(order)
            order.append(record_id)
    positions = np.asarray([index[record_id] for record_id in record_ids])
    counts = np.bincount(positions, minlength=len(order))[:, None]
    averaged = np.zeros((len(order), predictions.shape[1]))
    np.add.at(averaged, positions, predictions)
    averaged /= counts
    record_references = np.zeros((len(order), references.shape[1]), dtype=references.dtype)
    record_references[positions] = references
    disagreeing = [order[p] for p, ref in zip(positions, references) if not np.array_equal(record_references[p], ref)]
    if disagreeing:
        raise ValueError(f"Windows of the same record carry different labels: {sorted(set(disagreeing))[:5]}.")
    return averaged, record_references, order


def tune_f1_thresholds(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """
    Per label, the threshold among the predicted values that maximises F1 (the lowest such value on ties; 0.5 where a
    label never occurs). Every candidate at once: with the values sorted, F1 at a threshold is `2 tp / (predicted
    positives + positives)` from cumulative counts.
    """
    thresholds = np.full(predictions.shape[1], 0.5)
    for label in range(predictions.shape[1]):
        truth = references[:, label]
        if truth.sum() == 0:
            continue
        candidates, inverse = np.unique(predictions[:, label], return_inverse=True)
        # at or above each candidate (ascending): suffix sums of the per-value counts
        positives_at = np.bincount(inverse, weights=truth, minlength=len(candidates))
        count_at = np.bincount(inverse, minlength=len(candidates))
        true_positives = np.cumsum(positives_at[::-1])[::-1]
        predicted = np.cumsum(count_at[::-1])[::-1]
        scores = 2 * true_positives / (predicted + truth.sum())
        thresholds[label] = candidates[int(np.argmax(scores))]
    return thresholds


class EcgMultilabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2509.00102"],
        )

    def _compute(
        self,
        predictions,
        references,
        record_ids=None,
        thresholds=None,
        tune_thresholds=False,
        single_class_auroc="exclude",
    ):
        if single_class_auroc not in ("exclude", "half"):
            raise ValueError(f"`single_class_auroc` must be 'exclude' or 'half', got {single_class_auroc!r}.")
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.shape != references.shape:
            raise ValueError(f"predictions {predictions.shape} and references {references.shape} differ in shape.")
        if record_ids is not None:
            predictions, references, _ = average_per_record(predictions, references, list(record_ids))
        num_labels = predictions.shape[1]
        if tune_thresholds:
            thresholds = tune_f1_thresholds(predictions, references)
        thresholds = np.full(num_labels, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if thresholds.shape != (num_labels,):
            raise ValueError(f"Expected {num_labels} thresholds, got {thresholds.shape}.")

        scored = [label for label in range(num_labels) if 0 < references[:, label].sum() < len(references)]
        per_label_auroc = [None] * num_labels
        for label in scored:
            per_label_auroc[label] = float(roc_auc_score(references[:, label], predictions[:, label]))
        decisions = predictions >= thresholds
        if single_class_auroc == "half":
            macro_auroc = float(np.mean([0.5 if auroc is None else auroc for auroc in per_label_auroc]))
        else:
            macro_auroc = float(np.mean([per_label_auroc[label] for label in scored])) if scored else float("nan")
        return {
            "macro_auroc": macro_auroc,
            "macro_average_precision": (
                float(average_precision_score(references[:, scored], predictions[:, scored], average="macro"))
                if scored
                else float("nan")
            ),
            "macro_f1": float(f1_score(references, decisions, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(references, decisions)),
            "num_records": int(len(references)),
            "num_scored_labels": len(scored),
            "thresholds": thresholds.tolist(),
            "per_label_auroc": per_label_auroc,
        }
