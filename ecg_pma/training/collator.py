"""Batching model-ready ECG rows for the pre-training loop and the Trainer."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..configuration_ecg_pma import EcgPmaConfig, resolve_lead_set
from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor


class LeadSetSampler:
    """
    Cuts batches to lead sets: each sample keeps the leads of one of `lead_sets` (e.g. `["12", "6", "4", "3", "2"]`,
    or lists of lead names), drawn at random among those it has a lead of (a record with none of their leads keeps
    what it has). The cut is the one `feature_extractor` (the extractor that made the rows) makes of a record holding
    only those leads (`EcgPmaFeatureExtractor.cut_to_leads`): the other leads set to its padding value and, with
    per-window normalisation, the kept leads standardised again over themselves. So a lead-set batch is what the
    records cut to those leads would give, under every preprocessing.
    """

    def __init__(
        self, config: EcgPmaConfig, lead_sets: list[str | list[str]], feature_extractor: EcgPmaFeatureExtractor | None
    ) -> None:
        self.masks = torch.tensor(
            [
                [name in resolve_lead_set(lead_set, config.lead_names) for name in config.lead_names]
                for lead_set in lead_sets
            ]
        )  # (sets, leads)
        if feature_extractor is None:
            raise ValueError(
                "Lead sets need the feature extractor that made the rows (`feature_extractor=`): its normalisation "
                "decides what a record cut to a lead set looks like."
            )
        if list(feature_extractor.lead_names) != list(config.lead_names):
            raise ValueError(
                f"The feature extractor's leads {list(feature_extractor.lead_names)} are not the model's "
                f"{list(config.lead_names)}."
            )
        self.feature_extractor = feature_extractor

    def draw(self, lead_mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`(batch, leads)` leads the records have -> the leads kept: one drawn lead set per sample, within them."""
        usable = (self.masks[None] & lead_mask[:, None]).any(dim=-1)  # (batch, sets)
        scores = torch.rand(usable.shape, generator=generator).masked_fill(~usable, -1.0)
        drawn = self.masks[scores.argmax(dim=-1)] & lead_mask
        return torch.where(usable.any(dim=-1, keepdim=True), drawn, lead_mask)

    def cut(self, batch: dict, generator: torch.Generator) -> dict:
        """A batch (`signals (batch, leads, samples)`, optional `lead_mask (batch, leads)`: all present when absent)
        with its samples cut to drawn lead sets: new `signals` (float32, on their device) and `lead_mask`."""
        signals = batch["signals"]
        lead_mask = batch.get("lead_mask")
        lead_mask = torch.ones(signals.shape[:2], dtype=torch.bool) if lead_mask is None else lead_mask.bool().cpu()
        kept = self.draw(lead_mask, generator)
        cut = self.feature_extractor.cut_to_leads(signals.detach().cpu().numpy(), lead_mask.numpy(), kept.numpy())
        cut = torch.from_numpy(cut).to(dtype=torch.float32, device=signals.device)
        return {**batch, "signals": cut, "lead_mask": kept.to(signals.device)}


@dataclass
class EcgDataCollator:
    """
    Stacks rows holding `signals (leads, samples)` (and `labels`, and `lead_mask (leads,)` where records lack leads)
    into `signals (batch, leads, samples)` float32, `lead_mask (batch, leads)` bool (when the rows have one or
    `lead_sets` is set) and `labels`: `(batch, num_labels)` float for multi-label, `(batch,)` long for single-label.
    Other columns (`record_id`, ...) are left out. Rows that do not fit the model config raise a `ValueError`.

    `lead_sets` (e.g. `["12", "6", "4", "3", "2"]`, or lists of lead names): each sample is cut to one lead set drawn
    at random among those it has a lead of, as [`LeadSetSampler`] cuts it with `feature_extractor` (the extractor
    that made the rows; required then), so one model learns to serve them all; with a single lead set, every sample
    is cut to it (evaluation on that lead set). Draws follow `seed`; with DataLoader workers each worker draws from
    its own copy of the generator.
    """

    config: EcgPmaConfig
    with_labels: bool = True
    lead_sets: list[str | list[str]] | None = None
    seed: int = 0
    feature_extractor: EcgPmaFeatureExtractor | None = None

    def __post_init__(self):
        self.lead_set_sampler = None
        if self.lead_sets:
            self.lead_set_sampler = LeadSetSampler(self.config, self.lead_sets, self.feature_extractor)
            self.generator = torch.Generator().manual_seed(self.seed)

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
        if self.lead_set_sampler is not None:
            batch = self.lead_set_sampler.cut(batch, self.generator)
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
