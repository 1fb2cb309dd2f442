"""
The PhysioNet/CinC Challenge 2021 metric (Reyna et al. 2021), from its published definition (the challenge's
`evaluate_model` script, github.com/physionetchallenges/evaluation-2021): a reward matrix `weights.csv` over the scored
SNOMED-CT classes (equivalent codes joined by `|` count as one class) gives partial credit to wrong but related
diagnoses. For binary labels L and outputs O of N records,

    A[j, k] = sum_i L[i, j] O[i, k] / max(1, |L_i or O_i|)      (a record's credit shared among its classes)
    score(O) = sum_jk W[j, k] A[j, k]  (NaN weights count 0)
    metric   = (score(O) - score(sinus rhythm only)) / (score(L) - score(sinus rhythm only)), 0 when undefined.

A is a sum over records, so each record's share of the three scores is computed once and a bootstrap resample is a
weighted sum of them (`challenge_metric` with `record_weights`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.physionet2021 import SCORED_SNOMED


SINUS_RHYTHM = "426783006"


def load_challenge_weights(path: str | Path) -> tuple[list[frozenset[str]], np.ndarray]:
    """
    `weights.csv` (`,a,b|c,...` then one row per class) -> the classes (each a set of equivalent SNOMED-CT codes)
    and the `(C, C)` weights; errors name the file and what is wrong.
    """
    path = Path(path)
    rows = [[cell.strip() for cell in line.split(",")] for line in path.read_text().splitlines() if line.strip()]
    if len(rows) < 2:
        raise ValueError(f"Challenge weights {path}: expected a header row and one row per class.")
    columns = [frozenset(cell.split("|")) for cell in rows[0][1:]]
    if any(len(row) != len(columns) + 1 for row in rows[1:]) or len(rows) - 1 != len(columns):
        raise ValueError(
            f"Challenge weights {path}: not a square table ({len(rows) - 1} rows, {len(columns)} classes)."
        )
    if [frozenset(row[0].split("|")) for row in rows[1:]] != columns:
        raise ValueError(f"Challenge weights {path}: the row classes are not the column classes in the same order.")
    try:
        weights = np.array([[float(cell) if cell else np.nan for cell in row[1:]] for row in rows[1:]])
    except ValueError as error:
        raise ValueError(f"Challenge weights {path}: a weight is not a number ({error}).") from error
    return columns, weights


def class_columns(label_names: list[str], classes: list[frozenset[str]]) -> np.ndarray:
    """
    `(len(label_names), len(classes))` 0/1: which weights class each task label (an abbreviation of the challenge's
    scored table, or a SNOMED-CT code) belongs to; a label of no scored class maps to none (it is not scored).
    """
    code_of = {abbreviation: code for code, abbreviation in SCORED_SNOMED.items()}
    mapping = np.zeros((len(label_names), len(classes)), dtype=bool)
    for row, name in enumerate(label_names):
        code = code_of.get(name, name)
        for column, codes in enumerate(classes):
            mapping[row, column] = code in codes
    return mapping


def to_challenge_classes(values: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """`(N, labels)` 0/1 -> `(N, classes)`: a class is positive when any of its task labels is (the challenge's rule)."""
    return (np.asarray(values, dtype=bool).astype(np.int64) @ mapping.astype(np.int64)) > 0


def record_credits(labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each record's share of `sum W * A` for binary `labels` and `outputs (N, C)` -> `(N,)`."""
    labels, outputs = np.asarray(labels, dtype=np.float64), np.asarray(outputs, dtype=np.float64)
    normalization = np.maximum(np.logical_or(labels > 0, outputs > 0).sum(axis=1), 1)
    rewards = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0)
    return np.einsum("ij,jk,ik->i", labels, rewards, outputs) / normalization


def challenge_metric(
    labels: np.ndarray,
    outputs: np.ndarray,
    weights: np.ndarray,
    classes: list[frozenset[str]],
    record_weights: np.ndarray | None = None,
) -> np.ndarray:
    """
    The normalised challenge metric of binary `outputs` against `labels (N, C)` (columns = `classes`) -> `(B,)`, one
    value per row of `record_weights (B, N)` (how often each record is drawn; one row of ones when None).
    """
    index = next((i for i, codes in enumerate(classes) if SINUS_RHYTHM in codes), None)
    if index is None:
        raise ValueError(f"The challenge weights have no sinus rhythm class ({SINUS_RHYTHM}).")
    labels = np.asarray(labels, dtype=bool)
    inactive = np.zeros_like(labels)
    inactive[:, index] = True
    credits = np.stack(
        [record_credits(labels, outputs, weights), record_credits(labels, labels, weights),
         record_credits(labels, inactive, weights)]
    )  # fmt: skip
    record_weights = np.ones((1, len(labels))) if record_weights is None else np.asarray(record_weights, float)
    observed, correct, inactive_score = (record_weights @ credits.T).T  # three (B,) totals
    return np.divide(
        observed - inactive_score,
        correct - inactive_score,
        out=np.zeros(len(record_weights)),
        where=correct != inactive_score,
    )
