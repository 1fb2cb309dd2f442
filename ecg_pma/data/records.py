"""Reading WFDB records into `datasets` rows, and the Arrow-cached split builder every loader shares."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict, Value
from datasets import Sequence as SequenceFeature
from datasets.exceptions import DatasetGenerationError

from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor


def record_features(num_leads: int, label_names: Sequence[str], extra: dict | None = None) -> Features:
    """
    The columns every loader returns: `record_id`, `signal` `(samples, leads)` in mV (WFDB's layout; lengths may
    differ between records), `sampling_rate`, `lead_names`, multi-hot `labels` and `label_ids` (whose `ClassLabel`
    carries the label names), plus loader-specific metadata.
    """
    return Features(
        {
            "record_id": Value("string"),
            "signal": Array2D(shape=(None, num_leads), dtype="float32"),
            "sampling_rate": Value("float64"),
            "lead_names": SequenceFeature(Value("string")),
            # Arrow has no fixed-size list of length 0: unlabelled datasets get variable-length (empty) lists.
            "labels": SequenceFeature(Value("float32"), length=len(label_names) or -1),
            "label_ids": SequenceFeature(ClassLabel(names=list(label_names))),
            **(extra or {}),
        }
    )


def id2label(dataset: Dataset | DatasetDict) -> dict[int, str]:
    """The label names of a dataset built by this module, as a model config's `id2label`."""
    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    return dict(enumerate(dataset.features["label_ids"].feature.names))


def multi_hot(label_ids: Iterable[int], num_labels: int) -> list[float]:
    vector = np.zeros(num_labels, dtype=np.float32)
    vector[list(label_ids)] = 1.0
    return vector.tolist()


def file_signature(path: str | os.PathLike) -> str:
    """Size and modification time: part of the cache key, so an edited file is read again."""
    stat = os.stat(path)
    return f"{stat.st_size}-{stat.st_mtime_ns}"


# The files of a WFDB record besides its header: the signal file of the usual single-segment record (`.dat`), or the
# MATLAB one of the PhysioNet challenges (`.mat`).
SIGNAL_SUFFIXES = (".dat", ".mat")


def record_signature(record_path: str) -> str:
    """`file_signature` of a WFDB record's header and signal file: a record edited or replaced is read again."""
    files = [record_path + ".hea"] + [record_path + suffix for suffix in SIGNAL_SUFFIXES]
    return " ".join(file_signature(path) for path in files if os.path.exists(path))


def hash_split(record_id: str, validation_fraction: float = 0.1, test_fraction: float = 0.1) -> str:
    """A deterministic split from the record name alone: a record keeps its split when the corpus grows."""
    position = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def read_signal(record_path: str, num_leads: int) -> dict:
    """One WFDB record -> `signal (samples, leads)` in mV, its rate and lead names. Errors name the record."""
    record = EcgPmaFeatureExtractor.read_record(record_path)
    if record.p_signal is None or record.p_signal.ndim != 2:
        raise ValueError(f"WFDB record {record_path!r}: no physical signal in the file.")
    if record.p_signal.shape[1] != num_leads:
        raise ValueError(
            f"WFDB record {record_path!r} has {record.p_signal.shape[1]} leads ({record.sig_name}); "
            f"this dataset holds {num_leads}-lead records."
        )
    if not record.fs:
        raise ValueError(f"WFDB record {record_path!r}: the header gives no sampling frequency.")
    signal = EcgPmaFeatureExtractor.to_millivolts(record.p_signal.T, record.units, f"WFDB record {record_path!r}")
    return {
        "signal": signal.T.astype(np.float32),
        "sampling_rate": float(record.fs),
        "lead_names": list(record.sig_name),
    }


def _generate_rows(rows: list[dict], num_leads: int):
    for row in rows:
        row = dict(row)
        path = row.pop("path")
        row.pop("signature", None)
        yield {**row, **read_signal(path, num_leads)}


def build_splits(
    rows_by_split: dict[str, list[dict]],
    features: Features,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> DatasetDict | IterableDatasetDict:
    """
    Builds one Arrow-cached `Dataset` per split from rows holding a WFDB `path` (and a `signature` of its files, so
    that an edited record invalidates the cache); a second call with the same rows reuses the cache. With
    `streaming`, an `IterableDataset` per split reading the files as it goes (a corpus larger than the disk cache).
    """
    num_leads = features["signal"].shape[1]
    for rows in rows_by_split.values():
        for row in rows:
            # in the rows a cache is keyed by: this one's, or the model-rate shards written from a stream
            row["signature"] = record_signature(row["path"])
    if streaming:
        return stream_splits(rows_by_split, features, _generate_rows, "rows", {"num_leads": num_leads})
    return DatasetDict(
        {
            split: cache_split(
                _generate_rows, "rows", rows, {"num_leads": num_leads}, features, split, cache_dir, num_proc
            )
            for split, rows in rows_by_split.items()
        }
    )


def cache_split(
    generator,
    key: str,
    items: list,
    gen_kwargs: dict,
    features: Features,
    split: str,
    cache_dir=None,
    num_proc: int | None = None,
    writer_batch_size: int | None = None,
) -> Dataset:
    """
    One Arrow-cached split: `generator(**{key: items}, **gen_kwargs)` written by `datasets` (`num_proc` processes
    share `items`), read from the cache by a second call with the same arguments; no items, an empty `Dataset`
    (`datasets` writes no table for them). An error of the generator (a record's, naming it) is raised as it is, not
    as `datasets`' generic `DatasetGenerationError` around it.
    """
    if not items:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    try:
        return Dataset.from_generator(
            generator,
            features=features,
            gen_kwargs={key: items, **gen_kwargs},
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            num_proc=num_proc if num_proc and num_proc > 1 and len(items) >= num_proc else None,
            split=datasets.NamedSplit(split),  # names the progress bar ("Generating validation split")
            **({"writer_batch_size": writer_batch_size} if writer_batch_size else {}),
        )
    except DatasetGenerationError as error:
        cause = error.__cause__
        while isinstance(cause, DatasetGenerationError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from error


def row_record_files(item: dict) -> dict[str, str]:
    """The records one item of a WFDB loader's split stands for (its own), with their file."""
    return {str(item["record_id"]): str(item["path"])}


@dataclass
class RecordReader:
    """
    How one split's raw records are read, with nothing in between: `generator(**{key: items}, **kwargs)` yields the
    loader's rows (numpy signals), any sub-list of `items` (files, chunks of exams) its share of them. A loader's
    `streaming=True` split carries it as `record_reader`: [`prepare_streamed_records`] reads the rows through it,
    without the `IterableDataset`'s per-row encoding and formatting (a fifth of the time per record).
    `record_files(item)` names the records an item stands for and their file (`{record_id: path}`): what is skipped
    when it cannot be read, and where an error about one of them points.
    """

    generator: Callable[..., Iterator[dict]]
    key: str
    items: list
    kwargs: dict
    record_files: Callable[[object], dict[str, str]] = row_record_files

    def read(self, items: list | None = None) -> Iterator[dict]:
        return self.generator(**{self.key: self.items if items is None else items}, **self.kwargs)


def stream_splits(
    sources_by_split: dict[str, list],
    features: Features,
    generator,
    key: str,
    gen_kwargs: dict,
    record_files: Callable[[object], dict[str, str]] = row_record_files,
) -> IterableDatasetDict:
    """One `IterableDataset` per split over `generator(**{key: sources}, **gen_kwargs)`: nothing written to disk; the
    `sources` list is what data-loader workers and `split_dataset_by_node` share out (one shard per item). Each
    carries its [`RecordReader`] as `record_reader` (lost, as it should be, by any transform of the stream)."""
    splits = {}
    for split, sources in sources_by_split.items():
        stream = IterableDataset.from_generator(
            generator, features=features, gen_kwargs={key: list(sources), **gen_kwargs}
        )
        stream.record_reader = RecordReader(generator, key, list(sources), dict(gen_kwargs), record_files)
        splits[split] = stream
    return IterableDatasetDict(splits)


def path_inside(root: str | os.PathLike, relative: str, what: str) -> str:
    """
    `root / relative`, refusing an absolute `relative` or one that leads out of `root` (`../`): a listing read from a
    file or a server names files below its root and nothing else. `what` names the listing's entry in the error.
    """
    relative = str(relative)
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or ":" in relative.split("/")[0]:
        raise ValueError(f"{what}: {relative!r} is an absolute path; entries must be relative to {root}.")
    base = os.path.abspath(root)
    path = os.path.normpath(os.path.join(base, relative))
    if os.path.commonpath([base, path]) != base:
        raise ValueError(f"{what}: {relative!r} leads outside {root}; entries must stay below it.")
    return os.path.join(str(root), relative)


def find_records(root: str | os.PathLike) -> list[str]:
    """Every WFDB record (a `.hea` header) below `root`, as sorted paths without extension."""
    return sorted(str(path.with_suffix("")) for path in Path(root).rglob("*.hea"))


def with_missing_records(splits, missing_records) -> DatasetDict | IterableDatasetDict:
    """
    `splits` carrying, as `missing_records` (`{record_id: reason}`), the records its listing names but the disk lacks
    (or, for a file of many records, that cannot be opened), left out with `missing="skip"`, so that a run can count
    and list them. `missing_records`: ids (reason: not on disk) or such a dict.
    """
    if not isinstance(missing_records, dict):
        missing_records = dict.fromkeys(missing_records, "not on disk")
    splits.missing_records = {str(record_id): reason for record_id, reason in sorted(missing_records.items())}
    return splits


def read_wfdb_header(record_path: str):
    """`wfdb.rdheader(record_path)`; an unreadable header is a `ValueError` naming the record."""
    import wfdb

    try:
        return wfdb.rdheader(record_path)
    except Exception as error:  # wfdb raises bare ValueErrors and IndexErrors on a malformed header
        raise ValueError(
            f"WFDB record {record_path!r}: unreadable header ({type(error).__name__}: {error})."
        ) from error


def header_signal_files_absent(header, record_path: str) -> list[str]:
    """The signal files `header` (of `record_path`) names that are not on disk (a multi-segment header names none)."""
    folder = os.path.dirname(record_path)
    names = dict.fromkeys(getattr(header, "file_name", None) or [])
    return [name for name in names if not os.path.exists(os.path.join(folder, name))]


def absent_signal_files(record_path: str) -> list[str]:
    """
    The signal files a WFDB record's header names that are not on disk (a download cut short). A signal file named
    as the record (`.dat`, `.mat`: every corpus the package reads) is found by one look at the disk, without reading
    the header; only other records have theirs read.
    """
    if any(os.path.exists(record_path + suffix) for suffix in SIGNAL_SUFFIXES):
        return []
    return header_signal_files_absent(read_wfdb_header(record_path), record_path)


def check_missing(paths: dict[str, str], missing: str, what: str) -> dict[str, str]:
    """
    Records whose header or signal files are absent (`{record_id: reason}`). `missing="raise"` (default) raises
    listing them; `missing="skip"` returns them so the caller leaves them out (and logs how many).
    """
    if missing not in ("raise", "skip"):
        raise ValueError(f"`missing` must be 'raise' or 'skip', got {missing!r}.")
    absent = {}
    for record_id, path in paths.items():
        if not os.path.exists(path + ".hea"):
            absent[record_id] = f"{path}.hea not on disk"
        elif signal_files := absent_signal_files(path):
            absent[record_id] = f"signal file {', '.join(signal_files)} of {path} not on disk"
    return report_missing(absent, missing, what)


def report_missing(absent: dict[str, str], missing: str, what: str, which: str = "listed but") -> dict[str, str]:
    """
    Records not on disk (`{record_id: reason}`): with `missing="raise"` an error naming the first five and the option
    that leaves them out; with `"skip"` one line in the log. Returns `absent`. `which`: the records' description in
    the messages ("listed but" not on disk).
    """
    if absent and missing == "raise":
        shown = ", ".join(f"{record_id} ({reason})" for record_id, reason in list(absent.items())[:5])
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise FileNotFoundError(
            f"{what}: {len(absent)} record(s) {which} not on disk: {shown}{more}. Download them, or leave them "
            "out with --skip-missing (Python: missing='skip')."
        )
    if absent:
        datasets.logging.get_logger(__name__).warning(
            f"{what}: skipping {len(absent)} record(s) {which} not on disk: {list(absent)[:10]}"
        )
    return absent


def read_text_csv(path: str | os.PathLike):
    """
    A CSV as a table of text cells (empty cells kept as ""). The cells are Python strings (`dtype=object`): with
    pyarrow installed, pandas 3 reads `dtype=str` into Arrow strings, whose memory pool keeps what it allocated after
    the table is gone: ~0.5 KB an exam of CODE-15%'s listing for the rest of a streamed run.
    """
    import pandas as pd

    return pd.read_csv(path, dtype=object, keep_default_na=False)


def read_listing(path: Path, corpus: str, columns, key: str, items: str):
    """
    A corpus's index CSV (all strings, empty cells kept) after checking that it exists, has `columns` and lists each
    `key` once; errors name the file, the missing columns or the repeated `items`.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{corpus}: no {path.name} in {path.parent}.")
    table = read_text_csv(path)
    absent = [column for column in columns if column not in table.columns]
    if absent:
        raise ValueError(f"{path}: no column(s) {absent} (columns: {list(table.columns)}).")
    repeated = table[key][table[key].duplicated()]
    if len(repeated):
        raise ValueError(f"{path}: {items} listed twice: {sorted(set(repeated))[:10]}.")
    return table
