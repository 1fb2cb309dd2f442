"""
Seeded multi-label stratified folds, for data sets that publish no split of their own (CPSC 2018, CODE-test): the
iterative stratification of Sechidis et al. (2011), the procedure the PTB-XL folds were drawn with.
"""

from __future__ import annotations

import numpy as np


def best_fold(label_need: np.ndarray, fold_need: np.ndarray, rng: np.random.Generator) -> int:
    """The fold that most needs the label; ties go to the fold that most needs records, then to a seeded draw."""
    candidates = np.flatnonzero(label_need == label_need.max())
    candidates = candidates[fold_need[candidates] == fold_need[candidates].max()]
    return int(rng.choice(candidates))


def stratified_folds(labels: np.ndarray, num_folds: int = 10, seed: int = 0) -> np.ndarray:
    """
    The fold (1 to `num_folds`) of each record of `labels (N, C)` (0/1): labels are taken rarest remaining first;
    each record carrying it, in a seeded random order, goes to the fold that still needs that label most (ties: the
    fold needing records most, then a seeded draw), and counts against the need of every label it carries. Records
    without a label fill the folds needing records most. The result depends only on `labels`, their row order and
    `seed`.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.ndim != 2:
        raise ValueError(f"`labels` must be (records, classes), got shape {labels.shape}.")
    size = len(labels)
    if num_folds < 2 or size < num_folds:
        raise ValueError(f"Cannot draw {num_folds} folds from {size} records.")
    rng = np.random.default_rng(seed)
    fold_need = np.full(num_folds, size / num_folds)
    label_need = labels.sum(axis=0)[:, None] * np.full(num_folds, 1 / num_folds)[None, :]  # (C, folds)
    folds = np.zeros(size, dtype=np.int64)
    remaining = labels.copy()
    while remaining.any():
        counts = remaining.sum(axis=0)
        rarest = np.flatnonzero(counts == counts[counts > 0].min())
        label = int(rng.choice(rarest))
        for row in rng.permutation(np.flatnonzero(remaining[:, label])):
            fold = best_fold(label_need[label], fold_need, rng)
            folds[row] = fold + 1
            label_need[labels[row], fold] -= 1
            fold_need[fold] -= 1
            remaining[row] = False
    for row in rng.permutation(np.flatnonzero(folds == 0)):
        fold = int(rng.choice(np.flatnonzero(fold_need == fold_need.max())))
        folds[row] = fold + 1
        fold_need[fold] -= 1
    return folds
