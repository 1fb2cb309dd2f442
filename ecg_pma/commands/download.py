"""`ecg-pma download`: download a PhysioNet database."""

from __future__ import annotations

import argparse

from .argument_types import output_directory


def add_parser(commands) -> None:
    download = commands.add_parser(
        "download", help="download a PhysioNet database (WFDB records and metadata) with wfdb"
    )
    download.add_argument(
        "database",
        help="a PhysioNet database slug (challenge-2021, ptb-xl, ...) or physionet2021-sample (40 real records, 5 MB)",
    )
    download.add_argument("output_dir", type=output_directory)
    download.add_argument(
        "--index-url",
        default=None,
        help="a PhysioNet-like server to download from (a mirror or local copy); default PhysioNet's file index",
    )
    download.add_argument("--subset", default=None, help="only records whose name starts with this (e.g. records100)")
    download.add_argument("--overwrite", action="store_true", help="download files that are already present again")
    download.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data import download_database

    folder = download_database(
        args.database,
        args.output_dir,
        index_url=args.index_url,
        subset=args.subset,
        overwrite=args.overwrite,
    )
    print(f"Downloaded {args.database} to {folder}")
    return 0
