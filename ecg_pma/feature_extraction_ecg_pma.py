"""
Feature extractor for ECG-PMA: turns any multi-lead ECG (array, tensor, `wfdb.Record` or WFDB path) into the exact
input the weights expect — leads reordered by name, physical units in mV, resampled to the model rate, optionally
band-passed, standardised per lead, and cut into windows — and is saved next to the weights as
`preprocessor_config.json`, so the preprocessing travels with the model.

Self-contained (numpy, scipy, transformers and the configuration module; wfdb only for WFDB input) so that it loads
with `trust_remote_code=True`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import signal as scipy_signal
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

from .configuration_ecg_pma import STANDARD_LEAD_NAMES


logger = logging.get_logger(__name__)

# Physical units found in WFDB headers, as factors to millivolts (headers write both `mV` and `mv`).
UNIT_TO_MV = {
    "mv": 1.0,
    "millivolt": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "v": 1e3,
    "volt": 1e3,
}

WINDOW_MODES = ("center", "random", "sliding")
NAN_POLICIES = ("raise", "interpolate", "zero")


def canonical_lead_key(name: str) -> str:
    """Case-, space- and punctuation-insensitive lead key: `aVR`, `AVR`, `avr`, `Lead aVR`, `a-VR` -> `avr`."""
    key = re.sub(r"[\s_\-\.]", "", str(name)).lower()
    return key[len("lead") :] if key.startswith("lead") and len(key) > len("lead") else key


ACCEPTED_INPUTS = (
    "Expected an ECG as a numpy array or tensor (leads, samples) or (batch, leads, samples), a wfdb.Record, "
    "a path to a WFDB record, or a non-empty list of those"
)


@dataclass
class EcgRecord:
    """One input ECG as the preprocessing steps read it."""

    name: str  # how errors and warnings name it: the WFDB path or record name, else `input N`
    signal: np.ndarray  # (leads, samples), float64, in `units`
    fs: float | None  # sampling rate in Hz
    leads: list[str]  # the signal's lead names, in its row order
    units: str | list[str]  # physical units: one for all leads, or one per lead


def list_single_ecgs(ecg: Any) -> list:
    """
    The flat list of single ECGs in an input: each a WFDB path, a `wfdb.Record` or a `(leads, samples)` array. Takes
    one of those, a `(batch, leads, samples)` array or tensor, or a non-empty list or tuple of any of these (not
    nested).
    """
    import torch

    items = list(ecg) if isinstance(ecg, (list, tuple)) else [ecg]
    if not items:
        raise ValueError(ACCEPTED_INPUTS + f"; got an empty {type(ecg).__name__}.")
    single_ecgs = []
    for index, item in enumerate(items):
        if isinstance(item, (list, tuple)):
            raise ValueError(f"Input {index}: nested lists are not ECGs; pass arrays of shape (leads, samples).")
        if not (isinstance(item, (str, os.PathLike, np.ndarray, torch.Tensor)) or _is_wfdb_record(item)):
            raise ValueError(ACCEPTED_INPUTS + f"; got {type(item).__name__}.")
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        if isinstance(item, np.ndarray):
            if item.ndim not in (2, 3):
                raise ValueError(
                    f"An ECG array must be (leads, samples) or (batch, leads, samples), got shape {item.shape}."
                )
            single_ecgs += list(item) if item.ndim == 3 else [item]
        else:
            single_ecgs.append(item)
    return single_ecgs


def _is_wfdb_record(obj: Any) -> bool:
    try:
        import wfdb
    except ImportError:
        return False
    return isinstance(obj, wfdb.Record)


class EcgPmaFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Prepares ECG records for [`EcgPmaModel`] and its heads.

    Args:
        lead_names (`list[str]`): the model's leads, in model order (standard 12-lead order by default).
        sampling_rate (`int`): the model's sampling rate in Hz; inputs are resampled to it.
        signal_length (`int`): samples per window at `sampling_rate`.
        do_filter (`bool`): zero-phase Butterworth band-pass between `low_cut_hz` and `high_cut_hz`
            (`filter_order` per direction), after resampling. ST-MEM: 0.67–40 Hz.
        do_normalize (`bool`): standardise each lead of each window (z-score). Leads whose standard deviation is
            below `flat_lead_threshold` mV (unplugged or empty leads, which real records have) become all zeros
            instead of blowing up.
        window_mode (`str`): `"center"` (one centred window per record; evaluation), `"random"` (one random window;
            training) or `"sliding"` (every window at `stride`, plus one flush with the end; long records).
        stride (`int`, *optional*): sliding-window step in samples; half a window by default.
        min_duration (`float`, *optional*): shortest record accepted, in seconds. Shorter records raise; records
            between `min_duration` and a full window are padded at the end with `padding_value`. By default a full
            window is required.
        nan_policy (`str`): `"raise"` (default), `"interpolate"` (linear in time, per lead) or `"zero"` for NaN/inf
            samples. A lead that is entirely NaN always raises.
        allow_missing_leads (`bool`): accept records lacking some of `lead_names`; the missing leads are filled with
            `padding_value` (zero after standardisation) and logged. Off by default.
        padding_value (`float`): value used for padding and missing leads.

    Calling it returns a [`BatchFeature`] with `signals` `(windows, leads, signal_length)` float32 and
    `record_index` `(windows,)`: which input record each window came from, to average predictions per record.
    """

    model_input_names = ["signals"]

    def __init__(
        self,
        lead_names: list[str] | None = None,
        sampling_rate: int = 100,
        signal_length: int = 1000,
        do_filter: bool = False,
        low_cut_hz: float = 0.67,
        high_cut_hz: float = 40.0,
        filter_order: int = 2,
        do_normalize: bool = True,
        flat_lead_threshold: float = 1e-6,
        window_mode: str = "center",
        stride: int | None = None,
        min_duration: float | None = None,
        nan_policy: str = "raise",
        allow_missing_leads: bool = False,
        padding_value: float = 0.0,
        **kwargs,
    ):
        lead_names = list(lead_names) if lead_names is not None else list(STANDARD_LEAD_NAMES)
        kwargs.pop("feature_size", None)  # always the number of leads
        super().__init__(
            feature_size=len(lead_names), sampling_rate=sampling_rate, padding_value=padding_value, **kwargs
        )
        self.lead_names = lead_names
        self.signal_length = signal_length
        self.do_filter = do_filter
        self.low_cut_hz = low_cut_hz
        self.high_cut_hz = high_cut_hz
        self.filter_order = filter_order
        self.do_normalize = do_normalize
        self.flat_lead_threshold = flat_lead_threshold
        self.window_mode = window_mode
        self.stride = stride
        self.min_duration = min_duration
        self.nan_policy = nan_policy
        self.allow_missing_leads = allow_missing_leads
        self._check_settings()

    def _check_settings(self) -> None:
        if len({canonical_lead_key(name) for name in self.lead_names}) != len(self.lead_names):
            raise ValueError(f"`lead_names` must be unique (case-insensitive), got {self.lead_names}.")
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"Unknown `window_mode` {self.window_mode!r}; expected one of {WINDOW_MODES}.")
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"Unknown `nan_policy` {self.nan_policy!r}; expected one of {NAN_POLICIES}.")
        if self.sampling_rate <= 0 or self.signal_length <= 0:
            raise ValueError("`sampling_rate` and `signal_length` must be positive.")
        if self.stride is not None and self.stride <= 0:
            raise ValueError(f"`stride` must be a positive number of samples, got {self.stride}.")
        if self.do_filter and not 0 < self.low_cut_hz < self.high_cut_hz < self.sampling_rate / 2:
            raise ValueError(
                f"Band-pass {self.low_cut_hz}–{self.high_cut_hz} Hz does not fit below the Nyquist frequency "
                f"({self.sampling_rate / 2} Hz) of the model rate {self.sampling_rate} Hz."
            )

    @classmethod
    def from_model_config(cls, config, **kwargs) -> EcgPmaFeatureExtractor:
        """The extractor matching an `EcgPmaConfig` (leads, rate, window); `kwargs` set the preprocessing choices."""
        return cls(
            lead_names=list(config.lead_names),
            sampling_rate=config.sampling_rate,
            signal_length=config.signal_length,
            **kwargs,
        )

    # ----------------------------------------------------------------------------------------------------- reading

    @staticmethod
    def read_record(path: str | os.PathLike):
        """Reads a WFDB record (path with or without `.hea`), turning wfdb's errors into ones that name the record."""
        import wfdb

        record_path = str(path)
        if record_path.endswith(".hea"):
            record_path = record_path[: -len(".hea")]
        if not os.path.exists(record_path + ".hea"):
            raise FileNotFoundError(f"WFDB record {record_path!r}: header file {record_path}.hea not found.")
        try:
            return wfdb.rdrecord(record_path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"WFDB record {record_path!r}: signal file missing ({error}).") from error
        except Exception as error:
            raise ValueError(
                f"WFDB record {record_path!r} could not be read (truncated or malformed file?): "
                f"{type(error).__name__}: {error}"
            ) from error

    def _as_records(
        self,
        ecg: Any,
        sampling_rate: float | None,
        lead_names: list[str] | None,
        units: str | list[str] | None,
    ) -> list[EcgRecord]:
        """Every accepted input form as one `EcgRecord` per ECG, in input order (a batch array's rows in order)."""
        records = []
        for index, item in enumerate(list_single_ecgs(ecg)):
            if isinstance(item, (str, os.PathLike)):
                records.append(self._record_from_wfdb(self.read_record(item), str(item)))
            elif _is_wfdb_record(item):
                records.append(self._record_from_wfdb(item, getattr(item, "record_name", "record")))
            else:
                records.append(self._record_from_array(item, f"input {index}", sampling_rate, lead_names, units))
        return records

    def _record_from_array(
        self,
        array: np.ndarray,
        name: str,
        sampling_rate: float | None,
        lead_names: list[str] | None,
        units: str | list[str] | None,
    ) -> EcgRecord:
        if sampling_rate is None:
            raise ValueError(
                "`sampling_rate=` is required for array input: the model runs at "
                f"{self.sampling_rate} Hz and the input is resampled from the rate you give."
            )
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{name.capitalize()}: ECG samples must be numbers, got dtype {array.dtype}.")
        return EcgRecord(
            name=name,
            signal=np.asarray(array, dtype=np.float64),
            fs=sampling_rate,
            leads=list(lead_names) if lead_names is not None else list(self.lead_names),
            units=units if units is not None else "mV",
        )

    @staticmethod
    def _record_from_wfdb(record, name: str) -> EcgRecord:
        if record.p_signal is None:
            raise ValueError(f"WFDB record {name!r} has no physical signal (read it with physical=True).")
        return EcgRecord(
            name=name,
            signal=np.asarray(record.p_signal, dtype=np.float64).T,
            fs=record.fs,
            leads=list(record.sig_name or []),
            units=list(record.units or ["mV"] * record.p_signal.shape[1]),
        )

    # ----------------------------------------------------------------------------------------------------- steps

    def reorder_leads(self, signal: np.ndarray, lead_names: list[str], name: str) -> np.ndarray:
        """`(leads_in, samples)` in any lead order -> `(model_leads, samples)` in model order, by lead name."""
        if signal.shape[0] != len(lead_names):
            raise ValueError(
                f"{name}: {signal.shape[0]} leads in the signal but {len(lead_names)} lead names {lead_names}; "
                "an ECG array is (leads, samples)."
            )
        given = [canonical_lead_key(lead) for lead in lead_names]
        duplicated = sorted({lead for lead, key in zip(lead_names, given) if given.count(key) > 1})
        if duplicated:
            raise ValueError(f"{name}: lead names appear more than once: {duplicated}.")
        model_keys = [canonical_lead_key(lead) for lead in self.lead_names]
        standard_keys = {canonical_lead_key(lead) for lead in STANDARD_LEAD_NAMES}
        unknown = [lead for lead, key in zip(lead_names, given) if key not in model_keys and key not in standard_keys]
        if unknown:
            raise ValueError(
                f"{name}: unknown lead names {unknown}; expected names among {list(self.lead_names)} "
                "(case-insensitive: 'AVR', 'aVR' and 'avr' are the same lead)."
            )
        missing = [lead for lead, key in zip(self.lead_names, model_keys) if key not in given]
        if missing and not self.allow_missing_leads:
            raise ValueError(
                f"{name}: missing leads {missing}; the model needs {list(self.lead_names)} "
                "(set `allow_missing_leads=True` to fill them with zeros)."
            )
        extra = [lead for lead, key in zip(lead_names, given) if key not in model_keys]
        if extra:
            logger.warning(f"{name}: leads {extra} are not used by the model and are left out.")
        if missing:
            logger.warning(f"{name}: missing leads {missing} are filled with {self.padding_value}.")
        ordered = np.full((len(self.lead_names), signal.shape[1]), np.nan)
        for row, key in enumerate(model_keys):
            if key in given:
                ordered[row] = signal[given.index(key)]
        return ordered

    @staticmethod
    def to_millivolts(signal: np.ndarray, units: str | list[str], name: str) -> np.ndarray:
        units = [units] * signal.shape[0] if isinstance(units, str) else list(units)
        factors = []
        for unit in units:
            key = str(unit).strip().lower()
            if key not in UNIT_TO_MV:
                raise ValueError(f"{name}: unknown physical unit {unit!r}; expected one of mV, uV, V.")
            factors.append(UNIT_TO_MV[key])
        return signal * np.asarray(factors)[:, None]

    def handle_non_finite(self, signal: np.ndarray, name: str, lead_names: list[str]) -> np.ndarray:
        bad = ~np.isfinite(signal)
        if not bad.any():
            return signal
        lead, sample = (int(i) for i in np.argwhere(bad)[0])
        where = f"{int(bad.sum())} NaN/inf samples (first in lead {lead_names[lead]} at sample {sample})"
        if self.nan_policy == "raise":
            raise ValueError(f"{name}: {where}; set `nan_policy='interpolate'` or 'zero' to repair them.")
        signal = signal.copy()
        for row in np.flatnonzero(bad.any(axis=1)):
            good = ~bad[row]
            if not good.any():
                raise ValueError(f"{name}: lead {lead_names[row]} has no finite sample.")
            if self.nan_policy == "interpolate":
                positions = np.arange(signal.shape[1])
                signal[row, ~good] = np.interp(positions[~good], positions[good], signal[row, good])
            else:
                signal[row, ~good] = 0.0
        logger.warning(f"{name}: {where} repaired by nan_policy={self.nan_policy!r}.")
        return signal

    def resample(self, signal: np.ndarray, sampling_rate: float) -> np.ndarray:
        """Polyphase resampling (anti-aliased) from `sampling_rate` to the model rate. `(leads, samples)`."""
        if sampling_rate == self.sampling_rate:
            return signal
        ratio = Fraction(self.sampling_rate) / Fraction(float(sampling_rate)).limit_denominator(1000)
        return scipy_signal.resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)

    def band_pass(self, signal: np.ndarray) -> np.ndarray:
        sos = scipy_signal.butter(
            self.filter_order,
            [self.low_cut_hz, self.high_cut_hz],
            btype="bandpass",
            fs=self.sampling_rate,
            output="sos",
        )
        return scipy_signal.sosfiltfilt(sos, signal, axis=-1)

    def normalize(self, signal: np.ndarray) -> np.ndarray:
        """Per-lead z-score; flat leads become exact zeros rather than being divided by ~0."""
        mean = signal.mean(axis=-1, keepdims=True)
        std = signal.std(axis=-1, keepdims=True)
        flat = std < self.flat_lead_threshold
        return np.where(flat, 0.0, (signal - mean) / np.where(flat, 1.0, std))

    def preprocess(self, record: EcgRecord) -> tuple[np.ndarray, np.ndarray]:
        """
        One record, any layout -> `(model_leads, samples at model rate)` in mV, resampled and filtered (not yet
        standardised: that is done per window), and which model leads the record has.
        """
        name = record.name
        fs = record.fs
        if fs is None or isinstance(fs, bool) or not isinstance(fs, (int, float, np.number)) or not 0 < fs < np.inf:
            raise ValueError(f"{name}: unknown or invalid sampling rate {fs!r}; give the input's rate in Hz.")
        signal = np.asarray(record.signal, dtype=np.float64)
        if signal.ndim != 2:
            raise ValueError(f"{name}: an ECG must be (leads, samples), got shape {signal.shape}.")
        signal = self.to_millivolts(signal, record.units, name)
        signal = self.handle_non_finite(signal, name, record.leads)
        signal = self.reorder_leads(signal, record.leads, name)
        present = ~np.isnan(signal).all(axis=1)
        signal[~present] = 0.0
        duration = signal.shape[1] / fs
        min_duration = self.min_duration if self.min_duration is not None else self.signal_length / self.sampling_rate
        if duration < min_duration:
            raise ValueError(
                f"{name}: record is {signal.shape[1]} samples ({duration:g} s at {fs:g} Hz), shorter than the "
                f"{min_duration:g} s required (the model window is {self.signal_length / self.sampling_rate:g} s; "
                "`min_duration` allows padding shorter records)."
            )
        signal = self.resample(signal, fs)
        if self.do_filter:
            if signal.shape[1] <= 3 * (2 * self.filter_order + 1):
                raise ValueError(f"{name}: too short to band-pass ({signal.shape[1]} samples).")
            signal = self.band_pass(signal)
        return signal, present

    def windows(
        self, signal: np.ndarray, window_mode: str, stride: int | None, rng: np.random.Generator
    ) -> np.ndarray:
        """
        `(leads, samples)` -> `(windows, leads, signal_length)`: center / random crop or sliding windows, each
        standardised on its own (as every training window was), shorter records padded at the end.
        """
        length = self.signal_length
        surplus = signal.shape[1] - length
        if surplus <= 0:
            starts = [0]
        elif window_mode == "center":
            starts = [surplus // 2]
        elif window_mode == "random":
            starts = [int(rng.integers(0, surplus + 1))]
        else:
            step = stride or self.stride or max(length // 2, 1)
            starts = list(range(0, surplus + 1, step))
            if starts[-1] != surplus:
                starts.append(surplus)  # the end of the record is covered too
        windows = []
        for start in starts:
            window = signal[:, start : start + length]
            if self.do_normalize:
                window = self.normalize(window)
            if window.shape[1] < length:
                padding = np.full((window.shape[0], length - window.shape[1]), self.padding_value)
                window = np.concatenate([window, padding], axis=1)
            windows.append(window)
        return np.stack(windows)

    # ----------------------------------------------------------------------------------------------------- call

    def __call__(
        self,
        ecg: Any,
        sampling_rate: float | None = None,
        lead_names: list[str] | None = None,
        units: str | list[str] | None = None,
        window_mode: str | None = None,
        stride: int | None = None,
        seed: int | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            ecg: `(leads, samples)` or `(batch, leads, samples)` array/tensor, a list of arrays (lengths may differ),
                a `wfdb.Record`, a path to a WFDB record, or a list of records/paths.
            sampling_rate: the input's rate in Hz (required for arrays; records carry their own).
            lead_names: the input's lead names in its row order (arrays only; model order if omitted).
            units: physical unit of array input (`"mV"` default, `"uV"`, `"V"`), one or per lead.
            window_mode, stride: override the saved windowing (`"center"`, `"random"`, `"sliding"`).
            seed: seeds the random crop.
            return_tensors: `"pt"`, `"np"` or None (numpy).
        Returns:
            `BatchFeature` with `signals (windows, leads, signal_length)` float32 and `record_index (windows,)`.
        """
        window_mode = window_mode or self.window_mode
        if window_mode not in WINDOW_MODES:
            raise ValueError(f"Unknown `window_mode` {window_mode!r}; expected one of {WINDOW_MODES}.")
        rng = np.random.default_rng(seed)
        records = self._as_records(ecg, sampling_rate, lead_names, units)
        signals, record_index = [], []
        for index, record in enumerate(records):
            signal, present = self.preprocess(record)
            windows = self.windows(signal, window_mode, stride, rng)
            windows[:, ~present] = self.padding_value
            signals.append(windows.astype(np.float32))
            record_index += [index] * len(windows)
        features = BatchFeature(
            {"signals": np.concatenate(signals), "record_index": np.asarray(record_index, dtype=np.int64)}
        )
        return features.convert_to_tensors(return_tensors) if return_tensors else features


__all__ = ["EcgPmaFeatureExtractor", "canonical_lead_key"]
