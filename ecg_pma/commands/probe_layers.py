"""`ecg-pma probe-layers`: the layer-wise probing study."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data_arguments import add_data_arguments, load_windows


def add_parser(commands) -> None:
    from ..configuration_ecg_pma import HEAD_TYPES

    probe = commands.add_parser(
        "probe-layers", help="the layer-wise probing study: a probe per layer plus PPA and PMA"
    )
    add_data_arguments(probe)
    probe.add_argument("--model", required=True)
    probe.add_argument("--output-dir", required=True)
    probe.add_argument("--epochs", type=int, default=100)
    probe.add_argument("--head-type", choices=HEAD_TYPES, default="linear")
    probe.add_argument("--batch-size", type=int, default=64)
    probe.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from ..modeling_ecg_pma import EcgPmaModel
    from ..training.probe_layers import probe_layers

    extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
    _, windows = load_windows(args, extractor)
    encoder = EcgPmaModel.from_pretrained(args.model)
    splits = {split: windows[split] for split in ("train", "validation", "test") if len(windows[split])}
    probe_layers(
        encoder, splits, args.output_dir, epochs=args.epochs, head_type=args.head_type, batch_size=args.batch_size
    )
    output = Path(args.output_dir)
    print((output / "layerwise_probe.md").read_text())
    print(f"Plot: {output / 'layerwise_probe.png'}")
    return 0
