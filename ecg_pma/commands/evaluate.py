"""`ecg-pma evaluate`: score a saved classifier on a dataset split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .data_arguments import add_data_arguments, load_windows


def add_parser(commands) -> None:
    from ..data.records import SPLITS

    evaluate = commands.add_parser("evaluate", help="score a saved classifier on a dataset split")
    add_data_arguments(evaluate)
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--split", choices=SPLITS, default="test")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", default=None, help="write the JSON result here too")
    evaluate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, Trainer, TrainingArguments

    from ..data import id2label
    from ..training.collator import EcgDataCollator
    from ..training.finetune import RecordMetrics

    model = AutoModelForSequenceClassification.from_pretrained(args.model)
    extractor = AutoFeatureExtractor.from_pretrained(args.model)
    raw, windows = load_windows(args, extractor)
    labels = id2label(raw)
    if [labels[i] for i in range(len(labels))] != [model.config.id2label[i] for i in range(model.config.num_labels)]:
        raise ValueError(
            f"The dataset's labels {list(labels.values())} are not the model's {list(model.config.id2label.values())}."
        )
    split = windows[args.split]
    metrics = RecordMetrics(split["record_id"], thresholds=model.config.decision_thresholds)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(output_dir=scratch, per_device_eval_batch_size=args.batch_size, report_to="none"),
            data_collator=EcgDataCollator(config=model.config),
            compute_metrics=metrics,
        )
        trainer.predict(split)
    result = {"model": args.model, "split": args.split, **metrics.last}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0
