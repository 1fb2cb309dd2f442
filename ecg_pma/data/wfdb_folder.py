"""A user's own folder of WFDB records as a `datasets.DatasetDict`, labelled from a CSV."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from datasets import DatasetDict

from .records import (
    build_splits,
    check_missing,
    find_records,
    hash_split,
    multi_hot,
    path_inside,
    read_text_csv,
    record_features,
    with_missing_records,
)


def load_wfdb_folder(
    root: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    record_column: str = "record",
    labels_column: str = "labels",
    label_separator: str = ";",
    split_column: str = "split",
    num_leads: int = 12,
    missing: str = "raise",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> DatasetDict:
    """
    Loads WFDB records below `root`.

    Without `labels_csv`, every record below `root` is loaded, unlabelled (for pre-training). With it, the CSV lists
    the records: `record_column` holds the record path relative to `root` without extension, `labels_column` the
    record's labels joined by `label_separator` (may be empty), and an optional `split_column` holds `train`,
    `validation` or `test`; without it the split is a deterministic hash of the record name.
    """
    root = Path(root)
    if labels_csv is None:
        records = find_records(root)
        if not records:
            raise FileNotFoundError(f"No WFDB header (.hea) below {root}.")
        table = pd.DataFrame(
            {record_column: [str(Path(path).relative_to(root)) for path in records], labels_column: ""}
        )
    else:
        table = read_text_csv(labels_csv)
        for column in (record_column, labels_column):
            if column not in table.columns:
                raise ValueError(f"{labels_csv}: no column {column!r} (columns: {list(table.columns)}).")
    if table[record_column].duplicated().any():
        raise ValueError(
            f"Records listed twice: {sorted(table[record_column][table[record_column].duplicated()])[:10]}."
        )

    label_lists = [
        [label.strip() for label in str(value).split(label_separator) if label.strip()]
        for value in table[labels_column]
    ]
    label_names = sorted({label for labels in label_lists for label in labels})
    label_index = {name: i for i, name in enumerate(label_names)}
    paths = {
        record: path_inside(root, record, f"{labels_csv or root}, row {row + 2} ({record_column})")
        for row, record in enumerate(table[record_column])
    }
    absent = check_missing(paths, missing, f"WFDB folder {root}")

    rows_by_split: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for position, record in enumerate(table[record_column]):
        if record in absent:
            continue
        split = (
            table[split_column].iloc[position]
            if split_column in table.columns
            else hash_split(record, validation_fraction, test_fraction)
        )
        if split not in rows_by_split:
            raise ValueError(f"Record {record!r}: split {split!r} is not one of {list(rows_by_split)}.")
        label_ids = [label_index[label] for label in label_lists[position]]
        rows_by_split[split].append(
            {
                "path": paths[record],
                "record_id": record,
                "labels": multi_hot(label_ids, len(label_names)),
                "label_ids": label_ids,
            }
        )
    splits = build_splits(
        rows_by_split,
        record_features(num_leads, label_names),
        cache_dir=cache_dir,
        num_proc=num_proc,
        streaming=streaming,
    )
    return with_missing_records(splits, absent)
