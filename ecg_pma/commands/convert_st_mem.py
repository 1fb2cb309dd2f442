"""`ecg-pma convert-st-mem`: convert an ST-MEM checkpoint."""

from __future__ import annotations

import argparse

from .argument_types import output_directory, positive_int


def add_parser(commands) -> None:
    convert = commands.add_parser("convert-st-mem", help="convert an ST-MEM checkpoint (.pth) into an ecg-pma model")
    convert.add_argument("checkpoint")
    convert.add_argument("output_dir", type=output_directory)
    convert.add_argument("--full", action="store_true", help="the encoder + decoder file -> EcgPmaForPreTraining")
    convert.add_argument(
        "--sampling-rate", type=positive_int, default=250, help="the rate the weights were trained at (ST-MEM: 250)"
    )
    convert.add_argument(
        "--no-band-pass",
        action="store_true",
        help="save the extractor without ST-MEM's 0.67 Hz high-pass and 40 Hz low-pass (order 5 each)",
    )
    convert.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..conversion.st_mem import convert_st_mem

    model = convert_st_mem(
        args.checkpoint,
        args.output_dir,
        full=args.full,
        sampling_rate=args.sampling_rate,
        band_pass=not args.no_band_pass,
    )
    config = model.config
    print(
        f"Converted {args.checkpoint} to {type(model).__name__} in {args.output_dir}: {config.num_hidden_layers} blocks of "
        f"{config.hidden_size}, {config.num_leads} leads, {config.signal_length} samples at {config.sampling_rate} Hz, "
        f"patch {config.patch_size}"
    )
    return 0
