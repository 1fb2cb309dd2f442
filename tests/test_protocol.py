"""
The PMA authors' and ST-MEM's training protocol: PMA starting at PPA and the authors' frozen probing gate, one random
crop per record per epoch with short records dropped and reported, RandAugment, the label and AUROC conventions.
"""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
import wfdb
from conftest import shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.data import (
    EcgTrainingDataset,
    build_training_splits,
    extract_features,
    id2label,
    load_physionet2021,
    load_records,
)
from ecg_pma.data.records import hash_split
from ecg_pma.metrics import load_ecg_multilabel
from ecg_pma.training import PretrainingArguments, pretrain
from ecg_pma.training.augmentation import OPERATIONS, RandAugment
from ecg_pma.training.finetune import finetune, load_classifier, reference_training_arguments
from ecg_pma.training.probe_layers import CachedProbe


SHORT_RECORD = "E07500cut"


@pytest.fixture(scope="module")
def challenge_with_a_short_record(tmp_path_factory):
    """The 40 real challenge records plus a real record cut to 6 s (shorter than the 10 s window)."""
    root = tmp_path_factory.mktemp("challenge")
    shutil.copytree(shared_data_dir("physionet2021"), root / "records")
    source = wfdb.rdrecord(str(root / "records" / "E07500"))
    wfdb.wrsamp(
        SHORT_RECORD, fs=source.fs, units=source.units, sig_name=source.sig_name,
        p_signal=source.p_signal[: 6 * source.fs], fmt=["16"] * 12, adc_gain=source.adc_gain, baseline=source.baseline,
        comments=source.comments, write_dir=str(root / "records"),
    )  # fmt: skip
    return load_physionet2021(root / "records", cache_dir=root / "cache"), root / "records"


class CountingDataset(EcgTrainingDataset):
    """Records which (epoch, row) every read draws."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.draws = []

    def __getitems__(self, indices):  # what the DataLoader calls (and `__getitem__` too)
        self.draws += [(self.epoch, int(index)) for index in indices]
        return super().__getitems__(indices)


def assert_one_crop_per_record_per_epoch(draws, num_records, epochs):
    per_epoch = Counter(epoch for epoch, _ in draws)
    assert per_epoch == dict.fromkeys(range(epochs), num_records)
    for epoch in range(epochs):
        assert sorted(index for e, index in draws if e == epoch) == list(range(num_records))


# ------------------------------------------------------------------------------------------------------------ PMA gate


def test_a_new_pma_classifier_weighs_every_layer_equally(tmp_path):
    config = EcgPmaConfig.from_preset("tiny", aggregation="pma", num_labels=3, num_hidden_layers=5)
    signals = torch.cat([torch.randn(3, 12, 1000) * 5, torch.zeros(1, 12, 1000)])
    fresh = EcgPmaForSequenceClassification(config).eval()
    EcgPmaForPreTraining(config).save_pretrained(tmp_path)
    from_pretraining = EcgPmaForSequenceClassification.from_pretrained(tmp_path, num_labels=3, aggregation="pma")
    for model in (fresh, from_pretraining.eval()):
        weights = model(signals).layer_weights
        torch.testing.assert_close(weights, torch.full_like(weights, 1 / 5), atol=0, rtol=0)
    ppa = EcgPmaForSequenceClassification.from_pretrained(tmp_path, num_labels=3, aggregation="ppa").eval()
    ppa.load_state_dict(from_pretraining.state_dict(), strict=False)
    torch.testing.assert_close(from_pretraining(signals).logits, ppa(signals).logits)


@pytest.fixture(scope="module")
def tiny_windows(tmp_path_factory):
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path_factory.mktemp("cache"))
    config = EcgPmaConfig.from_preset("tiny")
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    pretrained = tmp_path_factory.mktemp("pretrained")
    EcgPmaForPreTraining(config).save_pretrained(pretrained)
    return raw, extract_features(raw, extractor, window_mode="sliding"), extractor, pretrained


@pytest.mark.parametrize("probe_gate", ["frozen", "train"])
def test_probe_gate_frozen_keeps_the_gate_bit_identical_and_train_moves_it(tmp_path, tiny_windows, probe_gate):
    raw, windows, extractor, pretrained = tiny_windows
    model = load_classifier(pretrained, id2label(raw), aggregation="pma", head_type="mlp")
    gate_before = {key: value.clone() for key, value in model.aggregator.gate.state_dict().items()}
    head_before = {key: value.clone() for key, value in model.classifier.state_dict().items()}
    args = reference_training_arguments("probe", str(tmp_path), num_train_epochs=2, per_device_train_batch_size=8)
    finetune(
        model, windows["train"], windows["validation"], args, "probe", None, extractor, quiet=True,
        probe_gate=probe_gate,
    )  # fmt: skip
    gate_after = model.aggregator.gate.state_dict()
    unchanged = [torch.equal(gate_after[key], value) for key, value in gate_before.items()]
    assert all(unchanged) if probe_gate == "frozen" else not all(unchanged)
    assert any(not torch.equal(model.classifier.state_dict()[key], value) for key, value in head_before.items())
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocol"]["probe_gate"] == probe_gate
    assert f"probe_gate: {probe_gate}" in (tmp_path / "README.md").read_text()


def test_cached_probe_starts_pma_uniform_and_can_freeze_the_gate(tiny_windows):
    _, _, _, pretrained = tiny_windows
    encoder = EcgPmaForPreTraining.from_pretrained(pretrained).ecg_pma
    probe = CachedProbe(encoder, "pma", None, 4, encoder.config.head_type, probe_gate="frozen")
    depth, hidden = encoder.config.num_hidden_layers, encoder.config.hidden_size
    weights = probe.aggregator(torch.randn(3, depth, hidden), torch.randn(3, hidden))[1]
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / depth), atol=0, rtol=0)
    assert not any(p.requires_grad for p in probe.aggregator.parameters())
    assert isinstance(probe.classifier.head, torch.nn.Sequential)  # the config's MLP head, as finetune probes


# ---------------------------------------------------------------------------------------------------- random crops


def test_training_crops_are_seeded_per_epoch_and_row(tmp_path):
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny", signal_length=500))
    splits, dropped = build_training_splits(raw, extractor, seed=5)
    train = splits["train"]
    assert dropped == {"train": [], "validation": [], "test": []}
    assert len(train) == len(raw["train"])  # one row per record, not one per window
    first = train[3]["signals"]
    assert first.shape == (12, 500) and first.dtype == torch.float32
    torch.testing.assert_close(first.mean(dim=-1), torch.zeros(12), atol=1e-5, rtol=0)  # standardised per lead
    again = build_training_splits(raw, extractor, seed=5)[0]["train"]
    assert torch.equal(again[3]["signals"], first)  # same seed, epoch, row: same crop, whatever was read before
    crops_over_epochs = []
    for epoch in range(4):
        train.set_epoch(epoch)
        crops_over_epochs.append(train[3]["signals"])
    assert len({tuple(crop[0, :5].tolist()) for crop in crops_over_epochs}) > 1  # a new crop each epoch
    # each crop is the extractor's window of the record at some start
    record = raw["train"].with_format("numpy")[3]
    windows = extractor(record["signal"].T, sampling_rate=500, window_mode="sliding", stride=1)["signals"]
    assert np.abs(windows - crops_over_epochs[1].numpy()).max(axis=(1, 2)).min() < 1e-5


def test_st_mem_training_crops_and_evaluation_crops_are_st_mem_s(tmp_path):
    from scipy import signal as scipy_signal
    from test_convert_st_mem import st_mem_model_input

    from ecg_pma.feature_extraction_ecg_pma import ST_MEM_PREPROCESSING

    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    config = EcgPmaConfig.from_preset("vit-s-st-mem")
    extractor = EcgPmaFeatureExtractor.from_model_config(config, **ST_MEM_PREPROCESSING)
    splits, _ = build_training_splits(raw, extractor, seed=4)
    validation = splits["validation"]
    assert len(validation) == 3 * len(raw["validation"])  # ST-MEM's 3 crops per 10 s record
    record_id = validation[0]["record_id"]
    expected = st_mem_model_input(shared_data_dir("physionet2021") / record_id)
    np.testing.assert_allclose(np.stack([validation[i]["signals"] for i in range(3)]), expected, atol=1e-5, rtol=0)

    train = splits["train"]
    train.set_epoch(2)
    crop = train[5]["signals"].numpy()
    start = int(np.random.default_rng([4, 2, 5]).integers(0, 251))
    signal, _ = wfdb.rdsamp(str(shared_data_dir("physionet2021") / train[5]["record_id"]))
    reference = scipy_signal.resample(signal.T.astype(np.float32), 2500, axis=1)[:, start : start + 2250]
    for btype, cutoff in (("highpass", 0.67), ("lowpass", 40)):
        sos = scipy_signal.butter(5, cutoff, btype=btype, fs=250, output="sos")
        reference = scipy_signal.sosfiltfilt(sos, reference)
    np.testing.assert_allclose(crop, (reference - reference.mean()) / reference.std(), atol=1e-5, rtol=0)


def test_short_records_are_dropped_padded_or_refused(challenge_with_a_short_record):
    raw, _ = challenge_with_a_short_record
    split = hash_split(SHORT_RECORD)
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    splits, dropped = build_training_splits(raw, extractor, short_records="drop")
    assert dropped[split] == [SHORT_RECORD] and sum(map(len, dropped.values())) == 1
    kept = [row["record_id"] for row in (splits[split].rows if split == "train" else splits[split])]
    assert SHORT_RECORD not in kept and len(kept) == len(raw[split]) - 1

    padded, listed = build_training_splits(raw, extractor, short_records="pad")
    assert listed[split] == [SHORT_RECORD]
    rows = padded[split]
    row = next(rows[i] for i in range(len(rows)) if rows[i]["record_id"] == SHORT_RECORD)
    signals = torch.as_tensor(np.asarray(row["signals"]))
    assert signals.shape == (12, 1000) and torch.all(signals[:, 600:] == 0) and signals[:, :600].abs().sum() > 0

    with pytest.raises(
        ValueError, match=rf"1 record\(s\) shorter than the 10 s the model needs: {SHORT_RECORD} \(6 s\)"
    ):
        build_training_splits(raw, extractor, short_records="raise")


def test_pretraining_and_finetuning_draw_one_crop_per_record_per_epoch(tmp_path, challenge_with_a_short_record):
    raw, _ = challenge_with_a_short_record
    config = EcgPmaConfig.from_preset("tiny")
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    splits, dropped = build_training_splits(raw, extractor, seed=1)
    assert dropped[hash_split(SHORT_RECORD)] == [SHORT_RECORD]
    protocol = {"short_records_dropped": dropped}
    batch = 4
    rows = splits["train"].rows  # a multiple of the batch size: no record falls into a dropped last batch
    train = CountingDataset(rows.select(range(len(rows) // batch * batch)), extractor, seed=1)
    num_records = len(train)

    result = pretrain(
        EcgPmaForPreTraining(config),
        train,
        PretrainingArguments(
            output_dir=str(tmp_path / "pretrained"), per_device_batch_size=batch, num_train_epochs=2,
            warmup_steps=1, save_steps=None, report_to=[], seed=1,
        ),
        extractor,
        protocol=protocol,
    )  # fmt: skip
    assert result.global_step == 2 * num_records // batch
    assert_one_crop_per_record_per_epoch(train.draws, num_records, epochs=2)
    saved = json.loads((tmp_path / "pretrained" / "pretraining_data.json").read_text())
    assert saved["short_records_dropped"][hash_split(SHORT_RECORD)] == [SHORT_RECORD]

    train.draws.clear()
    model = load_classifier(tmp_path / "pretrained", id2label(raw), aggregation="pma")
    args = reference_training_arguments(
        "finetune", str(tmp_path / "finetuned"), num_train_epochs=2, per_device_train_batch_size=batch, seed=1
    )
    finetune(
        model, train, splits["validation"], args, "finetune", splits["test"], extractor, quiet=True, protocol=protocol
    )
    assert_one_crop_per_record_per_epoch(train.draws, num_records, epochs=2)
    results = json.loads((tmp_path / "finetuned" / "results.json").read_text())
    assert results["protocol"]["short_records_dropped"][hash_split(SHORT_RECORD)] == [SHORT_RECORD]
    assert "short_records_dropped:" in (tmp_path / "finetuned" / "README.md").read_text()


@pytest.mark.slow
def test_cli_trains_on_random_crops_and_reports_the_dropped_record(tmp_path, challenge_with_a_short_record):
    import subprocess
    import sys

    _, records = challenge_with_a_short_record
    data = ["--data", records, "--data-format", "physionet2021", "--cache-dir", tmp_path / "cache"]

    def ecg_pma(*args):
        return subprocess.run(
            [sys.executable, "-m", "ecg_pma.cli", *map(str, args)], capture_output=True, text=True, timeout=600
        )

    pretrained = ecg_pma(
        "pretrain", *data, "--preset", "tiny", "--output-dir", tmp_path / "pretrained", "--per-device-train-batch-size", "8",
        "--num-train-epochs", "1", "--warmup-steps", "1", "--save-steps", "0",
    )  # fmt: skip
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    assert SHORT_RECORD in pretrained.stderr  # logged
    saved = json.loads((tmp_path / "pretrained" / "pretraining_data.json").read_text())
    assert saved["short_records_dropped"][hash_split(SHORT_RECORD)] == [SHORT_RECORD]
    assert saved["training_windows"].startswith("one random crop per record per epoch")
    probed = ecg_pma(
        "finetune", *data, "--model", tmp_path / "pretrained", "--output-dir", tmp_path / "probed", "--mode", "probe",
        "--aggregation", "pma", "--probe-gate", "frozen", "--augment", "--num-train-epochs", "1",
        "--per-device-train-batch-size", "8",
        "--single-class-auroc", "half",
    )  # fmt: skip
    assert probed.returncode == 0, probed.stderr[-3000:]
    protocol = json.loads((tmp_path / "probed" / "results.json").read_text())["protocol"]
    assert protocol["probe_gate"] == "frozen" and protocol["macro_auroc_single_class_labels"] == "half"
    assert protocol["augmentation"].startswith("RandAugment(") and protocol["label_set"] == "scored"
    card = (tmp_path / "probed" / "README.md").read_text()
    for choice in ("probe_gate: frozen", "training_windows: one random crop", "label_set: scored", "augmentation"):
        assert choice in card


# ---------------------------------------------------------------------------------------------------- augmentation


def test_each_augmentation_is_seeded_and_does_what_st_mem_defines():
    signals = torch.randn(12, 1000, generator=torch.Generator().manual_seed(0))

    def run(name, seed=0):
        return OPERATIONS[name](signals, 10, torch.Generator().manual_seed(seed))

    for name in OPERATIONS:
        assert run(name).shape == signals.shape and torch.equal(run(name), run(name)), name
    assert torch.equal(run("flip"), -signals)
    erased = run("erase")
    assert ((erased == 0).all(dim=1)).sum() == 1 and ((erased != signals).any(dim=1)).sum() == 1
    cut = [(run("cutout", seed) == 0).all(dim=0).nonzero().flatten() for seed in range(20)]
    for zeros in cut:
        assert len(zeros) <= 300 and (len(zeros) == 0 or zeros[-1] - zeros[0] + 1 == len(zeros))  # one span, <= 30 %
    dropped = [(run("drop", seed) == 0).all(dim=0).sum() for seed in range(20)]
    assert max(dropped) < 300 and len(set(map(int, dropped))) > 1
    sine = run("sine") - signals
    time = torch.arange(1000) / 1000
    torch.testing.assert_close(sine, (0.3 * torch.sin(2 * torch.pi * time / 0.5)).expand(12, -1))
    for name in ("partial_sine", "partial_white_noise"):
        changed = (run(name, 4) != signals).any(dim=0)
        assert changed.sum() <= 300
    shifted = run("shift", 1)
    offset = int((shifted == 0).all(dim=0).sum())
    assert 0 < offset <= 300
    assert torch.equal(shifted[:, offset:], signals[:, :-offset]) or torch.equal(
        shifted[:, :-offset], signals[:, offset:]
    )


def test_rand_augment_applies_two_distinct_operations_with_probability_one_half():
    signals = torch.randn(12, 500)
    augment = RandAugment()
    outputs = [augment(signals, torch.Generator().manual_seed(seed)) for seed in range(200)]
    unchanged = sum(torch.equal(output, signals) for output in outputs)
    assert 25 <= unchanged <= 75  # both operations skipped: p = 0.25
    assert torch.equal(augment(signals, torch.Generator().manual_seed(7)), outputs[7])
    assert all(torch.equal(RandAugment(probability=0)(signals, torch.Generator()), signals) for _ in range(3))
    with pytest.raises(ValueError, match="Unknown augmentations"):
        RandAugment(operations=["mixup"])


def test_training_rows_are_augmented_reproducibly(tmp_path):
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    plain, _ = build_training_splits(raw, extractor, seed=2)
    augmented, _ = build_training_splits(raw, extractor, seed=2, augment=RandAugment(probability=1.0))
    again, _ = build_training_splits(raw, extractor, seed=2, augment=RandAugment(probability=1.0))
    assert all(not torch.equal(augmented["train"][i]["signals"], plain["train"][i]["signals"]) for i in range(5))
    assert all(torch.equal(augmented["train"][i]["signals"], again["train"][i]["signals"]) for i in range(5))


# ------------------------------------------------------------------------------------------------ labels and AUROC


def test_macro_auroc_convention_for_a_label_with_one_class():
    references = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predictions = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.7, 0.9, 0.2], [0.2, 0.1, 0.4]])
    metric = load_ecg_multilabel()
    excluded = metric.compute(predictions=predictions, references=references)
    half = metric.compute(predictions=predictions, references=references, single_class_auroc="half")
    assert excluded["macro_auroc"] == pytest.approx(1.0) and excluded["num_scored_labels"] == 2
    assert half["macro_auroc"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)


def test_ptbxl_defaults_to_all_71_statements_and_can_keep_unlabelled_records(tmp_path):
    root = shared_data_dir("ptbxl-mini")
    default = load_records("ptbxl", root, missing="skip", cache_dir=tmp_path)
    assert len(id2label(default)) == 71
    form = {"label_set": "form", "sampling_rate": 500, "missing": "skip", "cache_dir": tmp_path}
    dropped = load_records("ptbxl", root, **form)
    kept = load_records("ptbxl", root, **form, drop_unlabeled=False)
    assert len(dropped["train"]) == 0 and len(kept["train"]) == 1  # ecg 6009 (NORM, SR) has no form statement
    assert kept["train"][0]["labels"] == [0.0] * 19


def test_an_extractor_saved_before_the_st_mem_settings_keeps_its_old_behaviour(tmp_path):
    """A `preprocessor_config.json` without the new keys: one order-2 band-pass on the record, then per-lead z-score."""
    from scipy import signal as scipy_signal

    old_settings = {
        "feature_extractor_type": "EcgPmaFeatureExtractor", "feature_size": 12, "sampling_rate": 250,
        "signal_length": 2250, "do_filter": True, "low_cut_hz": 0.67, "high_cut_hz": 40.0, "filter_order": 2,
        "do_normalize": True, "flat_lead_threshold": 1e-6, "window_mode": "center", "stride": None,
        "min_duration": None, "nan_policy": "raise", "allow_missing_leads": False, "padding_value": 0.0,
        "lead_names": ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"],
        "padding_side": "right", "return_attention_mask": True,
    }  # fmt: skip
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(old_settings))
    extractor = EcgPmaFeatureExtractor.from_pretrained(tmp_path)
    assert (extractor.filter_type, extractor.normalization, extractor.resample_method) == (
        "bandpass",
        "per_lead",
        "polyphase",
    )
    assert not extractor.crop_before_filter and extractor.segment_seconds is None
    record = shared_data_dir("physionet2021") / "E07501"
    (window,) = extractor(str(record))["signals"]
    signal = scipy_signal.resample_poly(wfdb.rdsamp(str(record))[0].T, 1, 2, axis=1)
    sos = scipy_signal.butter(2, [0.67, 40.0], btype="bandpass", fs=250, output="sos")
    signal = scipy_signal.sosfiltfilt(sos, signal, axis=1)[:, 125:2375]
    expected = (signal - signal.mean(axis=1, keepdims=True)) / signal.std(axis=1, keepdims=True)
    np.testing.assert_allclose(window, expected, atol=1e-5, rtol=0)
