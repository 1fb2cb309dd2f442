"""Feature extractor edge cases from fuzzing, and a property: any input gives finite features or our own clear error."""

import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Array2D, Dataset, Features, Sequence, Value
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ecg_pma
from ecg_pma import EcgPmaFeatureExtractor
from ecg_pma.data import extract_features


PACKAGE_DIR = str(Path(ecg_pma.__file__).parent)
LEADS = ["I", "II", "III"]


def small_extractor(**kwargs) -> EcgPmaFeatureExtractor:
    return EcgPmaFeatureExtractor(lead_names=LEADS, sampling_rate=50, signal_length=100, **kwargs)


def raised_by_our_code(error: BaseException) -> bool:
    """The frame that raised `error` is in the ecg_pma package, not in numpy/scipy/torch internals."""
    return traceback.extract_tb(error.__traceback__)[-1].filename.startswith(PACKAGE_DIR)


def assert_our_error(kind, match, call):
    with pytest.raises(kind, match=match) as caught:
        call()
    assert raised_by_our_code(caught.value), traceback.format_exception(caught.value)


# ------------------------------------------------------------------------------------------------- call-time checks

ECG = np.random.default_rng(0).normal(size=(3, 300))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampling_rate": 50, "window_mode": "sliding", "stride": -3}, "`stride` must be at least 1, got -3"),
        ({"sampling_rate": 50, "window_mode": "sliding", "stride": 2.5}, "`stride` must be an integer, got 2.5"),
        ({"sampling_rate": 0.0004}, "sampling rate 0.0004 Hz is outside the 1-100000 Hz"),
        ({"sampling_rate": 1e15}, "sampling rate 1e\\+15 Hz is outside"),
        ({"sampling_rate": 50, "seed": -1}, "`seed` must be at least 0, got -1"),
        ({"sampling_rate": 50, "units": ["mV", "uV"]}, "2 units \\['mV', 'uV'\\] for 3 leads"),
        ({"sampling_rate": 50, "units": 5}, "`units` must be a unit name or a list"),
        ({"sampling_rate": 50, "lead_names": "I"}, "`lead_names` must be a list of lead names"),
    ],
)
def test_bad_call_arguments_raise_our_error(kwargs, match):
    assert_our_error((ValueError, TypeError), match, lambda: small_extractor()(ECG, **kwargs))


def test_empty_batches_are_refused():
    extractor = small_extractor()
    assert_our_error(ValueError, "Empty batch", lambda: extractor(np.empty((0, 3, 300)), sampling_rate=50))
    assert_our_error(ValueError, "non-empty list", lambda: extractor([], sampling_rate=50))


@pytest.mark.parametrize("do_normalize", [True, False])
def test_amplitudes_that_would_overflow_are_refused_not_returned_as_inf(do_normalize):
    extractor = small_extractor(do_normalize=do_normalize)
    for value in (1e308, 1e39):
        huge = np.full((3, 300), value) * np.linspace(0.5, 1, 300)
        assert_our_error(
            ValueError, "input 0: amplitudes up to .* mV", lambda huge=huge: extractor(huge, sampling_rate=50)
        )


def test_bfloat16_and_integer_tensors_are_read():
    extractor = small_extractor()
    expected = extractor(torch.tensor(ECG).to(torch.bfloat16).double().numpy(), sampling_rate=50)["signals"]
    got = extractor(torch.tensor(ECG).to(torch.bfloat16), sampling_rate=50)["signals"]
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(extractor(torch.randint(-5, 5, (3, 300)), sampling_rate=50)["signals"]).all()
    assert_our_error(
        TypeError, "real numbers", lambda: extractor(torch.ones(3, 300, dtype=torch.bool), sampling_rate=50)
    )


# ----------------------------------------------------------------------------------------------- construction checks


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 0}, "`stride` must be at least 1"),
        ({"stride": 1.5}, "`stride` must be an integer"),
        ({"signal_length": 100.0}, "`signal_length` must be an integer"),
        ({"sampling_rate": 50.5}, "`sampling_rate` must be an integer"),
        ({"sampling_rate": 0}, "`sampling_rate` must be at least 1"),
        ({"padding_value": float("nan")}, "`padding_value` must be a finite number"),
        ({"padding_value": float("inf")}, "`padding_value` must be a finite number"),
        ({"min_duration": -1.0}, "`min_duration` must be a finite number > 0"),
        ({"flat_lead_threshold": -1e-6}, "`flat_lead_threshold` must be a finite number >= 0"),
        ({"filter_order": 0}, "`filter_order` must be at least 1"),
    ],
)
def test_settings_are_checked_at_construction(kwargs, match):
    settings_ = {"lead_names": LEADS, "sampling_rate": 50, "signal_length": 100, **kwargs}
    assert_our_error(ValueError, match, lambda: EcgPmaFeatureExtractor(**settings_))


def test_loading_a_saved_extractor_with_a_bad_setting_names_it(tmp_path):
    small_extractor().save_pretrained(tmp_path)
    config = tmp_path / "preprocessor_config.json"
    config.write_text(config.read_text().replace('"signal_length": 100', '"signal_length": -100'))
    with pytest.raises(ValueError, match="`signal_length` must be at least 1, got -100"):
        EcgPmaFeatureExtractor.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------------ datasets: record IDs


def test_errors_while_extracting_a_dataset_name_the_record():
    good = np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32)
    bad = good.copy()
    bad[10, 1] = np.nan
    features = Features(
        {
            "record_id": Value("string"),
            "signal": Array2D(shape=(None, 3), dtype="float32"),
            "sampling_rate": Value("float64"),
            "lead_names": Sequence(Value("string")),
            "labels": Sequence(Value("float32"), length=1),
        }
    )
    dataset = Dataset.from_dict(
        {
            "record_id": ["HR00001", "HR00002"],
            "signal": [good, bad],
            "sampling_rate": [50.0, 50.0],
            "lead_names": [LEADS, LEADS],
            "labels": [[0.0], [1.0]],
        },
        features=features,
    )
    with pytest.raises(ValueError, match=r"Record 'HR00002': 1 NaN/inf samples \(first in lead II at sample 10\)"):
        extract_features(dataset, small_extractor())


# ---------------------------------------------------------------------------------------------------------- property


def arrays():
    """Mostly plausible ECGs (3 leads, finite mV values), and some of every wrong shape, dtype and value."""
    leads = st.sampled_from([3, 3, 3, 0, 1, 4])
    samples = st.integers(0, 600)
    shapes = st.tuples(leads, samples) | st.tuples(st.integers(0, 3), leads, samples) | st.tuples(samples)
    long_enough = st.integers(500, 1500)  # 2 s at every valid rate drawn below
    good_shapes = st.tuples(st.just(3), long_enough) | st.tuples(st.integers(1, 3), st.just(3), long_enough)
    plausible = hnp.arrays(np.float64, good_shapes, elements=st.floats(-5, 5))
    odd = hnp.arrays(np.float64, shapes, elements=st.floats(-5, 5))
    wild = st.sampled_from([np.float64, np.float32, np.float16, np.int16, np.int64, np.uint8]).flatmap(
        lambda dtype: hnp.arrays(dtype, shapes, elements=hnp.from_dtype(np.dtype(dtype)))
    )
    return plausible | plausible | odd | wild


def mostly(valid, invalid):
    """Valid values two times in three: a bad value then meets an otherwise good input, where its check matters."""
    return valid | valid | invalid


call_arguments = st.fixed_dictionaries(
    {
        "sampling_rate": mostly(
            st.sampled_from([50, 100, 37.5, 250, 60.5]),
            st.none()
            | st.floats(allow_nan=True, allow_infinity=True)
            | st.integers(-10, 10**7)
            | st.sampled_from([0, -50, 0.5, 1e-4, 1e12, True]),
        ),
    },
    optional={
        "lead_names": mostly(
            st.none() | st.permutations(["I", "II", "III"]) | st.just(["i", "ii", "III", "aVR"]),
            st.lists(st.sampled_from(["I", "II", "III", "avr", "V9", "ii", 3]), max_size=5) | st.just("I"),
        ),
        "units": mostly(st.sampled_from(["mV", "uV", ["mV", "uV", "V"]]), st.sampled_from(["furlong", 3, ["mV"]])),
        "window_mode": mostly(st.sampled_from(["center", "random", "sliding"]), st.just("bogus")),
        "stride": mostly(st.none() | st.integers(1, 500), st.integers(-5, 0) | st.floats(-2, 50) | st.just(True)),
        "seed": mostly(st.none() | st.integers(0, 2**32), st.integers(-(2**40), -1) | st.just(1.5)),
    },
)
extractor_settings = st.fixed_dictionaries(
    {},
    optional={
        "do_normalize": st.booleans(),
        "do_filter": st.booleans(),
        "nan_policy": st.sampled_from(["raise", "interpolate", "zero"]),
        "min_duration": st.none() | st.floats(0.1, 5),
        "allow_missing_leads": st.booleans(),
        "padding_value": st.floats(-10, 10),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ecg=arrays(), call=call_arguments, options=extractor_settings, as_tensor=st.booleans())
def test_any_input_gives_finite_features_or_our_clear_error(ecg, call, options, as_tensor):
    if options.get("do_filter"):
        options = {**options, "low_cut_hz": 0.67, "high_cut_hz": 20.0}
    extractor = small_extractor(**options)
    if as_tensor and ecg.dtype != np.uint16:
        ecg = torch.from_numpy(np.ascontiguousarray(ecg))
    try:
        with np.errstate(all="ignore"):
            features = extractor(ecg, **call)
    except (ValueError, TypeError) as error:
        assert raised_by_our_code(error), "".join(traceback.format_exception(error))
        event(f"refused: {type(error).__name__}")
        return
    event("features returned")
    signals, record_index = features["signals"], features["record_index"]
    batch = 1 if ecg.ndim == 2 else ecg.shape[0]
    assert signals.dtype == np.float32 and signals.shape[1:] == (3, 100)
    assert np.isfinite(signals).all()
    assert sorted(set(record_index.tolist())) == list(range(batch))
    assert len(record_index) == len(signals)
