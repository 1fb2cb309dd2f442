"""`ecg-pma convert IN OUT`: any ECG file the package reads, written as WFDB (`OUT`, `OUT.hea`), DICOM (`.dcm`) or EDF
(`.edf`), so that hospital exports move into the research formats loaders and other tools read."""

from __future__ import annotations

import argparse

from .argument_types import positive_float


def add_parser(commands) -> None:
    convert = commands.add_parser(
        "convert",
        help="write an ECG file (DICOM, EDF, HL7 aECG, GE MUSE / Philips XML, CSV/.npy/Parquet, WFDB) as WFDB, DICOM "
        "or EDF",
    )
    convert.add_argument("input", help="the ECG file (a WFDB record: its path with or without .hea)")
    convert.add_argument(
        "output", help="OUT or OUT.hea: WFDB (OUT.hea + OUT.dat); OUT.dcm: DICOM ECG waveform; OUT.edf: EDF"
    )
    convert.add_argument(
        "--lead-alias",
        action="append",
        default=[],
        metavar="NAME=LEAD",
        help="a channel label the file uses for a standard lead, e.g. 'ECG I=I' (repeatable); never guessed",
    )
    convert.add_argument("--sampling-rate", type=positive_float, default=None, help="Hz, for CSV/.npy/Parquet input")
    convert.add_argument("--lead-names", default=None, help="comma-separated, for CSV/.npy/Parquet input")
    convert.add_argument("--units", default=None, help="uV, mV or V, for CSV/.npy/Parquet input (default mV)")
    convert.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..formats import read_ecg, write_ecg
    from .data_arguments import parse_lead_aliases

    record = read_ecg(
        args.input,
        sampling_rate=args.sampling_rate,
        lead_names=args.lead_names.split(",") if args.lead_names else None,
        units=args.units,
        lead_aliases=parse_lead_aliases(args.lead_alias) or None,
    )
    written = write_ecg(record, args.output)
    print(
        f"{args.input} ({record.metadata.get('format')}, {len(record.leads)} leads {' '.join(record.leads)}, "
        f"{record.signal.shape[1]} samples at {record.fs:g} Hz) written to {written}"
    )
    return 0
