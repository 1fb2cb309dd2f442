"""`ecg-pma pretrain`: masked-modeling pre-training with Accelerate."""

from __future__ import annotations

import argparse
import logging
import os

from ..constants import MIXED_PRECISIONS, PRESET_NAMES, PRETRAINING_AGGREGATIONS
from .argument_types import (
    non_negative_float,
    non_negative_int,
    output_directory,
    positive_float,
    positive_int,
    require_model_source,
)
from .data_arguments import (
    add_bad_record_arguments,
    add_data_arguments,
    add_training_data_arguments,
    load_pretraining_data,
    load_streaming_training_data,
)
from .training_options import add_training_option


def add_parser(commands) -> None:
    pre = commands.add_parser("pretrain", help="masked-modeling pre-training with Accelerate (last or IPA)")
    add_data_arguments(pre, mixture=True)
    add_training_data_arguments(pre)
    add_bad_record_arguments(pre)
    add_training_option(pre, "output_dir", type=output_directory, required=True)
    pre.add_argument("--preset", choices=PRESET_NAMES, default="vit-b-paper")
    pre.add_argument("--config", default=None, help="a config.json folder (or Hub id) instead of --preset")
    pre.add_argument(
        "--pretraining-aggregation",
        choices=PRETRAINING_AGGREGATIONS,
        default=None,
        help="the decoder reads the last layer or IPA; default: the config's (last, as ST-MEM)",
    )
    pre.add_argument("--band-pass", action="store_true", help="0.67-40 Hz band-pass in the feature extractor")
    pre.add_argument(
        "--st-mem-preprocessing",
        action="store_true",
        help="ST-MEM's preprocessing exactly (10 s segments, FFT resampling, order-5 high-pass 0.67 Hz + low-pass "
        "40 Hz on each crop, one z-score per window; use with a vit-*-st-mem preset)",
    )
    pre.add_argument(
        "--all-splits", action="store_true", help="pre-train on train + validation + test (no labels used)"
    )
    pre.add_argument(
        "--streaming",
        action="store_true",
        help="read the records from their source files as training goes, nothing cached (a corpus larger than the "
        "disk); needs --max-steps",
    )
    pre.add_argument(
        "--shuffle-buffer", type=positive_int, default=1000, help="--streaming: records in the shuffle buffer"
    )
    add_training_option(pre, "per_device_train_batch_size", type=positive_int, default=64)
    pre.add_argument("--gradient-accumulation-steps", type=positive_int, default=1)
    add_training_option(
        pre, "learning_rate", type=positive_float, note="default: --base-learning-rate x effective batch / 256"
    )
    pre.add_argument(
        "--base-learning-rate",
        type=positive_float,
        default=1.2e-3,
        help="without --learning-rate, the peak is this x effective batch / 256 (MAE rule)",
    )
    add_training_option(pre, "num_train_epochs", type=positive_float, default=800)
    pre.add_argument("--max-steps", type=positive_int, default=None)
    pre.add_argument("--warmup-epochs", type=non_negative_float, default=40)
    pre.add_argument("--warmup-steps", type=non_negative_int, default=None)
    pre.add_argument("--mixed-precision", choices=MIXED_PRECISIONS, default="auto")
    pre.add_argument("--torch-compile", action="store_true", help="compile the Transformer blocks with torch.compile")
    pre.add_argument("--save-steps", type=non_negative_int, default=1000)
    pre.add_argument("--resume", default=None, help="a checkpoint folder, or 'latest'")
    add_training_option(pre, "seed", type=non_negative_int, default=0)
    pre.add_argument(
        "--lead-sets",
        nargs="+",
        default=None,
        metavar="SET",
        help="train on random lead subsets: each sample keeps one of these lead sets (12 6 4 3 2, or names joined by "
        "commas such as I,II), drawn with --seed",
    )
    pre.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.config is not None:
        require_model_source(args.config, "--config")
    from transformers import set_seed

    from ..configuration_ecg_pma import EcgPmaConfig
    from ..feature_extraction_ecg_pma import ST_MEM_PREPROCESSING, EcgPmaFeatureExtractor
    from ..modeling_ecg_pma import EcgPmaForPreTraining
    from ..training.checkpoint import refuse_sharded_training
    from ..training.pretrain import PretrainingArguments, pretrain, resolve_mixed_precision, runs_on_cpu

    # every setting checked before any record is read
    training_args = PretrainingArguments(
        output_dir=args.output_dir,
        per_device_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        base_learning_rate=args.base_learning_rate,
        learning_rate=args.learning_rate,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        warmup_epochs=args.warmup_epochs,
        warmup_steps=args.warmup_steps,
        mixed_precision=args.mixed_precision,
        torch_compile=args.torch_compile,
        save_steps=args.save_steps,
        resume_from_checkpoint=args.resume,
        seed=args.seed,
        lead_sets=args.lead_sets,
    )
    resolve_mixed_precision(training_args.mixed_precision, training_args.use_cpu)
    refuse_sharded_training()
    if args.streaming and args.max_steps is None:
        raise ValueError("--streaming: a streamed corpus has no length to count epochs by; give --max-steps.")
    set_seed(args.seed)  # before the model exists: its initial weights follow the seed too
    overrides = {"pretraining_aggregation": args.pretraining_aggregation} if args.pretraining_aggregation else {}
    if args.config:
        config = EcgPmaConfig.from_pretrained(args.config, **overrides)
    else:
        config = EcgPmaConfig.from_preset(args.preset, **overrides)
    if args.st_mem_preprocessing:
        extractor = EcgPmaFeatureExtractor.from_model_config(config, **ST_MEM_PREPROCESSING)
    else:
        extractor = EcgPmaFeatureExtractor.from_model_config(config, do_filter=args.band_pass)
    if args.streaming:
        from ..data.crops import fix_malloc_mmap_threshold

        fix_malloc_mmap_threshold()
        train, protocol = load_streaming_training_data(args, extractor, seed=args.seed, all_splits=args.all_splits)
    else:
        from accelerate import PartialState

        # under several processes the main one writes the cache and the others then read it, instead of every process
        # preparing the same shards in the same folder at once (the state is the one `Accelerator` takes up later)
        state = PartialState(cpu=runs_on_cpu(training_args))
        with state.main_process_first():
            train, protocol = load_pretraining_data(args, extractor, seed=args.seed, all_splits=args.all_splits)
    report = getattr(train, "report", None)
    result = pretrain(
        EcgPmaForPreTraining(config), train, training_args, extractor, protocol=protocol, stream_report=report
    )
    if report is not None and int(os.environ.get("RANK", "0")) == 0:  # streamed: `pretrain` wrote the final counts
        for line in report.summary():
            logging.getLogger(__name__).warning(line)
    print(f"Pre-trained for {result.global_step} steps; model saved to {result.output_dir}")
    return 0
