"""PTB-XL (Wagner et al. 2020) as a `datasets.DatasetDict`, with the label sets of the PTB-XL benchmark."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import pandas as pd
from datasets import DatasetDict, Value

from ..constants import PTBXL_LABEL_SETS as LABEL_SETS
from .records import build_splits, check_missing, multi_hot, path_inside, record_features, with_missing_records


logger = logging.getLogger(__name__)

# Official protocol: stratified folds 1-8 train, 9 validation, 10 test.
FOLD_TO_SPLIT = {**dict.fromkeys(range(1, 9), "train"), 9: "validation", 10: "test"}


def ptbxl_label_names(statements: pd.DataFrame, label_set: str) -> list[str]:
    """The sorted label vocabulary of a label set, from `scp_statements.csv` (71 / 44 / 23 / 5 / 19 / 12 labels)."""
    if label_set == "all":
        names = statements.index
    elif label_set == "diagnostic":
        names = statements.index[statements["diagnostic"] == 1]
    elif label_set == "subdiagnostic":
        names = statements.loc[statements["diagnostic"] == 1, "diagnostic_subclass"].dropna().unique()
    elif label_set == "superdiagnostic":
        names = statements.loc[statements["diagnostic"] == 1, "diagnostic_class"].dropna().unique()
    elif label_set in ("form", "rhythm"):
        names = statements.index[statements[label_set] == 1]
    else:
        raise ValueError(f"Unknown PTB-XL `label_set` {label_set!r}; expected one of {LABEL_SETS}.")
    return sorted(str(name) for name in names)


def ptbxl_record_labels(
    scp_codes: dict[str, float], statements: pd.DataFrame, label_set: str, min_likelihood: float = 0.0
) -> list[str]:
    """
    A record's labels in a label set, as the benchmark builds them: every statement of `scp_codes` (likelihood at
    least `min_likelihood`; the benchmark keeps all, including 0), mapped to its diagnostic subclass or class for
    `subdiagnostic` / `superdiagnostic`.
    """
    labels = set()
    for code, likelihood in scp_codes.items():
        if code not in statements.index or likelihood < min_likelihood:
            continue
        statement = statements.loc[code]
        if label_set == "all" or label_set == "diagnostic" and statement["diagnostic"] == 1:
            labels.add(code)
        elif (
            label_set == "subdiagnostic"
            and statement["diagnostic"] == 1
            and pd.notna(statement["diagnostic_subclass"])
        ):
            labels.add(statement["diagnostic_subclass"])
        elif (
            label_set == "superdiagnostic" and statement["diagnostic"] == 1 and pd.notna(statement["diagnostic_class"])
        ):
            labels.add(statement["diagnostic_class"])
        elif label_set in ("form", "rhythm") and statement[label_set] == 1:
            labels.add(code)
    return sorted(labels)


def load_ptbxl(
    root: str | os.PathLike,
    sampling_rate: int = 100,
    label_set: str = "all",
    min_likelihood: float = 0.0,
    drop_unlabeled: bool = True,
    missing: str = "raise",
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> DatasetDict:
    """
    Loads PTB-XL from its PhysioNet layout (`ptbxl_database.csv`, `scp_statements.csv`, `records100/`,
    `records500/`) into `train` (folds 1-8), `validation` (9) and `test` (10).

    Args:
        sampling_rate: 100 (`filename_lr`) or 500 (`filename_hr`).
        label_set: `all` (71, the PMA paper's headline task; the default), `diagnostic` (44), `subdiagnostic` (23), `superdiagnostic` (5), `form` (19) or
            `rhythm` (12).
        drop_unlabeled: leave out records with no label in the set, as the benchmark does (their number is logged);
            `False` keeps them as all-negative rows, as the PMA authors' code does.
        missing: `"raise"` if a listed record has no files, `"skip"` to leave those out (logged).
        cache_dir, num_proc: Arrow cache folder and reading processes, as in `datasets`.
    """
    root = Path(root)
    if sampling_rate not in (100, 500):
        raise ValueError(f"PTB-XL comes at 100 or 500 Hz, not {sampling_rate}.")
    if label_set not in LABEL_SETS:
        raise ValueError(f"Unknown PTB-XL `label_set` {label_set!r}; expected one of {LABEL_SETS}.")
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        if not (root / name).exists():
            raise FileNotFoundError(f"PTB-XL: {root / name} not found; is {root} a PTB-XL folder?")
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    database = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    label_names = ptbxl_label_names(statements, label_set)
    label_index = {name: i for i, name in enumerate(label_names)}
    filename_column = "filename_lr" if sampling_rate == 100 else "filename_hr"

    paths = {
        str(ecg_id): path_inside(
            root,
            database.at[ecg_id, filename_column],
            f"{root / 'ptbxl_database.csv'}, ecg_id {ecg_id} ({filename_column})",
        )
        for ecg_id in database.index
    }
    absent = check_missing(paths, missing, f"PTB-XL at {root} ({sampling_rate} Hz)")
    rows_by_split: dict[str, list[dict]] = {split: [] for split in ("train", "validation", "test")}
    unlabeled = 0
    for ecg_id, entry in database.iterrows():
        if str(ecg_id) in absent:
            continue
        labels = ptbxl_record_labels(ast.literal_eval(entry["scp_codes"]), statements, label_set, min_likelihood)
        if not labels and drop_unlabeled:
            unlabeled += 1
            continue
        label_ids = [label_index[label] for label in labels]
        rows_by_split[FOLD_TO_SPLIT[int(entry["strat_fold"])]].append(
            {
                "path": paths[str(ecg_id)],
                "record_id": str(ecg_id),
                "labels": multi_hot(label_ids, len(label_names)),
                "label_ids": label_ids,
                "patient_id": int(entry["patient_id"]),
                "strat_fold": int(entry["strat_fold"]),
                "age": float(entry["age"]) if pd.notna(entry["age"]) else None,
                "sex": int(entry["sex"]),
            }
        )
    if unlabeled:
        logger.warning(f"PTB-XL: left out {unlabeled} record(s) with no {label_set!r} label (drop_unlabeled=True).")
    features = record_features(
        12,
        label_names,
        {"patient_id": Value("int64"), "strat_fold": Value("int32"), "age": Value("float32"), "sex": Value("int32")},
    )
    splits = build_splits(rows_by_split, features, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming)
    return with_missing_records(splits, absent)
