"""`ecg-pma finetune`: linear probing or finetuning with the Trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data_arguments import add_data_arguments, load_windows


def add_parser(commands) -> None:
    from ..configuration_ecg_pma import AGGREGATIONS, HEAD_TYPES
    from ..training.finetune import MODES

    fine = commands.add_parser("finetune", help="linear probing, finetuning or LoRA finetuning with the Trainer")
    add_data_arguments(fine)
    fine.add_argument("--model", required=True, help="a pre-trained (or, for --mode finetune, a probed) model folder")
    fine.add_argument("--output-dir", required=True)
    fine.add_argument("--mode", choices=MODES, default="probe")
    fine.add_argument("--aggregation", choices=AGGREGATIONS, default=None)
    fine.add_argument("--aggregation-layer", type=int, default=None)
    fine.add_argument("--head-type", choices=HEAD_TYPES, default=None)
    fine.add_argument("--lora-rank", type=int, default=8, help="--mode lora: rank of the adapters (default: 8)")
    fine.add_argument("--lora-alpha", type=float, default=None, help="--mode lora: scale (default: 2 x rank)")
    fine.add_argument("--lora-dropout", type=float, default=0.0, help="--mode lora: dropout before the adapters")
    fine.add_argument("--epochs", type=float, default=None, help="default: the paper's 100")
    fine.add_argument("--batch-size", type=int, default=None)
    fine.add_argument("--learning-rate", type=float, default=None)
    fine.add_argument("--seed", type=int, default=None)
    fine.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data import id2label
    from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from ..training.finetune import finetune, load_classifier, reference_training_arguments

    extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
    raw, windows = load_windows(args, extractor)
    model = load_classifier(args.model, id2label(raw), args.aggregation, args.aggregation_layer, args.head_type)
    overrides = {
        key: value
        for key, value in {
            "num_train_epochs": args.epochs,
            "per_device_train_batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    training_args = reference_training_arguments(args.mode, args.output_dir, **overrides)
    result = finetune(
        model,
        windows["train"],
        windows["validation"],
        training_args,
        args.mode,
        windows["test"],
        extractor,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
    )
    print((Path(result.output_dir) / "results.md").read_text())
    return 0
