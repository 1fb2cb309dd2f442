"""
The layer-wise probing study (the paper's central figure): encode each split once with the frozen encoder, cache
every layer's representation to disk (safetensors), then fit a probe per layer plus PPA and PMA on the cache — no
re-encoding per epoch — and report macro AUROC per layer as a table and a plot.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm.auto import tqdm
from transformers.utils import logging

from ..configuration_ecg_pma import resolve_lead_set
from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor, check_integer
from ..metrics import load_ecg_multilabel
from ..metrics.ecg_multilabel.ecg_multilabel import average_per_record
from ..modeling_ecg_pma import EcgPmaClassificationHead, EcgPmaLayerAggregator, EcgPmaModel
from .checkpoint import load_file_with_metadata, read_cache, save_file_atomically
from .collator import LeadSetSampler


logger = logging.get_logger(__name__)
# How lead-set rows are cut, in lead-set cache keys: caches made when a lead set only masked the leads (before
# per-window normalisation was redone over the kept leads) are encoded again.
LEAD_SET_CUT = "cut_to_leads: per-window z-score over the kept leads"
# Config entries that do not change what the encoder computes.
_CONFIG_KEYS_NOT_HASHED = ("_name_or_path", "transformers_version", "architectures", "auto_map")


@dataclass
class LayerCache:
    """
    Encoder outputs of one split: `layer_representations (N, depth, hidden)`, `input_representation (N, hidden)`.
    `key` says what produced them (see `layer_cache_key`); it is saved with the tensors.
    """

    layer_representations: torch.Tensor
    input_representation: torch.Tensor
    labels: torch.Tensor
    record_ids: list[str]
    key: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        save_file_atomically(  # a kill while writing leaves no half cache for a rerun to read
            {
                "layer_representations": self.layer_representations,
                "input_representation": self.input_representation,
                "labels": self.labels,
            },
            path,
            metadata={"record_ids": json.dumps(self.record_ids), "key": json.dumps(self.key, sort_keys=True)},
        )

    @classmethod
    def load(cls, path: str | Path) -> LayerCache:
        tensors, metadata = load_file_with_metadata(path)
        return cls(
            tensors["layer_representations"],
            tensors["input_representation"],
            tensors["labels"],
            json.loads(metadata["record_ids"]),
            json.loads(metadata.get("key", "{}")),
        )


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights (names, dtypes, shapes and bytes) and of the config entries that shape its output."""
    hasher = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if k not in _CONFIG_KEYS_NOT_HASHED}
    hasher.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        # flattened first: a 0-d buffer (an MLP head's BatchNorm `num_batches_tracked`) has no byte view; the bytes
        # of every other tensor are the same
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return hasher.hexdigest()


def layer_cache_key(model_hash: str, dataset: Dataset, split: str, lead_set: list[str] | None = None) -> dict:
    """
    What a split's layer cache depends on: the encoder (`model_fingerprint`), the rows (the dataset's fingerprint,
    which `datasets` derives from the source files and every transform applied, extractor settings and label set
    included), the split and, for a lead set, its leads and how rows are cut to them (`LEAD_SET_CUT`).
    """
    key = {"model": model_hash, "dataset": dataset._fingerprint, "num_rows": len(dataset), "split": split}
    return key | ({"lead_set": list(lead_set), "lead_set_cut": LEAD_SET_CUT} if lead_set else {})


def load_or_encode(
    encoder: EcgPmaModel,
    dataset: Dataset,
    path: Path,
    split: str,
    model_hash: str,
    batch_size: int = 64,
    lead_set: str | list[str] | None = None,
    feature_extractor: EcgPmaFeatureExtractor | None = None,
) -> LayerCache:
    """The split's cache at `path` when it was made from this encoder and these rows; else encodes and saves anew."""
    leads = resolve_lead_set(lead_set, encoder.config.lead_names) if lead_set else None
    key = layer_cache_key(model_hash, dataset, split, leads)
    cache = read_cache(path, LayerCache.load)
    if cache is not None:
        if cache.key == key:
            return cache
        changed = sorted(name for name in key if cache.key.get(name) != key[name])
        logger.warning(f"{path} was made from another {' / '.join(changed)}; encoding the {split} split again.")
    cache = encode_layers(
        encoder, dataset, batch_size, f"Encoding {split}", lead_set=lead_set, feature_extractor=feature_extractor
    )
    cache.key = key
    cache.save(path)
    return cache


@torch.no_grad()  # not inference_mode: the cached tensors are trained on afterwards
def encode_layers(
    encoder: EcgPmaModel,
    dataset: Dataset,
    batch_size: int = 64,
    desc: str = "Encoding",
    lead_set: str | list[str] | None = None,
    feature_extractor: EcgPmaFeatureExtractor | None = None,
) -> LayerCache:
    """
    Runs the frozen encoder once over model-ready rows (`signals`, `labels`, `record_id`, optional `lead_mask`),
    reading only the leads of `lead_set` (a name of `ecg_pma.LEAD_SETS` or lead names) when given: the rows cut to
    them as `feature_extractor` (the one that made them; by default the one made from the encoder's config) cuts
    records.
    """
    encoder.eval()
    device = next(encoder.parameters()).device
    layers, inputs = [], []
    rows = dataset.with_format("torch", columns=[c for c in ("signals", "lead_mask") if c in dataset.column_names])
    sampler = None
    if lead_set:
        extractor = feature_extractor or EcgPmaFeatureExtractor.from_model_config(encoder.config)
        sampler = LeadSetSampler(encoder.config, [lead_set], extractor)
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False):
        batch = rows[start : start + batch_size]
        if sampler is not None:  # one lead set: the same cut whatever the generator
            batch = sampler.cut(batch, torch.Generator().manual_seed(0))
        lead_mask = batch.get("lead_mask")
        output = encoder(
            batch["signals"].to(device), lead_mask=None if lead_mask is None else lead_mask.bool().to(device)
        )
        layers.append(output.layer_representations.float().cpu())
        inputs.append(output.input_representation.float().cpu())
    labels = torch.as_tensor(np.asarray(dataset.with_format("numpy")["labels"][:]), dtype=torch.float32)
    return LayerCache(torch.cat(layers), torch.cat(inputs), labels, list(dataset["record_id"]))


class CachedProbe(nn.Module):
    """
    Aggregation (last / ppa / pma / layer) + the encoder's final LayerNorm (frozen) + a head, on cached features,
    initialised as `EcgPmaForSequenceClassification` initialises them (the PMA gate starting uniform);
    `probe_gate="frozen"` keeps the gate there.
    """

    def __init__(
        self,
        encoder: EcgPmaModel,
        aggregation: str,
        layer: int | None,
        num_labels: int,
        head_type: str,
        probe_gate: str = "train",
    ):
        super().__init__()
        config = copy.deepcopy(encoder.config)
        config.aggregation, config.aggregation_layer, config.num_labels, config.head_type = (
            aggregation,
            layer,
            num_labels,
            head_type,
        )
        self.aggregator = EcgPmaLayerAggregator(config)
        self.norm = copy.deepcopy(encoder.layernorm).requires_grad_(False)
        self.classifier = EcgPmaClassificationHead(config)
        for module in self.modules():
            if isinstance(module, nn.Linear):  # the gate's last Linear included: it starts at zero
                encoder._init_weights(module)
        if self.aggregator.gate is not None and probe_gate == "frozen":
            self.aggregator.gate.requires_grad_(False)

    def forward(self, layer_representations: torch.Tensor, input_representation: torch.Tensor) -> torch.Tensor:
        fused, _ = self.aggregator(layer_representations, input_representation)
        return self.classifier(self.norm(fused))


def fit_probe(
    probe: CachedProbe,
    train: LayerCache,
    validation: LayerCache,
    epochs: int = 100,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
) -> tuple[CachedProbe, float]:
    """
    Trains on the cache with the paper's probing schedule (AdamW, constant learning rate 1e-3, weight decay 0.05,
    batch 64, 100 epochs); keeps the epoch with the best validation macro AUROC.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        [p for p in probe.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay
    )
    best_score, best_state = -np.inf, copy.deepcopy(probe.state_dict())
    drop_last = len(train.labels) > batch_size  # BatchNorm in an MLP head cannot train on one sample
    for _ in range(epochs):
        probe.train()
        order = torch.randperm(len(train.labels), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            if drop_last and len(index) < 2:
                continue
            logits = probe(train.layer_representations[index], train.input_representation[index])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, train.labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        score = validation_macro_auroc(probe, validation)
        if score > best_score or not np.isfinite(best_score):
            best_score, best_state = score, copy.deepcopy(probe.state_dict())
    probe.load_state_dict(best_state)
    return probe, best_score


@torch.inference_mode()
def validation_macro_auroc(probe: CachedProbe, cache: LayerCache) -> float:
    """
    `score_probe(...)["macro_auroc"]` (windows averaged per record, classes with one value left out) computed here
    directly: it runs after every epoch, and the `evaluate` round trip would cost more than the epoch.
    """
    probe.eval()
    probabilities = probe(cache.layer_representations, cache.input_representation).sigmoid().double().numpy()
    predictions, references, _ = average_per_record(probabilities, cache.labels.numpy().astype(int), cache.record_ids)
    scored = [label for label in range(references.shape[1]) if 0 < references[:, label].sum() < len(references)]
    if not scored:
        return float("nan")
    return float(np.mean([roc_auc_score(references[:, label], predictions[:, label]) for label in scored]))


@torch.inference_mode()
def score_probe(probe: CachedProbe, cache: LayerCache) -> dict:
    probe.eval()
    probabilities = probe(cache.layer_representations, cache.input_representation).sigmoid().numpy()
    return _metric().compute(
        predictions=probabilities, references=cache.labels.numpy().astype(int), record_ids=cache.record_ids
    )


@functools.cache
def _metric():
    """Loaded once: the probes are scored after every epoch."""
    return load_ecg_multilabel()


def probe_layers(
    encoder: EcgPmaModel,
    splits: dict[str, Dataset],
    output_dir: str | Path,
    epochs: int = 100,
    head_type: str | None = None,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    probe_gate: str = "train",
    lead_set: str | list[str] | None = None,
    feature_extractor: EcgPmaFeatureExtractor | None = None,
) -> list[dict]:
    """
    The study: `splits` holds `train`, `validation` and optionally `test` (model-ready rows). Writes `layer_cache/`
    (reused only when made from the same encoder weights and the same rows, see `layer_cache_key`),
    `layerwise_probe.json`, `layerwise_probe.md` and `layerwise_probe.png` to `output_dir`; returns the table rows.
    `head_type` defaults to the encoder config's, the head `finetune --mode probe` trains; `probe_gate` as there.
    `lead_set` (e.g. `"2"` or `["I"]`): the encoder reads only those leads, the rows cut to them as
    `feature_extractor` (the one that made them; by default the one made from the encoder's config) cuts records
    (cached apart from the full-lead features).
    """
    head_type = head_type or encoder.config.head_type
    check_integer("epochs", epochs)  # 0 epochs would leave every score at its initial -inf
    check_integer("batch_size", batch_size)
    absent = [split for split in ("train", "validation") if split not in splits or not len(splits[split])]
    if absent:
        raise ValueError(
            f"The layer-wise probe trains on `train` and selects on `validation`; the data has no {' or '.join(absent)} "
            f"records (splits: {', '.join(f'{name} {len(rows)}' for name, rows in splits.items()) or 'none'})."
        )
    output_dir = Path(output_dir)
    model_hash = model_fingerprint(encoder)
    cache_dir = output_dir / "layer_cache"
    if lead_set:
        cache_dir = cache_dir / ("leads-" + "-".join(resolve_lead_set(lead_set, encoder.config.lead_names)))
    caches = {
        split: load_or_encode(
            encoder,
            dataset,
            cache_dir / f"{split}.safetensors",
            split,
            model_hash,
            batch_size,
            lead_set=lead_set,
            feature_extractor=feature_extractor,
        )
        for split, dataset in splits.items()
    }
    num_labels = caches["train"].labels.shape[1]
    depth = encoder.config.num_hidden_layers
    candidates = [(f"layer {layer + 1}", "layer", layer) for layer in range(depth)] + [
        ("PPA", "ppa", None),
        ("PMA", "pma", None),
    ]
    rows = []
    for name, aggregation, layer in tqdm(candidates, desc="Probing"):
        torch.manual_seed(seed)
        probe = CachedProbe(encoder, aggregation, layer, num_labels, head_type, probe_gate)
        probe, validation_auroc = fit_probe(
            probe, caches["train"], caches["validation"], epochs, batch_size, learning_rate, seed=seed
        )
        row = {
            "probe": name,
            "layer": None if layer is None else layer + 1,
            "validation_macro_auroc": validation_auroc,
        }
        if "test" in caches:
            row["test_macro_auroc"] = score_probe(probe, caches["test"])["macro_auroc"]
        rows.append(row)

    (output_dir / "layerwise_probe.json").write_text(json.dumps(rows, indent=2))
    write_table(rows, output_dir / "layerwise_probe.md")
    records = {split: len(set(cache.record_ids)) for split, cache in caches.items()}
    plot_layers(rows, output_dir / "layerwise_probe.png", head_type=head_type, num_records=records)
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    has_test = "test_macro_auroc" in rows[0]
    lines = [
        "| probe | validation macro AUROC |" + (" test macro AUROC |" if has_test else ""),
        "| --- | --- |" + (" --- |" if has_test else ""),
    ]
    for row in rows:
        line = f"| {row['probe']} | {row['validation_macro_auroc']:.4f} |"
        lines.append(line + (f" {row['test_macro_auroc']:.4f} |" if has_test else ""))
    path.write_text("\n".join(lines) + "\n")


def plot_layers(
    rows: list[dict], path: Path, head_type: str = "linear", num_records: dict[str, int] | None = None
) -> None:
    """The study's figure: one point per layer, PPA and PMA as lines, chance (AUROC 0.5) dotted; the title names the
    head and the number of records of each split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "test_macro_auroc" if "test_macro_auroc" in rows[0] else "validation_macro_auroc"
    layers = [row for row in rows if row["layer"] is not None]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot([row["layer"] for row in layers], [row[key] for row in layers], marker="o", label="single layer")
    for row, style in zip([row for row in rows if row["layer"] is None], ("--", "-.")):
        axes.axhline(row[key], linestyle=style, color="C1" if row["probe"] == "PPA" else "C2", label=row["probe"])
    axes.axhline(0.5, linestyle=":", color="grey", label="chance")
    axes.set_xlabel("encoder layer")
    axes.set_ylabel(key.replace("_", " "))
    axes.set_xticks([row["layer"] for row in layers])
    title = (
        f"{head_type.upper() if head_type == 'mlp' else head_type.capitalize()} probe per layer vs mixture of layers"
    )
    if num_records:
        title += "\n" + ", ".join(f"{split}: {count} records" for split, count in num_records.items())
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    # The title is kept in the PNG's metadata too, where a reader (or a test) finds it without looking.
    figure.savefig(path, dpi=120, metadata={"Title": title.replace("\n", "; ")})
    plt.close(figure)
