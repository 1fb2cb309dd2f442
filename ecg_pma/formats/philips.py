"""
Philips XML (`<restingecgdata>`, Sierra ECG / PageWriter / IntelliSpace; schemas 1.03, 1.04, 1.04.01, 1.04.02):
waveforms decoded by `sierraecg` (base64, XLI-compressed or not, limb leads rebuilt as the format stores them), scaled
by the file's resolution (uV per bit: `parsedwaveforms@resolution` in 1.04, `signalresolution` in 1.03); metadata
read from the same XML with the standard library.

The stored 11 s end with 0.4 s in which every lead holds the same values — flat, the cart's 1 mV, 200 ms calibration
pulse, flat. That tail is not ECG: it is cut off (the longest tail where all leads agree sample by sample, when it
lasts at least a quarter of a second), and its pulse height kept as `metadata["calibration_pulse_mv"]` (1.0 in every
published file: a check on the scaling).
"""

from __future__ import annotations

import os

import numpy as np

from ..feature_extraction_ecg_pma import EcgRecord
from .common import EcgFileError, age_in_years, build_record, require, sex_name
from .xml_root import child, descendants, parse, text_of


def resolution_uv(path, root) -> float:
    waveforms = descendants(root, "parsedwaveforms")
    if not waveforms:
        raise EcgFileError(path, "Philips XML without <parsedwaveforms> (no waveforms in the file).")
    value = waveforms[0].get("resolution") or text_of(root, "signalresolution")
    if value is None:
        raise EcgFileError(path, "Philips XML without a resolution (parsedwaveforms@resolution or signalresolution).")
    offset = waveforms[0].get("signaloffset") or text_of(root, "signaloffset") or "0"
    if float(offset) != 0:
        # every published file has 0; whether the offset is added or removed is not documented, so it is not guessed
        raise EcgFileError(path, f"signal offset {offset} is not supported (only files with signaloffset 0 are read).")
    return float(value)


def calibration_tail(signal: np.ndarray, sampling_rate: float) -> int:
    """How many samples at the end of `signal (leads, samples)` hold the same value in every lead (0 when fewer than
    a quarter of a second: the leads of an ECG never agree that long)."""
    agree = (signal == signal[:1]).all(axis=0)
    if agree.all():
        return 0  # every lead identical throughout: not a calibration tail but a (broken) recording, left as it is
    tail = len(agree) - 1 - int(np.flatnonzero(~agree)[-1])
    return tail if tail >= sampling_rate / 4 else 0


def philips_metadata(root, version: str) -> dict:
    acquisition = descendants(root, "dataacquisition")
    when = (acquisition[0].get("date"), acquisition[0].get("time")) if acquisition else (None, None)
    machine = descendants(root, "machine")
    device = ""
    if machine:
        device = " ".join(
            item for item in ((machine[0].text or "").strip(), machine[0].get("detaildescription", "")) if item
        )
    filters = {}
    for name, key in (
        ("highpassfiltersetting", "high_pass_hz"),
        ("lowpassfiltersetting", "low_pass_hz"),
        ("notchfiltersetting", "notch_hz"),
    ):
        value = text_of(root, name)
        try:
            filters[key] = float(value)
        except (TypeError, ValueError):
            pass
    statements = []
    for statement in descendants(root, "statement"):
        parts = [text_of(statement, name) for name in ("leftstatement", "rightstatement")]
        text = " ".join(part for part in parts if part)
        if text:
            statements.append(text)
    severity = descendants(root, "severity")
    age = child(descendants(root, "age")[0], "years") if descendants(root, "age") else None
    return {
        "format": "philips",
        "schema": version,
        "age": age_in_years(age.text) if age is not None and age.text else None,
        "sex": sex_name(text_of(root, "sex")),
        "acquisition_time": " ".join(item for item in when if item) or None,
        "device": device,
        "filters": filters,
        "statements": statements,
        "severity": (severity[0].text or "").strip() if severity else None,
    }


def read_philips(path: str | os.PathLike) -> EcgRecord:
    sierraecg = require("sierraecg", "Philips XML files")
    root = parse(path, "Philips")
    step = resolution_uv(path, root)
    try:
        ecg = sierraecg.read_file(str(path))
    except Exception as error:  # noqa: BLE001 - sierraecg raises RuntimeError subclasses, expat and decoding errors
        raise EcgFileError(path, f"Philips waveforms cannot be decoded ({type(error).__name__}: {error}).") from error
    if not ecg.leads:
        raise EcgFileError(path, "Philips XML without leads (no waveforms in the file).")
    rate = float(ecg.leads[0].sampling_freq)
    lengths = {len(lead.samples) for lead in ecg.leads}
    rows = [np.asarray(lead.samples, dtype=np.float64) * step / 1000.0 for lead in ecg.leads]
    metadata = philips_metadata(root, ecg.doc_ver)
    if len(lengths) == 1:
        signal = np.stack(rows)
        tail = calibration_tail(signal, rate)
        if tail:
            metadata["calibration_pulse_mv"] = float(signal[0, -tail:].max())
            rows = list(signal[:, :-tail])
    return build_record(path, rows, rate, [lead.label for lead in ecg.leads], metadata)
