"""
Screening a whole folder of ECGs — WFDB records and any file `ecg_pma.formats` reads (DICOM, EDF, HL7 aECG, GE MUSE
and Philips XML, arrays), mixed — into one predictions CSV: records are read and preprocessed by `DataLoader`
workers while the main process scores the windows already prepared (PyTorch or ONNX Runtime), rows are appended and
flushed to disk after every batch, records that cannot be read are listed with the reason in an errors CSV, and a
rerun skips the records already in the output, so a run that is killed loses nothing it had finished.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..formats import find_ecg_files
from .inference import RecordPrediction, score_windows, summarize_records, window_forward


FIXED_COLUMNS = ("record", "num_windows", "positive_labels", "layer_weights")
ERROR_COLUMNS = ("record", "error")


@dataclass
class ScreeningSummary:
    predicted: int  # records predicted in this run
    skipped: int  # records already in the output, from an earlier run
    failed: int  # records listed in the errors file
    output: str
    errors: str


def prediction_columns(config) -> list[str]:
    """`record`, `num_windows`, one probability column per label (model order), `positive_labels`, `layer_weights`."""
    labels = [config.id2label[i] for i in range(config.num_labels)]
    clashes = sorted(set(labels) & set(FIXED_COLUMNS))
    if clashes:
        raise ValueError(f"Label name(s) {clashes} clash with the predictions CSV's own columns {FIXED_COLUMNS}.")
    return ["record", "num_windows", *labels, "positive_labels", "layer_weights"]


def prediction_row(prediction: RecordPrediction) -> list:
    return [
        prediction.record,
        prediction.num_windows,
        *(f"{score:.6g}" for score in prediction.probabilities.values()),
        ";".join(prediction.positive_labels),
        " ".join(f"{weight:.6g}" for weight in prediction.layer_weights),
    ]


def completed_records(output_path: str | os.PathLike, columns: list[str]) -> set[str]:
    """
    Records already in a predictions CSV from an earlier run. A last line cut short by a killed run is removed from
    the file (the record is predicted again); a file written for other columns (another model) is refused.
    """
    path = Path(output_path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    with open(path, "rb+") as handle:
        content = handle.read()
        if not content.endswith(b"\n"):
            handle.truncate(content.rfind(b"\n") + 1)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if rows and rows[0] != columns:
        raise ValueError(
            f"{path} holds predictions with columns {rows[0]}, not this model's {columns}: pass another --output, or "
            "remove the file to start again."
        )
    return {row[0] for row in rows[1:] if row}


class RecordWindows(Dataset):
    """
    Item `i`: `(name, {signals (windows, leads, samples) float32, lead_mask (windows, leads)} or None, error message
    or None)` for the i-th record,
    read and cut into sliding windows by the feature extractor; a record that fails is returned with its error rather
    than raised, so that one bad file does not stop a worker.
    """

    def __init__(self, paths: list[str], names: list[str], feature_extractor):
        self.paths, self.names, self.feature_extractor = paths, names, feature_extractor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[str, dict[str, torch.Tensor] | None, str | None]:
        try:
            features = self.feature_extractor(self.paths[index], window_mode="sliding", return_tensors="pt")
        except Exception as error:  # noqa: BLE001 - any unreadable record is reported, whatever the reason
            return self.names[index], None, f"{type(error).__name__}: {error}"
        return self.names[index], {"signals": features["signals"], "lead_mask": features["lead_mask"]}, None


def keep_items(items: list) -> list:
    """The DataLoader's collate function: records keep their own number of windows."""
    return items


def _single_threaded_worker(worker_id: int) -> None:
    # the main process's inference already uses the cores' math threads; workers read and filter one record each
    torch.set_num_threads(1)


def list_records(sources: list[str]) -> tuple[list[str], list[str]]:
    """
    Record paths and their names in the output: every ECG below a folder (`find_ecg_files`: WFDB records named by
    their path relative to the folder without extension, other files with theirs), and single records as given.
    """
    paths, names = [], []
    for source in sources:
        if os.path.isdir(source):
            found = find_ecg_files(source)
            if not found:
                raise FileNotFoundError(
                    f"No ECG below {source}: no WFDB header (.hea) nor DICOM, EDF, XML, CSV, .npy or Parquet file."
                )
            paths += found
            names += [str(Path(path).relative_to(source)) for path in found]
        else:
            path = source[: -len(".hea")] if source.endswith(".hea") else source
            paths.append(path)
            names.append(path)
    first = {name: index for index, name in reversed(list(enumerate(names)))}  # a record named twice runs once
    return [paths[i] for i in sorted(first.values())], [names[i] for i in sorted(first.values())]


def _append_rows(path: Path, header: list[str], rows: list[list]) -> None:
    """Appends rows (the header first if the file is new) and forces them to disk before returning."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(header)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


@torch.inference_mode()
def screen_records(
    model,
    feature_extractor,
    sources: list[str],
    output_path: str | os.PathLike,
    errors_path: str | os.PathLike | None = None,
    backend: str = "torch",
    onnx_path: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 2,
    progress: bool = True,
) -> ScreeningSummary:
    """
    Predicts every record of `sources` (folders and/or WFDB record paths or ECG files of any readable format) into the CSV `output_path`, one row per
    record (columns: [`prediction_columns`]), with the windows, averaging and thresholds of `predict_records`.

    `num_workers` DataLoader processes read and preprocess records while the main process scores windows,
    `batch_size` windows per forward pass (`batch_size` records per loader batch). After every batch the new rows are
    flushed to disk. Records already in `output_path` are skipped, so a rerun after a crash or kill finishes the rest
    and predicts every record exactly once. Records that cannot be read or preprocessed are written with the reason
    to `errors_path` (default: `output_path` with `.errors.csv`), rewritten on each run: errors of an earlier run are
    retried.
    """
    model.eval()
    output_path = Path(output_path)
    errors_path = Path(errors_path) if errors_path is not None else output_path.with_suffix(".errors.csv")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    columns = prediction_columns(model.config)
    paths, names = list_records(sources)
    done = completed_records(output_path, columns)
    pending = [index for index, name in enumerate(names) if name not in done]
    errors_path.unlink(missing_ok=True)
    forward = window_forward(model, backend, onnx_path)
    loader = DataLoader(
        RecordWindows([paths[i] for i in pending], [names[i] for i in pending], feature_extractor),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=keep_items,
        worker_init_fn=_single_threaded_worker if num_workers else None,
    )
    predicted = failed = 0
    with tqdm(total=len(pending), unit="record", desc="screening", disable=not progress) as bar:
        for items in loader:
            readable = [(name, windows) for name, windows, error in items if error is None]
            failures = [[name, error] for name, windows, error in items if error is not None]
            if readable:
                signals = torch.cat([windows["signals"] for _, windows in readable])
                lead_mask = torch.cat([windows["lead_mask"] for _, windows in readable])
                record_index = torch.repeat_interleave(
                    torch.arange(len(readable)), torch.tensor([len(windows["signals"]) for _, windows in readable])
                )
                probabilities, layer_weights = score_windows(
                    forward, signals, model.config, min(batch_size, len(signals)), lead_mask=lead_mask
                )
                predictions = summarize_records(
                    model.config, probabilities, layer_weights, record_index, [name for name, _ in readable]
                )
                _append_rows(output_path, columns, [prediction_row(prediction) for prediction in predictions])
            if failures:
                _append_rows(errors_path, list(ERROR_COLUMNS), failures)
            predicted, failed = predicted + len(readable), failed + len(failures)
            bar.update(len(items))
    return ScreeningSummary(predicted, len(names) - len(pending), failed, str(output_path), str(errors_path))
