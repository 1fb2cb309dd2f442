"""
The China Physiological Signal Challenge 2018 (CPSC 2018, the "ICBEB 2018" data set of the PTB-XL benchmark): 6,877
12-lead records at 500 Hz, 6-60 s, nine classes, as a `datasets.DatasetDict`.

Layout read here: the records as WFDB (`A0001.hea` + `A0001.mat`, as the PhysioNet/CinC Challenges 2020 and 2021
redistribute them, in any sub-folders) and the challenge's label file `REFERENCE.csv` (`Recording,First_label,
Second_label,Third_label`, codes 1-9, up to three per record), anywhere below the root. The original download
(TrainingSet1-3 of MATLAB structs `ECG` without headers) is not WFDB: its `.mat` files are refused with that said.

Splits: the benchmark (Strodthoff et al. 2021) publishes no fold file for this data set (its ICBEB conversion
script draws folds on the user's machine, over records numbered in directory-listing order), so the folds here are seeded
multi-label stratified folds (`ecg_pma.data.folds`) over the records in `REFERENCE.csv` order: 1-8 train, 9
validation, 10 test, as the benchmark splits its folds. CPSC 2018 has no patient field; each record is its own
patient (as the benchmark assumes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datasets import DatasetDict, Value
from datasets.utils import logging

from .folds import stratified_folds
from .records import (
    build_splits,
    check_missing,
    find_records,
    multi_hot,
    read_text_csv,
    record_features,
    with_missing_records,
)


# REFERENCE.csv codes 1-9, in order (the challenge's class names).
CPSC2018_CLASSES = ("Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE")
# The PTB-XL benchmark's SCP codes for them (its `code/utils/convert_ICBEB` script, `label_dict`).
PTBXL_BENCHMARK_CODES = dict(
    zip(CPSC2018_CLASSES, ("NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD_", "STE_"))
)
REFERENCE_COLUMNS = ("Recording", "First_label", "Second_label", "Third_label")
FOLD_TO_SPLIT = {**dict.fromkeys(range(1, 9), "train"), 9: "validation", 10: "test"}
FOLD_SEED = 0
logger = logging.get_logger(__name__)


def find_reference(root: Path) -> Path:
    """The one `REFERENCE.csv` below `root`."""
    found = sorted(root.rglob("REFERENCE.csv"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"CPSC 2018: expected one REFERENCE.csv (Recording,First_label,Second_label,Third_label) below {root}; "
            f"found {[str(path) for path in found] or 'none'}."
        )
    return found[0]


def read_reference(path: Path) -> dict[str, list[int]]:
    """`REFERENCE.csv` -> `{record: [class index 0-8, ...]}` in file order; errors name the row and the value."""
    table = read_text_csv(path)
    absent = [column for column in REFERENCE_COLUMNS[:2] if column not in table.columns]
    if absent:
        raise ValueError(f"{path}: no column(s) {absent} (columns: {list(table.columns)}).")
    repeated = table["Recording"][table["Recording"].duplicated()]
    if len(repeated):
        raise ValueError(f"{path}: recordings listed twice: {sorted(set(repeated))[:10]}.")
    references = {}
    for position, row in table.iterrows():
        codes = []
        for column in REFERENCE_COLUMNS[1:]:
            value = str(row.get(column, "")).strip()
            if not value:
                continue
            try:
                code = int(float(value))
            except ValueError:
                code = 0
            if not 1 <= code <= len(CPSC2018_CLASSES) or float(value) != code:
                raise ValueError(
                    f"{path}, row {position + 2} ({row['Recording']}): {column} is {value!r}; expected 1-9."
                )
            codes.append(code - 1)
        if not codes:
            raise ValueError(f"{path}, row {position + 2} ({row['Recording']}): no label (First_label is empty).")
        references[row["Recording"].strip()] = sorted(set(codes))
    return references


def record_paths(root: Path) -> dict[str, str]:
    """`{record name: path without extension}` of the WFDB records below `root`; a name found twice is an error."""
    paths: dict[str, str] = {}
    for path in find_records(root):
        name = Path(path).name
        if name in paths:
            raise ValueError(f"CPSC 2018: record {name} found twice: {paths[name]} and {path}.")
        paths[name] = path
    return paths


def load_cpsc2018(
    root: str | os.PathLike,
    fold_seed: int = FOLD_SEED,
    missing: str = "raise",
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> DatasetDict:
    """
    The records `REFERENCE.csv` lists, labelled by it (`labels` over `CPSC2018_CLASSES`), split by seeded stratified
    folds (`fold_seed`; column `strat_fold`). A listed record without a header raises, or with `missing="skip"` is
    left out (listed in `missing_records`); WFDB records on disk that the file does not list (the challenges' extra
    `Q` records) are left out, their count logged.
    """
    root = Path(root)
    reference_path = find_reference(root)
    references = read_reference(reference_path)
    on_disk = record_paths(root)
    if not on_disk and any(root.rglob("*.mat")):
        raise ValueError(
            f"CPSC 2018: {root} has .mat files but no WFDB header (.hea): the original TrainingSet download stores "
            "MATLAB structs, which are not read here. Use the WFDB copy of the same records (PhysioNet/CinC "
            "Challenge 2020 or 2021, `cpsc_2018`)."
        )
    paths = {name: on_disk.get(name, str(root / name)) for name in references}
    absent = check_missing(paths, missing, f"CPSC 2018 ({reference_path})")
    unlisted = sorted(set(on_disk) - set(references))
    if unlisted:
        logger.warning(f"CPSC 2018: {len(unlisted)} record(s) below {root} not in {reference_path} left out.")
    names = [name for name in references if name not in absent]
    label_rows = np.zeros((len(names), len(CPSC2018_CLASSES)), dtype=np.int64)
    for row, name in enumerate(names):
        label_rows[row, references[name]] = 1
    folds = stratified_folds(label_rows, 10, fold_seed)
    rows_by_split: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for name, fold in zip(names, folds):
        rows_by_split[FOLD_TO_SPLIT[int(fold)]].append(
            {
                "path": paths[name],
                "record_id": name,
                "labels": multi_hot(references[name], len(CPSC2018_CLASSES)),
                "label_ids": references[name],
                "strat_fold": int(fold),
            }
        )
    features = record_features(12, CPSC2018_CLASSES, {"strat_fold": Value("int32")})
    splits = build_splits(rows_by_split, features, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming)
    return with_missing_records(splits, absent)
