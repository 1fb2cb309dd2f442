"""
Masked-modeling pre-training (IPA) of an ECG-PMA encoder with Accelerate.

One process (CPU or one GPU):
    python examples/pretrain_accelerate.py --data ../shared/data/physionet2021 --max-steps 20
Several GPUs / machines (DDP; DeepSpeed or FSDP through `accelerate config`, no code change):
    accelerate launch --num_processes 8 examples/pretrain_accelerate.py --data /data/ptb-xl --data-format ptbxl \
        --preset vit-b-paper --num-train-epochs 800
Several CPU processes (gloo):
    torchrun --nproc_per_node 2 examples/pretrain_accelerate.py --data ../shared/data/physionet2021 --max-steps 20
"""

import argparse

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.data import build_training_splits, load_records
from ecg_pma.training import PretrainingArguments, pretrain


parser = argparse.ArgumentParser()
parser.add_argument("--data", default="../shared/data/physionet2021")
parser.add_argument("--data-format", default="physionet2021", choices=("ptbxl", "physionet2021", "wfdb"))
parser.add_argument("--preset", default="tiny")
parser.add_argument("--output-dir", default="outputs/pretrained")
parser.add_argument("--per-device-train-batch-size", "--batch-size", type=int, default=8)  # as in ecg-pma
parser.add_argument("--num-train-epochs", "--epochs", type=float, default=800)
parser.add_argument("--max-steps", type=int, default=None)
args = parser.parse_args()

config = EcgPmaConfig.from_preset(args.preset, pretraining_aggregation="ipa")
extractor = EcgPmaFeatureExtractor.from_model_config(config)
records = load_records(args.data_format, args.data)  # a DatasetDict of raw records, Arrow-cached
# one random crop per record per epoch; records shorter than the window dropped (and named)
splits, dropped = build_training_splits(records, extractor, train_windows="random", short_records="drop", seed=0)

result = pretrain(
    EcgPmaForPreTraining(config),
    splits["train"],
    PretrainingArguments(
        output_dir=args.output_dir,
        per_device_batch_size=args.per_device_train_batch_size,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        warmup_steps=None if args.max_steps is None else max(args.max_steps // 10, 1),
        save_steps=1000,
    ),
    extractor,
    protocol={"training_windows": "one random crop per record per epoch", "short_records_dropped": dropped},
)
print(f"{result.global_step} steps, last loss {result.losses[-1]['loss']:.4f}; saved to {result.output_dir}")
