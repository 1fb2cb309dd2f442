"""
`read_ecg(path)`: any ECG file this package reads, recognised from its content — the DICOM preamble, the EDF/BDF
version field, the NumPy and Parquet magic numbers, the XML root element — and read by its format's module into an
`EcgRecord` in mV with standard lead names and the file's metadata. `find_ecg_files` lists the ECGs below a folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..feature_extraction_ecg_pma import EcgRecord, canonical_lead_key
from .arrays import NPY_MAGIC, PARQUET_MAGIC, read_array
from .common import EcgFileError, standard_lead_name
from .dicom import is_dicom, read_dicom
from .edf import edf_kind, read_edf
from .ge_muse import read_ge_muse
from .hl7_aecg import read_hl7_aecg
from .philips import read_philips
from .wfdb import read_wfdb
from .xml_root import ROOT_ELEMENTS, decode_head, root_element


FORMATS = ("wfdb", "dicom", "edf", "bdf", "hl7-aecg", "ge-muse", "philips", "csv", "npy", "parquet")
ARRAY_FORMATS = ("csv", "npy", "parquet")
READERS: dict[str, Callable[[str], EcgRecord]] = {
    "wfdb": read_wfdb,
    "dicom": read_dicom,
    "edf": read_edf,
    "bdf": lambda path: read_edf(path, "bdf"),
    "hl7-aecg": read_hl7_aecg,
    "ge-muse": read_ge_muse,
    "philips": read_philips,
}
# The file names a folder screening picks up (besides WFDB headers and files without a suffix, which are sniffed).
ECG_FILE_SUFFIXES = (".dcm", ".dicom", ".edf", ".bdf", ".xml", ".csv", ".npy", ".parquet")
# What a suffix promises, for the error when the content says otherwise.
SUFFIX_PROMISES = {
    ".dcm": "DICOM", ".dicom": "DICOM", ".edf": "EDF", ".bdf": "BDF", ".xml": "XML", ".npy": "NumPy .npy",
    ".parquet": "Parquet", ".csv": "CSV",
}  # fmt: skip
WFDB_SIGNAL_SUFFIXES = (".dat", ".mat")
HEAD_BYTES = 4096
# HDF5 holds many exams per file (CODE-15%'s exams_part*.hdf5, CODE-test's ecg_tracings.hdf5): not one ECG, and read
# here only to say so. A folder screening lists these files so that its errors name them, rather than passing over.
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HDF5_SUFFIXES = (".hdf5", ".h5")
HDF5_PROBLEM = (
    "an HDF5 file, which holds many exams (CODE-15%'s exams_part*.hdf5, CODE-test's ecg_tracings.hdf5), not one ECG: "
    "read_ecg and `ecg-pma predict` read one ECG per file (WFDB, DICOM, EDF/BDF, HL7 aECG, GE MUSE and Philips XML, "
    "CSV, .npy, Parquet). Read a CODE download as a corpus: --data FOLDER --data-format code15 (or code-test) in "
    "`ecg-pma evaluate`, `embed` or `finetune` (Python: ecg_pma.data.load_code15)."
)


def looks_like_csv(head: bytes) -> bool:
    """Text (UTF-8, no NUL bytes) whose first line has a comma or a tab between fields."""
    if b"\x00" in head:
        return False
    try:
        first_line = head.decode("utf-8").splitlines()[0] if head.strip() else ""
    except UnicodeDecodeError:
        return False
    return "," in first_line or "\t" in first_line


def detect_format(path: str | os.PathLike) -> str:
    """One of `FORMATS` from the file's content (the name only for WFDB's `.hea`); anything else raises, naming the
    file and what its first bytes are."""
    text = str(path)
    suffix = Path(text).suffix.lower()
    if suffix == ".hea" or (not os.path.isfile(text) and os.path.exists(text + ".hea")):
        return "wfdb"
    if suffix in WFDB_SIGNAL_SUFFIXES and os.path.exists(text[: -len(suffix)] + ".hea"):
        return "wfdb"
    if os.path.isdir(text):
        raise EcgFileError(path, "a folder, not an ECG file (screen folders with `ecg-pma predict --output`).")
    if not os.path.isfile(text):
        raise FileNotFoundError(f"{path}: no such file (nor a WFDB header {text}.hea).")
    with open(text, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    if not head:
        raise EcgFileError(path, "an empty file.")
    if is_dicom(head):
        return "dicom"
    if edf_kind(head):
        return edf_kind(head)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(HDF5_MAGIC):
        raise EcgFileError(path, HDF5_PROBLEM)
    root = root_element(head)
    if root is not None:
        if root in ROOT_ELEMENTS:
            return ROOT_ELEMENTS[root]
        raise EcgFileError(
            path,
            f"XML whose root element <{root}> is not an ECG format read here (HL7 aECG <AnnotatedECG>, GE MUSE "
            "<RestingECG>, Philips <restingecgdata>).",
        )
    if decode_head(head) is None and looks_like_csv(head):
        return "csv"
    promise = SUFFIX_PROMISES.get(suffix)
    said = f"the name says {promise} but the content is not" if promise else "unrecognised content"
    raise EcgFileError(
        path,
        f"{said} (it starts with {head[:16]!r}); readable: DICOM, EDF/BDF, HL7 aECG, GE MUSE and Philips XML, CSV, "
        ".npy, Parquet, WFDB.",
    )


def apply_lead_aliases(record: EcgRecord, lead_aliases: dict[str, str]) -> EcgRecord:
    """The record with the user's names for non-standard labels (`{"ECG I": "I"}`) replaced by standard leads."""
    keys = {canonical_lead_key(alias): standard_lead_name(target) for alias, target in lead_aliases.items()}
    record.leads = [keys.get(canonical_lead_key(lead), lead) for lead in record.leads]
    return record


def read_ecg(
    path: str | os.PathLike,
    *,
    sampling_rate: float | None = None,
    lead_names: list[str] | None = None,
    units: str | None = None,
    lead_aliases: dict[str, str] | None = None,
) -> EcgRecord:
    """
    Reads one ECG file of any supported format (see `FORMATS`), recognised from its content.

    Args:
        path: the file (a WFDB record: its path with or without `.hea`).
        sampling_rate, lead_names, units: for CSV / .npy / Parquet arrays only (else the sidecar JSON's); the other
            formats carry their own, and passing these for them raises.
        lead_aliases: non-standard channel labels the caller vouches for, e.g. `{"ECG I": "I", "EKG II": "II"}` for
            EDF; labels are never guessed.
    Returns:
        An `EcgRecord`: `signal (leads, samples)` float64 in mV (`units="mV"`), `fs`, `leads` in the standard
        spelling (`aVR`, `V1`) or as the file labels them, `metadata` (`format`, and where the file holds them `age`,
        `sex`, `acquisition_time`, `device`, `filters`, `statements`).
    Raises:
        `EcgFileError` (a `ValueError`) naming the file and what is wrong; `ImportError` naming the `formats` extra
        when the format's library is not installed.
    """
    kind = detect_format(path)
    if kind in ARRAY_FORMATS:
        record = read_array(path, kind, sampling_rate, lead_names, units)
    else:
        given = [
            name
            for name, value in (("sampling_rate", sampling_rate), ("lead_names", lead_names), ("units", units))
            if value is not None
        ]
        if given:
            raise ValueError(f"{path}: {', '.join(given)} describe bare arrays; a {kind} file carries its own.")
        record = READERS[kind](str(path))
    return apply_lead_aliases(record, lead_aliases) if lead_aliases else record


def find_ecg_files(root: str | os.PathLike) -> list[str]:
    """
    Every ECG below `root`, sorted: WFDB records (paths without extension, one per `.hea`), files with an ECG suffix
    (`ECG_FILE_SUFFIXES`; an unreadable one is still listed, so that screening reports it; HDF5 files too, which are
    not read but named: `HDF5_PROBLEM`), and files without a suffix whose content is an ECG format (DICOM exports
    often have none). Sidecar JSON, WFDB signal files and other files are not records.
    """
    found = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix == ".hea":
            found.append(str(path.with_suffix("")))
        elif suffix in ECG_FILE_SUFFIXES or suffix in HDF5_SUFFIXES:
            found.append(str(path))
        elif not suffix:
            try:
                detect_format(path)
            except (ValueError, OSError):
                continue
            found.append(str(path))
    return sorted(found)
