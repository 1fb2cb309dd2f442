"""`ecg-pma demo`: the offline end-to-end demo."""

from __future__ import annotations

import argparse

from .argument_types import non_negative_int, output_directory, positive_int
from .training_options import add_training_option


def add_parser(commands) -> None:
    demo = commands.add_parser(
        "demo", help="offline end-to-end demo: simulate, pre-train, probe last/PPA/PMA, predict"
    )
    add_training_option(demo, "output_dir", type=output_directory, default="outputs/demo")
    demo.add_argument(
        "--data", default=None, help="use the PhysioNet 2021-style records (# Dx: headers) in this folder"
    )
    demo.add_argument("--num-records", type=positive_int, default=320)
    demo.add_argument("--pretrain-steps", type=positive_int, default=800)
    demo.add_argument("--probe-epochs", type=positive_int, default=20)
    add_training_option(demo, "seed", type=non_negative_int, default=0, note="and the simulator")
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(
        args.output_dir,
        data=args.data,
        num_records=args.num_records,
        pretrain_steps=args.pretrain_steps,
        probe_epochs=args.probe_epochs,
        seed=args.seed,
    )
    return 0
