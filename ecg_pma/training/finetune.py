"""
Linear probing and finetuning of `EcgPmaForSequenceClassification` with `transformers.Trainer`: the data collator,
`compute_metrics` through the package's `evaluate` module (windows averaged per record), best-checkpoint selection on
validation macro AUROC, thresholds tuned on validation and applied to test, and JSON + Markdown results.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..configuration_ecg_pma import resolve_lead_set
from ..constants import FINETUNE_MODES, PROBE_GATES, TRAINING_OPTIONS
from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
from ..metrics import load_ecg_multilabel
from ..modeling_ecg_pma import EcgPmaForSequenceClassification
from ..sharing.modelcard import card_protocol

# The same safetensors + JSON layout as the pre-training checkpoints.
from .checkpoint import (
    _flatten_optimizer_state,
    _unflatten_optimizer_state,
    random_state,
    refuse_sharded_training,
    set_random_state,
)
from .collator import EcgDataCollator
from .lora import add_lora, save_lora_adapter


MODES = FINETUNE_MODES
MODE_DESCRIPTIONS = {
    "probe": "encoder frozen",
    "finetune": "every weight trained",
    "lora": "LoRA adapters on the encoder, merged after training; gate and head trained in full",
}
BEST_METRIC = "macro_auroc"


def reference_training_settings(mode: str) -> dict:
    """
    The PMA paper's schedules as `TrainingArguments` values. probe: 100 epochs, batch 64, AdamW lr 1e-3 constant,
    wd 0.05. finetune: 100 epochs, batch 16, lr 1e-3 x batch / 256, 5 warm-up epochs then cosine, wd 0.05. lora (our
    choice, not the paper's): the finetune schedule at lr 1e-3, the usual order of magnitude for low-rank adapters.
    All evaluate and checkpoint every epoch and keep the epoch with the best validation macro AUROC.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {MODES}.")
    if mode == "probe":
        schedule = {
            "num_train_epochs": 100,
            "per_device_train_batch_size": 64,
            "learning_rate": 1e-3,
            "lr_scheduler_type": "constant",
        }
    else:
        schedule = {
            "num_train_epochs": 100,
            "per_device_train_batch_size": 16,
            "learning_rate": 1e-3 * 16 / 256 if mode == "finetune" else 1e-3,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 0.05,  # a ratio: 5 of 100 epochs
        }
    return {
        **schedule,
        "weight_decay": 0.05,
        "per_device_eval_batch_size": 64,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": BEST_METRIC,
        "greater_is_better": True,
        # The best and the last checkpoint are kept; `EcgTrainer` writes their optimizer, schedule and random states
        # as safetensors + JSON, so a run resumes from its last checkpoint without any pickle.
        "save_total_limit": 1,
        "logging_strategy": "epoch",
        "report_to": "none",
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def _shared_help(name: str) -> dict:
    """The field metadata giving `TRAINING_OPTIONS[name]`'s help text, the one pretrain and probe-layers show too."""
    return {"help": TRAINING_OPTIONS[name][2]}


@dataclass
class EcgTrainingArguments(TrainingArguments):
    """
    `TrainingArguments` that refuse, when created, settings that would train nothing or write to a default folder.
    The options every training command shares keep their `TrainingArguments` defaults and take the shared help text.
    """

    output_dir: str | None = field(default=None, metadata=_shared_help("output_dir"))
    learning_rate: float = field(default=5e-5, metadata=_shared_help("learning_rate"))
    num_train_epochs: float = field(default=3.0, metadata=_shared_help("num_train_epochs"))
    per_device_train_batch_size: int = field(default=8, metadata=_shared_help("per_device_train_batch_size"))
    seed: int = field(default=42, metadata=_shared_help("seed"))

    def __post_init__(self):
        if self.output_dir is None:
            raise ValueError("output_dir: give the folder to write the classifier to (--output-dir).")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ValueError(f"num_train_epochs must be > 0 (or max_steps > 0), got {self.num_train_epochs}.")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        super().__post_init__()


def reference_training_arguments(mode: str, output_dir: str, **overrides) -> EcgTrainingArguments:
    """`reference_training_settings(mode)` for `output_dir`; `overrides` replace any of them."""
    return EcgTrainingArguments(**{**reference_training_settings(mode), "output_dir": output_dir, **overrides})


class EcgTrainer(Trainer):
    """
    A Trainer that drops the last incomplete *training* batch (the MLP head's BatchNorm cannot train on a batch of
    one; `dataloader_drop_last` would drop evaluation windows too), and checkpoints its optimizer, learning-rate
    schedule, gradient scaler and random states as safetensors + JSON (`ecg_pma.training.checkpoint`'s format)
    instead of the Trainer's `torch.save` pickles, so that `train(resume_from_checkpoint=...)` works without them.
    `train_data_collator`, when given, batches the training rows only (e.g. one drawing random lead sets),
    evaluation keeping `data_collator`.
    """

    def __init__(self, *args, train_data_collator=None, **kwargs):
        refuse_sharded_training()
        super().__init__(*args, **kwargs)
        refuse_sharded_training(self.accelerator)
        self.train_data_collator = train_data_collator

    def get_train_dataloader(self):
        drop_last, collator = self.args.dataloader_drop_last, self.data_collator
        self.args.dataloader_drop_last = True
        self.data_collator = self.train_data_collator or collator
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last, self.data_collator = drop_last, collator

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.args.should_save:
            return
        tensors, meta = _flatten_optimizer_state(self.optimizer.state_dict())
        save_file(tensors, os.path.join(output_dir, "optimizer.safetensors"))
        Path(output_dir, "optimizer.json").write_text(json.dumps(meta))
        Path(output_dir, "scheduler.json").write_text(json.dumps(self.lr_scheduler.state_dict()))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        checkpoint = Path(checkpoint)
        if not (checkpoint / "optimizer.safetensors").exists():
            raise FileNotFoundError(
                f"{checkpoint} holds no optimizer state (optimizer.safetensors): it was saved with "
                "save_only_model, so training cannot resume from it."
            )
        meta = json.loads((checkpoint / "optimizer.json").read_text())
        self.optimizer.load_state_dict(
            _unflatten_optimizer_state(load_file(checkpoint / "optimizer.safetensors"), meta)
        )
        self.lr_scheduler.load_state_dict(json.loads((checkpoint / "scheduler.json").read_text()))

    def _save_scaler(self, output_dir: str) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and self.args.should_save:
            Path(output_dir, "scaler.json").write_text(json.dumps(scaler.state_dict()))

    def _load_scaler(self, checkpoint: str | None) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if checkpoint is not None and scaler is not None and Path(checkpoint, "scaler.json").exists():
            scaler.load_state_dict(json.loads(Path(checkpoint, "scaler.json").read_text()))

    def _save_rng_state(self, output_dir: str) -> None:
        tensors, meta = random_state()
        save_file(tensors, os.path.join(output_dir, f"random_state_{self.args.process_index}.safetensors"))
        Path(output_dir, f"random_state_{self.args.process_index}.json").write_text(json.dumps(meta))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        path = Path(checkpoint, f"random_state_{self.args.process_index}.safetensors")
        if path.exists():
            set_random_state(load_file(path), json.loads(path.with_suffix(".json").read_text()))


class SafetensorsOnlyCallback(TrainerCallback):
    """The Trainer pickles its arguments into every checkpoint; keep them as JSON instead."""

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        pickled = checkpoint / "training_args.bin"
        if pickled.exists():
            pickled.unlink()
            (checkpoint / "training_args.json").write_text(args.to_json_string())


class TrainingEpochCallback(TrainerCallback):
    """Tells a training dataset with `set_epoch` (one random crop per record per epoch) which epoch starts."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(round(state.epoch or 0))


class RecordMetrics:
    """
    `compute_metrics` for one evaluation split: sigmoid probabilities, windows averaged per record (the split's
    `record_id` column, in the evaluation order), scored by the package's `evaluate` module. Thresholds are tuned on
    the split when `tune_thresholds`, else taken from `thresholds`. The last full result is kept in `.last`.
    """

    def __init__(
        self,
        record_ids: list[str],
        thresholds: list[float] | None = None,
        tune_thresholds: bool = False,
        single_class_auroc: str = "exclude",
    ):
        self.record_ids = list(record_ids)
        self.thresholds = thresholds
        self.tune_thresholds = tune_thresholds
        self.single_class_auroc = single_class_auroc
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
            single_class_auroc=self.single_class_auroc,
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


def check_training_length(training_args: TrainingArguments) -> None:
    """Refuses settings that would train nothing (and then save an untrained model as if it were trained)."""
    if training_args.max_steps <= 0 and not training_args.num_train_epochs > 0:
        raise ValueError(f"`num_train_epochs` must be positive, got {training_args.num_train_epochs}.")
    if training_args.per_device_train_batch_size < 1 or training_args.per_device_eval_batch_size < 1:
        raise ValueError(
            "Batch sizes must be positive, got "
            f"{training_args.per_device_train_batch_size} (train) and {training_args.per_device_eval_batch_size} (eval)."
        )


def finetune(
    model: EcgPmaForSequenceClassification,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    training_args: TrainingArguments,
    mode: str = "probe",
    test_dataset: Dataset | None = None,
    feature_extractor: EcgPmaFeatureExtractor | None = None,
    quiet: bool = False,
    probe_gate: str = "train",
    single_class_auroc: str = "exclude",
    protocol: dict | None = None,
    data_info: dict | None = None,
    lead_sets: list[str] | None = None,
    lora_rank: int = 8,
    lora_alpha: float | None = None,
    lora_dropout: float = 0.0,
) -> FinetuneResult:
    """
    Trains `model` (`mode="probe"`: encoder frozen, head trained, PMA gate trained or not by `probe_gate`;
    `"finetune"`: everything; `"lora"`: rank-`lora_rank` adapters on the encoder's projections, gate and head in full,
    see `ecg_pma.training.lora`; `lora_alpha` defaults to `2 * lora_rank`) on model-ready rows (`signals`, `labels`,
    `record_id`: an `EcgTrainingDataset` drawing one random crop per record per epoch, or windows from
    `ecg_pma.data.extract_features`), keeps the checkpoint with
    the best validation macro AUROC, tunes per-label F1 thresholds on validation, scores `test_dataset` with them,
    and saves the model (thresholds in its config), feature extractor, model card and `results.json` / `results.md`
    to `training_args.output_dir`. `quiet` drops the Trainer's progress bars and printed logs. With LoRA, the adapter
    is saved under `output_dir/adapter` and `model` becomes (is merged into) the plain classifier saved beside it.

    `probe_gate="frozen"` is the PMA authors' probing protocol: their optimizer receives the head's parameters only,
    so the gate keeps its initialisation (here: uniform weights, i.e. PPA). `single_class_auroc` is the macro AUROC
    convention for a label with one class in a split (`"exclude"` it, or count it as `"half"` = 0.5, the authors').
    `protocol` (the data choices: windows, short records, label set, ...) is written into the results and the card.
    `data_info` says what the rows are (`name`, `description`, optional Hub `id`) for `results.json` and the card.
    `lead_sets` (e.g. `["12", "6", "4", "3", "2"]`): every training sample is cut to one lead set drawn at random
    (seeded by `training_args.seed`) as `feature_extractor` cuts a record to it (see `LeadSetSampler`); validation
    reads the leads the records have, and the test split is scored once with every lead and once per lead set.

    Set the seed (`transformers.set_seed(training_args.seed)`) before creating `model`: its new gate and head are
    initialised then. `training_args.resume_from_checkpoint` (a checkpoint folder, or `"last"`) continues a run.
    """
    # Over 80 lines only through its signature and docstring (every protocol option is a documented keyword); the
    # steps are the helpers below.
    check_training_length(training_args)
    for name, dataset in (("train", train_dataset), ("validation", eval_dataset), ("test", test_dataset)):
        if dataset is not None and "record_id" not in dataset.column_names:
            raise ValueError(f"The {name} dataset needs a `record_id` column (see ecg_pma.data.extract_features).")
    check_one_batch(train_dataset, training_args)
    set_trainable_parts(model, mode, probe_gate)
    trained = add_lora(model, lora_rank, lora_alpha, lora_dropout) if mode == "lora" else model

    if lead_sets and feature_extractor is None:  # the extractor saved with the model then
        feature_extractor = EcgPmaFeatureExtractor.from_model_config(model.config)
    trainer = build_trainer(
        trained, training_args, train_dataset, eval_dataset, lead_sets, single_class_auroc, quiet, feature_extractor
    )
    resume = training_args.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume == "last" else resume)

    trainer.evaluate()  # the best checkpoint, reloaded: its validation scores and tuned thresholds
    validation = trainer.compute_metrics.last
    model.config.decision_thresholds = validation["thresholds"]
    test = test_by_lead_set = None
    if test_dataset is not None:
        trainer.compute_metrics = RecordMetrics(
            test_dataset["record_id"], thresholds=validation["thresholds"], single_class_auroc=single_class_auroc
        )
        trainer.evaluate(test_dataset, metric_key_prefix="test")
        test = trainer.compute_metrics.last
        if lead_sets:
            test_by_lead_set = evaluate_lead_sets(
                trainer, test_dataset, lead_sets, validation["thresholds"], single_class_auroc, feature_extractor
            )

    output_dir = Path(training_args.output_dir)
    protocol = {
        **({"probe_gate": probe_gate if model.aggregator.gate is not None else "no gate"} if mode == "probe" else {}),
        **(protocol or {}),
        **({"lead_sets (one drawn per training sample)": ", ".join(map(str, lead_sets))} if lead_sets else {}),
        **(
            {"lora_adapters": f"rank {lora_rank}, alpha {lora_alpha or 2 * lora_rank}, dropout {lora_dropout}"}
            if mode == "lora"
            else {}
        ),
        "macro_auroc_single_class_labels": single_class_auroc,
    }
    if mode == "lora":
        if trainer.is_world_process_zero():
            save_lora_adapter(trained, output_dir)
        trained.merge_and_unload()  # folds the adapters into `model`'s own Linears, in place
    if trainer.is_world_process_zero():
        save_classifier(
            output_dir,
            model,
            feature_extractor,
            mode,
            validation,
            test,
            training_args,
            data_info,
            best_epoch(trainer),
            protocol,
            test_by_lead_set,
        )
    return FinetuneResult(output_dir=str(output_dir), validation=validation, test=test)


def check_one_batch(train_dataset, training_args: TrainingArguments) -> None:
    """The last incomplete training batch is dropped (see `EcgTrainer`): fewer rows than one batch train on nothing,
    which the Trainer reports only as a missing `max_steps`. Says the counts and what to lower instead."""
    batch = training_args.per_device_train_batch_size * max(training_args.world_size, 1)
    if len(train_dataset) < batch:
        rows = "windows" if "signals" in train_dataset.column_names else "records (one random crop each per epoch)"
        raise ValueError(
            f"The training split has {len(train_dataset)} {rows}, fewer than one batch of {batch} "
            f"({training_args.per_device_train_batch_size} per device x {max(training_args.world_size, 1)} "
            f"process(es)), and the last incomplete batch is dropped. Lower --per-device-train-batch-size to at most "
            f"{max(len(train_dataset) // max(training_args.world_size, 1), 1)}, or give more training records."
        )


def build_trainer(
    model,
    training_args: TrainingArguments,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    lead_sets: list[str] | None = None,
    single_class_auroc: str = "exclude",
    quiet: bool = False,
    feature_extractor: EcgPmaFeatureExtractor | None = None,
) -> EcgTrainer:
    """The Trainer of `finetune`: record-level validation metrics (thresholds tuned), safetensors checkpoints, the
    crop dataset told each epoch, lead sets drawn for training batches only (cut as `feature_extractor`, the one
    that made the rows, cuts records)."""
    config = model.config
    callbacks = [SafetensorsOnlyCallback()]
    if hasattr(train_dataset, "set_epoch"):
        callbacks.append(TrainingEpochCallback(train_dataset))
    trainer = EcgTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=EcgDataCollator(config=config),
        train_data_collator=EcgDataCollator(
            config=config, lead_sets=lead_sets, seed=training_args.seed, feature_extractor=feature_extractor
        )
        if lead_sets
        else None,
        compute_metrics=RecordMetrics(
            eval_dataset["record_id"], tune_thresholds=True, single_class_auroc=single_class_auroc
        ),
        callbacks=callbacks,
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return trainer


def set_trainable_parts(model: EcgPmaForSequenceClassification, mode: str, probe_gate: str = "train") -> None:
    """
    `probe`: encoder frozen, head trained, the PMA gate trained unless `probe_gate="frozen"`; `finetune` / `lora`:
    everything trainable (`add_lora` then freezes all but the adapters, gate and head).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {MODES}.")
    if probe_gate not in PROBE_GATES:
        raise ValueError(f"Unknown `probe_gate` {probe_gate!r}; expected one of {PROBE_GATES}.")
    if mode == "probe":
        model.freeze_encoder()
    else:
        model.unfreeze_encoder()
    gate = model.aggregator.gate
    if gate is not None:
        gate.requires_grad_(not (mode == "probe" and probe_gate == "frozen"))


def best_epoch(trainer: Trainer) -> float | None:
    """The epoch of the checkpoint kept for its validation macro AUROC."""
    return next(
        (
            entry["epoch"]
            for entry in trainer.state.log_history
            if entry.get("step") == trainer.state.best_global_step and f"eval_{BEST_METRIC}" in entry
        ),
        None,
    )


def training_protocol(
    mode: str, training_args: TrainingArguments, best_epoch: float | None, base: str | None = None
) -> dict:
    """The settings that produced a classifier's numbers, as its `results.json` and model card list them."""
    return {
        "starting weights": base,
        "mode": f"{mode} ({MODE_DESCRIPTIONS[mode]})",
        "epochs": training_args.num_train_epochs,
        "best epoch (by validation macro AUROC)": best_epoch,
        "batch size per device": training_args.per_device_train_batch_size,
        "gradient accumulation steps": training_args.gradient_accumulation_steps,
        "learning rate": training_args.learning_rate,
        "schedule": str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        "weight decay": training_args.weight_decay,
        "seed": training_args.seed,
        "decision thresholds": "per label, maximising F1 on validation",
    }


def evaluate_lead_sets(
    trainer: Trainer,
    dataset: Dataset,
    lead_sets: list,
    thresholds: list[float],
    single_class_auroc: str = "exclude",
    feature_extractor: EcgPmaFeatureExtractor | None = None,
) -> dict:
    """Record-level scores of the trained model on `dataset` once per lead set (the rows cut to its leads as
    `feature_extractor`, the one that made them, cuts records)."""
    config, collator = trainer.model.config, trainer.data_collator
    scores = {}
    for index, lead_set in enumerate(lead_sets):
        trainer.data_collator = EcgDataCollator(
            config=config, lead_sets=[lead_set], feature_extractor=feature_extractor
        )
        trainer.compute_metrics = RecordMetrics(
            dataset["record_id"], thresholds=thresholds, single_class_auroc=single_class_auroc
        )
        trainer.evaluate(dataset, metric_key_prefix=f"test_lead_set_{index}")
        scores[lead_set if isinstance(lead_set, str) else ",".join(lead_set)] = trainer.compute_metrics.last
    trainer.data_collator = collator
    return scores


def lead_set_table(results: dict[str, dict], lead_names: list[str]) -> str:
    """One Markdown row per lead set: macro AUROC, macro F1, mAP."""
    lines = [
        "| lead set | leads | macro AUROC | macro F1 | mAP | records |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for lead_set, scores in results.items():
        leads = ", ".join(resolve_lead_set(lead_set, lead_names))
        lines.append(
            f"| {lead_set} | {leads} | {scores['macro_auroc']:.4f} | {scores['macro_f1']:.4f} | "
            f"{scores['macro_average_precision']:.4f} | {scores['num_records']} |"
        )
    return "\n".join(lines) + "\n"


def save_classifier(
    output_dir,
    model,
    feature_extractor,
    mode,
    validation,
    test,
    training_args,
    data_info=None,
    best_epoch=None,
    protocol=None,
    test_by_lead_set=None,
) -> None:
    from ..sharing.hub import save_shareable
    from ..sharing.modelcard import write_model_card

    output_dir.mkdir(parents=True, exist_ok=True)
    base = model.config._name_or_path or None  # the folder or Hub id the weights were loaded from
    extractor = feature_extractor or EcgPmaFeatureExtractor.from_model_config(model.config)
    save_shareable(model, extractor, output_dir)
    labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    results = {
        "mode": mode,
        "aggregation": model.config.aggregation,
        "labels": labels,  # the order of every per-label list below
        "dataset": data_info,
        # A Hub id (not a local folder) is the card's `base_model`.
        "base_model": base if base and not Path(base).exists() else None,
        "training": training_protocol(mode, training_args, best_epoch, base),
        "protocol": protocol or {},
        "validation": validation,
        "test": test,
    }
    markdown = results_markdown(results, model.config.id2label)
    evaluation = {"validation": validation, "test": test}
    if test_by_lead_set:
        results["test_by_lead_set"] = test_by_lead_set
        markdown += "\n## Test split by lead set\n\n" + lead_set_table(test_by_lead_set, model.config.lead_names)
        evaluation |= {f"test, leads {lead_set}": scores for lead_set, scores in test_by_lead_set.items()}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "results.md").write_text(markdown)
    write_model_card(
        output_dir,
        model.config,
        extractor,
        training={**results["training"], **card_protocol(protocol)},
        evaluation=evaluation,
        dataset=data_info,
        base_model=results["base_model"],
        mean_layer_weights=(test or validation).get("mean_layer_weights"),
    )


def results_markdown(results: dict, id2label: dict) -> str:
    lines = [f"# Results ({results['mode']}, aggregation {results['aggregation']})", ""]
    for key, value in card_protocol(results.get("protocol")).items():
        lines.append(f"- {key}: {value}")
    lines += [""] if results.get("protocol") else []
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
