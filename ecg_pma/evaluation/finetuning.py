"""
The benchmark's end-to-end protocols, `finetune` (every weight trained) and `lora` (low-rank adapters, gate and head
in full): a PMA classifier built on the encoder (the pre-trained one, or the random-initialised floor), trained by the
package's `ecg_pma.training.finetune.finetune` (the paper's schedules from `reference_training_settings`, the epoch
with the best validation macro AUROC kept) on the evaluation windows of the label fraction's training records, and
its per-record probabilities (windows averaged) saved like a probe's run. A killed run resumes from its last
Trainer checkpoint; a finished one is read back.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from ..training.checkpoint import read_cache
from .protocols import ProbeRun, stratified_subset
from .suites import SPLITS, Task


END_TO_END_PROTOCOLS = ("finetune", "lora")


def task_rows(windows: Dataset, record_ids: list[str], labels: np.ndarray) -> Dataset:
    """The windows of `record_ids` (in their order), each with its record's `labels` row."""
    rows_of: dict[str, list[int]] = {}
    for row, record_id in enumerate(windows["record_id"]):
        rows_of.setdefault(record_id, []).append(row)
    indices = [row for record_id in record_ids for row in rows_of[record_id]]
    row_labels = [
        labels[position].tolist() for position, record_id in enumerate(record_ids) for _ in rows_of[record_id]
    ]
    # the suite's own label column (every task's labels) gives way to the task's
    kept = windows.select_columns(
        [name for name in ("signals", "lead_mask", "record_id") if name in windows.column_names]
    )
    return kept.select(indices).add_column("labels", row_labels)


def classifier_on(encoder, task: Task, head_type: str, seed: int):
    """A PMA classifier for `task`'s labels whose encoder holds `encoder`'s weights; gate and head new (seeded)."""
    from transformers import set_seed

    from ..modeling_ecg_pma import EcgPmaForSequenceClassification

    config = copy.deepcopy(encoder.config)
    config.update(
        {
            "aggregation": "pma",
            "head_type": head_type,
            "num_labels": len(task.label_names),
            "id2label": dict(enumerate(task.label_names)),
            "label2id": {name: index for index, name in enumerate(task.label_names)},
            "problem_type": "multi_label_classification",
            "architectures": ["EcgPmaForSequenceClassification"],
        }
    )
    set_seed(seed)
    model = EcgPmaForSequenceClassification(config)
    model.ecg_pma.load_state_dict(encoder.state_dict())
    return model


@torch.inference_mode()
def record_outputs(model, rows: Dataset, record_ids: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid probabilities `(records, labels)` and PMA layer weights `(records, depth)`, windows averaged."""
    model.eval()
    columns = [column for column in ("signals", "lead_mask") if column in rows.column_names]
    batches = rows.with_format("torch", columns=columns)
    probabilities, weights = [], []
    for start in range(0, len(rows), batch_size):
        batch = batches[start : start + batch_size]
        lead_mask = batch.get("lead_mask")
        output = model(signals=batch["signals"], lead_mask=None if lead_mask is None else lead_mask.bool())
        probabilities.append(output.logits.float().sigmoid())
        weights.append(output.layer_weights.float())
    position = {record_id: index for index, record_id in enumerate(record_ids)}
    index = torch.as_tensor([position[record_id] for record_id in rows["record_id"]])
    counts = torch.bincount(index, minlength=len(record_ids)).double().unsqueeze(1)
    averaged = []
    for values in (torch.cat(probabilities).double(), torch.cat(weights).double()):
        summed = torch.zeros((len(record_ids), values.shape[1]), dtype=torch.float64).index_add_(0, index, values)
        averaged.append((summed / counts).numpy())
    return averaged[0], averaged[1]


def run_end_to_end(
    path: Path,
    key: dict,
    encoder,
    windows: Dataset,
    task: Task,
    protocol: str,
    percent: float,
    seed: int,
    settings,
    work_dir: Path,
) -> ProbeRun:
    """
    The saved run at `path` when made with the same `key`; else trains a classifier on `encoder` with `protocol`
    (`finetune` or `lora`) in `work_dir` (resuming from its last checkpoint), saves its probabilities and removes
    `work_dir`. `settings`: the benchmark's (`finetune_epochs`, `finetune_batch_size`, `lora_rank`, `head_type`).
    """
    from ..training.finetune import finetune, reference_training_arguments

    saved = read_cache(path, ProbeRun.load)
    if saved is not None and saved.key == key:
        return saved
    subset = stratified_subset(task.labels["train"], percent, seed)
    rows = {split: task_rows(windows, task.record_ids[split], task.labels[split]) for split in SPLITS}
    train_rows = task_rows(windows, [task.record_ids["train"][i] for i in subset], task.labels["train"][subset])
    model = classifier_on(encoder, task, settings.head_type, seed)
    arguments = reference_training_arguments(
        protocol,
        str(work_dir),
        num_train_epochs=settings.finetune_epochs,
        per_device_train_batch_size=min(settings.finetune_batch_size, len(train_rows)),
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        resume_from_checkpoint="last" if any(work_dir.glob("checkpoint-*")) else None,
    )
    result = finetune(model, train_rows, rows["validation"], arguments, mode=protocol, quiet=True,
                      lora_rank=settings.lora_rank)  # fmt: skip
    model = model.cpu()
    outputs = {split: record_outputs(model, rows[split], task.record_ids[split], settings.embedding_batch_size)
               for split in SPLITS}  # fmt: skip
    run = ProbeRun(
        {split: probabilities for split, (probabilities, _) in outputs.items()},
        float(result.validation["macro_auroc"]),
        len(subset),
        key,
        outputs["test"][1],
    )
    run.save(path)
    shutil.rmtree(work_dir, ignore_errors=True)
    return run
