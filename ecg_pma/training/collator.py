"""Batching model-ready ECG rows for the pre-training loop and the Trainer."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..configuration_ecg_pma import EcgPmaConfig


@dataclass
class EcgDataCollator:
    """
    Stacks rows holding `signals (leads, samples)` (and `labels`) into `signals (batch, leads, samples)` float32 and
    `labels`: `(batch, num_labels)` float for multi-label, `(batch,)` long for single-label. Other columns
    (`record_id`, ...) are left out. Rows that do not fit the model config raise a `ValueError`.
    """

    config: EcgPmaConfig
    with_labels: bool = True

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        signals = torch.stack([torch.as_tensor(row["signals"], dtype=torch.float32) for row in rows])
        expected = (self.config.num_leads, self.config.signal_length)
        if tuple(signals.shape[1:]) != expected:
            raise ValueError(
                f"Rows hold signals of shape {tuple(signals.shape[1:])}; the model expects (leads, samples) = {expected}. "
                "Prepare the dataset with a feature extractor made for this model (`from_model_config`)."
            )
        batch = {"signals": signals}
        if not self.with_labels:
            return batch
        labels = torch.stack([torch.as_tensor(row["labels"]) for row in rows])
        if self.config.problem_type == "single_label_classification":
            batch["labels"] = labels.long().view(-1)
        else:
            if labels.ndim != 2 or labels.shape[1] != self.config.num_labels:
                raise ValueError(
                    f"Rows hold labels of shape {tuple(labels.shape[1:])}; the model has {self.config.num_labels} labels "
                    f"({list(self.config.id2label.values())[:10]}...). Build the model's config from the dataset's labels."
                )
            batch["labels"] = labels.float()
        return batch
