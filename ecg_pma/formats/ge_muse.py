"""
GE MUSE XML (`<RestingECG>`) with the standard library: the `Rhythm` waveform's leads, base64 little-endian 16-bit
samples times `LeadAmplitudeUnitsPerBit` in `LeadAmplitudeUnits`. MUSE stores the 8 independent leads (I, II,
V1-V6); III, aVR, aVL and aVF are derived from I and II by Einthoven's and Goldberger's equations, as the MUSE viewer
does, and listed in the metadata's `derived_leads`.
"""

from __future__ import annotations

import base64
import binascii
import os

import numpy as np

from ..feature_extraction_ecg_pma import EcgRecord
from .common import EcgFileError, age_in_years, build_record, millivolt_factor, sex_name
from .xml_root import child, children, descendants, parse, text_of


# Each limb lead from leads I and II (III = II - I; aVR = -(I + II) / 2; aVL = I - II / 2; aVF = II - I / 2).
DERIVED_LIMB_LEADS = {
    "III": (-1.0, 1.0),
    "aVR": (-0.5, -0.5),
    "aVL": (1.0, -0.5),
    "aVF": (-0.5, 1.0),
}


def rhythm_waveform(path, root):
    waveforms = children(root, "Waveform")
    rhythm = [item for item in waveforms if (text_of(item, "WaveformType") or "").lower() == "rhythm"]
    if not rhythm:
        types = [text_of(item, "WaveformType") for item in waveforms]
        raise EcgFileError(path, f"GE MUSE XML without a Rhythm waveform (waveforms: {types}); no ECG to read.")
    return rhythm[0]


def lead_samples(path, lead_data) -> tuple[str, np.ndarray]:
    lead = text_of(lead_data, "LeadID")
    if not lead:
        raise EcgFileError(path, "a LeadData without a LeadID.")
    encoded = child(lead_data, "WaveFormData")
    if encoded is None or not (encoded.text or "").strip():
        raise EcgFileError(path, f"lead {lead} has no WaveFormData.")
    try:
        raw = base64.b64decode("".join(encoded.text.split()), validate=True)
    except binascii.Error as error:
        raise EcgFileError(path, f"lead {lead}: WaveFormData is not base64 ({error}).") from error
    size = int(text_of(lead_data, "LeadSampleSize") or 2)
    if size != 2 or len(raw) % 2:
        raise EcgFileError(path, f"lead {lead}: {len(raw)} bytes of {size}-byte samples; expected 16-bit samples.")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    declared = text_of(lead_data, "LeadSampleCountTotal")
    if declared is not None and int(declared) != len(samples):
        raise EcgFileError(path, f"lead {lead}: {len(samples)} samples, but LeadSampleCountTotal says {declared}.")
    step = float(text_of(lead_data, "LeadAmplitudeUnitsPerBit") or "nan")
    if not np.isfinite(step):
        raise EcgFileError(path, f"lead {lead} has no LeadAmplitudeUnitsPerBit (the amplitude scale).")
    unit = text_of(lead_data, "LeadAmplitudeUnits") or ""
    return lead, samples * step * millivolt_factor(path, unit, f"lead {lead}")


def muse_metadata(root, waveform) -> dict:
    date, time = text_of(root, "AcquisitionDate"), text_of(root, "AcquisitionTime")
    filters = {}
    for name, key, per_hz in (("HighPassFilter", "high_pass_hz", 100.0), ("LowPassFilter", "low_pass_hz", 1.0)):
        value = text_of(waveform, name)
        if value and value.replace(".", "", 1).isdigit():
            # the high-pass corner read as hundredths of a hertz (16 = 0.16 Hz), the low-pass as hertz, as MUSE exports
            # are commonly read; GE's own documentation of the field was not available to check it
            filters[key] = float(value) / per_hz
    notch = text_of(waveform, "ACFilter")
    if notch and notch.isdigit():
        filters["notch_hz"] = float(notch)
    statements = [
        text_of(statement, "StmtText")
        for diagnosis in children(root, "Diagnosis")
        for statement in children(diagnosis, "DiagnosisStatement")
        if text_of(statement, "StmtText")
    ]
    return {
        "format": "ge-muse",
        "age": age_in_years(text_of(root, "PatientAge"), text_of(root, "AgeUnits") or "YEARS"),
        "sex": sex_name(text_of(root, "Gender")),
        "acquisition_time": " ".join(item for item in (date, time) if item) or None,
        "device": " ".join(
            item for item in (text_of(root, "AcquisitionDevice"), text_of(root, "AcquisitionSoftwareVersion")) if item
        ),
        "filters": filters,
        "statements": statements,
    }


def read_ge_muse(path: str | os.PathLike) -> EcgRecord:
    root = parse(path, "GE MUSE")
    waveform = rhythm_waveform(path, root)
    lead_data = descendants(waveform, "LeadData")
    if not lead_data:
        raise EcgFileError(path, "the Rhythm waveform holds no LeadData (no waveforms in the file).")
    base = float(text_of(waveform, "SampleBase") or "nan")
    exponent = float(text_of(waveform, "SampleExponent") or 0)
    leads, rows = [], []
    for item in lead_data:
        lead, samples = lead_samples(path, item)
        leads.append(lead)
        rows.append(samples)
    metadata = muse_metadata(root, waveform)
    present = {lead.upper() for lead in leads}
    if {"I", "II"} <= present and not present & {name.upper() for name in DERIVED_LIMB_LEADS}:
        one, two = (
            rows[[lead.upper() for lead in leads].index("I")],
            rows[[lead.upper() for lead in leads].index("II")],
        )
        if len(one) == len(two):
            for name, (weight_one, weight_two) in DERIVED_LIMB_LEADS.items():
                leads.append(name)
                rows.append(weight_one * one + weight_two * two)
            metadata["derived_leads"] = list(DERIVED_LIMB_LEADS)
    return build_record(path, rows, base * 10**exponent, leads, metadata)
