"""`ecg-pma pretrain`: masked-modeling pre-training with Accelerate."""

from __future__ import annotations

import argparse

from .data_arguments import add_data_arguments, load_windows


def add_parser(commands) -> None:
    from ..configuration_ecg_pma import PRESETS, PRETRAINING_AGGREGATIONS
    from ..training.pretrain import MIXED_PRECISIONS

    pre = commands.add_parser("pretrain", help="masked-modeling pre-training with Accelerate (last or IPA)")
    add_data_arguments(pre)
    pre.add_argument("--output-dir", required=True)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="vit-b-paper")
    pre.add_argument("--config", default=None, help="a config.json folder instead of --preset")
    pre.add_argument("--pretraining-aggregation", choices=PRETRAINING_AGGREGATIONS, default="ipa")
    pre.add_argument("--band-pass", action="store_true", help="0.67-40 Hz band-pass in the feature extractor (ST-MEM)")
    pre.add_argument(
        "--all-splits", action="store_true", help="pre-train on train + validation + test (no labels used)"
    )
    pre.add_argument("--batch-size", type=int, default=64, help="per device")
    pre.add_argument("--gradient-accumulation-steps", type=int, default=1)
    pre.add_argument("--base-learning-rate", type=float, default=1.2e-3, help="x effective batch / 256")
    pre.add_argument("--epochs", type=float, default=800)
    pre.add_argument("--max-steps", type=int, default=None)
    pre.add_argument("--warmup-epochs", type=float, default=40)
    pre.add_argument("--warmup-steps", type=int, default=None)
    pre.add_argument("--mixed-precision", choices=MIXED_PRECISIONS, default="auto")
    pre.add_argument("--torch-compile", action="store_true", help="compile the Transformer blocks with torch.compile")
    pre.add_argument("--save-steps", type=int, default=1000)
    pre.add_argument("--resume", default=None, help="a checkpoint folder, or 'latest'")
    pre.add_argument("--seed", type=int, default=0)
    pre.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from transformers import set_seed

    from ..configuration_ecg_pma import EcgPmaConfig
    from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from ..modeling_ecg_pma import EcgPmaForPreTraining
    from ..training.pretrain import PretrainingArguments, pretrain

    set_seed(args.seed)  # before the model exists: its initial weights follow the seed too
    overrides = {"pretraining_aggregation": args.pretraining_aggregation}
    if args.config:
        config = EcgPmaConfig.from_pretrained(args.config, **overrides)
    else:
        config = EcgPmaConfig.from_preset(args.preset, **overrides)
    extractor = EcgPmaFeatureExtractor.from_model_config(config, do_filter=args.band_pass)
    _, windows = load_windows(args, extractor)
    train = windows["train"] if not args.all_splits else _concatenate(windows)
    result = pretrain(
        EcgPmaForPreTraining(config),
        train,
        PretrainingArguments(
            output_dir=args.output_dir,
            per_device_batch_size=args.batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            base_learning_rate=args.base_learning_rate,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps,
            warmup_epochs=args.warmup_epochs,
            warmup_steps=args.warmup_steps,
            mixed_precision=args.mixed_precision,
            torch_compile=args.torch_compile,
            save_steps=args.save_steps,
            resume_from_checkpoint=args.resume,
            seed=args.seed,
        ),
        extractor,
    )
    print(f"Pre-trained for {result.global_step} steps; model saved to {result.output_dir}")
    return 0


def _concatenate(windows):
    from datasets import concatenate_datasets

    return concatenate_datasets([split for split in windows.values() if len(split)])
