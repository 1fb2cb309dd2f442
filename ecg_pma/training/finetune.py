"""
Linear probing and finetuning of `EcgPmaForSequenceClassification` with `transformers.Trainer`: the data collator,
`compute_metrics` through the package's `evaluate` module (windows averaged per record), best-checkpoint selection on
validation macro AUROC, thresholds tuned on validation and applied to test, and JSON + Markdown results.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
from ..metrics import load_ecg_multilabel
from ..modeling_ecg_pma import EcgPmaForSequenceClassification
from .collator import EcgDataCollator
from .lora import add_lora, save_lora_adapter


MODES = ("probe", "finetune", "lora")
BEST_METRIC = "macro_auroc"


def reference_training_arguments(mode: str, output_dir: str, **overrides) -> TrainingArguments:
    """
    The PMA paper's schedules. probe: 100 epochs, batch 64, AdamW lr 1e-3 constant, wd 0.05. finetune: 100 epochs,
    batch 16, lr 1e-3 x batch / 256, 5 warm-up epochs then cosine, wd 0.05. lora (our choice, not the paper's): the
    finetune schedule at lr 1e-3, the usual order of magnitude for low-rank adapters. `overrides` replace any of
    them.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {MODES}.")
    if mode == "probe":
        defaults = {
            "num_train_epochs": 100,
            "per_device_train_batch_size": 64,
            "learning_rate": 1e-3,
            "lr_scheduler_type": "constant",
        }
    else:
        defaults = {
            "num_train_epochs": 100,
            "per_device_train_batch_size": 16,
            "learning_rate": 1e-3 * 16 / 256 if mode == "finetune" else 1e-3,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 0.05,  # a ratio: 5 of 100 epochs
        }
    settings = {
        **defaults,
        "output_dir": output_dir,
        "weight_decay": 0.05,
        "per_device_eval_batch_size": 64,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": BEST_METRIC,
        "greater_is_better": True,
        # Only the model (safetensors) is checkpointed: optimizer / scheduler / RNG files are pickles.
        "save_only_model": True,
        "save_total_limit": 1,
        "logging_strategy": "epoch",
        "report_to": "none",
        "dataloader_pin_memory": torch.cuda.is_available(),
        **overrides,
    }
    return TrainingArguments(**settings)


class EcgTrainer(Trainer):
    """A Trainer that drops the last incomplete *training* batch: the MLP head's BatchNorm cannot train on a batch of
    one. (`dataloader_drop_last` would drop evaluation windows too.)"""

    def get_train_dataloader(self):
        drop_last = self.args.dataloader_drop_last
        self.args.dataloader_drop_last = True
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = drop_last


class SafetensorsOnlyCallback(TrainerCallback):
    """The Trainer pickles its arguments into every checkpoint; keep them as JSON instead."""

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        pickled = checkpoint / "training_args.bin"
        if pickled.exists():
            pickled.unlink()
            (checkpoint / "training_args.json").write_text(args.to_json_string())


class RecordMetrics:
    """
    `compute_metrics` for one evaluation split: sigmoid probabilities, windows averaged per record (the split's
    `record_id` column, in the evaluation order), scored by the package's `evaluate` module. Thresholds are tuned on
    the split when `tune_thresholds`, else taken from `thresholds`. The last full result is kept in `.last`.
    """

    def __init__(self, record_ids: list[str], thresholds: list[float] | None = None, tune_thresholds: bool = False):
        self.record_ids = list(record_ids)
        self.thresholds = thresholds
        self.tune_thresholds = tune_thresholds
        self.metric = load_ecg_multilabel()
        self.last: dict = {}

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        outputs = prediction.predictions
        logits, layer_weights = (outputs[0], outputs[1]) if isinstance(outputs, tuple) else (outputs, None)
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        if len(probabilities) != len(self.record_ids):
            raise ValueError(
                f"{len(probabilities)} predictions for {len(self.record_ids)} windows of the evaluation split: "
                "evaluation batches must not be dropped (`dataloader_drop_last=False`)."
            )
        result = self.metric.compute(
            predictions=probabilities,
            references=np.asarray(prediction.label_ids).astype(int),
            record_ids=self.record_ids,
            thresholds=None if self.tune_thresholds else self.thresholds,
            tune_thresholds=self.tune_thresholds,
        )
        if layer_weights is not None:
            result["mean_layer_weights"] = np.asarray(layer_weights).mean(axis=0).tolist()
        self.last = result
        return {key: value for key, value in result.items() if isinstance(value, (int, float))}


@dataclass
class FinetuneResult:
    output_dir: str
    validation: dict
    test: dict | None


def finetune(
    model: EcgPmaForSequenceClassification,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    training_args: TrainingArguments,
    mode: str = "probe",
    test_dataset: Dataset | None = None,
    feature_extractor: EcgPmaFeatureExtractor | None = None,
    quiet: bool = False,
    lora_rank: int = 8,
    lora_alpha: float | None = None,
    lora_dropout: float = 0.0,
) -> FinetuneResult:
    """
    Trains `model` (`mode="probe"`: encoder frozen, gate and head trained; `"finetune"`: everything; `"lora"`:
    rank-`lora_rank` adapters on the encoder's projections, gate and head in full, see `ecg_pma.training.lora`;
    `lora_alpha` defaults to `2 * lora_rank`) on model-ready
    rows (`signals`, `labels`, `record_id`, as `ecg_pma.data.extract_features` makes them), keeps the checkpoint with
    the best validation macro AUROC, tunes per-label F1 thresholds on validation, scores `test_dataset` with them,
    and saves the model (thresholds in its config), feature extractor, model card and `results.json` / `results.md`
    to `training_args.output_dir`. `quiet` drops the Trainer's progress bars and printed logs. With LoRA, the adapter
    is saved under `output_dir/adapter` and `model` becomes (is merged into) the plain classifier saved beside it.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {MODES}.")
    if mode == "probe":
        model.freeze_encoder()
    else:
        model.unfreeze_encoder()
    for name, dataset in (("train", train_dataset), ("validation", eval_dataset), ("test", test_dataset)):
        if dataset is not None and "record_id" not in dataset.column_names:
            raise ValueError(f"The {name} dataset needs a `record_id` column (see ecg_pma.data.extract_features).")

    trained = add_lora(model, lora_rank, lora_alpha, lora_dropout) if mode == "lora" else model

    validation_metrics = RecordMetrics(eval_dataset["record_id"], tune_thresholds=True)
    trainer = EcgTrainer(
        model=trained,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=EcgDataCollator(config=model.config),
        compute_metrics=validation_metrics,
        callbacks=[SafetensorsOnlyCallback()],
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    trainer.train()

    trainer.evaluate()  # the best checkpoint, reloaded: its validation scores and tuned thresholds
    validation = validation_metrics.last
    model.config.decision_thresholds = validation["thresholds"]
    test = None
    if test_dataset is not None:
        trainer.compute_metrics = RecordMetrics(test_dataset["record_id"], thresholds=validation["thresholds"])
        trainer.evaluate(test_dataset, metric_key_prefix="test")
        test = trainer.compute_metrics.last

    output_dir = Path(training_args.output_dir)
    if mode == "lora":
        if trainer.is_world_process_zero():
            save_lora_adapter(trained, output_dir)
        trained.merge_and_unload()  # folds the adapters into `model`'s own Linears, in place
    if trainer.is_world_process_zero():
        save_classifier(output_dir, model, feature_extractor, mode, validation, test, training_args)
    return FinetuneResult(output_dir=str(output_dir), validation=validation, test=test)


def save_classifier(output_dir, model, feature_extractor, mode, validation, test, training_args) -> None:
    from ..modelcard import write_model_card

    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    extractor = feature_extractor or EcgPmaFeatureExtractor.from_model_config(model.config)
    extractor.save_pretrained(output_dir)
    results = {"mode": mode, "aggregation": model.config.aggregation, "validation": validation, "test": test}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "results.md").write_text(results_markdown(results, model.config.id2label))
    headline = {
        f"{split} {key}": round(scores[key], 4)
        for split, scores in (("validation", validation), ("test", test))
        if scores
        for key in ("macro_auroc", "macro_average_precision", "macro_f1")
    }
    write_model_card(
        output_dir,
        model.config,
        extractor,
        training={
            "mode": mode,
            "epochs": training_args.num_train_epochs,
            "learning_rate": training_args.learning_rate,
        },
        results=headline,
        mean_layer_weights=(test or validation).get("mean_layer_weights"),
    )


def results_markdown(results: dict, id2label: dict) -> str:
    lines = [f"# Results ({results['mode']}, aggregation {results['aggregation']})", ""]
    lines += ["| split | macro AUROC | mAP | macro F1 | accuracy | records |", "| --- | --- | --- | --- | --- | --- |"]
    for split in ("validation", "test"):
        scores = results[split]
        if scores:
            lines.append(
                f"| {split} | {scores['macro_auroc']:.4f} | {scores['macro_average_precision']:.4f} | "
                f"{scores['macro_f1']:.4f} | {scores['accuracy']:.4f} | {scores['num_records']} |"
            )
    scores = results["test"] or results["validation"]
    lines += ["", "| label | AUROC | threshold |", "| --- | --- | --- |"]
    for index, name in id2label.items():
        auroc = scores["per_label_auroc"][int(index)]
        lines.append(
            f"| {name} | {'n/a' if auroc is None else f'{auroc:.4f}'} | {scores['thresholds'][int(index)]:.3f} |"
        )
    if scores.get("mean_layer_weights"):
        lines += ["", "Mean layer weights: " + ", ".join(f"{w:.3f}" for w in scores["mean_layer_weights"])]
    return "\n".join(lines) + "\n"


def load_classifier(
    pretrained: str | os.PathLike,
    id2label: dict[int, str],
    aggregation: str | None = None,
    aggregation_layer: int | None = None,
    head_type: str | None = None,
) -> EcgPmaForSequenceClassification:
    """
    A multi-label classifier for `id2label` from a pre-training checkpoint (decoder dropped, gate and head new) or from
    a probed classifier (for finetuning; its head is kept when the labels match).
    """
    overrides = {
        key: value
        for key, value in {
            "aggregation": aggregation,
            "aggregation_layer": aggregation_layer,
            "head_type": head_type,
        }.items()
        if value is not None
    }
    return EcgPmaForSequenceClassification.from_pretrained(
        pretrained,
        num_labels=len(id2label),
        id2label=dict(id2label),
        label2id={label: index for index, label in id2label.items()},
        problem_type="multi_label_classification",
        **overrides,
    )
