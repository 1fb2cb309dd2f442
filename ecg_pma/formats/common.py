"""What every reader shares: the error that names the file, the check for an optional library, and the assembly of
the package's `EcgRecord` (rows stacked, units converted to mV, lead names in the standard spelling)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..configuration_ecg_pma import STANDARD_LEAD_NAMES
from ..feature_extraction_ecg_pma import UNIT_TO_MV, EcgRecord, canonical_lead_key


FORMATS_EXTRA = "formats"
STANDARD_BY_KEY = {canonical_lead_key(lead): lead for lead in STANDARD_LEAD_NAMES}


class EcgFileError(ValueError):
    """An ECG file that cannot be read: the message names the file and what is wrong with it."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def require(module: str, what: str):
    """`import module`, or an `ImportError` naming the `formats` extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"Reading {what} needs the `{module}` package: pip install 'ecg-pma[{FORMATS_EXTRA}]'."
        ) from error


def standard_lead_name(name: str) -> str:
    """`AVR`, `Lead aVR`, `avr` -> `aVR`; a name that is not one of the 12 standard leads is kept as it is (a reader
    never guesses what `ECG I` or `MLII` is: the feature extractor's `lead_aliases` say it)."""
    return STANDARD_BY_KEY.get(canonical_lead_key(name), str(name).strip())


def millivolt_factor(path, unit: str, where: str) -> float:
    """The factor from a file's unit field (`uV`, `mV`, `MICROVOLTS`...) to mV; an unknown unit raises."""
    key = str(unit).strip().lower().replace("microvolts", "uv").replace("millivolts", "mv")
    key = {"microvolt": "uv", "millivolt": "mv", "volts": "v"}.get(key, key)
    if key not in UNIT_TO_MV:
        raise EcgFileError(path, f"{where}: unknown unit {unit!r}; expected one of uV, mV, V.")
    return UNIT_TO_MV[key]


def build_record(
    path,
    rows: Sequence[np.ndarray],
    sampling_rate: float,
    leads: Sequence[str],
    metadata: dict[str, Any],
) -> EcgRecord:
    """
    Stacks one array per lead (already in mV) into an `EcgRecord` `(leads, samples)`, after checking what a file can
    get wrong: no leads, leads of different lengths, a lead named twice, no or a non-positive sampling rate.
    """
    if not rows:
        raise EcgFileError(path, "no ECG leads in the file.")
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        sizes = ", ".join(f"{lead}: {len(row)}" for lead, row in zip(leads, rows))
        raise EcgFileError(path, f"leads of inconsistent lengths ({sizes} samples).")
    if lengths[0] == 0:
        raise EcgFileError(path, "the leads hold no samples.")
    names = [standard_lead_name(lead) for lead in leads]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise EcgFileError(path, f"lead(s) {repeated} appear more than once.")
    if not sampling_rate or not np.isfinite(sampling_rate) or sampling_rate <= 0:
        raise EcgFileError(path, f"no valid sampling rate in the file (got {sampling_rate!r}).")
    return EcgRecord(
        name=str(path),
        signal=np.stack([np.asarray(row, dtype=np.float64) for row in rows]),
        fs=float(sampling_rate),
        leads=names,
        units="mV",
        metadata={key: value for key, value in metadata.items() if value not in (None, "", [], {})},
    )


def age_in_years(value: Any, unit: str = "Y") -> float | None:
    """An age as files write it (`042Y`, `46` with unit `a`/`YEARS`, `6M`) -> years; None when absent or unreadable."""
    text = str(value or "").strip()
    if not text:
        return None
    if text[-1:].isalpha():
        text, unit = text[:-1], text[-1]
    try:
        number = float(text)
    except ValueError:
        return None
    per_year = {"y": 1, "a": 1, "years": 1, "m": 12, "months": 12, "w": 52.1775, "weeks": 52.1775, "d": 365.25}
    return number / per_year.get(str(unit).strip().lower(), 1)


def sex_name(value: Any) -> str | None:
    """`M`, `Male`, `MALE`, `1` ... -> `male` / `female`; None when unknown."""
    key = str(value or "").strip().lower()
    if key in ("m", "male", "man"):
        return "male"
    if key in ("f", "female", "woman"):
        return "female"
    return None
