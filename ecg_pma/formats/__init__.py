"""
Reading the ECG files hospitals and devices export — DICOM waveforms, HL7 aECG, GE MUSE and Philips XML, EDF/EDF+/BDF,
CSV / .npy / Parquet arrays — besides WFDB, into the package's `EcgRecord`, and writing records as WFDB, DICOM or
EDF. One module per format; `reading.read_ecg` recognises the format from the file's content.

The libraries of the heavier formats (pydicom, edfio, sierraecg) come with `pip install 'ecg-pma[formats]'`.
"""

from .common import EcgFileError
from .reading import ECG_FILE_SUFFIXES, FORMATS, detect_format, find_ecg_files, read_ecg
from .writing import WRITE_FORMATS, write_ecg


__all__ = [
    "ECG_FILE_SUFFIXES",
    "FORMATS",
    "WRITE_FORMATS",
    "EcgFileError",
    "detect_format",
    "find_ecg_files",
    "read_ecg",
    "write_ecg",
]
