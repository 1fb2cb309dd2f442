"""WFDB records (`.hea` + `.dat`/`.mat`) through the feature extractor's reader, with what PhysioNet headers say in
their comments (`# Age: 53`, `# Sex: Male`, `# Dx: ...` as `diagnoses`) as metadata; `write_wfdb` writes any
`EcgRecord` as WFDB."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor, EcgRecord
from .common import age_in_years, build_record, sex_name


def comment_fields(comments: list[str]) -> dict[str, str]:
    fields = {}
    for comment in comments or []:
        key, separator, value = comment.partition(":")
        if separator:
            fields[key.strip().lower()] = value.strip()
    return fields


def read_wfdb(path: str | os.PathLike) -> EcgRecord:
    record_path = str(path)
    for suffix in (".hea", ".dat", ".mat"):  # the header or a signal file of the record names it too
        if record_path.endswith(suffix) and os.path.exists(record_path[: -len(suffix)] + ".hea"):
            record_path = record_path[: -len(suffix)]
    raw = EcgPmaFeatureExtractor.read_record(record_path)
    record = EcgPmaFeatureExtractor._record_from_wfdb(raw, record_path)
    signal = EcgPmaFeatureExtractor.to_millivolts(record.signal, record.units, record_path)
    return build_record(record_path, list(signal), record.fs, record.leads, wfdb_metadata(raw))


def wfdb_metadata(raw) -> dict:
    """What a `wfdb.Record`'s header says besides the signal: age and sex from PhysioNet's comment lines, the
    acquisition time from its base date and time, and its `# Dx:` codes as `diagnoses` (a data set's labels, not
    the machine's statements: a plot or the web demo does not print them beside a prediction)."""
    fields = comment_fields(raw.comments)
    date, time = getattr(raw, "base_date", None), getattr(raw, "base_time", None)
    return {
        "format": "wfdb",
        "age": age_in_years(fields.get("age")),
        "sex": sex_name(fields.get("sex")),
        "acquisition_time": f"{date.isoformat()}{f' {time.isoformat()}' if time is not None else ''}"
        if date
        else None,
        "diagnoses": [code.strip() for code in fields["dx"].split(",")] if fields.get("dx") else [],
    }


def write_wfdb(record: EcgRecord, path: str | os.PathLike) -> str:
    """
    `record` (mV) as a WFDB record at `path` (without extension; `.hea` and `.dat` are written): 16-bit samples at
    1000 units per mV (1 uV steps) unless the largest amplitude needs a coarser step, age/sex/statements as header
    comments. Returns the record path.
    """
    import wfdb

    target = Path(str(path).removesuffix(".hea"))
    target.parent.mkdir(parents=True, exist_ok=True)
    signal = np.asarray(record.signal, dtype=np.float64)
    largest = float(np.abs(signal).max(initial=0.0))
    gain = 1000.0 if largest * 1000.0 < 32767 else float(np.floor(32767 / largest))
    digital = np.round(signal.T * gain).astype(np.int64)
    metadata = record.metadata
    comments = [f"Age: {metadata['age']:g}"] if metadata.get("age") is not None else []
    comments += [f"Sex: {metadata['sex'].capitalize()}"] if metadata.get("sex") else []
    comments += [f"Source: {metadata['format']} {Path(record.name).name}"] if metadata.get("format") else []
    wfdb.wrsamp(
        target.name,
        fs=record.fs,
        units=["mV"] * len(record.leads),
        sig_name=list(record.leads),
        d_signal=digital,
        fmt=["16"] * len(record.leads),
        adc_gain=[gain] * len(record.leads),
        baseline=[0] * len(record.leads),
        comments=comments,
        write_dir=str(target.parent),
    )
    return str(target)
