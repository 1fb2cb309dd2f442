"""
The linear-probe protocol on cached record embeddings: for a task, an encoder, a label fraction, a seed and a head
(last layer, PPA, PMA with the gate trained or frozen, each single layer), `CachedProbe` trained by `fit_probe` (the
layer-wise study's probe and schedule) on the fraction's training records, the epoch with the best validation macro
AUROC kept, and its probabilities for every train / validation / test record saved at once to one safetensors file,
so that a killed benchmark resumes where it stopped with the same numbers.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..training.checkpoint import load_file_with_metadata, read_cache, save_file_atomically
from ..training.probe_layers import CachedProbe, LayerCache, fit_probe
from .embeddings import RecordEmbeddings
from .suites import SPLITS, Task


@dataclass(frozen=True)
class Head:
    """A probe head: its name in the report, the aggregation (`last`/`ppa`/`pma`/`layer`), layer (0-based), gate."""

    name: str
    aggregation: str
    layer: int | None = None
    probe_gate: str = "train"


def expand_heads(heads: list[str], depth: int) -> list[Head]:
    """`["last", "pma", "layers"]` -> the heads, `layers` expanded to one per encoder layer (`layer1`...)."""
    expanded = []
    for head in heads:
        if head == "layers":
            expanded += [Head(f"layer{layer + 1}", "layer", layer) for layer in range(depth)]
        elif head == "pma-frozen":
            expanded.append(Head("pma-frozen", "pma", probe_gate="frozen"))
        elif head in ("last", "ppa", "pma"):
            expanded.append(Head(head, head))
        else:
            raise ValueError(f"Unknown probe head {head!r}; expected last, ppa, pma, pma-frozen or layers.")
    return expanded


def stratified_subset(labels: np.ndarray, percent: float, seed: int) -> np.ndarray:
    """
    Sorted row indices of about `percent` % of the records of `labels (N, C)`, stratified per label (the iterative
    stratification of Sechidis et al. 2011, as the PTB-XL folds were drawn): labels are taken rarest first, each
    giving its share of its not yet decided records (at least one, so that every label with a positive keeps one),
    then unlabelled records fill up to the target. Seeded by `seed`; 100 % is every record.
    """
    size = len(labels)
    if percent >= 100:
        return np.arange(size)
    rng = np.random.default_rng(seed)
    target = max(1, round(size * percent / 100))
    decided = np.zeros(size, dtype=bool)
    chosen = np.zeros(size, dtype=bool)
    counts = labels.sum(axis=0)
    for label in np.argsort(counts, kind="stable"):
        if counts[label] == 0:
            continue
        open_rows = np.flatnonzero((labels[:, label] > 0) & ~decided)
        wanted = max(round(counts[label] * percent / 100) - int(labels[chosen, label].sum()), 0)
        if labels[chosen, label].sum() == 0:
            wanted = max(wanted, 1)
        take = rng.permutation(open_rows)[:wanted]
        chosen[take] = True
        decided[open_rows] = True
    remaining = np.flatnonzero(~decided)
    fill = max(target - int(chosen.sum()), 0)
    chosen[rng.permutation(remaining)[:fill]] = True
    return np.flatnonzero(chosen)


@dataclass
class ProbeRun:
    """Probabilities `(records, labels)` per split of one trained probe, and what produced them (`key`)."""

    probabilities: dict[str, np.ndarray]
    validation_macro_auroc: float
    train_records: int
    key: dict
    test_gate_weights: np.ndarray | None = None  # `(test records, depth)`: a PMA head's layer weights per record

    def save(self, path: Path) -> None:
        tensors = {split: torch.as_tensor(values) for split, values in self.probabilities.items()}
        if self.test_gate_weights is not None:
            tensors["test_gate_weights"] = torch.as_tensor(self.test_gate_weights)
        save_file_atomically(  # written whole or not at all: a kill never leaves half a result
            tensors,
            path,
            metadata={
                "key": json.dumps(self.key, sort_keys=True),
                "validation_macro_auroc": repr(self.validation_macro_auroc),
                "train_records": str(self.train_records),
            },
        )

    @classmethod
    def load(cls, path: Path) -> ProbeRun:
        tensors, metadata = load_file_with_metadata(path)
        return cls(
            {split: tensors[split].numpy() for split in SPLITS},
            float(metadata["validation_macro_auroc"]),
            int(metadata["train_records"]),
            json.loads(metadata["key"]),
            tensors["test_gate_weights"].numpy() if "test_gate_weights" in tensors else None,
        )


@contextmanager
def one_thread():
    """
    Probes on cached embeddings are small matrix products, for which torch's worker threads cost more in
    synchronisation than they save (ten times more on a shared two-core machine): they run on one thread, and the
    setting is restored after.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.inference_mode()
def probabilities_of(probe: CachedProbe, cache) -> np.ndarray:
    probe.eval()
    logits = probe(cache.layer_representations, cache.input_representation)
    return logits.sigmoid().double().numpy()


@torch.inference_mode()
def gate_weights_of(probe: CachedProbe, cache) -> np.ndarray | None:
    """The PMA gate's layer weights `(records, depth)` of a `pma` probe; None for the other heads."""
    if probe.aggregator.gate is None:
        return None
    return probe.aggregator(cache.layer_representations, cache.input_representation)[1].double().numpy()


def run_probe(
    path: Path,
    key: dict,
    encoder,
    embeddings: RecordEmbeddings,
    task: Task,
    head: Head,
    percent: float,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    head_type: str,
) -> ProbeRun:
    """The probe's saved run at `path` when made with the same `key`; else trains it and saves it."""
    saved = read_cache(path, ProbeRun.load)
    if saved is not None and saved.key == key:
        return saved
    caches = {split: embeddings.probe_cache(task.record_ids[split], task.labels[split]) for split in SPLITS}
    subset = stratified_subset(task.labels["train"], percent, seed)
    train = caches["train"]
    train_subset = LayerCache(
        train.layer_representations[subset],
        train.input_representation[subset],
        train.labels[subset],
        [train.record_ids[i] for i in subset],
    )
    torch.manual_seed(seed)
    probe = CachedProbe(encoder, head.aggregation, head.layer, len(task.label_names), head_type, head.probe_gate)
    probe, validation_auroc = fit_probe(
        probe, train_subset, caches["validation"], epochs, batch_size, learning_rate, seed=seed
    )
    run = ProbeRun(
        {split: probabilities_of(probe, cache) for split, cache in caches.items()},
        float(validation_auroc),
        len(subset),
        key,
        gate_weights_of(probe, caches["test"]) if head.aggregation == "pma" else None,
    )
    run.save(path)
    return run
