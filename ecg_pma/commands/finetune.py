"""`ecg-pma finetune`: linear probing or finetuning with the Trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data_arguments import add_data_arguments, add_training_data_arguments, load_training_data


def add_parser(commands) -> None:
    fine = commands.add_parser("finetune", help="linear probing or finetuning with the Trainer")
    add_data_arguments(fine)
    add_training_data_arguments(fine)
    fine.add_argument("--model", required=True, help="a pre-trained (or, for --mode finetune, a probed) model folder")
    fine.add_argument("--output-dir", required=True)
    fine.add_argument("--mode", choices=("probe", "finetune"), default="probe")
    fine.add_argument("--aggregation", choices=("last", "ppa", "pma", "layer"), default=None)
    fine.add_argument("--aggregation-layer", type=int, default=None)
    fine.add_argument("--head-type", choices=("linear", "mlp"), default=None)
    fine.add_argument("--epochs", type=float, default=None, help="default: the paper's 100")
    fine.add_argument("--batch-size", type=int, default=None)
    fine.add_argument("--learning-rate", type=float, default=None)
    fine.add_argument("--seed", type=int, default=None)
    fine.add_argument(
        "--probe-gate",
        choices=("train", "frozen"),
        default="train",
        help="--mode probe with PMA: train the gate with the head (default), or keep it at its uniform start, as the "
        "PMA authors' probing optimizer (head parameters only) does",
    )
    fine.add_argument(
        "--augment",
        action="store_true",
        help="ST-MEM's finetuning RandAugment on training crops (2 of shift, cutout, drop, flip, erase, sine, "
        "partial sine, partial white noise; level 10; p 0.5)",
    )
    fine.add_argument(
        "--single-class-auroc",
        choices=("exclude", "half"),
        default="exclude",
        help="macro AUROC for a label with one class in a split: leave it out (default) or count it as 0.5 (the PMA "
        "authors' convention)",
    )
    fine.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data import id2label
    from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from ..training.augmentation import RandAugment
    from ..training.finetune import finetune, load_classifier, reference_training_arguments

    extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
    seed = args.seed if args.seed is not None else 42  # the Trainer's default seed
    augment = RandAugment() if args.augment else None
    raw, windows, protocol = load_training_data(args, extractor, augment=augment, seed=seed)
    protocol["augmentation"] = repr(augment) if augment else "none"
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
        probe_gate=args.probe_gate,
        single_class_auroc=args.single_class_auroc,
        protocol=protocol,
    )
    print((Path(result.output_dir) / "results.md").read_text())
    return 0
