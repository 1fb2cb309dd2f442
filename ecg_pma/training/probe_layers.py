"""
The layer-wise probing study (the paper's central figure): encode each split once with the frozen encoder, cache
every layer's representation to disk (safetensors), then fit a probe per layer plus PPA and PMA on the cache — no
re-encoding per epoch — and report macro AUROC per layer as a table and a plot.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..metrics import load_ecg_multilabel
from ..modeling_ecg_pma import EcgPmaClassificationHead, EcgPmaLayerAggregator, EcgPmaModel


@dataclass
class LayerCache:
    """Encoder outputs of one split: `layer_representations (N, depth, hidden)`, `input_representation (N, hidden)`."""

    layer_representations: torch.Tensor
    input_representation: torch.Tensor
    labels: torch.Tensor
    record_ids: list[str]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "layer_representations": self.layer_representations.contiguous(),
                "input_representation": self.input_representation.contiguous(),
                "labels": self.labels.contiguous(),
            },
            path,
            metadata={"record_ids": json.dumps(self.record_ids)},
        )

    @classmethod
    def load(cls, path: str | Path) -> LayerCache:
        from safetensors import safe_open

        tensors = load_file(path)
        with safe_open(str(path), framework="pt") as handle:
            record_ids = json.loads(handle.metadata()["record_ids"])
        return cls(tensors["layer_representations"], tensors["input_representation"], tensors["labels"], record_ids)


@torch.no_grad()  # not inference_mode: the cached tensors are trained on afterwards
def encode_layers(encoder: EcgPmaModel, dataset: Dataset, batch_size: int = 64, desc: str = "Encoding") -> LayerCache:
    """Runs the frozen encoder once over model-ready rows (`signals`, `labels`, `record_id`)."""
    encoder.eval()
    device = next(encoder.parameters()).device
    layers, inputs = [], []
    rows = dataset.with_format("torch", columns=["signals"])
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False):
        output = encoder(rows[start : start + batch_size]["signals"].to(device))
        layers.append(output.layer_representations.float().cpu())
        inputs.append(output.input_representation.float().cpu())
    labels = torch.as_tensor(np.asarray(dataset.with_format("numpy")["labels"][:]), dtype=torch.float32)
    return LayerCache(torch.cat(layers), torch.cat(inputs), labels, list(dataset["record_id"]))


class CachedProbe(nn.Module):
    """Aggregation (last / ppa / pma / layer) + the encoder's final LayerNorm (frozen) + a head, on cached features."""

    def __init__(self, encoder: EcgPmaModel, aggregation: str, layer: int | None, num_labels: int, head_type: str):
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
        score = score_probe(probe, validation)["macro_auroc"]
        if score > best_score or not np.isfinite(best_score):
            best_score, best_state = score, copy.deepcopy(probe.state_dict())
    probe.load_state_dict(best_state)
    return probe, best_score


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
    head_type: str = "linear",
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> list[dict]:
    """
    The study: `splits` holds `train`, `validation` and optionally `test` (model-ready rows). Writes `layer_cache/`,
    `layerwise_probe.json`, `layerwise_probe.md` and `layerwise_probe.png` to `output_dir`; returns the table rows.
    """
    output_dir = Path(output_dir)
    caches = {}
    for split, dataset in splits.items():
        path = output_dir / "layer_cache" / f"{split}.safetensors"
        if path.exists():
            caches[split] = LayerCache.load(path)
        else:
            caches[split] = encode_layers(encoder, dataset, batch_size=batch_size, desc=f"Encoding {split}")
            caches[split].save(path)
    num_labels = caches["train"].labels.shape[1]
    depth = encoder.config.num_hidden_layers
    candidates = [(f"layer {layer + 1}", "layer", layer) for layer in range(depth)] + [
        ("PPA", "ppa", None),
        ("PMA", "pma", None),
    ]
    rows = []
    for name, aggregation, layer in tqdm(candidates, desc="Probing"):
        torch.manual_seed(seed)
        probe = CachedProbe(encoder, aggregation, layer, num_labels, head_type)
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
    plot_layers(rows, output_dir / "layerwise_probe.png")
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


def plot_layers(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "test_macro_auroc" if "test_macro_auroc" in rows[0] else "validation_macro_auroc"
    layers = [row for row in rows if row["layer"] is not None]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot([row["layer"] for row in layers], [row[key] for row in layers], marker="o", label="single layer")
    for row, style in zip([row for row in rows if row["layer"] is None], ("--", "-.")):
        axes.axhline(row[key], linestyle=style, color="C1" if row["probe"] == "PPA" else "C2", label=row["probe"])
    axes.set_xlabel("encoder layer")
    axes.set_ylabel(key.replace("_", " "))
    axes.set_xticks([row["layer"] for row in layers])
    axes.set_title("Linear probe per layer vs mixture of layers")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
