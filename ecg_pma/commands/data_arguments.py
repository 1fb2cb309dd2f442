"""Options shared by the commands that read a dataset (--data, --data-format, --label-set, ...)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from ..constants import BAD_RECORD_POLICIES, DATA_FORMATS, NAN_POLICIES
from .argument_types import fraction, positive_int


def add_data_arguments(parser: argparse.ArgumentParser, mixture: bool = False) -> None:
    """`mixture`: `--data` may be given several times, each `FORMAT:PATH` or a path in `--data-format`."""
    if mixture:
        parser.add_argument(
            "--data",
            required=True,
            action="append",
            help="root folder of the records; repeat it to train on a mixture of corpora, each as FORMAT:PATH "
            f"(FORMAT one of {', '.join(DATA_FORMATS)}) or a PATH in --data-format",
        )
    else:
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
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out listed records whose files are absent (CODE-15%%: the exams of a part file absent or cut short); "
        "pretrain and finetune count them and list them in OUTPUT/skipped_records.csv",
    )
    parser.add_argument("--cache-dir", default=None, help="Arrow cache folder of the datasets")
    parser.add_argument(
        "--num-proc", type=positive_int, default=None, help="processes for reading and feature extraction"
    )
    add_lead_arguments(parser)


def add_lead_arguments(parser: argparse.ArgumentParser) -> None:
    """
    How records' leads and samples are read, for every command that reads records: fewer leads than the model (absent
    leads are masked out of the model), dead leads (entirely NaN, or flat over the whole record: absent where leads may
    be missing) and NaN samples.
    """
    parser.add_argument(
        "--required-leads",
        default=None,
        help="leads every record must have: a lead set (12, 6, 4, 3, 2) or names joined by commas (I,II); the "
        "model's other leads may be missing. Default: all of them",
    )
    parser.add_argument(
        "--allow-missing-leads",
        action="store_true",
        help="accept records with any of the leads; a dead lead (entirely NaN, or flat over the whole record) is then "
        "read as absent, as if the record did not have it",
    )
    parser.add_argument(
        "--lead-alias",
        action="append",
        default=[],
        metavar="NAME=LEAD",
        help="read a non-standard lead name as one of the model's leads, e.g. MLII=II (repeatable)",
    )
    parser.add_argument(
        "--nan-policy",
        choices=NAN_POLICIES,
        default=None,
        help="NaN/inf samples in the leads read: stop with an error naming the record (raise, the default), "
        "interpolate them linearly in time, or zero them",
    )


def parse_lead_aliases(items: list[str]) -> dict[str, str]:
    """`--lead-alias NAME=LEAD` options -> `{NAME: LEAD}`."""
    aliases = {}
    for item in items:
        name, separator, lead = item.partition("=")
        if not separator or not name.strip() or not lead.strip():
            raise ValueError(f"--lead-alias {item!r}: expected NAME=LEAD, e.g. MLII=II.")
        aliases[name.strip()] = lead.strip()
    return aliases


def lead_options(args: argparse.Namespace) -> dict:
    """The feature-extractor settings given by `add_lead_arguments`' options (only those set)."""
    aliases = parse_lead_aliases(args.lead_alias)
    options = {"lead_aliases": aliases} if aliases else {}
    if args.required_leads is not None:
        options["required_leads"] = args.required_leads
    if args.allow_missing_leads:
        options["allow_missing_leads"] = True
    if args.nan_policy is not None:
        options["nan_policy"] = args.nan_policy
    return options


def reading_extractor(extractor, args: argparse.Namespace):
    """
    A copy of `extractor` that reads records as the lead options say (`lead_options`); `extractor` itself when none is
    given. The copy reads the data; the model keeps `extractor` (its own preprocessing) unless the command saves both.
    """
    import copy

    options = lead_options(args)
    if not options:
        return extractor
    reading = copy.deepcopy(extractor)
    for name, value in options.items():
        setattr(reading, name, value)
    reading._check_settings()
    reading._check_lead_settings()
    return reading


def reading_protocol(args: argparse.Namespace) -> dict:
    """How the run read leads and NaN samples, for its results."""
    return {
        "missing_leads": "allowed (dead leads read as absent)"
        if args.allow_missing_leads
        else f"required: {args.required_leads}"
        if args.required_leads
        else "not allowed (every lead required)",
        "nan_policy": args.nan_policy or "raise",
    }


def add_training_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the commands that train (pretrain, finetune), next to `add_data_arguments`."""
    parser.add_argument(
        "--storage-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="the model-rate records cached for random crops: float16 halves the cache (crops computed in float64)",
    )
    parser.add_argument(
        "--train-windows",
        choices=("random", "sliding"),
        default="random",
        help="training rows: one random crop per record per epoch (default, as the PMA authors and ST-MEM), or every "
        "sliding window of every record; evaluation always uses sliding windows averaged per record",
    )


def corpus_specs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """`--data` as `[(format, path), ...]`: `FORMAT:PATH` names its format, a bare path is in `--data-format`."""
    specs = []
    for value in args.data if isinstance(args.data, list) else [args.data]:
        data_format, separator, path = str(value).partition(":")
        specs.append((data_format, path) if separator and data_format in DATA_FORMATS else (args.data_format, value))
    return specs


def load_mixture(args: argparse.Namespace, specs: list[tuple[str, str]]):
    """
    Several corpora as one unlabelled `DatasetDict` (pre-training): each corpus keeps its own rate (resampled to the
    model's later, row by row), `record_id` becomes `FORMAT:PATH/record_id`. Returns it and the per-corpus record
    counts per split, which are logged. Arrow tables are concatenated, not copied.
    """
    from datasets import DatasetDict, Sequence, Value, concatenate_datasets

    parts: dict[str, list] = {}
    counts = []
    for data_format, path in specs:
        corpus = load_raw_records(args, data_format, path)
        counts.append(corpus_entry(args, data_format, path))
        for split, dataset in corpus.items():
            counts[-1]["records"][split] = len(dataset)
            # new columns held in memory next to the memory-mapped signals: nothing is rewritten on disk
            names = [corpus_prefix(data_format, path) + name for name in dataset["record_id"]]
            dataset = dataset.select_columns(SHARED_COLUMNS[1:]).add_column(
                "record_id", names, feature=Value("string")
            )
            dataset = dataset.add_column("labels", [[]] * len(dataset), feature=Sequence(Value("float32")))
            parts.setdefault(split, []).append(dataset)
        logging.getLogger(__name__).warning(f"Corpus {data_format}:{path}: {counts[-1]['records']} records per split.")
    return DatasetDict({split: concatenate_datasets(datasets) for split, datasets in parts.items()}), counts


def corpus_entry(args: argparse.Namespace, data_format: str, path) -> dict:
    """A corpus as `pretraining_data.json` lists it; `sources` (PhysioNet 2021's `--sources`) when chosen, so that the
    benchmark's leakage guard knows which source databases the model saw."""
    entry = {"format": data_format, "path": str(path), "records": {}}
    if data_format == "physionet2021" and getattr(args, "sources", None):
        entry["sources"] = list(args.sources)
    return entry


SHARED_COLUMNS = ["record_id", "signal", "sampling_rate", "lead_names"]  # what every loader's rows have


def corpus_prefix(data_format: str, path: str) -> str:
    """What a mixture of corpora puts before each record id, so that ids stay unique and say where a record is from."""
    return f"{data_format}:{path}/"


def corpus_streams(args: argparse.Namespace, all_splits: bool = False) -> list[tuple[str, str, str, dict, list]]:
    """
    Each corpus of `--data` as `(format, path, record_prefix, {split: stream}, missing record ids)`, read from its
    source files as iterated (the splits used: `train`, or all). In a mixture (`--data` given more than once)
    `record_prefix` is `FORMAT:PATH/`, to be put before its record ids (and its labels are left out: each corpus has
    its own), as `load_mixture` does; otherwise empty. The missing records are those `--skip-missing` left out.
    """
    specs = corpus_specs(args)
    corpora = []
    for data_format, path in specs:
        corpus = load_raw_records(args, data_format, path, streaming=True)
        splits = {split: stream for split, stream in corpus.items() if all_splits or split == "train"}
        prefix = corpus_prefix(data_format, path) if len(specs) > 1 else ""
        corpora.append((data_format, path, prefix, splits, getattr(corpus, "missing_records", {})))
    return corpora


def load_streaming_training_data(args: argparse.Namespace, extractor, seed: int = 0, all_splits: bool = False):
    """
    `--streaming`: the training records read from their source files as training goes (nothing cached), every
    corpus of `--data` interleaved in turn, shuffled through a `--shuffle-buffer`, one random crop per record per
    pass (`stream_training_records`). Returns the stream and the protocol choices for the run's results.
    """
    from datasets import concatenate_datasets, interleave_datasets

    from ..data import stream_training_records
    from ..data.crops import STREAM_BATCH_SIZE, StreamedRecordFiles, StreamReport, skipping_stream

    extractor = reading_extractor(extractor, args)
    corpora = corpus_streams(args, all_splits)
    entries = [
        {**corpus_entry(args, data_format, path), "missing": len(missing)}
        for data_format, path, _, _, missing in corpora
    ]
    missing_rows = [
        (data_format, path, "", prefix + name, f"missing: {reason}")
        for data_format, path, prefix, _, missing in corpora
        for name, reason in missing.items()
    ]
    if missing_rows:  # listed before training starts; records skipped while streaming are appended
        write_skipped_records(args, missing_rows)
    for entry, (_, _, _, splits, _) in zip(entries, corpora):
        if entry["missing"]:  # against the records listed (the readers' items stand for them; nothing is read)
            readers = [split.record_reader for split in splits.values()]
            listed = sum(len(reader.record_files(item)) for reader in readers for item in reader.items)
            check_lost_share(entry, entry["missing"], listed + entry["missing"], args)
    report = StreamReport(
        entries, [prefix for _, _, prefix, _, _ in corpora], args.output_dir, max_bad_share=args.max_bad_share
    )
    bad_records = getattr(args, "bad_records", "raise")
    record_files = StreamedRecordFiles(
        {prefix: [split.record_reader for split in splits.values()] for _, _, prefix, splits, _ in corpora}
    )
    streams = []
    for _, _, prefix, splits, _ in corpora:
        if bad_records == "skip":  # unreadable files skipped as read, each record counted and listed
            splits = {name: skipping_stream(split, report, prefix) for name, split in splits.items()}
        selected = concatenate_datasets([split.select_columns(SHARED_COLUMNS) for split in splits.values()])
        if prefix:
            selected = selected.map(
                lambda batch, prefix=prefix: {"record_id": [prefix + name for name in batch["record_id"]]},
                batched=True,
                batch_size=STREAM_BATCH_SIZE,  # not datasets' default of 1,000 raw records held at once
                features=selected.features,
            )
        streams.append(selected)
    records = streams[0] if len(streams) == 1 else interleave_datasets(streams, stopping_strategy="all_exhausted")
    train = stream_training_records(
        records,
        extractor,
        seed=seed,
        shuffle_buffer=args.shuffle_buffer,
        report=report,
        bad_records=bad_records,
        record_files=record_files,
    )
    train.report = report  # the command logs its summary and writes the final counts when training ends
    protocol = {
        "training_windows": f"one random crop per record per pass, streamed (seed {seed}, shuffle buffer "
        f"{args.shuffle_buffer} records)",
        "short_records": "drop (ids in short_records_dropped.txt)",
        "corpora": entries,  # counted as training reads them (every DataLoader worker), complete when it ends
        "splits": "all" if all_splits else "train",
        "bad_records": f"{bad_records} (ids and reasons in {SKIPPED_RECORDS_FILE})"
        if bad_records == "skip"
        else bad_records,
        **reading_protocol(args),
    }
    return train, protocol


def load_pretraining_data(args: argparse.Namespace, extractor, seed: int = 0, all_splits: bool = False):
    """
    `pretrain` without `--streaming`: every corpus of `--data` read from its source files straight into model-rate
    Arrow shards (`prepare_streamed_records`, `--num-proc` processes, `--storage-dtype`; no cache of the raw signals,
    a second run reads the shards), the splits used (`train`, or all) concatenated and read memory-mapped, one random
    crop per record per epoch. `--train-windows sliding` takes the raw-record path (`load_training_data`). Returns
    the training rows and the protocol choices for the run's results, with the records read per corpus and split.
    """
    from datasets import concatenate_datasets

    from ..data import EcgTrainingDataset
    from ..data.crops import prepare_streamed_records

    if args.train_windows != "random":
        _, splits, protocol = load_training_data(args, extractor, seed=seed, all_splits=all_splits)
        return splits["train"], protocol
    extractor = reading_extractor(extractor, args)
    parts, dropped, counts, skipped_rows = [], {}, [], []
    bad_records = getattr(args, "bad_records", "raise")
    for data_format, path, prefix, splits, missing in corpus_streams(args, all_splits):
        counts.append({**corpus_entry(args, data_format, path), "skipped": {}, "missing": len(missing)})
        skipped_rows += [(data_format, path, "", prefix + name, f"missing: {why}") for name, why in missing.items()]
        for split, stream in splits.items():
            skipped: list[tuple[str, str]] = []
            with naming_bad_records_option(args):
                rows, crop_extractor, names = prepare_streamed_records(
                    stream,
                    extractor,
                    num_proc=args.num_proc,
                    storage_dtype=args.storage_dtype,
                    cache_dir=args.cache_dir,
                    short_records=args.short_records,
                    split=split,
                    record_prefix=prefix,
                    keep_labels=not prefix,
                    bad_records=bad_records,
                    skipped=skipped,
                )
            parts.append(rows)
            dropped.setdefault(split, []).extend(names)  # under the split each was read from
            read = len(set(rows["record_id"])) + (len(names) if args.short_records == "drop" else 0)
            counts[-1]["records"][split] = read
            counts[-1]["skipped"][split] = len(skipped)
            skipped_rows += [(data_format, path, split, name, reason) for name, reason in skipped]
        report_lost_records(args, counts[-1], skipped_rows)  # as each corpus is done
    rows = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if not len(rows):
        raise ValueError(f"No record of {', '.join(args.data)} is long enough to train on.")
    protocol = {
        "training_windows": f"one random crop per record per epoch (seed {seed})",
        **data_protocol(args, dropped, counts),
        "splits": "all" if all_splits else "train",
        "cache": f"model-rate records, {args.storage_dtype}",
        "bad_records": bad_records_protocol(bad_records),
    }
    return EcgTrainingDataset(rows, crop_extractor, seed=seed), protocol


SKIPPED_RECORDS_FILE = "skipped_records.csv"  # in the output folder: corpus, path, split, record_id, reason


def add_bad_record_arguments(parser: argparse.ArgumentParser) -> None:
    """What a run does with a record it cannot read or use (the training commands, which read whole corpora)."""
    parser.add_argument(
        "--bad-records",
        choices=BAD_RECORD_POLICIES,
        default="raise",
        help="a record that cannot be read (truncated or missing file) or used (a required dead lead, NaN samples "
        "under --nan-policy raise, ...): stop with its error (raise, the default), or skip it (files absent or cut "
        f"short as with --skip-missing), listing it with the reason in OUTPUT/{SKIPPED_RECORDS_FILE} and counting it "
        "per corpus and split in the run's pretraining_data.json (pretrain) or results.json (finetune)",
    )
    parser.add_argument(
        "--max-bad-share",
        type=fraction,
        default=0.05,
        help="--bad-records skip, --skip-missing: stop when the records skipped or missing exceed this share of a "
        "corpus (default 0.05)",
    )


@contextlib.contextmanager
def naming_bad_records_option(args: argparse.Namespace):
    """
    A record's own error, raised while the record was read into a cache (`cache_split`: from within `datasets`'
    generation, not by a listing), says how to leave such records out, where the command has `--bad-records`.
    """
    from datasets.exceptions import DatasetGenerationError

    try:
        yield
    except (OSError, ValueError) as error:
        if (
            getattr(args, "bad_records", "skip") != "skip"
            and isinstance(error.__cause__, DatasetGenerationError)
            and type(error) in (ValueError, FileNotFoundError)  # rebuilt from the message alone
        ):
            raise type(error)(
                f"{error} To leave out the records that cannot be read or used (listed with the reason in "
                f"OUTPUT/{SKIPPED_RECORDS_FILE}), pass --bad-records skip."
            ) from error
        raise


def bad_records_protocol(bad_records: str) -> str:
    """`--bad-records` as a run's results record it."""
    if bad_records == "skip":
        return f"skip (skipped and missing records with reasons in {SKIPPED_RECORDS_FILE})"
    return bad_records


def report_lost_records(args: argparse.Namespace, corpus: dict, rows: list[tuple]) -> None:
    """
    A corpus read: its line in the log (`corpus_summary`), `OUTPUT/skipped_records.csv` with `rows` (every record
    skipped or missing so far, `write_skipped_records`; written first, so that a run stopped by the share has it), and
    the stop past `--max-bad-share` (`check_skipped_share`).
    """
    logging.getLogger(__name__).warning(corpus_summary(corpus, args))
    if rows:
        write_skipped_records(args, rows)
    check_skipped_share(corpus, args, Path(args.output_dir) / SKIPPED_RECORDS_FILE)


def corpus_summary(corpus: dict, args: argparse.Namespace) -> str:
    """The log's line for one corpus: records read per split, and those skipped or missing, with where they are."""
    line = f"Corpus {corpus['format']}:{corpus['path']}: {corpus['records']} records per split"
    skipped = sum(corpus.get("skipped", {}).values())
    if skipped or corpus.get("missing"):
        where = Path(args.output_dir) / SKIPPED_RECORDS_FILE
        line += f"; {skipped} skipped (unreadable or unusable), {corpus.get('missing', 0)} missing, listed in {where}"
    return line + "."


def write_skipped_records(args: argparse.Namespace, rows: list[tuple]) -> Path:
    """
    `OUTPUT/skipped_records.csv` with every record skipped or missing so far and why; returns its path. Written whole
    (a temporary file renamed): the processes of a multi-process run each write the same listing.
    """
    import csv
    import io

    from ..training.checkpoint import write_text_atomically

    path = Path(args.output_dir) / SKIPPED_RECORDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["corpus", "path", "split", "record_id", "reason"])
    writer.writerows((data_format, str(root), split, name, reason) for data_format, root, split, name, reason in rows)
    write_text_atomically(path, text.getvalue())
    return path


def check_skipped_share(corpus: dict, args: argparse.Namespace, listing: Path) -> None:
    """Stops when a corpus lost more than `--max-bad-share` of its records to skipping or missing files."""
    lost = sum(corpus.get("skipped", {}).values()) + corpus.get("missing", 0)
    check_lost_share(corpus, lost, sum(corpus["records"].values()) + lost, args, listing)


def check_lost_share(corpus: dict, lost: int, total: int, args: argparse.Namespace, listing: Path | None = None):
    """Stops when `lost` of a corpus's `total` records (skipped or missing) are more than `--max-bad-share`."""
    if lost and lost > args.max_bad_share * total:
        listing = listing or Path(args.output_dir) / SKIPPED_RECORDS_FILE
        raise ValueError(
            f"Corpus {corpus['format']}:{corpus['path']}: {lost} of {total} records skipped or missing "
            f"({lost / total:.1%}), more than --max-bad-share {args.max_bad_share:g}; they are listed with the reasons "
            f"in {listing}."
        )


def load_raw_records(
    args: argparse.Namespace, data_format: str | None = None, path: str | None = None, streaming: bool = False
):
    from ..data import load_records

    if data_format is None:
        ((data_format, path),) = corpus_specs(args)
    return load_records(
        data_format,
        path,
        label_set=args.label_set,
        sampling_rate=args.sampling_rate,
        labels_csv=args.labels_csv,
        # a file absent or cut short is a record that cannot be read: `--bad-records skip` leaves it out too
        missing="skip" if args.skip_missing or getattr(args, "bad_records", "raise") == "skip" else "raise",
        cache_dir=args.cache_dir,
        num_proc=args.num_proc,
        drop_unlabeled=not getattr(args, "keep_unlabeled", False),
        sources=getattr(args, "sources", None),
        streaming=streaming,
    )


def load_windows(args: argparse.Namespace, extractor, window_mode: str = "sliding"):
    """Every split as windows (`extract_features`), short records handled by `--short-records` in each."""
    from datasets import DatasetDict

    from ..data import extract_features, handle_short_records

    extractor = reading_extractor(extractor, args)
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

    extractor = reading_extractor(extractor, args)
    specs = corpus_specs(args)
    if len(specs) > 1:
        raw, corpora = load_mixture(args, specs)
    else:
        raw, corpus = load_usable_records(args, extractor, *specs[0])
        corpora = [corpus]
    if all_splits:
        raw = DatasetDict({"train": concatenate_datasets([split for split in raw.values() if len(split)])})
    splits, dropped = build_training_splits(
        raw,
        extractor,
        args.train_windows,
        args.short_records,
        augment=augment,
        seed=seed,
        num_proc=args.num_proc,
        storage_dtype=getattr(args, "storage_dtype", "float32"),
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
        **data_protocol(args, dropped, corpora),
    }
    if hasattr(args, "bad_records"):
        protocol["bad_records"] = bad_records_protocol(args.bad_records)
    return raw, splits, protocol


def load_usable_records(args: argparse.Namespace, extractor, data_format: str, path: str):
    """
    One corpus's raw splits for training on them, and its entry for the run's results (`corpus_entry`): the records
    read per split, and those left out, `skipped` per split (unreadable or unusable, with `--bad-records skip`:
    `read_usable_records`) and `missing` (files absent or cut short, with `--skip-missing`), each listed with the
    reason in `OUTPUT/skipped_records.csv` (`report_lost_records`, which stops past `--max-bad-share`). Without
    `--bad-records skip`, a record's own read error says how to skip it.
    """
    from datasets import DatasetDict

    from ..data import read_usable_records

    skip = getattr(args, "bad_records", "raise") == "skip"
    with naming_bad_records_option(args):
        raw = load_raw_records(args, data_format, path, streaming=skip)
    missing = getattr(raw, "missing_records", {})
    corpus = {**corpus_entry(args, data_format, path), "records": {}, "skipped": {}, "missing": len(missing)}
    rows = [(data_format, path, "", name, f"missing: {why}") for name, why in missing.items()]
    splits = {}
    for split, records in raw.items():
        skipped: list[tuple[str, str]] = []
        if skip:
            records = read_usable_records(records, extractor, split, args.cache_dir, args.num_proc, skipped)
        splits[split] = records
        corpus["records"][split], corpus["skipped"][split] = len(records), len(skipped)
        rows += [(data_format, path, split, name, reason) for name, reason in skipped]
    if rows and hasattr(args, "output_dir"):  # a run that lost nothing says nothing more
        report_lost_records(args, corpus, rows)
    return DatasetDict(splits), corpus


def data_protocol(args: argparse.Namespace, dropped: dict[str, list[str]], corpora: list[dict] | None) -> dict:
    """The data choices of a training run for its results: short records (and which), label set, PTB-XL's unlabelled
    records, the corpora of a mixture with their record counts."""
    protocol = {
        "short_records": args.short_records,
        "short_records_dropped" if args.short_records == "drop" else "short_records_padded": dropped,
        "label_set": "none (a mixture of corpora, unlabelled)"
        if corpora is not None and len(corpora) > 1
        else args.label_set or {"ptbxl": "all", "physionet2021": "scored"}.get(args.data_format, "from CSV"),
    }
    protocol.update(reading_protocol(args))
    if corpora is not None:
        protocol["corpora"] = corpora
    if any(data_format == "ptbxl" for data_format, _ in corpus_specs(args)):
        protocol["unlabeled_records"] = (
            "kept as all-negative rows" if args.keep_unlabeled else "dropped (PTB-XL benchmark rule)"
        )
    return protocol
