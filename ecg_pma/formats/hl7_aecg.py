"""
HL7 aECG (the FDA's Annotated ECG, `urn:hl7-org:v3`) with the standard library: the rhythm series' sequence set, its
time sequence (`GLIST_TS`/`GLIST_PQ` increment -> the sampling rate) and one `SLIST_PQ` sequence per lead, whose
`origin + scale * digits` is the signal in the scale's unit; leads named from their `MDC_ECG_LEAD_*` codes.
"""

from __future__ import annotations

import os

import numpy as np

from ..feature_extraction_ecg_pma import EcgRecord
from .common import EcgFileError, age_in_years, build_record, millivolt_factor, sex_name
from .xml_root import child, children, descendants, parse


LEAD_PREFIX = "MDC_ECG_LEAD_"
# MDC lead codes this reader knows: the 12 standard leads (named as the package spells them) and the common extra
# leads (kept by their MDC name; the feature extractor leaves them out or raises, as it does for any record).
MDC_LEADS = {
    "I": "I", "II": "II", "III": "III", "AVR": "aVR", "AVL": "aVL", "AVF": "aVF",
    **{f"V{i}": f"V{i}" for i in range(1, 10)},
    **{f"V{i}R": f"V{i}R" for i in range(3, 8)},
    "X": "X", "Y": "Y", "Z": "Z",
}  # fmt: skip
FILTER_CODES = {
    "MDC_ECG_CTL_VBL_ATTR_FILTER_HIGH_PASS": "high_pass_hz",
    "MDC_ECG_CTL_VBL_ATTR_FILTER_LOW_PASS": "low_pass_hz",
    "MDC_ECG_CTL_VBL_ATTR_FILTER_NOTCH": "notch_hz",
}
TIME_UNITS_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def code_of(element) -> str:
    code = child(element, "code")
    return code.get("code", "") if code is not None else ""


def value_of(element):
    return child(element, "value")


def sequence_sets(root) -> list:
    """The sequence sets of the rhythm series (series coded `RHYTHM`, or any series when none is)."""
    series = descendants(root, "series")
    rhythm = [item for item in series if code_of(item) == "RHYTHM"] or series
    return [
        found
        for item in rhythm
        for component in children(item, "component")
        for found in children(component, "sequenceSet")
    ]


def sampling_rate(path, sequences) -> float:
    for sequence in sequences:
        if code_of(sequence).startswith("TIME_"):
            increment = child(value_of(sequence), "increment") if value_of(sequence) is not None else None
            if increment is None:
                raise EcgFileError(path, f"time sequence {code_of(sequence)} without an increment (no sampling rate).")
            unit = increment.get("unit", "s")
            if unit not in TIME_UNITS_S:
                raise EcgFileError(path, f"time increment in unknown unit {unit!r}; expected s or ms.")
            return 1.0 / (float(increment.get("value")) * TIME_UNITS_S[unit])
    raise EcgFileError(path, "no TIME_ABSOLUTE or TIME_RELATIVE sequence (no sampling rate).")


def lead_samples(path, sequence, lead: str) -> np.ndarray:
    value = value_of(sequence)
    origin, scale, digits = (child(value, name) for name in ("origin", "scale", "digits"))
    if scale is None or digits is None or digits.text is None:
        raise EcgFileError(path, f"lead {lead}: the SLIST_PQ has no scale or no digits.")
    try:
        values = np.array(digits.text.split(), dtype=np.float64)
    except ValueError as error:
        raise EcgFileError(path, f"lead {lead}: digits that are not numbers ({error}).") from error
    factor = millivolt_factor(path, scale.get("unit", ""), f"lead {lead} scale")
    offset = 0.0
    if origin is not None:
        offset = float(origin.get("value", 0)) * millivolt_factor(path, origin.get("unit", ""), f"lead {lead} origin")
    return offset + values * float(scale.get("value")) * factor


def aecg_metadata(root) -> dict:
    metadata = {"format": "hl7-aecg"}
    gender = descendants(root, "administrativeGenderCode")
    if gender:
        metadata["sex"] = sex_name(gender[0].get("code"))
    for observation in descendants(root, "relatedObservation"):
        if code_of(observation) == "21612-7" and value_of(observation) is not None:  # LOINC: reported age
            metadata["age"] = age_in_years(value_of(observation).get("value"), value_of(observation).get("unit", "a"))
    effective = child(root, "effectiveTime")
    if effective is not None:
        times = [item.get("value") for item in effective if item.get("value")]
        metadata["acquisition_time"] = times[0] if times else None
    models = descendants(root, "manufacturerModelName")
    organisations = [child(item, "name") for item in descendants(root, "manufacturerOrganization")]
    metadata["device"] = " ".join(
        item.text.strip() for item in [*organisations[:1], *models[:1]] if item is not None and item.text
    )
    filters = {}
    for control in descendants(root, "controlVariable"):
        name = FILTER_CODES.get(code_of(control))
        for inner in descendants(control, "controlVariable")[1:] if name else []:
            value = value_of(inner)
            if "FREQ" in code_of(inner) and value is not None and value.get("value"):
                filters[name] = float(value.get("value"))
    metadata["filters"] = filters
    statements = []
    for annotation in descendants(root, "annotation"):
        if code_of(annotation) == "MDC_ECG_INTERPRETATION_STATEMENT" and value_of(annotation) is not None:
            text = "".join(value_of(annotation).itertext()).strip()
            if text:
                statements.append(text)
    metadata["statements"] = statements
    return metadata


def read_hl7_aecg(path: str | os.PathLike) -> EcgRecord:
    root = parse(path, "HL7 aECG")
    sets = sequence_sets(root)
    if not sets:
        raise EcgFileError(path, "HL7 aECG without a rhythm series sequence set (no waveforms in the file).")
    sequences = [found for component in children(sets[0], "component") for found in children(component, "sequence")]
    rate = sampling_rate(path, sequences)
    rows, leads = [], []
    for sequence in sequences:
        code = code_of(sequence)
        if code.startswith("TIME_"):
            continue
        name = MDC_LEADS.get(code.removeprefix(LEAD_PREFIX)) if code.startswith(LEAD_PREFIX) else None
        if name is None:
            raise EcgFileError(path, f"unknown lead code {code!r}; expected MDC_ECG_LEAD_* codes (I, II, V1 ...).")
        rows.append(lead_samples(path, sequence, name))
        leads.append(name)
    if not rows:
        raise EcgFileError(path, "HL7 aECG whose sequence set holds no lead (no waveforms in the file).")
    return build_record(path, rows, rate, leads, aecg_metadata(root))
