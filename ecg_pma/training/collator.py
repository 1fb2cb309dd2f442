"""Batching model-ready ECG rows for the pre-training loop and the Trainer."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..configuration_ecg_pma import EcgPmaConfig, resolve_lead_set


@dataclass
class EcgDataCollator:
    """
    Stacks rows holding `signals (leads, samples)` (and `labels`, and `lead_mask (leads,)` where records lack leads)
    into `signals (batch, leads, samples)` float32, `lead_mask (batch, leads)` bool (when the rows have one or
    `lead_sets` is set) and `labels`: `(batch, num_labels)` float for multi-label, `(batch,)` long for single-label.
    Other columns (`record_id`, ...) are left out. Rows that do not fit the model config raise a `ValueError`.

    `lead_sets` (e.g. `["12", "6", "4", "3", "2"]`, or lists of lead names): each sample keeps only the leads of one
    lead set drawn at random among those it has a lead of (so one model learns to serve them all); with a single lead
    set, every sample is cut to it (evaluation on that lead set). Draws follow `seed`; with DataLoader workers each
    worker draws from its own copy of the generator.
    """

    config: EcgPmaConfig
    with_labels: bool = True
    lead_sets: list[str | list[str]] | None = None
    seed: int = 0

    def __post_init__(self):
        self.lead_set_masks = None
        if self.lead_sets:
            self.lead_set_masks = torch.tensor(
                [
                    [name in resolve_lead_set(lead_set, self.config.lead_names) for name in self.config.lead_names]
                    for lead_set in self.lead_sets
                ]
            )
            self.generator = torch.Generator().manual_seed(self.seed)

    def draw_lead_mask(self, lead_mask: torch.Tensor) -> torch.Tensor:
        """`(batch, leads)` leads the records have -> the leads kept: one drawn lead set per sample, within them."""
        usable = (self.lead_set_masks[None] & lead_mask[:, None]).any(dim=-1)  # (batch, sets)
        scores = torch.rand(usable.shape, generator=self.generator).masked_fill(~usable, -1.0)
        drawn = self.lead_set_masks[scores.argmax(dim=-1)] & lead_mask
        # a record with none of the lead sets' leads keeps what it has
        return torch.where(usable.any(dim=-1, keepdim=True), drawn, lead_mask)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        signals = torch.stack([torch.as_tensor(row["signals"], dtype=torch.float32) for row in rows])
        expected = (self.config.num_leads, self.config.signal_length)
        if tuple(signals.shape[1:]) != expected:
            raise ValueError(
                f"Rows hold signals of shape {tuple(signals.shape[1:])}; the model expects (leads, samples) = {expected}. "
                "Prepare the dataset with a feature extractor made for this model (`from_model_config`)."
            )
        batch = {"signals": signals}
        if "lead_mask" in rows[0]:
            batch["lead_mask"] = torch.stack([torch.as_tensor(row["lead_mask"], dtype=torch.bool) for row in rows])
        if self.lead_set_masks is not None:
            lead_mask = batch.get("lead_mask", torch.ones(signals.shape[:2], dtype=torch.bool))
            batch["lead_mask"] = self.draw_lead_mask(lead_mask)
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
