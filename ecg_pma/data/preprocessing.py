"""Turning a loaded ECG dataset into model input with a feature extractor, through `datasets.map`."""

from __future__ import annotations

import numpy as np
from datasets import Array2D, Dataset, DatasetDict, Features, Sequence, Value

from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor


def extract_features(
    dataset: Dataset | DatasetDict,
    feature_extractor: EcgPmaFeatureExtractor,
    window_mode: str | None = None,
    num_proc: int | None = None,
    batch_size: int = 32,
) -> Dataset | DatasetDict:
    """
    Maps a dataset of raw records (as the loaders return it) to model input: `signals (leads, signal_length)`
    float32, `lead_mask (leads,)` (True where the record has the lead), `labels` and `record_id`. With `window_mode="sliding"` a long record gives several rows sharing its
    `record_id`, so predictions can be averaged per record. Cached by `datasets` like any map.
    """
    num_labels = _num_labels(dataset)
    features = Features(
        {
            "record_id": Value("string"),
            "signals": Array2D(
                shape=(len(feature_extractor.lead_names), feature_extractor.signal_length), dtype="float32"
            ),
            "lead_mask": Sequence(Value("bool"), length=len(feature_extractor.lead_names)),
            "labels": Sequence(Value("float32"), length=num_labels),
        }
    )

    def extract(batch: dict) -> dict:
        output = {"record_id": [], "signals": [], "lead_mask": [], "labels": []}
        for record_id, signal, sampling_rate, lead_names, labels in zip(
            batch["record_id"], batch["signal"], batch["sampling_rate"], batch["lead_names"], batch["labels"]
        ):
            try:
                features = feature_extractor(
                    np.asarray(signal).T,
                    sampling_rate=sampling_rate,
                    lead_names=lead_names,
                    window_mode=window_mode,
                )
            except (ValueError, TypeError) as error:
                # the extractor sees one array and calls it "input 0"; the dataset knows the record's name
                message = str(error).removeprefix("input 0: ").removeprefix("Input 0: ")
                raise type(error)(f"Record {str(record_id)!r}: {message}") from error
            windows = features["signals"]
            output["record_id"] += [record_id] * len(windows)
            output["signals"] += list(windows)
            output["lead_mask"] += list(features["lead_mask"])
            output["labels"] += [labels] * len(windows)
        return output

    dataset = dataset.with_format("numpy", columns=["signal"], output_all_columns=True)
    columns = dataset.column_names
    remove = columns if isinstance(columns, list) else next(iter(columns.values()))
    return dataset.map(
        extract,
        batched=True,
        batch_size=batch_size,
        remove_columns=remove,
        features=features,
        num_proc=num_proc,
        desc="Extracting ECG features",
    ).with_format("torch")


def _num_labels(dataset: Dataset | DatasetDict) -> int:
    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    return dataset.features["labels"].length
