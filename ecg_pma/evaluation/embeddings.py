"""
Deterministic record embeddings, the basis of every benchmark probe: each record's fixed evaluation windows (the
extractor's `n_crop` crops or sliding windows; never random crops, never masking) through the frozen encoder, the
windows of a record averaged. Per record: every layer's representation, the input representation (what the PMA gate
reads), the pooled output (final LayerNorm of the last layer) and a layer mixture (the model's trained PMA gate when it
has one, else PPA, the uniform mean), all through one encoding pass. Written to safetensors with the record ids, in
parts as encoding goes (a killed run keeps its finished parts and resumes), keyed, as the layer-wise study's cache
is, to the weights and the rows (`ecg_pma.training.probe_layers.layer_cache_key`). With a lead set, the rows are
cut to its leads first as the extractor that made them cuts records (`EcgPmaFeatureExtractor.cut_to_leads`, through
`LeadSetSampler`, as `evaluate --lead-sets` and `probe-layers --lead-set` read them), and the key names the leads.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm
from transformers.utils import logging

from ..configuration_ecg_pma import resolve_lead_set
from ..data import extract_features, handle_short_records
from ..modeling_ecg_pma import EcgPmaLayerAggregator, EcgPmaModel
from ..training.checkpoint import load_file_with_metadata, read_cache, save_file_atomically
from ..training.collator import LeadSetSampler
from ..training.probe_layers import LayerCache, layer_cache_key


logger = logging.get_logger(__name__)
TENSORS = ("layer_representations", "input_representation", "pooled", "mixed")


@dataclass
class RecordEmbeddings:
    """
    One row per record: `layer_representations (N, depth, hidden)`, `input_representation (N, hidden)`,
    `pooled (N, hidden)`, `mixed (N, hidden)` (the layer mixture named by `mixture`: `"pma"` or `"ppa"`), each the
    mean over the record's windows; `record_ids`, `splits` (the split each record belongs to) and `key` (what made them).
    """

    layer_representations: torch.Tensor
    input_representation: torch.Tensor
    pooled: torch.Tensor
    mixed: torch.Tensor
    record_ids: list[str]
    splits: list[str]
    mixture: str = "ppa"
    key: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        save_file_atomically(  # a kill while writing leaves no half file under the final name
            {name: getattr(self, name) for name in TENSORS},
            path,
            metadata={
                "record_ids": json.dumps(self.record_ids),
                "splits": json.dumps(self.splits),
                "mixture": self.mixture,
                "key": json.dumps(self.key, sort_keys=True),
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> RecordEmbeddings:
        tensors, metadata = load_file_with_metadata(path)
        return cls(
            *(tensors[name] for name in TENSORS),
            json.loads(metadata["record_ids"]),
            json.loads(metadata["splits"]),
            metadata["mixture"],
            json.loads(metadata["key"]),
        )

    @classmethod
    def concatenate(cls, parts: list[RecordEmbeddings], key: dict) -> RecordEmbeddings:
        return cls(
            *(torch.cat([getattr(part, name) for part in parts]) for name in TENSORS),
            [record_id for part in parts for record_id in part.record_ids],
            [split for part in parts for split in part.splits],
            parts[0].mixture,
            key,
        )

    def probe_cache(self, record_ids: list[str], labels: np.ndarray) -> LayerCache:
        """The rows of `record_ids` with `labels (len(record_ids), num_labels)`, as the layer-wise probes read them."""
        position = {record_id: row for row, record_id in enumerate(self.record_ids)}
        missing = [record_id for record_id in record_ids if record_id not in position]
        if missing:
            raise KeyError(f"{len(missing)} record(s) have no embedding, e.g. {missing[:5]}.")
        rows = torch.as_tensor([position[record_id] for record_id in record_ids], dtype=torch.long)
        return LayerCache(
            self.layer_representations[rows],
            self.input_representation[rows],
            torch.as_tensor(labels, dtype=torch.float32),
            list(record_ids),
        )


def evaluation_window_mode(feature_extractor) -> str:
    """The extractor's evaluation windows (`n_crop`, `sliding`, `center`); `sliding` for one saved with `random`."""
    return "sliding" if feature_extractor.window_mode == "random" else feature_extractor.window_mode


def evaluation_windows(records, extractor, num_proc: int | None = None, short_records: str = "drop"):
    """
    The records of every split of `records` (a `DatasetDict` as the loaders return it) as evaluation windows, one
    dataset; the split of each row; the ids of the records too short for one window (dropped and logged, or as
    `short_records` says: `pad`, `raise`).
    """
    parts, splits, dropped = [], [], []
    for split, dataset in records.items():
        if not len(dataset):
            continue
        dataset, split_extractor, names = handle_short_records(dataset, extractor, short_records, split)
        dropped += names
        windows = extract_features(
            dataset, split_extractor, window_mode=evaluation_window_mode(extractor), num_proc=num_proc
        )
        parts.append(windows)
        splits += [split] * len(windows)
    return concatenate_datasets(parts), splits, dropped


def record_parts(record_ids: list[str], part_rows: int) -> list[tuple[int, int]]:
    """
    `[start, stop)` row ranges of whole records (a record's windows are contiguous rows), each at least `part_rows`
    rows except the last: the units that are encoded and saved at once.
    """
    parts, start = [], 0
    for row in range(1, len(record_ids) + 1):
        boundary = row == len(record_ids) or record_ids[row] != record_ids[row - 1]
        if boundary and (row - start >= part_rows or row == len(record_ids)):
            parts.append((start, row))
            start = row
    return parts


@torch.no_grad()
def encode_part(
    encoder: EcgPmaModel,
    aggregator: EcgPmaLayerAggregator | None,
    rows: Dataset,
    record_ids: list[str],
    splits: list[str],
    batch_size: int,
    lead_sampler: LeadSetSampler | None = None,
) -> RecordEmbeddings:
    """Encodes the windows of `rows` (whole records) and averages them per record, in order of appearance;
    `lead_sampler` (of one lead set) cuts each batch to its leads first."""
    device = next(encoder.parameters()).device
    outputs = {name: [] for name in TENSORS}
    columns = [column for column in ("signals", "lead_mask") if column in rows.column_names]
    rows = rows.with_format("torch", columns=columns)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        if lead_sampler is not None:  # one lead set: the same cut whatever the generator
            batch = lead_sampler.cut(batch, torch.Generator().manual_seed(0))
        lead_mask = batch.get("lead_mask")
        output = encoder(
            batch["signals"].to(device), lead_mask=None if lead_mask is None else lead_mask.bool().to(device)
        )
        layers, inputs = output.layer_representations.float(), output.input_representation.float()
        if aggregator is None:
            mixed = encoder.layernorm(layers.mean(dim=1))
        else:
            mixed = encoder.layernorm(aggregator(layers, inputs)[0])
        for name, value in zip(TENSORS, (layers, inputs, output.pooler_output.float(), mixed)):
            outputs[name].append(value.cpu())
    # windows of a record are contiguous rows: a new record starts where the id changes
    index = torch.as_tensor(np.cumsum([0] + [a != b for a, b in zip(record_ids[1:], record_ids[:-1])]))
    first_rows = [0] + [row for row in range(1, len(record_ids)) if record_ids[row] != record_ids[row - 1]]
    if len({record_ids[row] for row in first_rows}) < len(first_rows):
        raise ValueError("A record's windows are not contiguous rows; embed the rows `extract_features` returns.")
    counts = torch.bincount(index, minlength=len(first_rows)).float()
    averaged = []
    for name in TENSORS:
        values = torch.cat(outputs[name])
        summed = torch.zeros((len(first_rows), *values.shape[1:]), dtype=values.dtype).index_add_(0, index, values)
        averaged.append(summed / counts.view(-1, *([1] * (values.dim() - 1))))
    return RecordEmbeddings(
        *averaged,
        [record_ids[row] for row in first_rows],
        [splits[row] for row in first_rows],
        "ppa" if aggregator is None else "pma",
    )


def embed_records(
    encoder: EcgPmaModel,
    windows: Dataset,
    output: str | Path,
    model_hash: str,
    aggregator: EcgPmaLayerAggregator | None = None,
    splits: list[str] | None = None,
    batch_size: int = 64,
    part_rows: int = 1024,
    desc: str = "Embedding",
    lead_set: str | None = None,
    feature_extractor=None,
) -> RecordEmbeddings:
    """
    Embeds every record of `windows` (model-ready rows of `extract_features`, a record's windows contiguous) into
    `output` (safetensors), or reads `output` when it was made from this encoder (`model_hash`, see
    `model_fingerprint`) and these rows. Parts are saved to `output.parts/` as they finish; a rerun after a kill
    encodes only the missing ones, and they are merged (and removed) at the end. `aggregator`: a trained PMA gate,
    whose mixture is stored as `mixed` (PPA otherwise). `splits`: the split of each row (saved per record).
    `lead_set` (a name of `ecg_pma.LEAD_SETS` or lead names): the encoder reads only those leads, the rows cut to them
    as `feature_extractor` (the one that made them) cuts records; the cache key names the leads.
    """
    output = Path(output)
    leads = resolve_lead_set(lead_set, encoder.config.lead_names) if lead_set else None
    key = {**layer_cache_key(model_hash, windows, "all", leads), "mixture": "ppa" if aggregator is None else "pma"}
    cached = read_cache(output, RecordEmbeddings.load)
    if cached is not None:
        if cached.key == key:
            return cached
        changed = sorted(name for name in key if cached.key.get(name) != key[name])
        logger.warning(f"{output} was made from another {' / '.join(changed)}; embedding again.")
    encoder.eval()
    if aggregator is not None:
        aggregator.eval()
    record_ids = list(windows["record_id"])
    splits = splits or ["all"] * len(record_ids)
    lead_sampler = LeadSetSampler(encoder.config, [lead_set], feature_extractor) if lead_set else None
    parts_dir = output.with_name(output.name + ".parts")
    parts = []
    for number, (start, stop) in enumerate(tqdm(record_parts(record_ids, part_rows), desc=desc, leave=False)):
        path = parts_dir / f"part-{number:05d}.safetensors"
        part_key = {**key, "rows": [start, stop]}
        part = read_cache(path, RecordEmbeddings.load)
        if part is not None and part.key == part_key:
            parts.append(part)
            continue
        part = encode_part(
            encoder, aggregator, windows.select(range(start, stop)), record_ids[start:stop], splits[start:stop],
            batch_size, lead_sampler,
        )  # fmt: skip
        part.key = part_key
        part.save(path)
        parts.append(part)
    embeddings = RecordEmbeddings.concatenate(parts, key)
    embeddings.save(output)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return embeddings
