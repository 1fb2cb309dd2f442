"""`ecg-pma probe-layers`: the layer-wise probing study."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..constants import HEAD_TYPES, PROBE_GATES
from .argument_types import non_negative_int, output_directory, positive_float, positive_int, require_model_source
from .data_arguments import add_data_arguments, load_windows
from .training_options import add_training_option


def add_parser(commands) -> None:

    probe = commands.add_parser(
        "probe-layers", help="the layer-wise probing study: a probe per layer plus PPA and PMA"
    )
    add_data_arguments(probe)
    probe.add_argument("--model", required=True, help="a pre-trained model folder or Hub id")
    add_training_option(probe, "output_dir", type=output_directory, required=True)
    add_training_option(probe, "num_train_epochs", type=positive_int, default=100)
    probe.add_argument(
        "--head-type",
        choices=HEAD_TYPES,
        default=None,
        help="default: the model config's, the head `finetune --mode probe` trains",
    )
    probe.add_argument(
        "--probe-gate", choices=PROBE_GATES, default="train", help="the PMA probe's gate, as in finetune"
    )
    add_training_option(probe, "per_device_train_batch_size", type=positive_int, default=64)
    add_training_option(probe, "learning_rate", type=positive_float, default=1e-3, note="AdamW, constant")
    add_training_option(probe, "seed", type=non_negative_int, default=0)
    probe.add_argument(
        "--lead-set",
        default=None,
        help="probe on these leads only: a lead set (12, 6, 4, 3, 2) or names joined by commas (I,II)",
    )
    probe.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require_model_source(args.model, "--model")
    from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from ..modeling_ecg_pma import EcgPmaModel
    from ..training.probe_layers import probe_layers

    extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
    _, windows = load_windows(args, extractor)
    encoder = EcgPmaModel.from_pretrained(args.model)
    splits = {split: windows[split] for split in ("train", "validation", "test") if len(windows[split])}
    probe_layers(
        encoder,
        splits,
        args.output_dir,
        epochs=args.num_train_epochs,
        head_type=args.head_type,
        batch_size=args.per_device_train_batch_size,
        learning_rate=args.learning_rate,
        probe_gate=args.probe_gate,
        seed=args.seed,
        lead_set=args.lead_set,
        feature_extractor=extractor,
    )
    output = Path(args.output_dir)
    print((output / "layerwise_probe.md").read_text())
    print(f"Plot: {output / 'layerwise_probe.png'}")
    return 0
