"""EcgPmaFeatureExtractor on the real records in ../shared/data, synthetic signals with known answers, and bad input."""

import shutil

import numpy as np
import pytest
import torch
import wfdb
from conftest import shared_data_dir
from transformers import AutoFeatureExtractor

from ecg_pma import STANDARD_LEAD_NAMES, EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.feature_extraction_ecg_pma import canonical_lead_key


def all_records():
    records = sorted(p.with_suffix("") for p in shared_data_dir("physionet2021").glob("*.hea"))
    records += sorted(p.with_suffix("") for p in shared_data_dir("ptbxl-mini").rglob("*.hea"))
    return records


def sine_ecg(frequency_hz: float, sampling_rate: int, seconds: float, leads: int = 12) -> np.ndarray:
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return np.stack([np.sin(2 * np.pi * frequency_hz * time + lead) for lead in range(leads)])


def dominant_frequency(signal: np.ndarray, sampling_rate: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal - signal.mean()))
    return np.fft.rfftfreq(len(signal), 1 / sampling_rate)[spectrum.argmax()]


# ---------------------------------------------------------------------------------------------------------- real records


def test_every_real_record_loads_in_model_order_and_standardised():
    extractor = EcgPmaFeatureExtractor()
    records = all_records()
    assert len(records) == 42  # 40 challenge records, 2 PTB-XL records
    features = extractor([str(path) for path in records], return_tensors="np")
    signals = features["signals"]
    assert signals.shape == (42, 12, 1000) and signals.dtype == np.float32
    assert np.array_equal(features["record_index"], np.arange(42))
    assert np.isfinite(signals).all()
    np.testing.assert_allclose(signals.mean(axis=-1), 0, atol=1e-5)
    std = signals.std(axis=-1)
    # some real records have empty leads (all samples equal): those come out as zeros, every other lead standardised
    flat = std == 0
    for record_position, lead in zip(*np.nonzero(flat)):
        raw = wfdb.rdrecord(str(records[record_position])).p_signal[:, lead]
        assert np.ptp(raw) == 0, (records[record_position], lead)
    assert flat.sum() < 12
    np.testing.assert_allclose(std[~flat], 1, atol=1e-4)


def test_leads_come_out_in_model_order():
    # PTB-XL writes AVR / AVL / AVF in capitals; the challenge copies write aVR: both map to the model order
    record = wfdb.rdrecord(str(shared_data_dir("ptbxl-mini") / "records100/00000/00001_lr"))
    assert record.sig_name[3] == "AVR"
    extractor = EcgPmaFeatureExtractor()
    out = extractor(record)["signals"][0]
    for model_row, name in enumerate(STANDARD_LEAD_NAMES):
        source = [canonical_lead_key(n) for n in record.sig_name].index(canonical_lead_key(name))
        lead = record.p_signal[:, source]
        np.testing.assert_allclose(out[model_row], (lead - lead.mean()) / lead.std(), atol=1e-5)


def test_path_record_and_array_inputs_agree():
    path = shared_data_dir("physionet2021") / "JS20001"
    record = wfdb.rdrecord(str(path))
    extractor = EcgPmaFeatureExtractor()
    from_path = extractor(str(path))["signals"]
    from_header_path = extractor(str(path) + ".hea")["signals"]
    from_record = extractor(record)["signals"]
    from_array = extractor(record.p_signal.T, sampling_rate=record.fs, lead_names=record.sig_name)["signals"]
    from_tensor = extractor(torch.from_numpy(record.p_signal.T), sampling_rate=record.fs, lead_names=record.sig_name)
    for other in (from_header_path, from_record, from_array, from_tensor["signals"]):
        np.testing.assert_array_equal(from_path, other)


def test_shuffled_leads_are_put_back_by_name():
    record = wfdb.rdrecord(str(shared_data_dir("physionet2021") / "E07503"))
    extractor = EcgPmaFeatureExtractor()
    reference = extractor(record.p_signal.T, sampling_rate=500, lead_names=record.sig_name)["signals"]
    order = np.random.default_rng(0).permutation(12)
    shuffled_names = [record.sig_name[i].upper() if i % 2 else record.sig_name[i].lower() for i in order]
    shuffled = extractor(record.p_signal.T[order], sampling_rate=500, lead_names=shuffled_names)["signals"]
    np.testing.assert_array_equal(shuffled, reference)


@pytest.mark.parametrize("target_rate, expected_samples", [(100, 1000), (250, 2500)])
def test_resampling_keeps_duration_and_frequency(target_rate, expected_samples):
    extractor = EcgPmaFeatureExtractor(sampling_rate=target_rate, signal_length=expected_samples)
    sine = sine_ecg(7.0, 500, 10.0)
    resampled = extractor.resample(sine, 500)
    assert resampled.shape == (12, expected_samples)
    assert dominant_frequency(resampled[0], target_rate) == pytest.approx(7.0, abs=0.1)
    # the whole path too, on a real record: 10 s at 500 Hz -> 10 s at the model rate
    record = wfdb.rdrecord(str(shared_data_dir("physionet2021") / "HR06002"))
    assert extractor.resample(record.p_signal.T, record.fs).shape == (12, expected_samples)
    out = extractor(sine, sampling_rate=500)["signals"][0]
    assert dominant_frequency(out[3], target_rate) == pytest.approx(7.0, abs=0.1)


@pytest.mark.parametrize(("source_rate", "target_rate"), [(400, 100), (500, 250), (360, 100), (257, 100), (1000, 500)])
def test_resampling_filter_designed_once_gives_scipys_output_bit_for_bit(source_rate, target_rate):
    """The polyphase filter is designed once per rate pair; the output is what `resample_poly` designs each call."""
    from scipy.signal import resample_poly

    extractor = EcgPmaFeatureExtractor(sampling_rate=target_rate, signal_length=target_rate * 10)
    signal = np.random.default_rng(0).normal(size=(12, source_rate * 10))
    ours = extractor.resample(signal, source_rate)
    again = extractor.resample(signal, source_rate)  # the cached filter is not scaled in place by the first call
    up, down = target_rate // np.gcd(target_rate, source_rate), source_rate // np.gcd(target_rate, source_rate)
    np.testing.assert_array_equal(ours, resample_poly(signal, up, down, axis=-1))
    np.testing.assert_array_equal(again, ours)


def test_stmem_preset_crops_the_center_and_band_passes():
    config = EcgPmaConfig.from_preset("vit-s-st-mem")
    extractor = EcgPmaFeatureExtractor.from_model_config(config, do_filter=True)
    rate = 250
    time = np.arange(10 * 500) / 500
    baseline_wander = 3.0 * np.sin(2 * np.pi * 0.1 * time)
    in_band = np.sin(2 * np.pi * 10 * time)
    mains = np.sin(2 * np.pi * 60 * time)  # above the 40 Hz cut and below the 125 Hz Nyquist of 250 Hz
    ecg = np.tile(baseline_wander + in_band + mains, (12, 1))
    out = extractor(ecg, sampling_rate=500)["signals"][0, 0]
    assert out.shape == (2250,)
    no_filter = EcgPmaFeatureExtractor.from_model_config(config)(ecg, sampling_rate=500)["signals"][0, 0]
    frequencies = np.fft.rfftfreq(2250, 1 / rate)

    def amplitude(signal, frequency):
        return np.abs(np.fft.rfft(signal))[np.argmin(np.abs(frequencies - frequency))]

    # relative to the 10 Hz component, the filter removes most of the 60 Hz and nearly all of the 0.1 Hz wander
    for frequency, factor in ((60, 5), (0.1, 50)):
        before = amplitude(no_filter, frequency) / amplitude(no_filter, 10)
        after = amplitude(out, frequency) / amplitude(out, 10)
        assert after < before / factor, (frequency, before, after)


# ------------------------------------------------------------------------------------------------------------ windows


def test_sliding_windows_cover_a_long_record_with_record_index():
    extractor = EcgPmaFeatureExtractor(window_mode="sliding")
    long_ecg = sine_ecg(3.0, 100, 32.0)  # 3200 samples: starts 0, 500, ..., 2000, and 2200 flush with the end
    short_ecg = sine_ecg(3.0, 100, 10.0)
    features = extractor([long_ecg, short_ecg], sampling_rate=100)
    assert features["signals"].shape == (7, 12, 1000)
    assert features["record_index"].tolist() == [0, 0, 0, 0, 0, 0, 1]
    starts = [0, 500, 1000, 1500, 2000, 2200]
    for window, start in zip(features["signals"][:6], starts):
        piece = long_ecg[:, start : start + 1000]
        np.testing.assert_allclose(
            window, (piece - piece.mean(-1, keepdims=True)) / piece.std(-1, keepdims=True), atol=1e-5
        )
    assert len(extractor(long_ecg, sampling_rate=100, stride=1000)["signals"]) == 4  # 0, 1000, 2000, 2200


def test_center_and_random_crops():
    extractor = EcgPmaFeatureExtractor()
    ecg = np.random.default_rng(1).normal(size=(12, 2000))
    center = extractor(ecg, sampling_rate=100)["signals"][0]
    piece = ecg[:, 500:1500]
    np.testing.assert_allclose(
        center, (piece - piece.mean(-1, keepdims=True)) / piece.std(-1, keepdims=True), atol=1e-5
    )
    first = extractor(ecg, sampling_rate=100, window_mode="random", seed=3)["signals"]
    again = extractor(ecg, sampling_rate=100, window_mode="random", seed=3)["signals"]
    other = extractor(ecg, sampling_rate=100, window_mode="random", seed=4)["signals"]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_short_records_are_padded_only_when_allowed():
    ecg = sine_ecg(5.0, 100, 8.0)
    with pytest.raises(ValueError, match=r"input 0: record is 800 samples \(8 s at 100 Hz\), shorter than the 10 s"):
        EcgPmaFeatureExtractor()(ecg, sampling_rate=100)
    out = EcgPmaFeatureExtractor(min_duration=5.0)(ecg, sampling_rate=100)["signals"][0]
    assert np.all(out[:, 800:] == 0.0)
    np.testing.assert_allclose(out[:, :800].std(-1), 1, atol=1e-5)


def test_flat_leads_become_zeros_not_infinities():
    ecg = sine_ecg(5.0, 100, 10.0)
    ecg[4] = 0.2  # an unplugged lead at a constant offset
    out = EcgPmaFeatureExtractor()(ecg, sampling_rate=100)["signals"][0]
    assert np.all(out[4] == 0.0)
    assert np.isfinite(out).all()


def test_units_are_converted_to_millivolts_before_the_flat_lead_check():
    ripple_mv = sine_ecg(5.0, 100, 10.0) * 1e-3  # a 1 µV ripple: flat by a 0.01 mV threshold
    extractor = EcgPmaFeatureExtractor(flat_lead_threshold=1e-2)
    assert np.all(extractor(ripple_mv, sampling_rate=100)["signals"] == 0)
    assert np.all(extractor(ripple_mv * 1e3, sampling_rate=100, units="uV")["signals"] == 0)
    assert np.all(extractor(ripple_mv * 1e-3, sampling_rate=100, units="V")["signals"] == 0)
    # the same numbers read as millivolts are a real 1 mV signal
    assert not np.all(extractor(ripple_mv * 1e3, sampling_rate=100, units="mV")["signals"] == 0)
    assert not np.all(extractor(ripple_mv * 1e3, sampling_rate=100, units=["mv"] * 12)["signals"] == 0)


def test_nan_policies():
    ecg = sine_ecg(0.5, 100, 10.0)
    ecg[2, 100:110] = np.nan
    interpolated = EcgPmaFeatureExtractor(nan_policy="interpolate")(ecg, sampling_rate=100)["signals"]
    zeroed = EcgPmaFeatureExtractor(nan_policy="zero")(ecg, sampling_rate=100)["signals"]
    assert np.isfinite(interpolated).all() and np.isfinite(zeroed).all()
    clean = EcgPmaFeatureExtractor()(sine_ecg(0.5, 100, 10.0), sampling_rate=100)["signals"]
    assert np.abs(interpolated[0, 2] - clean[0, 2]).max() < 0.05  # a 0.1 s gap in a slow sine, linearly filled
    assert np.abs(zeroed[0, 2] - clean[0, 2]).max() > 0.3


def test_missing_leads_only_when_allowed():
    ecg = sine_ecg(2.0, 100, 10.0, leads=8)
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    with pytest.raises(ValueError, match=r"missing leads \['III', 'aVR', 'aVL', 'aVF'\]"):
        EcgPmaFeatureExtractor()(ecg, sampling_rate=100, lead_names=names)
    out = EcgPmaFeatureExtractor(allow_missing_leads=True)(ecg, sampling_rate=100, lead_names=names)["signals"][0]
    assert np.all(out[2:6] == 0)
    np.testing.assert_allclose(out[[0, 1, 6]].std(-1), 1, atol=1e-5)


def test_extra_leads_of_a_subset_model_are_left_out():
    extractor = EcgPmaFeatureExtractor(lead_names=["II", "V1"])
    ecg = sine_ecg(2.0, 100, 10.0)
    out = extractor(ecg, sampling_rate=100, lead_names=list(STANDARD_LEAD_NAMES))["signals"][0]
    assert out.shape == (2, 1000)
    full = EcgPmaFeatureExtractor()(ecg, sampling_rate=100)["signals"][0]
    np.testing.assert_array_equal(out, full[[1, 6]])


# ---------------------------------------------------------------------------------------------------------- bad input


def _copy_record(tmp_path, name="E07500"):
    source = shared_data_dir("physionet2021")
    for suffix in (".hea", ".mat"):
        shutil.copy(source / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    return tmp_path / name


BAD_INPUTS = {
    "nan": (
        lambda tmp: (np.where(np.arange(1000) == 7, np.nan, sine_ecg(2, 100, 10)), {"sampling_rate": 100}),
        r"input 0: 12 NaN/inf samples \(first in lead I at sample 7\)",
    ),
    "inf": (
        lambda tmp: (np.where(np.arange(1000) == 9, np.inf, sine_ecg(2, 100, 10)), {"sampling_rate": 100}),
        r"input 0: 12 NaN/inf samples",
    ),
    "too short": (
        lambda tmp: (sine_ecg(2, 500, 4), {"sampling_rate": 500}),
        r"input 0: record is 2000 samples \(4 s at 500 Hz\)",
    ),
    "no sampling rate": (lambda tmp: (sine_ecg(2, 100, 10), {}), r"`sampling_rate=` is required for array input"),
    "bad sampling rate": (
        lambda tmp: (sine_ecg(2, 100, 10), {"sampling_rate": -5}),
        r"input 0: unknown or invalid sampling rate -5",
    ),
    "names do not match rows": (
        lambda tmp: (sine_ecg(2, 100, 10), {"sampling_rate": 100, "lead_names": ["I", "II"]}),
        r"input 0: 12 leads in the signal but 2 lead names",
    ),
    "unknown lead": (
        lambda tmp: (sine_ecg(2, 100, 10), {"sampling_rate": 100, "lead_names": [*STANDARD_LEAD_NAMES[:11], "V7x"]}),
        r"input 0: unknown lead names \['V7x'\]",
    ),
    "duplicate lead": (
        lambda tmp: (sine_ecg(2, 100, 10), {"sampling_rate": 100, "lead_names": [*STANDARD_LEAD_NAMES[:11], "avr"]}),
        r"input 0: lead names appear more than once: \['aVR', 'avr'\]",
    ),
    "wrong rank": (
        lambda tmp: (np.zeros((2, 2, 12, 1000)), {"sampling_rate": 100}),
        r"must be \(leads, samples\) or \(batch, leads, samples\)",
    ),
    "not numbers": (
        lambda tmp: (np.full((12, 1000), "a"), {"sampling_rate": 100}),
        r"Input 0: ECG samples must be numbers",
    ),
    "unknown unit": (
        lambda tmp: (sine_ecg(2, 100, 10), {"sampling_rate": 100, "units": "mmHg"}),
        r"input 0: unknown physical unit 'mmHg'",
    ),
    "empty list": (lambda tmp: ([], {}), r"non-empty list"),
    "dead lead": (
        lambda tmp: (np.where(np.arange(12)[:, None] == 3, np.nan, sine_ecg(2, 100, 10)), {"sampling_rate": 100}),
        r"input 0: lead\(s\) \['aVR'\] have no finite sample \(dead leads\)\. Allow missing leads",
    ),
    "missing header": (
        lambda tmp: (str(tmp / "nothing_here"), {}),
        r"WFDB record '.*nothing_here': header file .*nothing_here.hea not found",
    ),
    "missing signal file": (lambda tmp: (_missing_signal(tmp), {}), r"WFDB record '.*E07500': signal file missing"),
    "truncated signal file": (
        lambda tmp: (_truncated_signal(tmp), {}),
        r"WFDB record '.*E07500' could not be read \(truncated or malformed",
    ),
    "malformed header": (lambda tmp: (_malformed_header(tmp), {}), r"WFDB record '.*E07500' could not be read"),
}


def _missing_signal(tmp):
    path = _copy_record(tmp)
    (tmp / "E07500.mat").unlink()
    return str(path)


def _truncated_signal(tmp):
    path = _copy_record(tmp)
    data = (tmp / "E07500.mat").read_bytes()
    (tmp / "E07500.mat").write_bytes(data[: len(data) // 3])
    return str(path)


def _malformed_header(tmp):
    path = _copy_record(tmp)
    (tmp / "E07500.hea").write_text("E07500 twelve 500 5000\nnonsense line\n")
    return str(path)


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_malformed_input_gives_a_clear_error(tmp_path, kind):
    make, message = BAD_INPUTS[kind]
    ecg, kwargs = make(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        EcgPmaFeatureExtractor()(ecg, **kwargs)


def test_invalid_settings():
    with pytest.raises(ValueError, match="Nyquist"):
        EcgPmaFeatureExtractor(do_filter=True, high_cut_hz=60)
    with pytest.raises(ValueError, match="Unknown `window_mode`"):
        EcgPmaFeatureExtractor(window_mode="middle")
    with pytest.raises(ValueError, match="Unknown `nan_policy`"):
        EcgPmaFeatureExtractor(nan_policy="ignore")


# ------------------------------------------------------------------------------------------------------- persistence


def test_save_and_reload_through_auto_feature_extractor(tmp_path):
    extractor = EcgPmaFeatureExtractor.from_model_config(
        EcgPmaConfig.from_preset("vit-s-st-mem"), do_filter=True, window_mode="sliding", nan_policy="interpolate"
    )
    extractor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").exists()
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded) is EcgPmaFeatureExtractor
    assert loaded.to_dict() == extractor.to_dict()
    path = str(shared_data_dir("physionet2021") / "E07504")
    np.testing.assert_array_equal(loaded(path)["signals"], extractor(path)["signals"])


README_THREE_LINES = """
import sys
import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

model_dir, record, output = sys.argv[1:]
extractor = AutoFeatureExtractor.from_pretrained(model_dir, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
logits = model(extractor(record, return_tensors="pt")["signals"]).logits
np.savez(output, signals=extractor(record)["signals"], logits=logits.detach().numpy(), kind=type(extractor).__module__)
"""


def test_extractor_saved_with_a_model_gives_identical_arrays_and_logits_in_a_fresh_process(tmp_path):
    from conftest import run_without_package

    from ecg_pma import EcgPmaForSequenceClassification

    config = EcgPmaConfig.from_preset("tiny", num_labels=3, id2label={0: "NSR", 1: "AF", 2: "STach"})
    model = EcgPmaForSequenceClassification(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config, nan_policy="interpolate")
    model.save_pretrained(tmp_path / "model")
    extractor.save_pretrained(tmp_path / "model")

    record = str(shared_data_dir("physionet2021") / "JS20005")
    run_without_package(tmp_path, README_THREE_LINES, str(tmp_path / "model"), record, str(tmp_path / "out.npz"))
    remote = np.load(tmp_path / "out.npz")
    assert str(remote["kind"]).startswith("transformers_modules")
    local = extractor(record, return_tensors="pt")
    np.testing.assert_array_equal(remote["signals"], local["signals"].numpy())
    # the three README lines run with autograd on, which may pick another attention kernel: equal up to rounding
    np.testing.assert_allclose(remote["logits"], model(local["signals"]).logits.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_mixed_inputs_are_listed_flat_in_order_as_typed_records():
    from ecg_pma.feature_extraction_ecg_pma import EcgRecord, list_single_ecgs

    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    path = str(shared_data_dir("physionet2021") / "JS20005")
    one, batch = sine_ecg(1, 100, 10), torch.as_tensor(np.stack([sine_ecg(2, 100, 10), sine_ecg(3, 100, 10)]))
    listed = list_single_ecgs([one, batch, path])
    assert len(listed) == 4 and listed[3] == path
    np.testing.assert_array_equal(listed[2], batch[1].numpy())

    records = extractor._as_records([one, batch, path], sampling_rate=100, lead_names=None, units=None)
    assert all(isinstance(record, EcgRecord) for record in records)
    # every array named by its place in the flat list (a batch's rows included), a path by itself
    assert [record.name for record in records] == ["input 0", "input 1", "input 2", path]
    assert records[3].fs == 500 and records[3].leads[:2] == ["I", "II"] and records[3].signal.shape[0] == 12
    features = extractor([one, batch, path], sampling_rate=100)
    assert features["record_index"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="Input 1: nested lists are not ECGs"):
        list_single_ecgs([one, [one]])
    with pytest.raises(ValueError, match="got dict"):
        list_single_ecgs([one, {"signal": one}])
    with pytest.raises(ValueError, match=r"got shape \(2, 12, 1000, 1\)"):
        list_single_ecgs(np.zeros((2, 12, 1000, 1)))


def test_resampling_factors_are_bounded_for_any_rate():
    """Odd rates (7,322.62 Hz asked for a ~100-million-tap filter) get factors of at most 1,000, the output rate within
    0.1 % of the model's; the common rates keep their exact ratio."""
    from ecg_pma.feature_extraction_ecg_pma import MAX_RESAMPLING_FACTOR, resampling_factors

    assert resampling_factors(100, 500) == (1, 5) and resampling_factors(100, 257) == (100, 257)
    assert resampling_factors(250, 360) == (25, 36)
    rates = [7322.621543852552, 1000.123, 73.3, 1.0, 99_999.9, *np.random.default_rng(0).uniform(1, 100_000, 200)]
    for model_rate in (100, 250, 500):
        for rate in rates:
            up, down = resampling_factors(model_rate, rate)
            assert min(up, down) <= MAX_RESAMPLING_FACTOR, (model_rate, rate, up, down)
            assert abs(rate * up / down - model_rate) <= 1e-3 * model_rate, (model_rate, rate, up, down)
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    features = extractor(np.random.default_rng(0).normal(size=(12, 73300)), sampling_rate=7322.621543852552)
    assert features["signals"].shape == (1, 12, 1000)


@pytest.mark.parametrize("rate", ["-500", "0", "abc"])
def test_a_header_rate_that_is_not_positive_is_refused_by_name(tmp_path, rate):
    for suffix in (".hea", ".mat"):
        shutil.copy(shared_data_dir("physionet2021") / f"HR06002{suffix}", tmp_path / f"HR06002{suffix}")
    header = tmp_path / "HR06002.hea"
    fields = header.read_text().splitlines()
    record_line = fields[0].split()
    record_line[2] = rate  # wfdb reads -500 as its default 250 Hz, and 0 as 0
    header.write_text("\n".join([" ".join(record_line), *fields[1:]]) + "\n")
    with pytest.raises(ValueError, match=rf"HR06002\.hea: sampling frequency '{rate}' is not a positive number of Hz"):
        EcgPmaFeatureExtractor()(str(tmp_path / "HR06002"))
