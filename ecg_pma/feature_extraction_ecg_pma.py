"""
Feature extractor for ECG-PMA: turns any multi-lead ECG (array, tensor, `wfdb.Record` or WFDB path) into the exact
input the weights expect — leads reordered by name, physical units in mV, resampled to the model rate, optionally
band-passed, standardised per lead, and cut into windows — and is saved next to the weights as
`preprocessor_config.json`, so the preprocessing travels with the model.

Self-contained (numpy, scipy, transformers and the configuration module; wfdb only for WFDB input) so that it loads
with `trust_remote_code=True`.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import signal as scipy_signal
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

from .configuration_ecg_pma import STANDARD_LEAD_NAMES, resolve_lead_set


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

WINDOW_MODES = ("center", "random", "sliding", "n_crop")
NAN_POLICIES = ("raise", "interpolate", "zero")
FILTER_TYPES = ("bandpass", "highpass_lowpass")
NORMALIZATIONS = ("per_lead", "per_window")
RESAMPLE_METHODS = ("polyphase", "fft")

# ST-MEM's preprocessing (bakqui/ST-MEM: data/process_ecg.py, util/dataset.py, util/transforms.py and the configs):
# records cut into non-overlapping 10 s segments at their own rate, each resampled to 250 Hz by FFT
# (`scipy.signal.resample`), cropped to 2,250 samples (3 equally spaced crops averaged in evaluation, `NCrop`), then
# an order-5 Butterworth high-pass at 0.67 Hz and an order-5 low-pass at 40 Hz (`sosfiltfilt` each) on the crop, then
# one z-score over all leads and samples together (over the leads a record has, when it lacks some). Pass as keyword
# arguments of `EcgPmaFeatureExtractor` (or of `from_model_config` with a 250 Hz / 2,250-sample config); training
# draws `window_mode="random"` crops instead.
ST_MEM_PREPROCESSING = {
    "resample_method": "fft",
    "segment_seconds": 10.0,
    "do_filter": True,
    "filter_type": "highpass_lowpass",
    "filter_order": 5,
    "low_cut_hz": 0.67,
    "high_cut_hz": 40.0,
    "crop_before_filter": True,
    "do_normalize": True,
    "normalization": "per_window",
    "window_mode": "n_crop",
    "num_crops": 3,
}
# Input rates accepted (Hz): ECG is recorded at 50 Hz to a few kHz; outside these, resampling is meaningless or would
# allocate without bound.
MIN_INPUT_SAMPLING_RATE, MAX_INPUT_SAMPLING_RATE = 1.0, 100_000.0
# Largest amplitude accepted (mV): ECG is a few mV; beyond this the unit is wrong and float32 features would overflow.
MAX_AMPLITUDE_MV = 1e6
# Longest record accepted (a 24-hour Holter recording), so that a wrong rate cannot ask for an absurd allocation.
MAX_RECORD_DURATION_S = 24 * 3600


def check_integer(name: str, value: Any, minimum: int | None = 1, optional: bool = False) -> None:
    """Raises `ValueError` unless `value` is an integer (not a bool) >= `minimum` (or None when `optional`)."""
    if value is None and optional:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value!r}.")


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    optional: bool = False,
) -> None:
    """Raises `ValueError` unless `value` is a finite real number within the bounds (or None when `optional`)."""
    if value is None and optional:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{name}` must be a number, got {value!r}.")
    too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    if not np.isfinite(value) or too_low or (maximum is not None and value > maximum):
        bounds = [
            f"{'>' if exclusive_minimum else '>='} {minimum:g}" if minimum is not None else "",
            f"<= {maximum:g}" if maximum is not None else "",
        ]
        expected = " and ".join(bound for bound in bounds if bound)
        raise ValueError(f"`{name}` must be a finite number{' ' + expected if expected else ''}, got {value!r}.")


def check_lead_names(lead_names: Any) -> None:
    if lead_names is not None and (
        not isinstance(lead_names, (list, tuple, np.ndarray)) or not all(isinstance(name, str) for name in lead_names)
    ):
        raise TypeError(f"`lead_names` must be a list of lead names (strings), got {lead_names!r}.")


@functools.lru_cache(maxsize=64)
def polyphase_filter(up: int, down: int) -> np.ndarray:
    """
    The anti-aliasing FIR filter `scipy.signal.resample_poly(x, up, down)` designs on every call (Kaiser window,
    beta 5, cut-off at the lower Nyquist rate), designed once per rate pair: the design took a fifth of the time of
    resampling a 10 s record. Passing it as `window=` gives the same output bit for bit.
    """
    max_rate = max(up, down)
    coefficients = scipy_signal.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    coefficients.setflags(write=False)  # shared by every call: resample_poly copies it before scaling
    return coefficients


# The polyphase resampler's factors are kept at most this large (its filter has 20 taps per unit of the larger one).
MAX_RESAMPLING_FACTOR = 1000


def resampling_factors(model_rate: float, input_rate: float) -> tuple[int, int]:
    """
    `(up, down)` for `resample_poly` from `input_rate` to `model_rate`: the exact ratio when its smaller term is at
    most `MAX_RESAMPLING_FACTOR` (500 -> 100 Hz: 1/5; 257 -> 100: 100/257), else its closest fraction with that
    bound, which puts the output rate within 0.1 % of the model rate (at most one sample in 1,000). An odd rate such
    as 7,322.62 Hz then costs what 500 Hz does (its exact ratio asked for a filter of ~100 million taps).
    """
    ratio = Fraction(model_rate) / Fraction(float(input_rate))
    if ratio >= 1:  # bound the denominator of the ratio or of its inverse: the smaller term
        ratio = 1 / (1 / ratio).limit_denominator(MAX_RESAMPLING_FACTOR)
    else:
        ratio = ratio.limit_denominator(MAX_RESAMPLING_FACTOR)
    return ratio.numerator, ratio.denominator


def canonical_lead_key(name: str) -> str:
    """Case-, space- and punctuation-insensitive lead key: `aVR`, `AVR`, `avr`, `Lead aVR`, `a-VR` -> `avr`."""
    return _canonical_lead_key(str(name))


@functools.lru_cache(maxsize=1024)  # called for every lead of every record: a few distinct names in a corpus
def _canonical_lead_key(name: str) -> str:
    key = re.sub(r"[\s_\-\.]", "", name).lower()
    return key[len("lead") :] if key.startswith("lead") and len(key) > len("lead") else key


@functools.lru_cache(maxsize=256)
def lead_order(
    model_leads: tuple[str, ...],
    aliases: tuple[tuple[str, str], ...],
    required: tuple[str, ...],
    given: tuple[str, ...],
) -> tuple[tuple[int | None, ...], tuple[str, ...], tuple[str, ...]]:
    """
    Where each of `model_leads` is among a record's `given` lead names (`None`: absent), read through the user's
    `aliases`; the given leads the model does not use; the model leads absent. Worked out once per lead layout (a
    corpus has few; this ran for every record). Raises `ValueError` saying what is wrong with `given` (the caller
    names the record).
    """
    alias_keys = {canonical_lead_key(alias): canonical_lead_key(target) for alias, target in aliases}
    keys = [alias_keys.get(canonical_lead_key(lead), canonical_lead_key(lead)) for lead in given]
    duplicated = sorted({lead for lead, key in zip(given, keys) if keys.count(key) > 1})
    if duplicated:
        raise ValueError(f"lead names appear more than once: {duplicated} (aliases included).")
    model_keys = [canonical_lead_key(lead) for lead in model_leads]
    standard_keys = {canonical_lead_key(lead) for lead in STANDARD_LEAD_NAMES}
    unknown = [lead for lead, key in zip(given, keys) if key not in model_keys and key not in standard_keys]
    if unknown:
        raise ValueError(
            f"unknown lead names {unknown}; expected names among {list(model_leads)} (case-insensitive: 'AVR', "
            "'aVR' and 'avr' are the same lead). For non-standard names, say which lead each one is with "
            "`lead_aliases`, e.g. lead_aliases={'MLII': 'II'}."
        )
    if not any(key in keys for key in model_keys):
        raise ValueError(
            f"none of the model's leads {list(model_leads)} is in the record, whose leads are {list(given)}."
        )
    missing = tuple(lead for lead, key in zip(model_leads, model_keys) if key not in keys)
    missing_required = [lead for lead in missing if lead in required]
    if missing_required:
        raise ValueError(
            f"missing leads {missing_required}; the record has {list(given)} and the feature extractor requires "
            f"{list(required)} (set `required_leads` to a smaller lead set, e.g. '2', or `allow_missing_leads=True` "
            "to accept any subset; absent leads are masked out of the model)."
        )
    extra = tuple(lead for lead, key in zip(given, keys) if key not in model_keys)
    source_rows = tuple(keys.index(key) if key in keys else None for key in model_keys)
    return source_rows, extra, missing


def check_header_rate(header_path: str) -> None:
    """
    Refuses a WFDB header whose record line gives a sampling frequency that is not a positive number: wfdb reads
    `-500` as its default 250 Hz and `0` as 0, so the error names the header and the value instead.
    """
    with open(header_path, encoding="latin-1") as handle:
        record_line = next((line for line in handle if line.strip() and not line.lstrip().startswith("#")), "")
    fields = record_line.split()
    if len(fields) < 3:
        return  # no frequency given: WFDB's default, 250 Hz
    token = re.split(r"[/(]", fields[2], maxsplit=1)[0]
    try:
        rate = float(token)
    except ValueError:
        rate = float("nan")
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(
            f"WFDB header {header_path}: sampling frequency {fields[2]!r} is not a positive number of Hz."
        )


ACCEPTED_INPUTS = (
    "Expected an ECG as a numpy array or tensor (leads, samples) or (batch, leads, samples), a wfdb.Record, "
    "a path to a WFDB record or ECG file (DICOM, EDF, HL7 aECG, GE MUSE or Philips XML, CSV, .npy, Parquet), or a "
    "non-empty list of those"
)


@dataclass
class EcgRecord:
    """One input ECG as the preprocessing steps read it."""

    name: str  # how errors and warnings name it: the WFDB path or record name, else `input N`
    signal: np.ndarray  # (leads, samples), float64, in `units`
    fs: float | None  # sampling rate in Hz
    leads: list[str]  # the signal's lead names, in its row order
    units: str | list[str]  # physical units: one for all leads, or one per lead
    # what the file says besides the signal, where it says it: `age` (years), `sex`, `acquisition_time`, `device`,
    # `filters`, `statements` (the machine's own interpretation), `format`; empty for arrays
    metadata: dict[str, Any] = field(default_factory=dict)


# Reads an ECG file other than WFDB (DICOM, EDF/BDF, HL7 aECG, GE MUSE and Philips XML, CSV / .npy / Parquet) into an
# `EcgRecord`: `ecg_pma.formats.read_ecg`, plugged in by `import ecg_pma` (this file is saved beside the weights and
# must stay self-contained). None where only this file is loaded (`trust_remote_code` without the package).
FILE_READER = None


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
            if item.is_complex() or item.dtype == torch.bool:
                raise TypeError(f"An ECG tensor must hold real numbers, got dtype {item.dtype}.")
            # numpy has no bfloat16: widen to float64, as every input is anyway
            item = item.detach().cpu().to(torch.float64).numpy()
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
        do_filter (`bool`): zero-phase Butterworth filtering (`scipy.signal.sosfiltfilt`) after resampling.
        filter_type (`str`): `"bandpass"` (default: one band-pass between `low_cut_hz` and `high_cut_hz` of order
            `filter_order`) or `"highpass_lowpass"` (ST-MEM: a high-pass at `low_cut_hz`, then a low-pass at
            `high_cut_hz`, each of order `filter_order`).
        crop_before_filter (`bool`): filter each window after cropping it (ST-MEM) rather than the whole record
            before cropping (default).
        do_normalize (`bool`): standardise each window (z-score). Standard deviations below `flat_lead_threshold`
            mV (unplugged or empty leads, which real records have) give all zeros instead of blowing up.
        normalization (`str`): `"per_lead"` (default: each lead of each window on its own) or `"per_window"`
            (ST-MEM: one mean and standard deviation over all samples of the leads the record has, so a record with
            fewer leads is standardised over those; absent leads never count).
        resample_method (`str`): `"polyphase"` (default, `scipy.signal.resample_poly`) or `"fft"` (ST-MEM,
            `scipy.signal.resample` to `int(samples * sampling_rate / input_rate)` samples).
        segment_seconds (`float`, *optional*): cut each record into non-overlapping segments of this many seconds at
            its own rate before resampling, dropping the remainder (ST-MEM: 10); every segment is windowed on its own
            and its windows share the record's `record_index`. Records shorter than one segment raise.
        window_mode (`str`): `"center"` (one centred window per record; evaluation), `"random"` (one random window;
            training), `"sliding"` (every window at `stride`, plus one flush with the end; long records) or
            `"n_crop"` (ST-MEM's `NCrop`: crops starting at `0, step, 2 step, ...` with
            `step = (samples - signal_length) // (num_crops - 1)`; 3 crops at 0, 125, 250 for 2,500 -> 2,250).
        stride (`int`, *optional*): sliding-window step in samples; half a window by default.
        num_crops (`int`): crops per record (per segment) for `window_mode="n_crop"`.
        min_duration (`float`, *optional*): shortest record accepted, in seconds. Shorter records raise; records
            between `min_duration` and a full window are padded at the end with `padding_value`. By default a full
            window is required.
        nan_policy (`str`): `"raise"` (default), `"interpolate"` (linear in time, per lead) or `"zero"` for NaN/inf
            samples of the leads read. A dead lead (entirely NaN, or flat over the whole record) is an absent lead
            where leads may be missing (`allow_missing_leads`, `required_leads`); a required lead that is entirely
            NaN raises.
        allow_missing_leads (`bool`): accept records with any subset of `lead_names` (at least one); the missing
            leads are filled with `padding_value` and marked absent in `lead_mask`, so the model ignores them. Off by
            default.
        required_leads (`str` or `list[str]`, *optional*): the leads a record must have; the model's other leads may
            be missing (absent in `lead_mask`). A lead set by name (`"12"`, `"6"`, `"4"`, `"3"`, `"2"`, see
            `ecg_pma.LEAD_SETS`) or lead names. By default all of `lead_names` (or, with `allow_missing_leads`, any one).
        lead_aliases (`dict[str, str]`, *optional*): non-standard lead names a user vouches for, mapped to the model's
            names, e.g. `{"MLII": "II", "ML1": "I"}` for MIT-BIH or Holter records. Names are never guessed: a lead
            that is neither a standard name nor an alias is an error.
        padding_value (`float`): value used for padding and missing leads.

    Calling it returns a [`BatchFeature`] with `signals` `(windows, leads, signal_length)` float32, `lead_mask`
    `(windows, leads)` bool (True where the record has the lead; pass it to the model) and `record_index`
    `(windows,)`: which input record each window came from, to average predictions per record.
    """

    model_input_names = ["signals", "lead_mask"]

    def __init__(
        self,
        lead_names: list[str] | None = None,
        sampling_rate: int = 100,
        signal_length: int = 1000,
        do_filter: bool = False,
        low_cut_hz: float = 0.67,
        high_cut_hz: float = 40.0,
        filter_order: int = 2,
        filter_type: str = "bandpass",
        crop_before_filter: bool = False,
        do_normalize: bool = True,
        normalization: str = "per_lead",
        flat_lead_threshold: float = 1e-6,
        resample_method: str = "polyphase",
        segment_seconds: float | None = None,
        window_mode: str = "center",
        stride: int | None = None,
        num_crops: int = 3,
        min_duration: float | None = None,
        nan_policy: str = "raise",
        allow_missing_leads: bool = False,
        padding_value: float = 0.0,
        required_leads: str | list[str] | None = None,
        lead_aliases: dict[str, str] | None = None,
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
        self.filter_type = filter_type
        self.crop_before_filter = crop_before_filter
        self.do_normalize = do_normalize
        self.normalization = normalization
        self.flat_lead_threshold = flat_lead_threshold
        self.resample_method = resample_method
        self.segment_seconds = segment_seconds
        self.window_mode = window_mode
        self.stride = stride
        self.num_crops = num_crops
        self.min_duration = min_duration
        self.nan_policy = nan_policy
        self.allow_missing_leads = allow_missing_leads
        self.required_leads = required_leads if isinstance(required_leads, (str, type(None))) else list(required_leads)
        self.lead_aliases = dict(lead_aliases or {})
        self._check_settings()
        self._check_lead_settings()

    def _check_lead_settings(self) -> None:
        if self.required_leads is not None:
            resolve_lead_set(self.required_leads, self.lead_names)
        model_keys = {canonical_lead_key(lead): lead for lead in self.lead_names}
        for alias, target in self.lead_aliases.items():
            if canonical_lead_key(target) not in model_keys:
                raise ValueError(
                    f"`lead_aliases` maps {alias!r} to {target!r}, which is not one of the model's leads "
                    f"{list(self.lead_names)}."
                )

    def required_lead_names(self) -> list[str]:
        """The leads every record must have (model spelling): `required_leads`, else all (or none, if missing leads
        are allowed)."""
        if self.required_leads is not None:
            return resolve_lead_set(self.required_leads, self.lead_names)
        return [] if self.allow_missing_leads else list(self.lead_names)

    def _check_settings(self) -> None:
        if len({canonical_lead_key(name) for name in self.lead_names}) != len(self.lead_names):
            raise ValueError(f"`lead_names` must be unique (case-insensitive), got {self.lead_names}.")
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"Unknown `window_mode` {self.window_mode!r}; expected one of {WINDOW_MODES}.")
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"Unknown `nan_policy` {self.nan_policy!r}; expected one of {NAN_POLICIES}.")
        check_integer("sampling_rate", self.sampling_rate)
        check_integer("signal_length", self.signal_length)
        check_integer("stride", self.stride, optional=True)
        check_integer("filter_order", self.filter_order)
        check_integer("num_crops", self.num_crops, minimum=2)
        check_number("padding_value", self.padding_value)
        check_number("flat_lead_threshold", self.flat_lead_threshold, minimum=0)
        check_number("min_duration", self.min_duration, minimum=0, exclusive_minimum=True, optional=True)
        check_number("low_cut_hz", self.low_cut_hz, minimum=0, exclusive_minimum=True)
        check_number("high_cut_hz", self.high_cut_hz, minimum=0, exclusive_minimum=True)
        check_number("segment_seconds", self.segment_seconds, minimum=0, exclusive_minimum=True, optional=True)
        for name, value, allowed in (
            ("filter_type", self.filter_type, FILTER_TYPES),
            ("normalization", self.normalization, NORMALIZATIONS),
            ("resample_method", self.resample_method, RESAMPLE_METHODS),
        ):
            if value not in allowed:
                raise ValueError(f"Unknown `{name}` {value!r}; expected one of {allowed}.")
        if self.segment_seconds is not None and not self.segment_seconds * self.sampling_rate >= self.signal_length:
            raise ValueError(
                f"`segment_seconds` ({self.segment_seconds} s) must hold a window of {self.signal_length} samples at "
                f"{self.sampling_rate} Hz."
            )
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
        check_header_rate(record_path + ".hea")
        try:
            return wfdb.rdrecord(record_path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"WFDB record {record_path!r}: signal file missing ({error}).") from error
        except Exception as error:
            raise ValueError(
                f"WFDB record {record_path!r} could not be read (truncated or malformed file?): "
                f"{type(error).__name__}: {error}"
            ) from error

    @classmethod
    def read_path(cls, path: str | os.PathLike) -> EcgRecord:
        """A WFDB record (a `.hea` header at `path` or `path.hea`), else any file `ecg_pma.formats` reads."""
        text = str(path)
        if text.endswith(".hea") or os.path.exists(text + ".hea") or not os.path.isfile(text):
            return cls._record_from_wfdb(cls.read_record(path), text)
        if FILE_READER is None:
            raise ValueError(
                f"{text}: not a WFDB record; other ECG files are read by the ecg-pma package "
                "(pip install 'ecg-pma[formats]', then `import ecg_pma`)."
            )
        return FILE_READER(path)

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
                records.append(self.read_path(item))
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
        check_lead_names(lead_names)
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise ValueError(f"{name.capitalize()}: ECG samples must be numbers (real), got dtype {array.dtype}.")
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
        """
        `(leads_in, samples)` in any lead order -> `(model_leads, samples)` in model order, by lead name (or a
        `lead_aliases` name); the model's leads the record lacks are rows of NaN.
        """
        if signal.shape[0] != len(lead_names):
            raise ValueError(
                f"{name}: {signal.shape[0]} leads in the signal but {len(lead_names)} lead names {lead_names}; "
                "an ECG array is (leads, samples)."
            )
        try:
            source_rows, extra, missing = lead_order(
                tuple(self.lead_names),
                tuple(self.lead_aliases.items()),  # in the user's order: of two spellings of one alias, the last wins
                tuple(self.required_lead_names()),
                tuple(str(lead) for lead in lead_names),
            )
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        if extra:
            logger.warning(f"{name}: leads {list(extra)} are not used by the model and are left out.")
        if missing:
            logger.info(
                f"{name}: leads {list(missing)} are absent; they are filled with {self.padding_value} and masked."
            )
        ordered = np.full((len(self.lead_names), signal.shape[1]), np.nan)
        for row, source in enumerate(source_rows):
            if source is not None:
                ordered[row] = signal[source]
        return ordered

    @staticmethod
    def to_millivolts(signal: np.ndarray, units: str | list[str], name: str) -> np.ndarray:
        """`signal (leads, samples)` in `units` (one, or one per lead) -> mV; `signal` itself when it is in mV already
        (not a copy: callers copy before writing into it)."""
        if not isinstance(units, (str, list, tuple)) or not all(isinstance(unit, str) for unit in units):
            raise TypeError(f"{name}: `units` must be a unit name or a list of them (one per lead), got {units!r}.")
        units = [units] * signal.shape[0] if isinstance(units, str) else list(units)
        if len(units) != signal.shape[0]:
            raise ValueError(f"{name}: {len(units)} units {units} for {signal.shape[0]} leads; give one per lead.")
        factors = []
        for unit in units:
            key = str(unit).strip().lower()
            if key not in UNIT_TO_MV:
                raise ValueError(f"{name}: unknown physical unit {unit!r}; expected one of mV, uV, V.")
            factors.append(UNIT_TO_MV[key])
        if all(factor == 1.0 for factor in factors):
            return signal
        return signal * np.asarray(factors)[:, None]

    def live_leads(self, signal: np.ndarray, name: str) -> np.ndarray:
        """
        Which model leads of `signal (model_leads, samples)` (absent ones rows of NaN) the record really has: a dead
        lead (no finite sample, or flat: its finite samples spanning less than `flat_lead_threshold` mV over the
        whole record, an unplugged electrode) is an absent lead wherever a lead may be missing (not in
        `required_lead_names()`), so the record is read as the same record without it. A required lead with no
        finite sample raises; a required flat lead stays present (as zeros). Returns `present` and `flat`,
        each `(model_leads,)` bool.
        """
        finite = np.isfinite(signal)
        complete, empty = finite.all(axis=1), ~finite.any(axis=1)  # empty: absent (refused if required) or dead
        # peak to peak: a quarter of a standard deviation's cost per record (NaN for a lead with a NaN sample)
        with np.errstate(invalid="ignore"):
            spread = np.ptp(signal, axis=1)
        for row in np.flatnonzero(~complete & ~empty):
            spread[row] = np.ptp(signal[row, finite[row]])
        flat = ~empty & (spread < self.flat_lead_threshold)
        required = set(self.required_lead_names())
        may_be_missing = np.array([lead not in required for lead in self.lead_names])
        required_empty = [lead for lead, bad in zip(self.lead_names, empty & ~may_be_missing) if bad]
        if required_empty:
            raise ValueError(
                f"{name}: lead(s) {required_empty} have no finite sample (dead leads). Allow missing leads "
                "(`allow_missing_leads=True`, --allow-missing-leads, or a smaller `required_leads`) to read a dead "
                "lead as absent."
            )
        dead = flat & may_be_missing
        if dead.any():
            logger.info(
                f"{name}: flat lead(s) {[lead for lead, bad in zip(self.lead_names, dead) if bad]} read as absent."
            )
        present = ~empty & ~dead
        if not present.any():
            raise ValueError(f"{name}: every lead is dead (no finite sample, or flat over the whole record).")
        return present, flat

    def handle_non_finite(self, signal: np.ndarray, name: str, lead_names: list[str]) -> np.ndarray:
        """NaN/inf samples of `signal (leads, samples)` (every lead with at least one finite sample) by `nan_policy`."""
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
            if self.nan_policy == "interpolate":
                positions = np.arange(signal.shape[1])
                signal[row, ~good] = np.interp(positions[~good], positions[good], signal[row, good])
            else:
                signal[row, ~good] = 0.0
        logger.warning(f"{name}: {where} repaired by nan_policy={self.nan_policy!r}.")
        return signal

    def resample(self, signal: np.ndarray, sampling_rate: float) -> np.ndarray:
        """
        From `sampling_rate` to the model rate, `(leads, samples)`: polyphase (anti-aliased) by default, or FFT
        (`scipy.signal.resample`, as ST-MEM) with `resample_method="fft"`.
        """
        if sampling_rate == self.sampling_rate:
            return signal
        if self.resample_method == "fft":
            return scipy_signal.resample(signal, int(signal.shape[-1] * self.sampling_rate / sampling_rate), axis=-1)
        up, down = resampling_factors(self.sampling_rate, sampling_rate)
        return scipy_signal.resample_poly(signal, up, down, axis=-1, window=polyphase_filter(up, down))

    def filter_sections(self) -> list[np.ndarray]:
        """The Butterworth filters applied in turn, as second-order sections: one band-pass, or high-pass + low-pass."""
        if self.filter_type == "bandpass":
            stages = [("bandpass", [self.low_cut_hz, self.high_cut_hz])]
        else:
            stages = [("highpass", self.low_cut_hz), ("lowpass", self.high_cut_hz)]
        return [
            scipy_signal.butter(self.filter_order, cutoff, btype=btype, fs=self.sampling_rate, output="sos")
            for btype, cutoff in stages
        ]

    def band_pass(self, signal: np.ndarray, name: str = "record") -> np.ndarray:
        """Zero-phase filtering along time (`sosfiltfilt`) by every section of `filter_sections()`."""
        if signal.shape[-1] <= 3 * (2 * self.filter_order + 1):
            raise ValueError(f"{name}: too short to band-pass ({signal.shape[-1]} samples).")
        for sos in self.filter_sections():
            signal = scipy_signal.sosfiltfilt(sos, signal, axis=-1)
        return signal

    def normalize(self, signal: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """
        Z-score of one window `(leads, samples)`: per lead, or (`normalization="per_window"`) with one mean and
        standard deviation over the samples of the `present (leads,)` leads together (all leads when None), so that
        absent leads never shape the present ones: a record read with fewer leads gets the values it would get
        recorded with only those. A standard deviation below `flat_lead_threshold` (a flat lead or window) gives
        exact zeros instead of a division by ~0. The absent leads' rows are standardised too (callers overwrite them).
        """
        if self.normalization == "per_lead":
            return self.standardise(signal, signal.mean(axis=-1, keepdims=True), signal.std(axis=-1, keepdims=True))
        present = np.ones(signal.shape[:-1], dtype=bool) if present is None else np.asarray(present, dtype=bool)
        return self.standardise_window(signal, np.broadcast_to(present[..., None], signal.shape))

    def standardise(self, signal: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """`(signal - mean) / std`, exact zeros where `std` is below `flat_lead_threshold`."""
        flat = std < self.flat_lead_threshold
        return np.where(flat, 0.0, (signal - mean) / np.where(flat, 1.0, std))

    def standardise_window(self, signal: np.ndarray, counted: np.ndarray) -> np.ndarray:
        """Windows `(..., leads, samples)`, each standardised with one mean and standard deviation over its samples
        where `counted` (bool, the same shape) is True."""
        count = np.maximum(counted.sum(axis=(-2, -1), keepdims=True), 1)
        mean = np.sum(signal, axis=(-2, -1), where=counted, keepdims=True) / count
        variance = np.sum((signal - mean) ** 2, axis=(-2, -1), where=counted, keepdims=True) / count
        return self.standardise(signal, mean, np.sqrt(variance))

    def cut_to_leads(self, signals: np.ndarray, lead_mask: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """
        Windows this extractor made, `signals (windows, leads, signal_length)` with the leads `lead_mask (windows,
        leads)` present -> the windows it makes of the same records cut to the leads `keep (windows, leads)` (within
        `lead_mask`), float64: every other lead set to `padding_value` and, with `normalization="per_window"`, the
        kept leads standardised again over themselves (per lead, each lead is already standardised on its own). A
        z-score is unchanged by a shift and a scale applied to the whole window, so standardising the stored window
        over the kept leads gives what standardising the record's window over them gives, to float32 rounding; the
        resampling and the filters work lead by lead. A window padded at its end (a short record: trailing samples
        equal to `padding_value` in every lead) is standardised over its recorded samples, as it was made. Windows
        whose leads do not change are returned as they are.
        """
        signals = np.array(signals, dtype=np.float64)
        lead_mask, keep = np.asarray(lead_mask, dtype=bool), np.asarray(keep, dtype=bool)
        changed = (keep != lead_mask).any(axis=-1) & keep.any(axis=-1)
        if self.do_normalize and self.normalization == "per_window" and changed.any():
            windows = signals[changed]
            recorded = (windows != self.padding_value).any(axis=-2)  # (windows, samples)
            length = np.where(recorded.any(axis=-1), recorded.shape[-1] - recorded[:, ::-1].argmax(axis=-1), 0)
            in_window = (np.arange(recorded.shape[-1]) < length[:, None])[:, None, :]  # (windows, 1, samples)
            standardised = self.standardise_window(windows, keep[changed][:, :, None] & in_window)
            signals[changed] = np.where(in_window, standardised, windows)
        signals[~keep] = self.padding_value
        return signals

    def clean(self, record: EcgRecord) -> tuple[np.ndarray, np.ndarray]:
        """
        One record, any layout -> `(model_leads, samples at the input rate)` in mV with NaNs handled and absent leads
        zeroed, and which model leads the record has. Records shorter than the model needs raise.
        """
        name = record.name
        fs = record.fs
        if fs is None or isinstance(fs, bool) or not isinstance(fs, (int, float, np.number)) or not 0 < fs < np.inf:
            raise ValueError(f"{name}: unknown or invalid sampling rate {fs!r}; give the input's rate in Hz.")
        if not MIN_INPUT_SAMPLING_RATE <= fs <= MAX_INPUT_SAMPLING_RATE:
            raise ValueError(
                f"{name}: sampling rate {fs:g} Hz is outside the {MIN_INPUT_SAMPLING_RATE:g}-"
                f"{MAX_INPUT_SAMPLING_RATE:g} Hz accepted for ECG; give the input's rate in Hz."
            )
        signal = np.asarray(record.signal, dtype=np.float64)
        if signal.ndim != 2:
            raise ValueError(f"{name}: an ECG must be (leads, samples), got shape {signal.shape}.")
        if signal.shape[1] == 0:
            raise ValueError(f"{name}: the record has no samples ({signal.shape[0]} leads of length 0).")
        signal = self.to_millivolts(signal, record.units, name)
        finite = np.isfinite(signal).all()
        if finite:  # the common case, without the masked maximum's cost
            amplitude = np.abs(signal).max(initial=0.0)
        else:
            with np.errstate(invalid="ignore"):
                amplitude = np.max(np.abs(signal), initial=0.0, where=np.isfinite(signal))
        if amplitude > MAX_AMPLITUDE_MV:
            raise ValueError(
                f"{name}: amplitudes up to {amplitude:g} mV, beyond the {MAX_AMPLITUDE_MV:g} mV accepted; "
                "is the unit right (`units=`, or the header's)?"
            )
        signal = self.reorder_leads(signal, record.leads, name)  # a copy: absent leads are rows of NaN
        present, flat = self.live_leads(signal, name)
        # a flat lead carries no signal: zeros, not its offset, whose resampling edges would ring and be z-scored
        signal[~present | flat] = 0.0
        if not finite:
            signal = self.handle_non_finite(signal, name, self.lead_names)
        duration = signal.shape[1] / fs
        if duration > MAX_RECORD_DURATION_S:
            raise ValueError(
                f"{name}: record is {duration:g} s long ({signal.shape[1]} samples at {fs:g} Hz), more than the "
                f"{MAX_RECORD_DURATION_S} s accepted; is the sampling rate right?"
            )
        min_duration = self.min_duration if self.min_duration is not None else self.signal_length / self.sampling_rate
        if duration < min_duration:
            raise ValueError(
                f"{name}: record is {signal.shape[1]} samples ({duration:g} s at {fs:g} Hz), shorter than the "
                f"{min_duration:g} s required (the model window is {self.signal_length / self.sampling_rate:g} s; "
                "`min_duration` allows padding shorter records)."
            )
        if self.segment_seconds is not None and duration < self.segment_seconds:
            raise ValueError(
                f"{name}: record is {duration:g} s long, shorter than one {self.segment_seconds:g} s segment "
                "(`segment_seconds`)."
            )
        return signal, present

    def preprocess(self, record: EcgRecord) -> tuple[np.ndarray, np.ndarray]:
        """
        One record, any layout -> `(model_leads, samples at model rate)` in mV, resampled and filtered (not yet
        standardised: that is done per window; not filtered when `crop_before_filter`), and which model leads the
        record has. `segment_seconds` is not applied here (see `preprocess_segments`).
        """
        signal, present = self.clean(record)
        return self.resample_and_filter(signal, record.fs, record.name), present

    def resample_and_filter(self, signal: np.ndarray, sampling_rate: float, name: str) -> np.ndarray:
        signal = self.resample(signal, sampling_rate)
        if self.do_filter and not self.crop_before_filter:
            signal = self.band_pass(signal, name)
        return signal

    def preprocess_segments(self, record: EcgRecord) -> tuple[list[np.ndarray], np.ndarray]:
        """
        As `preprocess`, cut first into non-overlapping `segment_seconds` segments at the record's own rate (the
        remainder dropped, as ST-MEM's preprocessing script does); one segment (the whole record) without it.
        """
        signal, present = self.clean(record)
        fs = record.fs
        if self.segment_seconds is None:
            segments = [signal]
        else:
            length = int(round(self.segment_seconds * fs))
            segments = [signal[:, start : start + length] for start in range(0, signal.shape[1] - length + 1, length)]
        return [self.resample_and_filter(segment, fs, record.name) for segment in segments], present

    def window_starts(self, num_samples: int, window_mode: str, stride: int | None, rng: np.random.Generator) -> list:
        """Where each window of a `num_samples`-long signal starts, for `window_mode`."""
        surplus = num_samples - self.signal_length
        if surplus <= 0:
            return [0]
        if window_mode == "center":
            return [surplus // 2]
        if window_mode == "random":
            return [int(rng.integers(0, surplus + 1))]
        if window_mode == "n_crop":
            step = surplus // (self.num_crops - 1)
            return list(range(0, surplus + 1, step)) if step else [0]
        step = stride or self.stride or max(self.signal_length // 2, 1)
        starts = list(range(0, surplus + 1, step))
        if starts[-1] != surplus:
            starts.append(surplus)  # the end of the record is covered too
        return starts

    def windows(
        self,
        signal: np.ndarray,
        window_mode: str,
        stride: int | None,
        rng: np.random.Generator,
        present: np.ndarray | None = None,
    ) -> np.ndarray:
        """
        `(leads, samples)` -> `(windows, leads, signal_length)`: center / random / n crops or sliding windows, each
        filtered (with `crop_before_filter`) and standardised on its own over the `present (leads,)` leads (as every
        training window was, see `normalize`), shorter records padded at the end.
        """
        length = self.signal_length
        windows = []
        for start in self.window_starts(signal.shape[1], window_mode, stride, rng):
            window = signal[:, start : start + length]
            if self.do_filter and self.crop_before_filter:
                window = self.band_pass(window)
            if self.do_normalize:
                window = self.normalize(window, present)
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
                a `wfdb.Record`, a path to a WFDB record or to any ECG file `ecg_pma.read_ecg` reads (DICOM, EDF,
                HL7 aECG, GE MUSE and Philips XML, CSV / .npy / Parquet; with the package imported), or a list of
                records/paths.
            sampling_rate: the input's rate in Hz (required for arrays; records carry their own).
            lead_names: the input's lead names in its row order (arrays only; model order if omitted).
            units: physical unit of array input (`"mV"` default, `"uV"`, `"V"`), one or per lead.
            window_mode, stride: override the saved windowing (`"center"`, `"random"`, `"sliding"`, `"n_crop"`).
            seed: seeds the random crop.
            return_tensors: `"pt"`, `"np"` or None (numpy).
        Returns:
            `BatchFeature` with `signals (windows, leads, signal_length)` float32, `lead_mask (windows, leads)` bool
            and `record_index (windows,)`.
        """
        window_mode = window_mode or self.window_mode
        if window_mode not in WINDOW_MODES:
            raise ValueError(f"Unknown `window_mode` {window_mode!r}; expected one of {WINDOW_MODES}.")
        check_integer("stride", stride, optional=True)
        check_integer("seed", seed, minimum=0, optional=True)
        rng = np.random.default_rng(seed)
        records = self._as_records(ecg, sampling_rate, lead_names, units)
        if not records:
            raise ValueError("Empty batch: no ECG was given.")
        signals, lead_mask, record_index = [], [], []
        for index, record in enumerate(records):
            segments, present = self.preprocess_segments(record)
            for segment in segments:
                windows = self.windows(segment, window_mode, stride, rng, present)
                windows[:, ~present] = self.padding_value
                with np.errstate(over="ignore", invalid="ignore"):
                    windows = windows.astype(np.float32)
                if not np.isfinite(windows).all():
                    raise ValueError(
                        f"{record['name']}: the features are not finite: amplitudes up to "
                        f"{np.nanmax(np.abs(record['signal'])):g} overflow float32 (ECG samples are expected in mV)."
                    )
                signals.append(windows)
                lead_mask.append(np.broadcast_to(present, windows.shape[:2]))
                record_index += [index] * len(windows)
        features = BatchFeature(
            {
                "signals": np.concatenate(signals),
                "lead_mask": np.concatenate(lead_mask),
                "record_index": np.asarray(record_index, dtype=np.int64),
            }
        )
        return features.convert_to_tensors(return_tensors) if return_tensors else features


__all__ = ["ST_MEM_PREPROCESSING", "EcgPmaFeatureExtractor", "canonical_lead_key"]
