"""`ecg-pma evaluate`: score a saved classifier on a dataset split (optionally once per lead set)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..constants import SPLITS
from .argument_types import output_file, positive_int, require_model_source
from .data_arguments import add_data_arguments, load_windows


def add_parser(commands) -> None:

    evaluate = commands.add_parser("evaluate", help="score a saved classifier on a dataset split")
    add_data_arguments(evaluate)
    evaluate.add_argument("--model", required=True, help="a saved classifier folder or Hub id")
    evaluate.add_argument("--split", choices=SPLITS, default="test")
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument("--output", type=output_file, default=None, help="write the JSON result here too")
    evaluate.add_argument(
        "--lead-sets",
        nargs="+",
        default=None,
        metavar="SET",
        help="score the same model once per lead set (12 6 4 3 2, or names joined by commas such as I,II), the "
        "records cut to those leads; prints and writes one table",
    )
    evaluate.set_defaults(handler=run)


def score_split(model, split, batch_size: int, lead_set: str | None = None, feature_extractor=None) -> dict:
    """Record-level scores of `model` on model-ready rows, read with only the leads of `lead_set` (all when None):
    the rows cut as `feature_extractor` (the one that made them) cuts records to those leads."""
    import tempfile

    import torch
    from transformers import Trainer, TrainingArguments

    from ..training.collator import EcgDataCollator
    from ..training.finetune import RecordMetrics

    metrics = RecordMetrics(split["record_id"], thresholds=model.config.decision_thresholds)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model,
            # pinned memory only where there is a GPU to copy to (on a CPU the DataLoader warns once per call)
            args=TrainingArguments(
                output_dir=scratch,
                per_device_eval_batch_size=batch_size,
                report_to="none",
                dataloader_pin_memory=torch.cuda.is_available(),
            ),
            data_collator=EcgDataCollator(
                config=model.config, lead_sets=[lead_set] if lead_set else None, feature_extractor=feature_extractor
            ),
            compute_metrics=metrics,
        )
        trainer.predict(split)
    return metrics.last


def run(args: argparse.Namespace) -> int:
    require_model_source(args.model, "--model")
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ..configuration_ecg_pma import resolve_lead_set
    from ..data import id2label
    from ..serving.loading import load_trained_classifier
    from ..training.finetune import lead_set_table

    model = load_trained_classifier(args.model, AutoModelForSequenceClassification)
    for lead_set in args.lead_sets or []:
        resolve_lead_set(lead_set, model.config.lead_names)  # unknown lead sets fail before any work
    extractor = AutoFeatureExtractor.from_pretrained(args.model)
    raw, windows = load_windows(args, extractor)
    labels = id2label(raw)
    if [labels[i] for i in range(len(labels))] != [model.config.id2label[i] for i in range(model.config.num_labels)]:
        raise ValueError(
            f"The dataset's labels {list(labels.values())} are not the model's {list(model.config.id2label.values())}."
        )
    split = windows[args.split]
    names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    if not args.lead_sets:
        result = {
            "model": args.model,
            "split": args.split,
            "labels": names,
            **score_split(model, split, args.batch_size),
        }
        text = json.dumps(result, indent=2)
        if args.output:
            Path(args.output).write_text(text)
        print(text)
        return 0

    per_lead_set = {
        lead_set: score_split(model, split, args.batch_size, lead_set, extractor) for lead_set in args.lead_sets
    }
    table = lead_set_table(per_lead_set, model.config.lead_names)
    result = {"model": args.model, "split": args.split, "labels": names, "lead_sets": per_lead_set, "table": table}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"{args.model}, {args.split} split, by lead set:\n\n{table}")
    return 0
