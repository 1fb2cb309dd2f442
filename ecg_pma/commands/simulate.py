"""`ecg-pma simulate`: write simulated 12-lead ECGs as WFDB records (offline data for trying the commands)."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="write simulated labelled 12-lead ECGs (WFDB + labels.csv) for offline use; not real recordings",
    )
    simulate.add_argument("output_dir")
    simulate.add_argument("--num-records", type=int, default=240)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data.simulate import write_simulated_dataset

    if args.num_records < 40:
        raise ValueError(
            f"--num-records must be at least 40 (records are split by groups of 40: 32 train, 4 validation, 4 test), got {args.num_records}."
        )
    folder = write_simulated_dataset(args.output_dir, num_records=args.num_records, seed=args.seed)
    print(
        f"Wrote {args.num_records} simulated records to {folder}; read them with "
        f"--data {folder} --data-format wfdb --labels-csv {folder / 'labels.csv'}"
    )
    return 0
