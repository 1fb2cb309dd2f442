"""
Training on one random crop per record per epoch, as the PMA authors and ST-MEM train (rather than on every fixed
sliding window, which lets a 30-minute record outweigh hundreds of 10 s ones).

The records are kept in a `datasets.Dataset` at the model rate (resampled, and filtered unless the extractor filters
each crop), one row per record (per `segment_seconds` segment); [`EcgTrainingDataset`] crops, standardises and
optionally augments each row when it is read. Every draw is a function of `(seed, epoch, row)` only, so a run is
reproducible whatever the order, the number of data-loader workers or processes; the Trainer and the pre-training
loop call `set_epoch` before each epoch. Records shorter than the model window are dropped (default; their names
are returned so a run can write them into its results) or zero-padded, never a crash.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import zlib

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Array2D, Dataset, DatasetDict, Features, IterableDataset, Sequence, Value

from ..constants import BAD_RECORD_POLICIES
from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor, EcgRecord
from .preprocessing import extract_features
from .records import RecordReader, cache_split


logger = logging.getLogger(__name__)

TRAIN_WINDOWS = ("random", "sliding")
SHORT_RECORD_POLICIES = ("drop", "pad", "raise")


def required_seconds(feature_extractor: EcgPmaFeatureExtractor) -> float:
    """The shortest record `feature_extractor` accepts, in seconds (a window, `min_duration` or one segment)."""
    window = feature_extractor.signal_length / feature_extractor.sampling_rate
    shortest = feature_extractor.min_duration if feature_extractor.min_duration is not None else window
    return max(shortest, feature_extractor.segment_seconds or 0.0)


def signal_lengths(dataset: Dataset, batch_size: int = 1000):
    """Each row's `signal` length in samples, from the Arrow list lengths (the samples are not decoded); yields
    `(lengths, arrow batch)` per batch."""
    for batch in dataset.with_format("arrow").iter(batch_size=batch_size):
        column = batch["signal"]
        chunks = column.chunks if hasattr(column, "chunks") else [column]
        lengths = np.concatenate(
            [pc.list_value_length(getattr(chunk, "storage", chunk)).to_numpy(zero_copy_only=False) for chunk in chunks]
        )
        yield lengths, batch


def record_durations(dataset: Dataset) -> np.ndarray:
    """Each record's duration in seconds, from the Arrow list lengths of `signal` (the samples are not decoded)."""
    durations = [lengths / batch["sampling_rate"].to_numpy() for lengths, batch in signal_lengths(dataset)]
    return np.concatenate(durations) if durations else np.zeros(0)


def short_records_message(split: str, names: list[str], needed: float, seconds=None) -> str:
    """What every short-record warning and error of a split says first: how many, and which (ten, with their length
    when known)."""
    lengths = seconds if seconds is not None else [None] * len(names)
    shown = ", ".join(
        name if length is None else f"{name} ({length:g} s)" for name, length in zip(names[:10], lengths)
    )
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f"{split}: {len(names)} record(s) shorter than the {needed:g} s the model needs: {shown}{more}"


def short_record_message(record_id: str, seconds: float, needed: float) -> str:
    """The same, for one record met while streaming."""
    return f"Record {record_id!r}: {seconds:g} s, shorter than the {needed:g} s the model needs"


def handle_short_records(
    dataset: Dataset, feature_extractor: EcgPmaFeatureExtractor, short_records: str = "drop", split: str = "dataset"
) -> tuple[Dataset, EcgPmaFeatureExtractor, list[str]]:
    """
    Records shorter than `feature_extractor` needs: `"drop"` leaves them out, `"pad"` keeps them (an extractor copy
    that zero-pads each window at the end is returned), `"raise"` raises naming them. Returns the dataset, the
    extractor to use on it and the record ids dropped (or padded), which are logged.
    """
    if short_records not in SHORT_RECORD_POLICIES:
        raise ValueError(f"Unknown `short_records` {short_records!r}; expected one of {SHORT_RECORD_POLICIES}.")
    needed = required_seconds(feature_extractor)
    durations = record_durations(dataset)
    short = np.flatnonzero(durations < needed)
    names = dataset.select_columns(["record_id"])[short.tolist()]["record_id"] if len(short) else []
    if not names:
        return dataset, feature_extractor, []
    message = short_records_message(split, names, needed, durations[short])
    if short_records == "raise":
        raise ValueError(f"{message}. Set short_records='drop' or 'pad'.")
    if short_records == "pad":
        if feature_extractor.segment_seconds is not None:
            raise ValueError(f"{message}; padding cannot make a `segment_seconds` segment: use short_records='drop'.")
        padded = copy.deepcopy(feature_extractor)
        padded.min_duration = 0.0
        logger.warning(f"{message}; zero-padded at the end (short_records='pad').")
        return dataset, padded, names
    logger.warning(f"{message}; dropped (short_records='drop').")
    keep = np.setdiff1d(np.arange(len(dataset)), short)
    return dataset.select(keep), feature_extractor, names


STORAGE_DTYPES = ("float32", "float16")


def model_rate_features(feature_extractor: EcgPmaFeatureExtractor, labels, storage_dtype: str) -> Features:
    """The columns of [`prepare_records`]' output; `labels` is the source's `labels` feature."""
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"Unknown `storage_dtype` {storage_dtype!r}; expected one of {STORAGE_DTYPES}.")
    num_leads = len(feature_extractor.lead_names)
    return Features(
        {
            "record_id": Value("string"),
            "signal": Array2D(shape=(None, num_leads), dtype=storage_dtype),
            "present_leads": Sequence(Value("bool"), length=num_leads),
            "labels": labels,
        }
    )


def raw_record(record_id, signal, sampling_rate, lead_names) -> EcgRecord:
    """A loader's raw row (`signal (samples, leads)` in mV) as the feature extractor's record."""
    return EcgRecord(
        name=str(record_id),
        signal=np.asarray(signal).T,
        fs=float(sampling_rate),
        leads=[str(lead) for lead in lead_names],
        units="mV",
    )


def in_file(error: ValueError, path: str) -> ValueError:
    """`error` naming the file its record was read from (what a record id alone does not say)."""
    return ValueError(f"{error} (file {path})")


def model_rate_rows(
    feature_extractor: EcgPmaFeatureExtractor, storage_dtype: str, record_id, signal, sampling_rate, lead_names, labels
):
    """One raw record (`signal (samples, leads)` in mV) -> its rows at the model rate, one per segment."""
    record = raw_record(record_id, signal, sampling_rate, lead_names)
    segments, present = feature_extractor.preprocess_segments(record)
    for segment in segments:
        yield {
            "record_id": record.name,
            "signal": segment.T.astype(storage_dtype),
            "present_leads": present.tolist(),
            "labels": labels,
        }


def prepare_records(
    dataset: Dataset,
    feature_extractor: EcgPmaFeatureExtractor,
    num_proc: int | None = None,
    batch_size: int = 32,
    storage_dtype: str = "float32",
    short_records: str = "raise",
) -> Dataset:
    """
    Raw records (as the loaders return them) -> one row per record (per segment) at the model rate: `record_id`,
    `signal (samples, leads)` (resampled; filtered unless the extractor filters each crop; not standardised) stored
    as `storage_dtype` (`"float16"` halves the cache; crops are computed in float64 either way), `present_leads`,
    `labels`. Written once into Arrow shards by `datasets` (`num_proc` processes); a second run reads the cache, and
    training reads it memory-mapped. A loader's `streaming=True` split goes to [`prepare_streamed_records`] instead,
    which writes the model-rate rows straight from the source files.

    Records shorter than `feature_extractor` needs (CODE-15%'s 7 s exams under a 10 s window) are found before any
    is resampled: `short_records="raise"` stops naming them and the options, `"drop"` leaves them out (named in the
    log, as [`handle_short_records`] does). Padding them needs the extractor that crops them to pad too: run
    `handle_short_records(dataset, extractor, "pad")` first and prepare and crop with the extractor it returns.
    """
    if short_records not in ("raise", "drop"):
        raise ValueError(
            f"prepare_records: `short_records` {short_records!r}; expected 'raise' or 'drop' (to pad, run "
            "handle_short_records(dataset, extractor, 'pad') first and use the extractor it returns)."
        )
    if short_records == "drop":
        dataset, feature_extractor, _ = handle_short_records(dataset, feature_extractor, "drop")
    else:
        needed = required_seconds(feature_extractor)
        durations = record_durations(dataset)
        short = np.flatnonzero(durations < needed)
        if len(short):
            names = dataset.select_columns(["record_id"])[short.tolist()]["record_id"]
            message = short_records_message("dataset", names, needed, durations[short])
            raise ValueError(
                f"prepare_records: {message}. Pass short_records='drop' to leave them out, or pad them with "
                "handle_short_records(dataset, extractor, 'pad') first and use the extractor it returns."
            )
    features = model_rate_features(feature_extractor, dataset.features["labels"], storage_dtype)

    def resample(batch: dict) -> dict:
        output = {name: [] for name in features}
        for values in zip(
            batch["record_id"], batch["signal"], batch["sampling_rate"], batch["lead_names"], batch["labels"]
        ):
            for row in model_rate_rows(feature_extractor, storage_dtype, *values):
                for name, value in row.items():
                    output[name].append(value)
        return output

    return dataset.with_format("numpy", columns=["signal"], output_all_columns=True).map(
        resample,
        batched=True,
        batch_size=batch_size,
        remove_columns=dataset.column_names,
        features=features,
        num_proc=num_proc,
        desc="Resampling records",
    )


# A loader's stream is read in this many contiguous parts (what `num_proc` processes share): fixed, so that the cache
# does not depend on `num_proc`.
STREAM_PARTS = 64
WRITER_BATCH_SIZE = 64  # rows buffered before each Arrow write


def _stream_parts(records: IterableDataset) -> tuple[RecordReader, list[list]]:
    """The loader's `record_reader` of `records` (without its items) and contiguous sub-lists of its items."""
    reader = getattr(records, "record_reader", None)
    if reader is None:
        raise ValueError(
            "prepare_streamed_records reads a loader's `streaming=True` split as the loader returned it (it reads the "
            "source files through the split's `record_reader`); this stream has been transformed since. Prepare the "
            "loader's split, then transform the prepared `Dataset`."
        )
    bounds = np.linspace(0, len(reader.items), min(len(reader.items), STREAM_PARTS) + 1).round().astype(int)
    parts = [reader.items[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
    return dataclasses.replace(reader, items=[]), parts


def problem_text(error: BaseException) -> str:
    """Why a record is skipped, in one line: the error's own message (with its cause's, for `datasets`' wrappers)."""
    cause = error.__cause__
    text = f"{type(error).__name__}: {error}"
    return " ".join((text + (f" ({type(cause).__name__}: {cause})" if cause is not None else "")).split())


def _streamed_model_rate_rows(
    parts: list[list],
    reader: RecordReader,
    feature_extractor: EcgPmaFeatureExtractor,
    storage_dtype: str,
    needed_seconds: float,
    short_records: str,
    record_prefix: str,
    keep_labels: bool,
    bad_records: str = "raise",
):
    """
    The model-rate rows of every record of `parts`, each with `problem` empty. With `bad_records="skip"` a record that
    cannot be read (its item: one WFDB record, or one chunk of an HDF5 file) or used (the feature extractor's error)
    gives an empty row whose `problem` says why, which [`prepare_streamed_records`] leaves out and reports.
    """
    num_leads = len(feature_extractor.lead_names)

    def empty_row(record_id: str, labels, problem: str) -> dict:
        signal = np.zeros((0, num_leads), dtype=storage_dtype)
        return {"record_id": record_id, "signal": signal, "present_leads": [False] * num_leads, "labels": labels,
                "problem": problem}  # fmt: skip

    for part in parts:
        # skipping needs each item read on its own: an error ends the generator reading it
        for items in [[item] for item in part] if bad_records == "skip" else [part]:
            files = {name: path for item in items for name, path in reader.record_files(item).items()}
            for row in _rows_or_problems(reader, items, bad_records):
                record_id = record_prefix + str(row["record_id"])
                labels = row["labels"] if keep_labels else []
                if "problem" in row:  # unreadable
                    yield empty_row(record_id, labels, row["problem"])
                    continue
                seconds = len(row["signal"]) / row["sampling_rate"]
                if seconds < needed_seconds and (
                    short_records != "pad" or feature_extractor.segment_seconds is not None
                ):
                    if short_records != "drop":
                        raise ValueError(
                            short_record_message(record_id, seconds, needed_seconds)
                            + (
                                " and a `segment_seconds` segment cannot be padded: use short_records='drop'."
                                if short_records == "pad"
                                else ". Set short_records='drop' or 'pad'."
                            )
                        )
                    # an empty row marks it: [`prepare_streamed_records`] names it and leaves it out
                    yield empty_row(record_id, labels, "")
                    continue
                try:
                    segments = list(
                        model_rate_rows(
                            feature_extractor,
                            storage_dtype,
                            record_id,
                            row["signal"],
                            row["sampling_rate"],
                            row["lead_names"],
                            labels,
                        )
                    )
                except ValueError as error:
                    where = in_file(error, files.get(str(row["record_id"]), "?"))
                    if bad_records != "skip":
                        raise where from error
                    yield empty_row(record_id, labels, problem_text(where))
                    continue
                for segment in segments:
                    yield {**segment, "problem": ""}


def _rows_or_problems(reader: RecordReader, items: list, bad_records: str):
    """`reader`'s rows of `items`; with `bad_records="skip"`, when reading fails, `{"record_id", "labels": None,
    "problem"}` for each record of `items` not read yet."""
    rows = reader.read(items)
    read = set()
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as error:  # the files could not be read
            if bad_records != "skip":
                raise
            problem = "unreadable: " + problem_text(error)
            for item in items:
                for record_id in reader.record_files(item):
                    if record_id not in read:
                        yield {"record_id": record_id, "labels": None, "problem": problem}
            return
        read.add(str(row["record_id"]))
        yield row


def read_usable_records(
    records: IterableDataset,
    feature_extractor: EcgPmaFeatureExtractor,
    split: str = "train",
    cache_dir=None,
    num_proc: int | None = None,
    skipped: list | None = None,
) -> Dataset:
    """
    A loader's `streaming=True` split -> the raw records the loader's cached split holds (same columns), with those
    that cannot be read (a file absent or cut short: the reader's error) or used (`feature_extractor`'s error on the
    record: a required dead lead, NaN samples under `nan_policy="raise"`, ...; short records are left to the
    short-record policy) left out, and `(record_id, reason)` appended to `skipped` for each: `bad_records="skip"`
    for the commands that train on raw splits (finetune). Arrow-cached as the loaders' splits are.
    """
    screen = copy.deepcopy(feature_extractor)  # the record checks alone: short records are not its business
    screen.min_duration, screen.segment_seconds = 0.0, None
    features = Features({**records.features, "problem": Value("string")})
    reader, parts = _stream_parts(records)
    gen_kwargs = {"reader": reader, "screen": screen, "columns": tuple(records.features)}  # a tuple: not sharded
    rows = cache_split(_usable_raw_rows, "parts", parts, gen_kwargs, features, split, cache_dir, num_proc)
    return without_problem_rows(rows, split, skipped)


def without_problem_rows(rows: Dataset, split: str, skipped: list | None) -> Dataset:
    """
    `rows` less those whose `problem` column names why the record was skipped (`bad_records="skip"`), and less that
    column; `(record_id, problem)` appended to `skipped` for each, one line in the log for the split.
    """
    problems = np.asarray(rows["problem"] if len(rows) else [], dtype=object)
    bad = np.flatnonzero(problems != "")
    if len(bad):
        names = rows.select_columns(["record_id"]).select(bad)["record_id"]
        if skipped is not None:
            skipped.extend(zip(names, problems[bad].tolist()))
        logger.warning(
            f"{split}: {len(bad)} record(s) skipped (bad_records='skip'), e.g. {names[0]}: {problems[bad[0]]}"
        )
        rows = rows.select(np.setdiff1d(np.arange(len(rows)), bad))
    return rows.remove_columns("problem")


def _usable_raw_rows(parts: list[list], reader: RecordReader, screen: EcgPmaFeatureExtractor, columns: tuple):
    """The raw rows of every item of `parts` with `problem` empty; a record that cannot be read or used gives a row
    with its id and `problem` only (its other `columns` empty), which [`read_usable_records`] leaves out and
    reports."""
    for part in parts:
        for item in part:  # each on its own: an error ends the generator reading it
            files = reader.record_files(item)
            for row in _rows_or_problems(reader, [item], "skip"):
                problem = row.get("problem", "")
                if not problem:
                    record = raw_record(row["record_id"], row["signal"], row["sampling_rate"], row["lead_names"])
                    try:
                        screen.clean(record)
                    except ValueError as error:
                        problem = problem_text(in_file(error, files.get(record.name, "?")))
                if problem:
                    row = {**dict.fromkeys(columns), "record_id": str(row["record_id"])}
                yield {**row, "problem": problem}


def prepare_streamed_records(
    records: IterableDataset,
    feature_extractor: EcgPmaFeatureExtractor,
    num_proc: int | None = None,
    storage_dtype: str = "float32",
    cache_dir=None,
    short_records: str = "drop",
    split: str = "train",
    record_prefix: str = "",
    keep_labels: bool = True,
    bad_records: str = "raise",
    skipped: list | None = None,
) -> tuple[Dataset, EcgPmaFeatureExtractor, list[str]]:
    """
    A loader's `streaming=True` split -> the model-rate rows of [`prepare_records`], written straight from the source
    files (HDF5, WFDB) into Arrow shards by `num_proc` processes, with no cache of the raw signals in between: what
    pre-training on a large corpus needs (for MIMIC-IV-ECG the raw cache alone would take ~190 GB). A second run with
    the same files and settings reads the cache. Short records follow `short_records` as in
    [`handle_short_records`]. `record_prefix` is put before every record id and `keep_labels=False` leaves the
    labels out (empty lists), as a mixture of corpora needs. `bad_records="skip"` leaves out a record that cannot be
    read or used (the feature extractor's error: a required dead lead, NaN samples under `nan_policy="raise"`, ...)
    instead of stopping, and appends `(record_id, reason)` to `skipped`. Returns the rows, the extractor to crop them
    with and the record ids dropped (or padded).
    """
    if short_records not in SHORT_RECORD_POLICIES:
        raise ValueError(f"Unknown `short_records` {short_records!r}; expected one of {SHORT_RECORD_POLICIES}.")
    if bad_records not in BAD_RECORD_POLICIES:
        raise ValueError(f"Unknown `bad_records` {bad_records!r}; expected one of {BAD_RECORD_POLICIES}.")
    needed = required_seconds(feature_extractor)
    if short_records == "pad" and feature_extractor.segment_seconds is None:
        feature_extractor = copy.deepcopy(feature_extractor)
        feature_extractor.min_duration = 0.0
    labels = records.features["labels"] if keep_labels else Sequence(Value("float32"))
    features = Features({**model_rate_features(feature_extractor, labels, storage_dtype), "problem": Value("string")})
    reader, parts = _stream_parts(records)
    gen_kwargs = {
        "reader": reader,
        "feature_extractor": feature_extractor,
        "storage_dtype": storage_dtype,
        "needed_seconds": needed,
        "short_records": short_records,
        "record_prefix": record_prefix,
        "keep_labels": keep_labels,
        "bad_records": bad_records,
    }
    rows = cache_split(
        _streamed_model_rate_rows, "parts", parts, gen_kwargs, features, split, cache_dir, num_proc, WRITER_BATCH_SIZE
    )
    rows = without_problem_rows(rows, split, skipped)
    lengths = [lengths for lengths, _ in signal_lengths(rows.select_columns(["signal"]))]
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=int)
    if short_records == "pad":  # kept shorter than a window: each crop is zero-padded at the end
        padded = np.flatnonzero(lengths < round(needed * feature_extractor.sampling_rate))
        names = rows.select_columns(["record_id"]).select(padded)["record_id"] if len(padded) else []
        if names:
            logger.warning(
                f"{short_records_message(split, names, needed)}; zero-padded at the end (short_records='pad')."
            )
        return rows, feature_extractor, names
    empty = np.flatnonzero(lengths == 0)
    if not len(empty):
        return rows, feature_extractor, []
    names = rows.select_columns(["record_id"]).select(empty)["record_id"]
    logger.warning(f"{short_records_message(split, names, needed)}; dropped (short_records='drop').")
    return rows.select(np.setdiff1d(np.arange(len(rows)), empty)), feature_extractor, names


def random_crop(
    feature_extractor: EcgPmaFeatureExtractor, row: dict, rng: np.random.Generator, augment=None
) -> torch.Tensor:
    """
    A model-rate row (`signal (samples, leads)`, `present_leads`) -> one random `(leads, signal_length)` crop,
    filtered (with `crop_before_filter`) and standardised, absent leads set to the padding value, then `augment`ed.
    """
    present = np.asarray(row["present_leads"], dtype=bool)
    (window,) = feature_extractor.windows(np.asarray(row["signal"], dtype=np.float64).T, "random", None, rng, present)
    window[~present] = feature_extractor.padding_value
    signals = torch.from_numpy(window.astype(np.float32))
    if augment is not None:
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        signals = augment(signals, generator=generator)
    return signals


class EcgTrainingDataset(torch.utils.data.Dataset):
    """
    Training rows drawn anew each epoch. `rows` holds either model-rate records (`prepare_records`): each read gives
    one random `signal_length` crop, filtered (with `crop_before_filter`) and standardised by `feature_extractor`,
    absent leads zeroed; or model-ready windows (`extract_features`, column `signals`), read as they are. `augment`
    (e.g. [`ecg_pma.training.augmentation.RandAugment`]) is then applied to the `(leads, samples)` tensor.

    Row `i` in epoch `e` is a function of `(seed, e, i)` only. Returns `signals`, `labels` and `record_id`.
    """

    def __init__(
        self,
        rows: Dataset,
        feature_extractor: EcgPmaFeatureExtractor | None = None,
        augment=None,
        seed: int = 0,
    ):
        self.crop = "signals" not in rows.column_names
        if self.crop and feature_extractor is None:
            raise ValueError("Cropping records needs the `feature_extractor` that prepared them.")
        self.rows = rows.with_format("numpy") if self.crop else rows.with_format("torch")
        self.feature_extractor = feature_extractor
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    @property
    def column_names(self) -> list[str]:
        return ["signals", "labels", "record_id"]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch of rows, read from Arrow in one go (what a DataLoader asks for)."""
        batch = self.rows[[int(index) for index in indices]]
        return [
            self._draw(int(index), {key: values[i] for key, values in batch.items()})
            for i, index in enumerate(indices)
        ]

    def _draw(self, index: int, row: dict) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        signals = random_crop(self.feature_extractor, row, rng, self.augment) if self.crop else row["signals"]
        if not self.crop and self.augment is not None:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            signals = self.augment(signals, generator=generator)
        return {
            "signals": signals,
            "labels": torch.as_tensor(np.asarray(row["labels"])),
            "record_id": row["record_id"],
        }


def fix_malloc_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """
    Streams hold a shuffle buffer of raw records (~200 KB each), freed in random order. glibc raises its mmap threshold
    after such frees, after which they come from the heap, which fragments: resident memory then creeps up with the
    records read (82 -> 162 MB from 1,000 to 3,000 records in `benchmarks/corpus_memory.py`). A fixed threshold
    (`mallopt(M_MMAP_THRESHOLD)`, what `MALLOC_MMAP_THRESHOLD_=131072` sets) keeps it flat. Process-wide: the
    command line calls it for `--streaming`; returns False where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(-3, int(threshold)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError, TypeError):
        return False


# Raw records a streaming `map` holds at once (as Python lists, ~200 KB each): small and fixed, so that memory follows
# the shuffle buffer and not `datasets`' default of 1,000 records per batch.
STREAM_BATCH_SIZE = 16


class StreamReport:
    """
    What a streamed run has read of each corpus as training reads it: records cropped (`read`), dropped as shorter
    than the window (`dropped_short`) and skipped as unusable (`skipped`, with `bad_records="skip"`), per corpus (told
    by record-id prefix; `corpora` are the run's protocol entries, whose `records` [`refresh`] fills), with running
    totals in the log every `log_every` records and one line per corpus from `summary()`. Record ids go to files in
    `output_dir`, never one log line each: `short_records_dropped.txt` (each id once after `summary()`) and
    `skipped_records.csv` (with the reason), each line once after `summary()`. The counts live in shared memory:
    DataLoader worker processes (forked after the report is made) add to the same totals, which the main process
    reads. Under several training processes ([`distribute`]) each process counts its own share and lists its ids in
    files of its own; the training loop adds up every process's counts (logging the running totals and applying
    `max_bad_share` to them, on every process alike) and [`merge_id_files`] gathers the ids into the main files.
    """

    OUTCOMES = ("read", "dropped_short", "skipped")

    def __init__(self, corpora: list[dict], prefixes: list[str], output_dir=None, log_every: int = 10_000,
                 max_bad_share: float = 1.0):  # fmt: skip
        import multiprocessing

        self.corpora, self.prefixes = corpora, prefixes
        self.output_dir = output_dir
        self.log_every, self.max_bad_share = log_every, max_bad_share
        # one row of OUTCOMES per corpus, with a lock: every process's counts add up in one place
        self.counts = multiprocessing.Array("q", len(corpora) * len(self.OUTCOMES))
        self.refresh()
        self.seen_short: set[str] = set()  # this process's short ids: a second pass of it writes none again
        self.process_index, self.num_processes = 0, 1

    def distribute(self, process_index: int, num_processes: int) -> None:
        """
        Counts of one of `num_processes` training processes (before its DataLoader workers start): its counts are
        then a part of the totals (the loop adds them up, and logs and checks those), its ids go to files of its own
        (`NAME.process-N`) for [`merge_id_files`].
        """
        self.process_index, self.num_processes = process_index, num_processes

    def __deepcopy__(self, memo) -> StreamReport:
        return self  # one report per run: `datasets` deep-copies a stream's generator and its arguments

    def __copy__(self) -> StreamReport:
        return self

    def __getstate__(self) -> dict:
        """Pickled to start a worker process: the shared counts themselves; otherwise (`datasets` hashing a stream's
        arguments) their values."""
        import multiprocessing.context

        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:
            state["counts"] = list(self.counts)
        return state

    def __setstate__(self, state: dict) -> None:
        import multiprocessing

        if isinstance(state["counts"], list):
            state["counts"] = multiprocessing.Array("q", state["counts"])
        self.__dict__.update(state)

    def corpus_index(self, record_id: str) -> int:
        """The position of the corpus `record_id` is from in `corpora` (the longest matching prefix)."""
        matches = [i for i, prefix in enumerate(self.prefixes) if record_id.startswith(prefix)]
        return max(matches, key=lambda i: len(self.prefixes[i])) if matches else 0

    def corpus(self, record_id: str) -> dict:
        """The protocol entry of the corpus `record_id` is from."""
        return self.corpora[self.corpus_index(record_id)]

    def refresh(self) -> list[dict]:
        """This process's counts so far (all its DataLoader workers') into the protocol entries' `records`; returns
        the entries."""
        self.set_records(self.local_counts())
        return self.corpora

    def local_counts(self) -> list[int]:
        """The counts of this process and its DataLoader workers, `OUTCOMES` per corpus one after another."""
        with self.counts.get_lock():
            return list(self.counts)

    def set_records(self, values: list[int]) -> None:
        """`values` (`OUTCOMES` per corpus, as `local_counts` gives them: this process's, or every process's
        totals) into the protocol entries' `records`."""
        width = len(self.OUTCOMES)
        for number, corpus in enumerate(self.corpora):
            corpus["records"] = dict(zip(self.OUTCOMES, values[number * width : (number + 1) * width]))

    def count(self, record_id: str, outcome: str) -> dict:
        """Counts one record of every process's totals; returns its corpus's counts."""
        number = self.corpus_index(record_id)
        width = len(self.OUTCOMES)
        with self.counts.get_lock():
            self.counts[number * width + self.OUTCOMES.index(outcome)] += 1
            values = list(self.counts)
        self.set_records(values)
        if self.num_processes == 1 and sum(values) % self.log_every == 0:  # else the loop logs the totals
            logger.warning(f"Streamed so far: {self.totals()}.")
        return self.corpora[number]["records"]

    def totals(self) -> str:
        return "; ".join(
            f"{corpus['format']}:{corpus['path']}: "
            + ", ".join(f"{n} {what}" for what, n in corpus["records"].items())
            for corpus in self.corpora
        )

    SKIPPED_HEADER = "corpus,path,split,record_id,reason"  # the columns of `skipped_records.csv`, as pretrain's

    ID_FILES = ("short_records_dropped.txt", "skipped_records.csv")

    def id_file(self, name: str) -> str:
        """Where this process lists the ids of `name`: `output_dir/name`, or under several training processes, for
        the second on, `output_dir/name.process-N` (merged into the first by [`merge_id_files`]; several machines
        may each have their own output folder)."""
        path = os.path.join(self.output_dir, name)
        return f"{path}.process-{self.process_index}" if self.process_index else path

    def append(self, name: str, line: str) -> None:
        """One line at the end of this process's `name` file ([`id_file`]; `skipped_records.csv` starts with its
        header), one DataLoader worker at a time."""
        if self.output_dir is None:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        path = self.id_file(name)
        with self.counts.get_lock(), open(path, "a") as handle:
            if path.endswith("skipped_records.csv") and handle.tell() == 0:
                handle.write(self.SKIPPED_HEADER + "\n")
            handle.write(line + "\n")

    def dropped(self, record_id: str) -> None:
        self.count(record_id, "dropped_short")
        if record_id not in self.seen_short:
            self.seen_short.add(record_id)
            self.append("short_records_dropped.txt", record_id)

    def skipped(self, record_id: str, reason: str) -> None:
        import csv
        import io

        self.count(record_id, "skipped")
        corpus = self.corpus(record_id)
        line = io.StringIO()
        csv.writer(line).writerow([corpus["format"], corpus["path"], "", record_id, reason])
        self.append("skipped_records.csv", line.getvalue().rstrip("\r\n"))
        if self.num_processes == 1:  # else the loop checks every process's totals
            self.check_bad_share([corpus])

    def check_bad_share(self, corpora: list[dict] | None = None) -> None:
        """Stops (raises) when one of `corpora` (all by default) has lost more than `max_bad_share` of the records
        counted in its `records` so far (from 100 records on) to skipping or missing files."""
        for corpus in self.corpora if corpora is None else corpora:
            counts = corpus["records"]
            missing = corpus.get("missing", 0)  # listed records whose files are absent or cut short
            seen, lost = sum(counts.values()) + missing, counts["skipped"] + missing
            if seen >= 100 and lost > self.max_bad_share * seen:
                raise ValueError(
                    f"Corpus {corpus['format']}:{corpus['path']}: {lost} of the {seen} records streamed so far "
                    f"skipped or missing, more than --max-bad-share {self.max_bad_share:g}; they are listed with the "
                    f"reasons in {os.path.join(self.output_dir or '.', 'skipped_records.csv')}."
                )

    def own_id_lines(self) -> dict[str, list[str]]:
        """The lines this process wrote to its own id files (none for the first process, which writes the main
        files), which are then removed: what [`merge_id_files`] gathers."""
        lines = {}
        for name in self.ID_FILES if self.output_dir is not None and self.process_index else ():
            path = self.id_file(name)
            if os.path.exists(path):
                with open(path) as handle:
                    lines[name] = [line.rstrip("\n") for line in handle if line.strip()]
                os.remove(path)
        return lines

    def merge_id_files(self, gathered: list[dict[str, list[str]]]) -> None:
        """Every process's `own_id_lines` (`gathered`, in process order) appended to the main id files (first
        process), each line then once: where every process reads every record, each lists the same ones."""
        for lines in gathered:
            for name, rows in lines.items():
                for row in rows:
                    self.append(name, row)
        for name in self.ID_FILES:
            self.deduplicate(name)

    def summary(self) -> list[str]:
        """
        One line per corpus: what every process read, dropped and skipped, the records missing from the disk (left out
        before streaming), and where the ids are (the protocol entries refreshed to the same totals; under several
        training processes, the totals the loop set). Worker processes each list the records they met, and a new
        epoch's workers start afresh: the id files are reduced to each line once here.
        """
        if self.num_processes == 1:
            self.refresh()
        for name in self.ID_FILES:
            self.deduplicate(name)
        where = f" (ids in {self.output_dir})" if self.output_dir is not None else ""
        return [
            f"Corpus {corpus['format']}:{corpus['path']}: "
            + ", ".join(f"{n} {what}" for what, n in corpus["records"].items())
            + (f", {corpus['missing']} missing" if corpus.get("missing") else "")
            + where
            for corpus in self.corpora
        ]

    def deduplicate(self, name: str) -> None:
        """`output_dir/name` with each line once, in the order first written."""
        path = os.path.join(self.output_dir, name) if self.output_dir is not None else None
        if path is None or not os.path.exists(path):
            return
        with open(path) as handle:
            lines = dict.fromkeys(line.rstrip("\n") for line in handle if line.strip())
        with open(path, "w") as handle:
            handle.writelines(line + "\n" for line in lines)


def skipping_stream(records: IterableDataset, report: StreamReport, record_prefix: str = "") -> IterableDataset:
    """
    A loader's `streaming=True` split that skips what cannot be read (an item of its reader: one WFDB record, or a
    chunk of exams of an HDF5 file) instead of stopping, each record of it counted and listed by `report` with the
    error (`bad_records="skip"` under `--streaming`). Reads the same rows otherwise, shared out item by item.
    """
    reader, parts = _stream_parts(records)
    generator = functools.partial(_skipping_rows, reader=reader, report=report, record_prefix=record_prefix)
    items = [item for part in parts for item in part]
    return IterableDataset.from_generator(generator, features=records.features, gen_kwargs={"items": items})


def _skipping_rows(items: list, reader: RecordReader, report: StreamReport, record_prefix: str):
    for item in items:
        for row in _rows_or_problems(reader, [item], "skip"):
            if "problem" in row:
                report.skipped(record_prefix + str(row["record_id"]), row["problem"])
            else:
                yield row


@dataclasses.dataclass
class StreamedRecordFiles:
    """
    Where a streamed record is, for its error: the split readers (`RecordReader`, the loaders' `record_reader`) of
    each corpus a stream reads, by record-id prefix (empty for a single corpus). The index of record files is built
    from the listing the readers already hold on the first failure, once per process: a run that reads every record
    keeps nothing per record, and one that skips many (up to `--max-bad-share` of 800,000) does not scan the listing
    for each.
    """

    readers: dict[str, list[RecordReader]]
    index: dict[str, str] | None = None  # `{prefix + name: file}`, on the first call

    def __call__(self, record_id: str) -> str:
        if self.index is None:
            self.index = {
                prefix + name: str(path)
                for prefix, readers in self.readers.items()
                for reader in readers
                for item in reader.items
                for name, path in reader.record_files(item).items()
            }
        return self.index.get(record_id, "?")


def stream_training_records(
    records: IterableDataset,
    feature_extractor: EcgPmaFeatureExtractor,
    seed: int = 0,
    shuffle_buffer: int = 1000,
    augment=None,
    report: StreamReport | None = None,
    bad_records: str = "raise",
    record_files: StreamedRecordFiles | None = None,
) -> IterableDataset:
    """
    A corpus larger than the disk cache: raw records streamed from their source files (a loader's `streaming=True`
    split), shuffled through a buffer of `shuffle_buffer` records (reshuffled each epoch by `set_epoch`), resampled
    and cropped as [`prepare_records`] and [`EcgTrainingDataset`] do: one random crop per record (segment) per
    pass. Records shorter than the window are dropped, counted by `report` (a [`StreamReport`]: its files name them)
    or else named in the log; `bad_records="skip"` skips a record the feature extractor cannot use (counted and
    listed by `report`) instead of stopping. Memory holds the buffer and `STREAM_BATCH_SIZE` records, not the corpus.
    Crops are a function of `(seed, position in the shuffled stream, record_id)`. `record_files` (a
    [`StreamedRecordFiles`]) names a failing record's file in its error, as the cached path does.
    """
    if bad_records not in BAD_RECORD_POLICIES:
        raise ValueError(f"Unknown `bad_records` {bad_records!r}; expected one of {BAD_RECORD_POLICIES}.")
    extractor = feature_extractor
    needed = required_seconds(extractor)

    def crop(batch: dict, indices: list[int]) -> dict:
        output = {"signals": [], "labels": [], "record_id": []}
        labels_of = batch.get("labels") or [[]] * len(indices)  # a mixture of corpora carries no labels
        for index, record_id, signal, sampling_rate, lead_names, labels in zip(
            indices, batch["record_id"], batch["signal"], batch["sampling_rate"], batch["lead_names"], labels_of
        ):
            signal = np.asarray(signal, dtype=np.float64)
            if len(signal) / sampling_rate < needed:
                if report is not None:
                    report.dropped(record_id)
                else:
                    logger.warning(f"{short_record_message(record_id, len(signal) / sampling_rate, needed)}: dropped.")
                continue
            # float64: the segments are cropped as computed, not rounded to a storage type first
            try:
                segments = list(
                    model_rate_rows(extractor, "float64", record_id, signal, sampling_rate, lead_names, labels)
                )
            except ValueError as error:
                where = in_file(error, record_files(record_id)) if record_files is not None else error
                if bad_records != "skip":
                    if where is error:
                        raise
                    raise where from error
                if report is not None:
                    report.skipped(record_id, problem_text(where))
                else:
                    logger.warning(f"Record {record_id!r} skipped: {problem_text(where)}")
                continue
            if report is not None:
                report.count(record_id, "read")
            for number, row in enumerate(segments):
                rng = np.random.default_rng([seed, index, number, zlib.crc32(record_id.encode())])
                window = random_crop(extractor, row, rng, augment)
                output["signals"].append(window.numpy())
                output["labels"].append(np.asarray(labels, dtype=np.float32))
                output["record_id"].append(record_id)
        return output

    shuffled = records.shuffle(seed=seed, buffer_size=shuffle_buffer) if shuffle_buffer > 1 else records
    return shuffled.map(
        crop,
        batched=True,
        batch_size=STREAM_BATCH_SIZE,
        with_indices=True,
        remove_columns=list(records.column_names or records.features),
        features=Features(
            {
                "signals": Array2D(shape=(len(extractor.lead_names), extractor.signal_length), dtype="float32"),
                "labels": Sequence(Value("float32")),
                "record_id": Value("string"),
            }
        ),
    )


def build_training_splits(
    records: DatasetDict,
    feature_extractor: EcgPmaFeatureExtractor,
    train_windows: str = "random",
    short_records: str = "drop",
    augment=None,
    seed: int = 0,
    num_proc: int | None = None,
    evaluation_windows: str | None = None,
    storage_dtype: str = "float32",
) -> tuple[dict, dict[str, list[str]]]:
    """
    Raw splits -> `train` as an [`EcgTrainingDataset`] (one random crop per record per epoch, or with
    `train_windows="sliding"` the fixed sliding windows) and every other split as windows for evaluation
    (`extract_features` with `evaluation_windows`: by default `"n_crop"` when the extractor is saved with it, as
    ST-MEM evaluates, else `"sliding"`). Short records follow `short_records` in every split. Returns the splits and
    the record ids dropped (or padded) per split.
    """
    if evaluation_windows is None:
        evaluation_windows = "n_crop" if feature_extractor.window_mode == "n_crop" else "sliding"
    if train_windows not in TRAIN_WINDOWS:
        raise ValueError(f"Unknown `train_windows` {train_windows!r}; expected one of {TRAIN_WINDOWS}.")
    splits, dropped = {}, {}
    for split, dataset in records.items():
        dataset, extractor, dropped[split] = handle_short_records(dataset, feature_extractor, short_records, split)
        if split == "train" and train_windows == "random":
            rows = prepare_records(dataset, extractor, num_proc=num_proc, storage_dtype=storage_dtype)
        else:
            mode = "sliding" if split == "train" else evaluation_windows
            rows = extract_features(dataset, extractor, window_mode=mode, num_proc=num_proc)
        splits[split] = EcgTrainingDataset(rows, extractor, augment, seed) if split == "train" else rows
    return splits, dropped
