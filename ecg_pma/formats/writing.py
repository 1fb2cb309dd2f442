"""`write_ecg(record, path)`: an `EcgRecord` as WFDB, DICOM or EDF, chosen by the output's suffix (`.dcm`, `.edf`;
`.hea` or none: WFDB), through each format's reference writer (wfdb, pydicom, edfio)."""

from __future__ import annotations

import os
from pathlib import Path

from ..feature_extraction_ecg_pma import EcgRecord
from .dicom import write_dicom
from .edf import write_edf
from .wfdb import write_wfdb


WRITE_FORMATS = {"wfdb": ("", ".hea"), "dicom": (".dcm",), "edf": (".edf",)}


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    for name, suffixes in WRITE_FORMATS.items():
        if suffix in suffixes:
            return name
    raise ValueError(
        f"{path}: cannot tell the output format from {suffix!r}; use .dcm (DICOM), .edf or .hea / no suffix (WFDB)."
    )


def write_ecg(record: EcgRecord, path: str | os.PathLike) -> str:
    """Writes `record` to `path` in the format its suffix names; returns what was written (WFDB: the record path)."""
    kind = output_format(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if kind == "wfdb":
        return write_wfdb(record, path)
    (write_dicom if kind == "dicom" else write_edf)(record, path)
    return str(path)
