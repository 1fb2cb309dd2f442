"""
Plain arrays: CSV (one column per lead, a header row naming them), NumPy `.npy` (`(leads, samples)`, as the feature
extractor takes arrays) and Parquet (one column per lead). What a bare array cannot say — its sampling rate, lead
names and unit — comes from the caller (`read_ecg(path, sampling_rate=..., lead_names=..., units=...)`) or from a
sidecar JSON beside it (`record.npy` -> `record.json`: `{"sampling_rate": 500, "lead_names": [...], "units": "uV"}`);
the caller's values win. Nothing is transposed or assumed: a shape that does not match the lead names raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..feature_extraction_ecg_pma import EcgRecord
from .common import EcgFileError, build_record, millivolt_factor, require


NPY_MAGIC = b"\x93NUMPY"
PARQUET_MAGIC = b"PAR1"


def sidecar(path) -> dict:
    """The sidecar JSON's settings (`sampling_rate`, `lead_names`, `units`), or {} when there is none."""
    candidate = Path(path).with_suffix(".json")
    if not candidate.is_file():
        return {}
    try:
        settings = json.loads(candidate.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EcgFileError(candidate, f"sidecar JSON that cannot be parsed: {error}.") from error
    unknown = sorted(set(settings) - {"sampling_rate", "lead_names", "units"})
    if not isinstance(settings, dict) or unknown:
        raise EcgFileError(candidate, f"unknown sidecar keys {unknown}; expected sampling_rate, lead_names, units.")
    return settings


def table_columns(path, kind: str) -> tuple[list[str], np.ndarray]:
    """Header and `(samples, columns)` values of a CSV or Parquet table."""
    pandas = require("pandas", f"{kind} files")
    try:
        table = pandas.read_csv(path) if kind == "CSV" else pandas.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - a damaged or truncated table
        raise EcgFileError(path, f"not a readable {kind} table ({type(error).__name__}: {error}).") from error
    try:
        values = table.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise EcgFileError(path, f"{kind} cells that are not numbers ({error}).") from error
    return [str(column) for column in table.columns], values


def read_array(
    path: str | os.PathLike,
    kind: str,
    sampling_rate: float | None = None,
    lead_names: list[str] | None = None,
    units: str | None = None,
) -> EcgRecord:
    """`kind`: `npy`, `csv` or `parquet`."""
    settings = sidecar(path)
    rate = sampling_rate if sampling_rate is not None else settings.get("sampling_rate")
    if rate is None:
        raise EcgFileError(
            path,
            f"a {kind} array does not say its sampling rate: pass sampling_rate= or write {Path(path).with_suffix('.json').name}.",
        )
    if kind == "npy":
        try:
            signal = np.load(path, allow_pickle=False)
        except Exception as error:  # noqa: BLE001 - truncated or not an array
            raise EcgFileError(path, f"not a readable .npy array ({type(error).__name__}: {error}).") from error
        if signal.ndim != 2 or not np.issubdtype(signal.dtype, np.number):
            raise EcgFileError(
                path, f"a .npy ECG is a (leads, samples) numeric array, got {signal.dtype} {signal.shape}."
            )
        header = None
    else:
        header, values = table_columns(path, kind.upper() if kind == "csv" else "Parquet")
        signal = values.T
    names = lead_names or settings.get("lead_names") or header
    if names is None:
        raise EcgFileError(
            path, "a .npy array does not name its leads: pass lead_names= or give them in the sidecar JSON."
        )
    if len(names) != signal.shape[0]:
        raise EcgFileError(
            path,
            f"{len(names)} lead names {list(names)} for {signal.shape[0]} {'rows' if kind == 'npy' else 'columns'} "
            f"(the array is {'(leads, samples)' if kind == 'npy' else 'one column per lead'}).",
        )
    factor = millivolt_factor(path, units or settings.get("units") or "mV", "units")
    rows = list(np.asarray(signal, dtype=np.float64) * factor)
    return build_record(path, rows, float(rate), [str(name) for name in names], {"format": kind})
