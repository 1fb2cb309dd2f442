"""Real challenge records cut to fewer leads (each challenge lead set, one lead, an MIT-BIH-style pair) through the
feature extractor, the pipeline and `predict_records`."""

import numpy as np
import pytest
import torch
import wfdb
from conftest import shared_data_dir
from scipy import signal as scipy_signal
from transformers import pipeline

from ecg_pma import LEAD_SETS, EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.feature_extraction_ecg_pma import ST_MEM_PREPROCESSING
from ecg_pma.serving.inference import predict_records


RECORD = "HR06009"  # PTB-XL ecg_id 6009, 500 Hz, 10 s


def cut_record(tmp_path, leads, name=None, sig_name=None, fs=None, samples=None):
    """Writes the real record with only `leads` (same digital samples and gains), optionally renamed / resampled /
    cut to its first `samples`."""
    source = wfdb.rdrecord(str(shared_data_dir("physionet2021") / RECORD), physical=False)
    columns = [source.sig_name.index(lead) for lead in leads]
    name = name or f"{RECORD}_{len(leads)}leads"
    if fs is None:
        wfdb.wrsamp(
            name,
            fs=source.fs,
            units=[source.units[c] for c in columns],
            sig_name=list(sig_name or leads),
            d_signal=source.d_signal[:samples, columns],
            adc_gain=[source.adc_gain[c] for c in columns],
            baseline=[source.baseline[c] for c in columns],
            fmt=["16"] * len(columns),
            write_dir=str(tmp_path),
        )
    else:  # e.g. MIT-BIH's 360 Hz
        physical = wfdb.rdrecord(str(shared_data_dir("physionet2021") / RECORD)).p_signal[:, columns]
        resampled = scipy_signal.resample_poly(physical, fs, source.fs, axis=0)
        wfdb.wrsamp(
            name,
            fs=fs,
            units=["mV"] * len(columns),
            sig_name=list(sig_name),
            p_signal=resampled,
            fmt=["212"] * len(columns),
            write_dir=str(tmp_path),
        )
    return str(tmp_path / name)


@pytest.fixture(scope="module")
def classifier():
    config = EcgPmaConfig.from_preset(
        "tiny", aggregation="pma", head_type="linear", id2label={0: "NSR", 1: "AF", 2: "STach"}
    )
    torch.manual_seed(0)
    model = EcgPmaForSequenceClassification(config).eval()
    with torch.no_grad():  # a gate that is not uniform, whatever the initialisation
        model.aggregator.gate.gate[-1].weight.normal_(std=1.0)
    return model


def full_record():
    return str(shared_data_dir("physionet2021") / RECORD)


@pytest.mark.parametrize("lead_set", ["12", "6", "4", "3", "2"])
def test_challenge_lead_sets_through_extractor_and_pipeline(tmp_path, classifier, lead_set):
    leads = LEAD_SETS[lead_set]
    path = cut_record(tmp_path, leads)
    extractor = EcgPmaFeatureExtractor.from_model_config(classifier.config, required_leads=lead_set)
    features = extractor(path, window_mode="sliding", return_tensors="pt")
    expected_mask = torch.tensor([name in leads for name in classifier.config.lead_names])
    assert torch.equal(features["lead_mask"], expected_mask.expand(len(features["signals"]), -1))
    full = extractor(full_record(), window_mode="sliding", return_tensors="pt")
    # the cut record's present leads are exactly the full record's; its absent slots are padding
    torch.testing.assert_close(features["signals"][:, expected_mask], full["signals"][:, expected_mask])
    assert not features["signals"][:, ~expected_mask].any()

    classify = pipeline("ecg-classification", model=classifier, feature_extractor=extractor)
    scores = {entry["label"]: entry["score"] for entry in classify(path, top_k=3)}
    with torch.no_grad():
        # the full record with the other leads masked out: the same prediction as the cut record
        expected = classifier(full["signals"], lead_mask=features["lead_mask"]).logits.sigmoid().mean(dim=0)
        if lead_set != "12":  # and not the 12-lead prediction
            assert not torch.allclose(expected, classifier(full["signals"]).logits.sigmoid().mean(dim=0), atol=1e-4)
    for index, label in classifier.config.id2label.items():
        assert scores[label] == pytest.approx(float(expected[index]), abs=1e-6)


def test_single_lead_record(tmp_path, classifier):
    path = cut_record(tmp_path, ["I"])
    with pytest.raises(ValueError, match=r"HR06009_1leads.*missing leads \['II', 'III'.*the record has \['I'\]"):
        EcgPmaFeatureExtractor.from_model_config(classifier.config)(path)
    extractor = EcgPmaFeatureExtractor.from_model_config(classifier.config, required_leads=["I"])
    (prediction,) = predict_records(classifier, extractor, [path])
    full = extractor(full_record(), window_mode="sliding", return_tensors="pt")
    lead_mask = torch.zeros(len(full["signals"]), 12, dtype=torch.bool)
    lead_mask[:, 0] = True
    with torch.no_grad():
        expected = classifier(full["signals"], lead_mask=lead_mask)
    probabilities = expected.logits.sigmoid().mean(dim=0)
    for index, label in classifier.config.id2label.items():
        assert prediction.probabilities[label] == pytest.approx(float(probabilities[index]), abs=1e-6)
    np.testing.assert_allclose(prediction.layer_weights, expected.layer_weights.mean(dim=0), atol=1e-6)


def test_mit_bih_style_record_needs_an_opt_in_alias(tmp_path, classifier):
    path = cut_record(tmp_path, ["II", "V1"], name="100", sig_name=["MLII", "V1"], fs=360)
    plain = EcgPmaFeatureExtractor.from_model_config(classifier.config, allow_missing_leads=True)
    with pytest.raises(ValueError, match=r"100.*unknown lead names \['MLII'\].*lead_aliases"):
        plain(path)

    extractor = EcgPmaFeatureExtractor.from_model_config(
        classifier.config, required_leads=["II", "V1"], lead_aliases={"MLII": "II"}
    )
    features = extractor(path, return_tensors="pt")
    assert [classifier.config.lead_names[i] for i in features["lead_mask"][0].nonzero()[:, 0]] == ["II", "V1"]
    reference = extractor(full_record(), return_tensors="pt")["signals"][0]
    for row in (1, 6):  # II and V1, read back from 360 Hz: the same waveform
        assert np.corrcoef(features["signals"][0, row], reference[row])[0, 1] > 0.99
    classify = pipeline("ecg-classification", model=classifier, feature_extractor=extractor)
    assert len(classify(path, top_k=3)) == 3


def test_record_without_any_model_lead_names_its_leads(tmp_path):
    path = cut_record(tmp_path, ["V1", "V2"])
    extractor = EcgPmaFeatureExtractor(lead_names=["I", "II"], allow_missing_leads=True)
    with pytest.raises(ValueError, match=r"HR06009_2leads.*none of the model's leads \['I', 'II'\].*\['V1', 'V2'\]"):
        extractor(path)


def test_required_lead_set_is_enforced_and_saved(tmp_path, classifier):
    path = cut_record(tmp_path, LEAD_SETS["4"])
    extractor = EcgPmaFeatureExtractor.from_model_config(
        classifier.config, required_leads="6", lead_aliases={"ML1": "I"}
    )
    with pytest.raises(ValueError, match=r"missing leads \['aVR', 'aVL', 'aVF'\]"):
        extractor(path)
    extractor.save_pretrained(tmp_path / "saved")
    loaded = EcgPmaFeatureExtractor.from_pretrained(tmp_path / "saved")
    assert loaded.required_leads == "6" and loaded.lead_aliases == {"ML1": "I"}
    with pytest.raises(ValueError, match="not one of the model's leads"):
        EcgPmaFeatureExtractor(lead_aliases={"MLII": "Z"})
    with pytest.raises(ValueError, match=r"\['X'\]"):
        EcgPmaFeatureExtractor(required_leads=["I", "X"])


def test_predict_command_reads_a_holter_style_record_with_an_alias(tmp_path, classifier):
    import json
    import subprocess
    import sys

    classifier.save_pretrained(tmp_path / "model")
    EcgPmaFeatureExtractor.from_model_config(classifier.config).save_pretrained(tmp_path / "model")
    path = cut_record(tmp_path, ["II", "V1"], name="100", sig_name=["MLII", "V1"], fs=360)

    def predict(*options):
        command = [sys.executable, "-m", "ecg_pma.cli", "predict", str(tmp_path / "model"), path, "--json", *options]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    refused = predict()
    assert refused.returncode == 2 and "unknown lead names ['MLII']" in refused.stderr
    result = predict("--lead-alias", "MLII=II", "--required-leads", "II,V1")
    assert result.returncode == 0, result.stderr[-3000:]
    (prediction,) = json.loads(result.stdout)
    extractor = EcgPmaFeatureExtractor.from_model_config(
        classifier.config, required_leads="II,V1", lead_aliases={"MLII": "II"}
    )
    (expected,) = predict_records(classifier, extractor, [path])
    assert prediction["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    bad = predict("--lead-alias", "MLII")
    assert bad.returncode == 2 and "expected NAME=LEAD" in bad.stderr


# ------------------------------------------------------------------------- lead sets equal the records cut to them

# Every extractor setting a lead set must survive: the z-score per lead or over the window's present leads, the
# band-pass on the record before cropping or on each crop, and ST-MEM's preprocessing (FFT resampling, 10 s segments,
# high-pass + low-pass on each crop, one z-score per window, 3 crops). 5 s windows, so cropping before or after the
# band-pass differs on the 10 s record.
CUT_SETTINGS = {
    "per lead, band-pass before cropping": {"do_filter": True},
    "per lead, band-pass after cropping": {"do_filter": True, "crop_before_filter": True},
    "per window, band-pass before cropping": {"normalization": "per_window", "do_filter": True},
    "per window, band-pass after cropping": {
        "normalization": "per_window",
        "do_filter": True,
        "crop_before_filter": True,
    },
    "ST-MEM": ST_MEM_PREPROCESSING,
}
CUT_LEAD_SETS = ["6", "4", "3", "2", ["V1"]]


def cut_study(setting: str):
    """A tiny classifier, its extractor for `setting` (records may lack leads, as cut records do) and the window
    mode evaluation uses with it."""
    if setting == "ST-MEM":
        config = EcgPmaConfig.from_preset("tiny", sampling_rate=250, signal_length=2250, patch_size=75)
    else:
        config = EcgPmaConfig.from_preset("tiny", signal_length=500)
    config.num_labels = 3
    torch.manual_seed(0)
    model = EcgPmaForSequenceClassification(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config, allow_missing_leads=True, **CUT_SETTINGS[setting])
    return model, extractor, "n_crop" if setting == "ST-MEM" else "sliding"


def lead_names_of(lead_set) -> list[str]:
    return list(LEAD_SETS[lead_set]) if isinstance(lead_set, str) else list(lead_set)


def cut_record_features(tmp_path, extractor, window_mode, lead_set) -> dict:
    """The real record written with only `lead_set`'s leads and read by the extractor."""
    leads = lead_names_of(lead_set)
    path = cut_record(tmp_path, leads, name=f"{RECORD}_{'-'.join(leads)}")
    return extractor(path, window_mode=window_mode, return_tensors="pt")


def window_rows(features) -> list[dict]:
    return [
        {"signals": signals, "lead_mask": lead_mask, "labels": torch.zeros(3), "record_id": RECORD}
        for signals, lead_mask in zip(features["signals"], features["lead_mask"])
    ]


@pytest.mark.parametrize("setting", list(CUT_SETTINGS))
def test_evaluate_and_probe_layers_on_a_lead_set_equal_the_cut_record(tmp_path, setting):
    from datasets import Dataset

    from ecg_pma.training import EcgDataCollator
    from ecg_pma.training.probe_layers import encode_layers

    model, extractor, window_mode = cut_study(setting)
    full = extractor(full_record(), window_mode=window_mode, return_tensors="pt")
    rows = window_rows(full)
    dataset = Dataset.from_list([{**row, "signals": row["signals"].numpy()} for row in rows])
    for lead_set in CUT_LEAD_SETS:
        cut = cut_record_features(tmp_path, extractor, window_mode, lead_set)
        # `evaluate --lead-sets` (and finetune's per-lead-set test scores) give the model what this collator gives:
        # the cut record's features and lead mask
        batch = EcgDataCollator(model.config, lead_sets=[lead_set], feature_extractor=extractor)(rows)
        torch.testing.assert_close(batch["signals"], cut["signals"], atol=1e-5, rtol=0)
        assert torch.equal(batch["lead_mask"], cut["lead_mask"])
        # `probe-layers --lead-set` encodes the rows cut the same way
        with torch.no_grad():
            cache = encode_layers(model.ecg_pma, dataset, lead_set=lead_set, feature_extractor=extractor)
            encoded = model.ecg_pma(cut["signals"], lead_mask=cut["lead_mask"])
        torch.testing.assert_close(cache.layer_representations, encoded.layer_representations, atol=1e-5, rtol=0)
        torch.testing.assert_close(cache.input_representation, encoded.input_representation, atol=1e-5, rtol=0)
        if extractor.normalization == "per_window":  # masking alone would not do: the absent leads counted
            assert not torch.allclose(full["signals"][cut["lead_mask"]], cut["signals"][cut["lead_mask"]], atol=1e-2)


@pytest.mark.parametrize("setting", list(CUT_SETTINGS))
def test_training_lead_set_draws_equal_the_cut_records(tmp_path, setting):
    from ecg_pma.data.crops import model_rate_rows, random_crop
    from ecg_pma.training import EcgDataCollator

    model, extractor, window_mode = cut_study(setting)
    full = wfdb.rdrecord(full_record())
    draws = EcgDataCollator(model.config, False, CUT_LEAD_SETS, seed=1, feature_extractor=extractor)

    def crops(record, seed):
        """Training crops of a record (`EcgTrainingDataset`'s: model-rate rows, one random crop each)."""
        (row,) = model_rate_rows(extractor, "float32", RECORD, record.p_signal, record.fs, record.sig_name, [])
        rng = np.random.default_rng(seed)
        return {"signals": random_crop(extractor, row, rng), "lead_mask": torch.tensor(row["present_leads"])}

    # the sliding / n-crop windows and the random crops of the full record, four times each: every lead set is drawn
    windows = window_rows(extractor(full_record(), window_mode=window_mode, return_tensors="pt"))
    batch_rows = [dict(row) for row in windows] * 4 + [crops(full, seed) for seed in range(16)]
    batch = draws(batch_rows)
    drawn = set()
    for index, lead_mask in enumerate(batch["lead_mask"]):
        lead_set = next(
            s for s in CUT_LEAD_SETS if lead_mask.tolist() == [n in lead_names_of(s) for n in model.config.lead_names]
        )
        drawn.add(str(lead_set))
        leads = lead_names_of(lead_set)
        path = cut_record(tmp_path, leads, name=f"{RECORD}_{'-'.join(leads)}")
        if index < len(windows) * 4:
            expected = extractor(path, window_mode=window_mode, return_tensors="pt")["signals"][index % len(windows)]
        else:
            expected = crops(wfdb.rdrecord(path), index - len(windows) * 4)["signals"]
        torch.testing.assert_close(batch["signals"][index], expected, atol=1e-5, rtol=0)
    assert drawn == {str(lead_set) for lead_set in CUT_LEAD_SETS}


def test_per_window_z_score_of_a_record_lacking_leads_is_over_its_leads(tmp_path):
    """A record that truly lacks leads: one mean and standard deviation over the leads it has, the absent slots
    (padding) left out, in the features and in the training crops alike."""
    from ecg_pma.data.crops import model_rate_rows, random_crop

    extractor = EcgPmaFeatureExtractor(allow_missing_leads=True, normalization="per_window", padding_value=0.0)
    path = cut_record(tmp_path, ["I", "V1", "V5"])
    features = extractor(path, return_tensors="pt")
    present = features["signals"][0][features["lead_mask"][0]].double()
    assert present.shape[0] == 3
    assert float(present.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(present.std(correction=0)) == pytest.approx(1.0, abs=1e-6)
    record = wfdb.rdrecord(path)
    (row,) = model_rate_rows(extractor, "float64", "cut", record.p_signal, record.fs, record.sig_name, [])
    crop = random_crop(extractor, row, np.random.default_rng(0))[torch.tensor(row["present_leads"])].double()
    assert float(crop.std(correction=0)) == pytest.approx(1.0, abs=1e-6)


def test_lead_set_of_a_padded_short_record_equals_the_cut_record(tmp_path):
    """A 7 s record in 10 s windows (`min_duration`): padded at the end after the z-score; the lead set is
    standardised over the recorded samples only, as the cut record is."""
    from ecg_pma.training import EcgDataCollator

    config = EcgPmaConfig.from_preset("tiny")
    extractor = EcgPmaFeatureExtractor.from_model_config(
        config, allow_missing_leads=True, normalization="per_window", min_duration=5.0, padding_value=-1.0
    )
    full = extractor(cut_record(tmp_path, LEAD_SETS["12"], name="short", samples=3500), return_tensors="pt")
    assert (full["signals"][0, :, 700:] == -1.0).all()  # padding
    cut = extractor(cut_record(tmp_path, LEAD_SETS["3"], name="short_3", samples=3500), return_tensors="pt")
    batch = EcgDataCollator(config, False, lead_sets=["3"], feature_extractor=extractor)(window_rows(full))
    torch.testing.assert_close(batch["signals"], cut["signals"], atol=1e-5, rtol=0)
