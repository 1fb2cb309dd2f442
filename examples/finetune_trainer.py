"""
Linear probing with PMA, in plain `transformers.Trainer` code: load a pre-trained encoder into a classifier, freeze it,
train the gate and head, score with the package's `evaluate` metric (windows averaged per record).

    python examples/finetune_trainer.py --model outputs/pretrained --data ../shared/data/physionet2021
"""

import argparse

import evaluate
import numpy as np
from transformers import Trainer, TrainingArguments, set_seed

from ecg_pma import EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.data import build_training_splits, id2label, load_records
from ecg_pma.metrics import ECG_MULTILABEL_PATH
from ecg_pma.training import EcgDataCollator


parser = argparse.ArgumentParser()
parser.add_argument("--model", default="outputs/pretrained")
parser.add_argument("--data", default="../shared/data/physionet2021")
parser.add_argument("--data-format", default="physionet2021", choices=("ptbxl", "physionet2021", "wfdb"))
parser.add_argument("--output-dir", default="outputs/probe-pma")
parser.add_argument("--num-train-epochs", "--epochs", type=float, default=100)  # as in ecg-pma
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()
set_seed(args.seed)  # before the classifier exists: its new gate and head are initialised from the seed

records = load_records(args.data_format, args.data)
labels = id2label(records)
extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
# train: one random crop per record per epoch (an `EcgTrainingDataset`; the Trainer tells it the epoch);
# validation / test: sliding windows, averaged per record. Records shorter than the window are dropped.
windows, dropped = build_training_splits(records, extractor, train_windows="random", short_records="drop")

model = EcgPmaForSequenceClassification.from_pretrained(
    args.model,
    num_labels=len(labels),
    id2label=labels,
    label2id={name: index for index, name in labels.items()},
    problem_type="multi_label_classification",
    aggregation="pma",
    head_type="linear",
)
model.freeze_encoder()  # linear probing: gate and head train, the encoder does not
# (the PMA authors' protocol keeps the gate at its uniform start too: model.aggregator.gate.requires_grad_(False))

metric = evaluate.load(ECG_MULTILABEL_PATH)
validation_records = windows["validation"]["record_id"]


def compute_metrics(prediction):
    logits = prediction.predictions[0]  # (logits, layer_weights, pooled_output)
    scores = metric.compute(
        predictions=1 / (1 + np.exp(-logits)),
        references=prediction.label_ids.astype(int),
        record_ids=validation_records,
    )
    return {"macro_auroc": scores["macro_auroc"], "macro_f1": scores["macro_f1"]}


trainer = Trainer(
    model=model,
    args=TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=64,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        weight_decay=0.05,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model="macro_auroc",
        report_to="none",
        seed=args.seed,
    ),
    train_dataset=windows["train"],
    eval_dataset=windows["validation"],
    data_collator=EcgDataCollator(config=model.config),
    compute_metrics=compute_metrics,
)
trainer.train()
print(trainer.evaluate())
model.save_pretrained(args.output_dir)
extractor.save_pretrained(args.output_dir)
