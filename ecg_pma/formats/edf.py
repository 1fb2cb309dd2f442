"""
EDF, EDF+ and BDF with `edfio`: every ordinary signal (EDF+ annotation channels are not signals), scaled by edfio from
the header's physical and digital minimum/maximum, converted to mV from its physical dimension. Channel labels are
kept as written (`ECG I`, `EKG II`): the feature extractor's `lead_aliases` say which lead each is, never a guess.
`write_edf` writes an `EcgRecord` as EDF (16-bit) through edfio.
"""

from __future__ import annotations

import os

import numpy as np

from ..feature_extraction_ecg_pma import EcgRecord
from .common import EcgFileError, age_in_years, build_record, millivolt_factor, require, sex_name


EDF_MAGIC = b"0       "
BDF_MAGIC = b"\xffBIOSEMI"


def edf_kind(head: bytes) -> str | None:
    """`edf` or `bdf` from the version field (the first 8 bytes), else None."""
    if head[:8] == EDF_MAGIC:
        return "edf"
    if head[:8] == BDF_MAGIC:
        return "bdf"
    return None


def check_file_size(path, kind: str) -> None:
    """The header's data records must all be in the file: edfio reads a file cut short as a shorter recording."""
    with open(path, "rb") as handle:
        header = handle.read(256)
        try:
            header_bytes, records, signals = int(header[184:192]), int(header[236:244]), int(header[252:256])
        except ValueError as error:
            raise EcgFileError(path, f"an {kind.upper()} header with unreadable fields ({error}).") from error
        handle.seek(256 + signals * 216)
        per_record = sum(int(handle.read(8) or 0) for _ in range(signals))
    if records < 0:  # -1: still being recorded; the file's size decides
        return
    expected = header_bytes + records * per_record * (3 if kind == "bdf" else 2)
    size = os.path.getsize(path)
    if size < expected:
        raise EcgFileError(
            path, f"{size} bytes, fewer than the {expected} its header's {records} data records need (truncated?)."
        )


def edf_metadata(edf, kind: str) -> dict:
    metadata = {"format": kind}
    try:  # EDF+ subfields; a plain EDF header has free text there, which edfio declines to parse
        patient = edf.patient
        metadata["sex"] = sex_name(patient.sex)
        birthdate = patient.birthdate
        metadata["age"] = round(age_in_years((edf.startdate - birthdate).days, "d"), 2)
    except Exception:  # noqa: BLE001 - the fields are optional
        pass
    try:
        metadata["device"] = edf.recording.equipment_code
        metadata["acquisition_time"] = edf.startdatetime.isoformat()
    except Exception:  # noqa: BLE001
        pass
    return {key: value for key, value in metadata.items() if value not in (None, "X")}


def read_edf(path: str | os.PathLike, kind: str = "edf") -> EcgRecord:
    edfio = require("edfio", "EDF/BDF files")
    reader = edfio.read_bdf if kind == "bdf" else edfio.read_edf
    check_file_size(path, kind)
    try:
        edf = reader(path)
        signals = list(edf.signals)
    except Exception as error:  # noqa: BLE001 - edfio raises ValueError, EOFError ... for damaged files
        raise EcgFileError(path, f"not a readable {kind.upper()} file ({type(error).__name__}: {error}).") from error
    if not signals:
        raise EcgFileError(path, f"no signals in the {kind.upper()} file (annotations only).")
    rates = {signal.label: signal.sampling_frequency for signal in signals}
    if len(set(rates.values())) > 1:
        raise EcgFileError(
            path, f"channels sampled at different rates {rates}; one ECG needs one rate (read the ECG channels alone)."
        )
    rows, labels = [], []
    for signal in signals:
        label = signal.label.strip()
        if not signal.physical_dimension.strip():
            raise EcgFileError(path, f"channel {label!r} has no physical dimension (uV or mV).")
        factor = millivolt_factor(path, signal.physical_dimension, f"channel {label!r}")
        try:
            rows.append(np.asarray(signal.data, dtype=np.float64) * factor)
        except Exception as error:  # noqa: BLE001 - a data record cut short
            raise EcgFileError(path, f"channel {label!r} cannot be read (truncated?): {error}.") from error
        labels.append(label)
    return build_record(path, rows, float(signals[0].sampling_frequency), labels, edf_metadata(edf, kind))


def write_edf(record: EcgRecord, path: str | os.PathLike) -> None:
    """`record` (mV) as EDF: one 16-bit signal per lead labelled with the lead name, physical range the lead's own
    minimum and maximum (so the quantisation step is (max - min) / 65535 mV), 1 s data records."""
    edfio = require("edfio", "EDF/BDF files")
    signal = np.asarray(record.signal, dtype=np.float64)
    samples_per_second = signal.shape[1] / record.fs
    if not float(record.fs).is_integer() or not samples_per_second.is_integer():
        raise ValueError(
            f"{record.name}: EDF stores whole 1 s data records; {signal.shape[1]} samples at {record.fs:g} Hz do not "
            "fill them (cut the record to whole seconds first)."
        )
    signals = []
    for lead, row in zip(record.leads, signal):
        # to whole uV, outward: the header writes 8 characters, and a range rounded inward would cut the peaks
        low, high = np.floor(row.min() * 1000) / 1000 - 0.001, np.ceil(row.max() * 1000) / 1000 + 0.001
        signals.append(
            edfio.EdfSignal(
                row, record.fs, label=lead, physical_dimension="mV", physical_range=(float(low), float(high))
            )
        )
    edfio.Edf(signals, data_record_duration=1).write(path)
