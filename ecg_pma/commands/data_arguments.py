"""Options shared by the commands that read a dataset (--data, --data-format, --label-set, ...)."""

from __future__ import annotations

import argparse

from .argument_types import positive_int


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data import FORMATS

    parser.add_argument("--data", required=True, help="root folder of the records")
    parser.add_argument("--data-format", choices=FORMATS, default="ptbxl", help="layout of --data (default: ptbxl)")
    parser.add_argument(
        "--label-set",
        default=None,
        help="PTB-XL: all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm; PhysioNet 2021: scored, all",
    )
    parser.add_argument(
        "--sampling-rate", type=positive_int, default=100, help="PTB-XL records to read: 100 or 500 Hz"
    )
    parser.add_argument(
        "--labels-csv", default=None, help="wfdb format: CSV with record, labels (';'-separated), split"
    )
    parser.add_argument("--skip-missing", action="store_true", help="leave out listed records whose files are absent")
    parser.add_argument("--cache-dir", default=None, help="Arrow cache folder of the datasets")
    parser.add_argument(
        "--num-proc", type=positive_int, default=None, help="processes for reading and feature extraction"
    )


def load_windows(args: argparse.Namespace, extractor, window_mode: str = "sliding"):
    from ..data import extract_features, load_records

    raw = load_records(
        args.data_format,
        args.data,
        label_set=args.label_set,
        sampling_rate=args.sampling_rate,
        labels_csv=args.labels_csv,
        missing="skip" if args.skip_missing else "raise",
        cache_dir=args.cache_dir,
        num_proc=args.num_proc,
    )
    return raw, extract_features(raw, extractor, window_mode=window_mode, num_proc=args.num_proc)
