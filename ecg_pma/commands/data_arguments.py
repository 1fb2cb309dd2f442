"""Options shared by the commands that read a dataset (--data, --data-format, --label-set, ...)."""

from __future__ import annotations

import argparse

from .argument_types import positive_int


# `ecg_pma.data.FORMATS`, written out so that building the parser imports no data library (tests/test_cli.py checks
# that the two agree).
DATA_FORMATS = ("ptbxl", "physionet2021", "wfdb", "code15", "code-test", "mimic-iv-ecg")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="root folder of the records")
    parser.add_argument(
        "--data-format", choices=DATA_FORMATS, default="ptbxl", help="layout of --data (default: ptbxl)"
    )
    parser.add_argument(
        "--label-set",
        default=None,
        help="PTB-XL: all (default, 71 statements), diagnostic, subdiagnostic, superdiagnostic, form, rhythm; "
        "PhysioNet 2021: scored (default), all; MIMIC-IV-ECG: none (default), reports (machine report statements)",
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        default=None,
        help="physionet2021: only these source databases (cpsc2018 cpsc2018-extra incart ptb ptb-xl georgia chapman "
        "ningbo), told by record-name prefix",
    )
    parser.add_argument(
        "--keep-unlabeled",
        action="store_true",
        help="PTB-XL: keep records with no label in --label-set as all-negative rows (the PMA authors' choice); "
        "by default they are dropped (the PTB-XL benchmark's rule)",
    )
    parser.add_argument(
        "--short-records",
        choices=("drop", "pad", "raise"),
        default="drop",
        help="records shorter than the model window: drop them (default; named in the log and the run's results), "
        "zero-pad them, or stop with an error",
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


def add_training_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the commands that train (pretrain, finetune), next to `add_data_arguments`."""
    parser.add_argument(
        "--train-windows",
        choices=("random", "sliding"),
        default="random",
        help="training rows: one random crop per record per epoch (default, as the PMA authors and ST-MEM), or every "
        "sliding window of every record; evaluation always uses sliding windows averaged per record",
    )


def load_raw_records(args: argparse.Namespace):
    from ..data import load_records

    return load_records(
        args.data_format,
        args.data,
        label_set=args.label_set,
        sampling_rate=args.sampling_rate,
        labels_csv=args.labels_csv,
        missing="skip" if args.skip_missing else "raise",
        cache_dir=args.cache_dir,
        num_proc=args.num_proc,
        drop_unlabeled=not getattr(args, "keep_unlabeled", False),
        sources=getattr(args, "sources", None),
    )


def load_windows(args: argparse.Namespace, extractor, window_mode: str = "sliding"):
    """Every split as windows (`extract_features`), short records handled by `--short-records` in each."""
    from datasets import DatasetDict

    from ..data import extract_features, handle_short_records

    raw = load_raw_records(args)
    windows = {}
    for split, dataset in raw.items():
        dataset, split_extractor, _ = handle_short_records(
            dataset, extractor, getattr(args, "short_records", "raise"), split
        )
        windows[split] = extract_features(dataset, split_extractor, window_mode=window_mode, num_proc=args.num_proc)
    return raw, DatasetDict(windows)


def load_training_data(args: argparse.Namespace, extractor, augment=None, seed: int = 0, all_splits: bool = False):
    """
    The splits for training (`build_training_splits`: `train` one random crop per record per epoch or sliding
    windows, the others sliding windows; with `all_splits` every record in `train`) and the protocol choices to
    record in the run's results: windows, short records (with the ids dropped), label set, unlabelled records.
    """
    from datasets import DatasetDict, concatenate_datasets

    from ..data import build_training_splits

    raw = load_raw_records(args)
    if all_splits:
        raw = DatasetDict({"train": concatenate_datasets([split for split in raw.values() if len(split)])})
    splits, dropped = build_training_splits(
        raw, extractor, args.train_windows, args.short_records, augment=augment, seed=seed, num_proc=args.num_proc
    )
    protocol = {
        "training_windows": (
            f"one random crop per record per epoch (seed {seed})"
            if args.train_windows == "random"
            else "every sliding window of every record"
        ),
        "evaluation_windows": (
            f"{extractor.num_crops} equally spaced crops (ST-MEM's NCrop)"
            if extractor.window_mode == "n_crop"
            else "sliding windows (half-window stride)"
        )
        + ", predictions averaged per record",
        "short_records": args.short_records,
        "short_records_dropped" if args.short_records == "drop" else "short_records_padded": dropped,
        "label_set": args.label_set or {"ptbxl": "all", "physionet2021": "scored"}.get(args.data_format, "from CSV"),
    }
    if args.data_format == "ptbxl":
        protocol["unlabeled_records"] = (
            "kept as all-negative rows" if args.keep_unlabeled else "dropped (PTB-XL benchmark rule)"
        )
    return raw, splits, protocol
