"""
MIMIC-IV-ECG (Gow et al., PhysioNet 2023): some 800,000 10 s 12-lead records at 500 Hz, WFDB files under
`files/pNNNN/pXXXXXXXX/sYYYYYYYY/`, listed in `record_list.csv`.
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets import DatasetDict, Value

from .records import (
    build_splits,
    check_missing,
    hash_split,
    multi_hot,
    path_inside,
    read_listing,
    read_text_csv,
    record_features,
    with_missing_records,
)


RECORD_LIST_COLUMNS = ("subject_id", "study_id", "file_name", "ecg_time", "path")


def report_statements(root: Path, study_ids: list[str]) -> dict[str, list[str]]:
    """`machine_measurements.csv`'s `report_0`, `report_1`, ... statements of each study (empty ones left out)."""
    path = root / "machine_measurements.csv"
    if not path.is_file():
        raise FileNotFoundError(f"MIMIC-IV-ECG: report labels asked for, but there is no {path}.")
    table = read_text_csv(path)
    columns = [column for column in table.columns if column.startswith("report_")]
    if "study_id" not in table.columns or not columns:
        raise ValueError(f"{path}: expected `study_id` and `report_N` columns (columns: {list(table.columns)}).")
    statements = {
        study_id: [text.strip() for text in row if text.strip()]
        for study_id, row in zip(table["study_id"], table[columns].itertuples(index=False))
    }
    missing = [study_id for study_id in study_ids if study_id not in statements]
    if missing:
        raise ValueError(f"{path}: no row for {len(missing)} listed study(ies), e.g. {missing[:5]}.")
    return {study_id: statements[study_id] for study_id in study_ids}


def load_mimic_iv_ecg(
    root: str | os.PathLike,
    report_labels: bool = False,
    missing: str = "raise",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> DatasetDict:
    """
    Every record of `root/record_list.csv` (`subject_id`, `study_id`, `file_name`, `ecg_time`, `path` relative to
    `root` without extension). Unlabelled (pre-training) by default; `report_labels=True` labels each study with the
    machine's report statements of `machine_measurements.csv` as multi-label text classes. The split is by subject (a
    hash of `subject_id`). `record_id` is the study id; `subject_id` and `ecg_time` are kept.
    """
    root = Path(root)
    listing = root / "record_list.csv"
    table = read_listing(listing, "MIMIC-IV-ECG", RECORD_LIST_COLUMNS, key="study_id", items="studies")
    paths = {
        study_id: path_inside(root, relative, f"{listing}, row {row + 2} (path)")
        for row, (study_id, relative) in enumerate(zip(table["study_id"], table["path"]))
    }
    skipped = check_missing(paths, missing, f"MIMIC-IV-ECG {root}")
    kept = table[~table["study_id"].isin(list(skipped))]
    statements = report_statements(root, list(kept["study_id"])) if report_labels else {}
    label_names = sorted({text for texts in statements.values() for text in texts})
    label_index = {name: i for i, name in enumerate(label_names)}

    rows_by_split: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for subject_id, study_id, ecg_time in zip(kept["subject_id"], kept["study_id"], kept["ecg_time"]):
        label_ids = sorted({label_index[text] for text in statements.get(study_id, [])})
        rows_by_split[hash_split(f"subject-{subject_id}", validation_fraction, test_fraction)].append(
            {
                "path": paths[study_id],
                "record_id": study_id,
                "labels": multi_hot(label_ids, len(label_names)),
                "label_ids": label_ids,
                "subject_id": subject_id,
                "ecg_time": ecg_time,
            }
        )
    features = record_features(12, label_names, {"subject_id": Value("string"), "ecg_time": Value("string")})
    splits = build_splits(rows_by_split, features, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming)
    return with_missing_records(splits, skipped)
