"""
CODE-15% (Ribeiro et al., Zenodo 4916206) and CODE-test (Ribeiro et al. 2020, Zenodo 3625006) as a
`datasets.DatasetDict`: 12-lead exams at 400 Hz stored in HDF5 as `tracings (exams, 4096, leads)`, each 7-10 s signal
zero-padded at both ends to 4,096 samples. The padding is stripped, the HDF5 files are read exam batch by exam batch
with `h5py` (never a whole file in memory).

Units: the authors' README says the values are "at the scale 1e-4V: so it should be multiplied by 1000 in order to
obtain the signals in V"; the two halves disagree, and multiplying volts by 1000 gives millivolts, which is also the
amplitude of the stored values (QRS of about 1). We read them as mV. Lead order: I, II, III, aVR, aVL, aVF, V1-V6 (the
repository README; its data/README lists aVL, aVF, aVR instead — `lead_names` overrides it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import DatasetDict, Value
from datasets.utils import logging

from ..constants import SPLITS
from .records import (
    cache_split,
    file_signature,
    hash_split,
    path_inside,
    read_listing,
    read_text_csv,
    record_features,
    stream_splits,
    with_missing_records,
)


CODE_SAMPLING_RATE = 400.0
CODE_LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# The six abnormalities, in the order of the authors' model output and CODE-test's annotation files.
CODE_LABELS = ("1dAVb", "RBBB", "LBBB", "SB", "AF", "ST")
EXAMS_COLUMNS = ("exam_id", "patient_id", "trace_file", "age", "is_male", *CODE_LABELS)
logger = logging.get_logger(__name__)
READ_BATCH = 64  # exams read from HDF5 at once: bounded memory (64 x 4096 x 12 float32 = 12.6 MB)


def strip_padding(tracing: np.ndarray, where: str) -> np.ndarray:
    """`(4096, leads)` -> the samples between the first and the last one where any lead is non-zero."""
    active = np.flatnonzero(np.any(tracing != 0, axis=1))
    if not len(active):
        raise ValueError(f"{where}: every sample is zero (no signal inside the padding).")
    return tracing[active[0] : active[-1] + 1]


def open_tracings(path: str, need_exam_ids: bool):
    """Opens `path`, checking the published layout; returns the file, `tracings` and `exam_id` (or None)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise ValueError(f"CODE HDF5 file {path!r}: cannot be opened as HDF5 ({error}).") from error
    members = sorted(handle)
    if "tracings" not in handle:
        handle.close()
        raise ValueError(f"CODE HDF5 file {path!r}: no `tracings` dataset (found {members}).")
    tracings = handle["tracings"]
    if tracings.ndim != 3 or tracings.shape[2] != len(CODE_LEAD_NAMES):
        handle.close()
        raise ValueError(
            f"CODE HDF5 file {path!r}: `tracings` has shape {tracings.shape}; expected (exams, samples, 12)."
        )
    exam_ids = None
    if need_exam_ids:
        if "exam_id" not in handle:
            handle.close()
            raise ValueError(f"CODE HDF5 file {path!r}: no `exam_id` dataset (found {members}).")
        exam_ids = handle["exam_id"][:]
        if exam_ids.shape != (tracings.shape[0],):
            handle.close()
            raise ValueError(
                f"CODE HDF5 file {path!r}: `exam_id` has shape {exam_ids.shape}; expected ({tracings.shape[0]},)."
            )
    return handle, tracings, exam_ids


def code_exams(
    record_ids, patient_ids, labels: np.ndarray, ages: np.ndarray, is_male: np.ndarray
) -> dict[str, np.ndarray]:
    """
    The exams' metadata as one array per field (what a chunk carries): `labels` `(exams, 6)` 0/1, `ages` NaN where
    unknown, `is_male` 1 / 0 / -1 where unknown. Arrays, not a dict per exam: `datasets` hashes every chunk to key its
    cache, and arrays hash in one piece; and a corpus's listing (CODE-15%: 345,779 exams) stays a few arrays for the
    whole run, where Python objects per exam left ~0.7 KB an exam of fragmented heap behind them.
    """
    return {
        "record_id": np.asarray(record_ids, dtype=str),
        "patient_id": np.asarray(patient_ids, dtype=str),
        "labels": np.asarray(labels, dtype=np.float32).reshape(len(labels), len(CODE_LABELS)),
        "age": np.asarray(ages, dtype=np.float64),
        "is_male": np.asarray(is_male, dtype=np.int8),
    }


def exam_row(columns: dict[str, np.ndarray], index: int) -> dict:
    """Row `index` of a chunk's exams (`code_exams`) back in the loader's columns."""
    labels = columns["labels"][index]
    age, is_male = columns["age"][index], columns["is_male"][index]
    return {
        "record_id": str(columns["record_id"][index]),
        "labels": labels.tolist(),
        "label_ids": np.flatnonzero(labels).tolist(),
        "patient_id": str(columns["patient_id"][index]),
        "age": None if np.isnan(age) else float(age),
        "is_male": None if is_male < 0 else bool(is_male),
    }


@dataclass(frozen=True)
class ExamChunk:
    """
    Exams of one HDF5 file read as one piece of work: their `positions` in `file` and their metadata (`code_exams`).
    `signature` (the file's size and modification time) keys the Arrow cache, so an edited file is read again.
    """

    file: str
    signature: str
    positions: np.ndarray
    exams: dict[str, np.ndarray]

    def __deepcopy__(self, memo) -> ExamChunk:
        # read-only: `datasets` deep-copies a stream's arguments at every concatenate and interleave, which for a
        # corpus of 345,779 exams meant a copy of its listing each time, and fragmented memory once the old was freed
        return self


def _generate_code_rows(chunks: list[ExamChunk], lead_names: list[str]):
    """Rows of one or more chunks of exams, each of one HDF5 file."""
    for chunk in chunks:
        positions = np.asarray(chunk.positions)
        order = np.argsort(positions)  # h5py reads a list of rows in increasing order
        for start in range(0, len(order), READ_BATCH):
            batch = order[start : start + READ_BATCH]
            # the file is closed again before any row is yielded: an iterator left unfinished holds no open HDF5
            # file, which Python would otherwise close at exit after h5py's module is torn down ("Exception ignored
            # ... TypeError: bad operand type for unary ~: 'NoneType'"); an open costs ~1 ms, a batch's read more
            handle, tracings, _ = open_tracings(chunk.file, need_exam_ids=False)
            with handle:
                signals = tracings[positions[batch].tolist()]
            for signal, index in zip(signals, batch):
                row = exam_row(chunk.exams, index)
                where = f"CODE HDF5 file {chunk.file!r}, exam {row['record_id']}"
                # NaN samples are kept: the feature extractor's `nan_policy` and dead-lead rule decide
                yield {
                    **row,
                    "signal": strip_padding(signal, where).astype(np.float32),
                    "sampling_rate": CODE_SAMPLING_RATE,
                    "lead_names": list(lead_names),
                }


def chunk_record_files(chunk: ExamChunk) -> dict[str, str]:
    """The exams of one chunk with their file (what is skipped when it cannot be read)."""
    return dict.fromkeys((str(record_id) for record_id in chunk.exams["record_id"]), str(chunk.file))


def build_code_splits(
    exams: dict[str, np.ndarray],
    rows_by_file: dict[str, np.ndarray],
    positions: np.ndarray,
    splits: np.ndarray,
    features,
    lead_names,
    cache_dir=None,
    num_proc: int | None = None,
    chunk_size: int = 1000,
    streaming: bool = False,
) -> DatasetDict:
    """
    The exams (`code_exams`), each at `positions[row]` of the HDF5 file whose `rows_by_file` entry lists it, in split
    `splits[row]` -> one Arrow-cached `Dataset` per split. Work is cut into chunks of `chunk_size` exams of one file
    (what `num_proc` processes share); each chunk carries its file's size and modification time, so an edited file is
    read again.
    """
    if num_proc and num_proc > 1:  # at least one chunk per process
        total = sum(len(rows) for rows in rows_by_file.values())
        chunk_size = min(chunk_size, max(READ_BATCH, -(-total // num_proc)))
    chunks_by_split: dict[str, list[ExamChunk]] = {split: [] for split in SPLITS}
    for path, rows in rows_by_file.items():
        signature = file_signature(path)
        for split in SPLITS:
            selected = rows[splits[rows] == split]
            for start in range(0, len(selected), chunk_size):
                part = selected[start : start + chunk_size]
                chunks_by_split[split].append(
                    ExamChunk(path, signature, positions[part], {name: column[part] for name, column in exams.items()})
                )
    if streaming:
        return stream_splits(
            chunks_by_split,
            features,
            _generate_code_rows,
            "chunks",
            {"lead_names": tuple(lead_names)},
            record_files=chunk_record_files,
        )
    gen_kwargs = {"lead_names": tuple(lead_names)}  # a tuple: not sharded
    return DatasetDict(
        {
            # READ_BATCH rows buffered before each Arrow write: bounded memory per process
            split: cache_split(
                _generate_code_rows, "chunks", chunks, gen_kwargs, features, split, cache_dir, num_proc, READ_BATCH
            )
            for split, chunks in chunks_by_split.items()
        }
    )


LABEL_VALUES = {"0": False, "false": False, "0.0": False, "1": True, "true": True, "1.0": True}


def per_distinct_cell(column: pd.Series, read) -> np.ndarray:
    """
    `read(cell.strip())` of every cell of a text column, computed once per distinct cell: a listing of 345,779 exams
    has a handful of distinct label or sex cells, and a new string per cell would leave its memory fragmented for the
    rest of the run.
    """
    codes, distinct = pd.factorize(column)
    return np.asarray([read(str(cell).strip()) for cell in distinct])[codes]


def text_cells(column: pd.Series) -> np.ndarray:
    """A text column as a fixed-width string array, each cell stripped (no Python string per cell)."""
    return np.char.strip(column.to_numpy(dtype=str))


def label_matrix(table: pd.DataFrame, source: str) -> np.ndarray:
    """`(rows, 6)` booleans from the label columns (0/1 or True/False); an error names the first other value's row."""
    values = np.stack([per_distinct_cell(table[name], str.lower) for name in CODE_LABELS], axis=1)
    unknown = ~np.isin(values, list(LABEL_VALUES))
    if unknown.any():
        position, index = (int(i) for i in np.argwhere(unknown)[0])
        raise ValueError(
            f"{source}, row {position + 2}: label {CODE_LABELS[index]} is {str(values[position, index])!r}; expected "
            "0/1 or True/False."
        )
    return np.isin(values, [value for value, positive in LABEL_VALUES.items() if positive])


def optional_numbers(column: pd.Series) -> np.ndarray:
    """A CSV column as float64, empty or unreadable cells as NaN."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def positions_in_file(file_exam_ids: np.ndarray, listed: np.ndarray, path: str, exams_csv: Path, rows: np.ndarray):
    """
    Where each `listed` exam id (the listing's rows `rows`) is in an HDF5 file whose `exam_id` dataset is
    `file_exam_ids`; an exam the file lacks is an error naming it and its row.
    """
    file_ids = np.asarray(file_exam_ids).astype(np.int64).astype(str)
    order = np.argsort(file_ids)
    found = np.searchsorted(file_ids, listed, sorter=order).clip(max=max(len(order) - 1, 0))
    positions = order[found] if len(order) else np.zeros(len(listed), dtype=np.int64)
    absent = np.flatnonzero(file_ids[positions] != listed) if len(order) else np.arange(len(listed))
    if len(absent):
        first = absent[0]
        raise ValueError(f"CODE-15%: exam {listed[first]} ({exams_csv}, row {rows[first] + 2}) is not in {path}.")
    return positions.astype(np.int64)


def load_code15(
    root: str | os.PathLike,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    lead_names=CODE_LEAD_NAMES,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
    missing: str = "raise",
) -> DatasetDict:
    """
    CODE-15%: `root/exams.csv` (one row per exam: `exam_id`, `patient_id`, `trace_file`, `age`, `is_male`, the six
    labels 1dAVb, RBBB, LBBB, SB, ST, AF as True/False, ...) and the `exams_part*.hdf5` files it names in
    `trace_file`. Exams listed in `exams.csv` only are read; a listed exam absent from its file is an error naming it.
    A part file not on disk (a partial download) raises, or with `missing="skip"` its exams are left out (logged,
    and listed in the result's `missing_records`).

    The split is by patient (a hash of `patient_id`, `validation_fraction`/`test_fraction`), so no patient's exams are
    in two splits. Columns: the common ones (`record_id` is the exam id) plus `patient_id`, `age`, `is_male`.
    """
    root = Path(root)
    exams_csv = root / "exams.csv"
    if missing not in ("raise", "skip"):
        raise ValueError(f"`missing` must be 'raise' or 'skip', got {missing!r}.")

    table = read_listing(exams_csv, "CODE-15%", EXAMS_COLUMNS, key="exam_id", items="exams")
    exams = code_exams(
        text_cells(table["exam_id"]),
        text_cells(table["patient_id"]),
        label_matrix(table, str(exams_csv)),
        optional_numbers(table["age"]),
        per_distinct_cell(table["is_male"], lambda cell: cell.lower() in ("true", "1")),
    )
    rows_of_file = table.groupby("trace_file", sort=True).indices
    del table  # what follows holds arrays only

    positions = np.zeros(len(exams["record_id"]), dtype=np.int64)
    rows_by_file: dict[str, np.ndarray] = {}
    absent: dict[str, str] = {}
    for trace_file, rows in rows_of_file.items():
        path = path_inside(root, trace_file, f"{exams_csv}, trace_file")
        try:
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"CODE-15%: {exams_csv} lists {len(rows)} exam(s) in {path}, which is not on disk. Download it, "
                    "or leave its exams out with --skip-missing (Python: missing='skip')."
                )
            handle, _, file_exam_ids = open_tracings(path, need_exam_ids=True)
        except (FileNotFoundError, ValueError) as error:
            if missing != "skip" and isinstance(error, FileNotFoundError):
                raise
            if missing != "skip":  # most often a download cut short
                raise ValueError(
                    f"CODE-15%: {exams_csv} lists {len(rows)} exam(s) in {path}, which cannot be read: {error} Download "
                    "it again, or leave its exams out with --skip-missing (Python: missing='skip')."
                ) from error
            # a partial download: an absent part file, or one cut short (h5py cannot open a truncated file)
            reason = f"{path}: " + ("not on disk" if isinstance(error, FileNotFoundError) else f"unreadable: {error}")
            absent.update(dict.fromkeys(exams["record_id"][rows].tolist(), reason))
            logger.warning(f"CODE-15%: skipping the {len(rows)} exam(s) of {reason}")
            continue
        handle.close()
        positions[rows] = positions_in_file(file_exam_ids, exams["record_id"][rows], path, exams_csv, rows)
        rows_by_file[path] = rows
    # the split is drawn once per patient: a corpus lists several exams of most patients
    patients, patient_of_row = np.unique(exams["patient_id"], return_inverse=True)
    patient_splits = [hash_split(f"patient-{patient}", validation_fraction, test_fraction) for patient in patients]
    features = record_features(
        len(lead_names),
        CODE_LABELS,
        {"patient_id": Value("string"), "age": Value("float32"), "is_male": Value("bool")},
    )
    splits = build_code_splits(
        exams,
        rows_by_file,
        positions,
        np.asarray(patient_splits, dtype=str)[patient_of_row],
        features,
        lead_names,
        cache_dir=cache_dir,
        num_proc=num_proc,
        streaming=streaming,
    )
    return with_missing_records(splits, absent)


def load_code_test(
    root: str | os.PathLike,
    annotations: str = "annotations/gold_standard.csv",
    split: str | None = "test",
    lead_names=CODE_LEAD_NAMES,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> DatasetDict:
    """
    CODE-test (827 exams of 827 patients): `root/ecg_tracings.hdf5` with one `tracings` dataset (no exam ids: the
    i-th tracing is the i-th row of every CSV), `root/attributes.csv` (`age`, `sex` M/F) and the cardiologists' gold
    labels `root/annotations/gold_standard.csv` (columns 1dAVb, RBBB, LBBB, SB, AF, ST, 0/1).

    Every exam is in `split` (`"test"`, its published role; `None` splits by a hash of the exam, which is a split by
    patient since every exam is a different patient). `record_id` is `code-test-NNNN` (the row, from 0).
    """
    root = Path(root)
    hdf5_path = root / "ecg_tracings.hdf5"
    if not hdf5_path.is_file():
        raise FileNotFoundError(f"CODE-test: no ecg_tracings.hdf5 in {root}.")
    labels_path = Path(path_inside(root, annotations, "CODE-test annotations"))
    if not labels_path.is_file():
        raise FileNotFoundError(f"CODE-test: no annotation file {labels_path}.")
    labels = read_text_csv(labels_path)
    absent = [name for name in CODE_LABELS if name not in labels.columns]
    if absent:
        raise ValueError(f"{labels_path}: no column(s) {absent} (columns: {list(labels.columns)}).")
    attributes_path = root / "attributes.csv"
    attributes = read_text_csv(attributes_path) if attributes_path.is_file() else None
    handle, tracings, _ = open_tracings(str(hdf5_path), need_exam_ids=False)
    num_exams = tracings.shape[0]
    handle.close()
    for table, path in ((labels, labels_path), (attributes, attributes_path)):
        if table is not None and len(table) != num_exams:
            raise ValueError(f"{path}: {len(table)} rows for the {num_exams} tracings of {hdf5_path}; one row each.")
    if split is not None and split not in SPLITS:
        raise ValueError(f"CODE-test `split` must be one of {SPLITS} or None, got {split!r}.")

    record_ids = np.char.mod("code-test-%04d", np.arange(num_exams))  # every exam is another patient
    sex_codes = {"": -1, "M": 1}  # anything else (F) is 0
    exams = code_exams(
        record_ids,
        record_ids,
        label_matrix(labels, str(labels_path)),
        optional_numbers(attributes["age"]) if attributes is not None else np.full(num_exams, np.nan),
        per_distinct_cell(attributes["sex"], lambda cell: sex_codes.get(cell.upper(), 0))
        if attributes is not None
        else np.full(num_exams, -1),
    )
    features = record_features(
        len(lead_names),
        CODE_LABELS,
        {"patient_id": Value("string"), "age": Value("float32"), "is_male": Value("bool")},
    )
    splits = [split] * num_exams if split is not None else [hash_split(record_id) for record_id in record_ids]
    return build_code_splits(
        exams,
        {str(hdf5_path): np.arange(num_exams)},
        np.arange(num_exams),
        np.asarray(splits, dtype=str),
        features,
        lead_names,
        cache_dir=cache_dir,
        num_proc=num_proc,
        streaming=streaming,
    )
