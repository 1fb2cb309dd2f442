"""
Dead leads are absent leads: a lead that is entirely NaN, or flat over the whole record (an unplugged electrode), is
read as if the record did not have it wherever leads may be missing, through the extractor, the model and the
commands; NaN samples of live leads follow `nan_policy` (`--nan-policy`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import wfdb
from test_cli import ecg_pma
from test_corpora import write_mimic

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.constants import NAN_POLICIES
from ecg_pma.feature_extraction_ecg_pma import NAN_POLICIES as EXTRACTOR_NAN_POLICIES


CONFIG = EcgPmaConfig.from_preset("tiny", id2label={0: "a", 1: "b"})
LEADS = list(CONFIG.lead_names)


def record(seed: int = 0) -> np.ndarray:
    """A 10 s 500 Hz `(12, 5000)` signal in mV."""
    return np.random.default_rng(seed).normal(0, 0.3, size=(12, 5000))


def kill(signal: np.ndarray, lead: int, how: str) -> np.ndarray:
    dead = signal.copy()
    dead[lead] = np.nan if how == "nan" else 0.25  # flat: a constant offset, as an unplugged electrode reads
    return dead


def test_nan_policy_choices_agree():
    assert NAN_POLICIES == EXTRACTOR_NAN_POLICIES


@pytest.mark.parametrize("how", ["nan", "flat"])
@pytest.mark.parametrize("options", [{"allow_missing_leads": True}, {"required_leads": "2"}])
def test_a_dead_lead_reads_as_the_record_without_it(how, options):
    """Features and model outputs of a record with a dead lead equal those of the record with that lead removed."""
    extractor = EcgPmaFeatureExtractor.from_model_config(CONFIG, window_mode="sliding", **options)
    signal, lead = record(), LEADS.index("V3")
    dead = extractor(kill(signal, lead, how), sampling_rate=500, lead_names=LEADS, return_tensors="pt")
    removed = extractor(
        np.delete(signal, lead, axis=0),
        sampling_rate=500,
        lead_names=LEADS[:lead] + LEADS[lead + 1 :],
        return_tensors="pt",
    )
    assert not dead["lead_mask"][:, lead].any() and dead["lead_mask"].sum() == removed["lead_mask"].sum()
    torch.testing.assert_close(dead["signals"], removed["signals"], rtol=0, atol=0)
    torch.testing.assert_close(dead["lead_mask"], removed["lead_mask"], rtol=0, atol=0)
    torch.manual_seed(0)
    model = EcgPmaForSequenceClassification(CONFIG).eval()
    with torch.inference_mode():
        outputs = [model(item["signals"], lead_mask=item["lead_mask"]).logits for item in (dead, removed)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_dead_leads_where_every_lead_is_required():
    extractor = EcgPmaFeatureExtractor.from_model_config(CONFIG, nan_policy="interpolate")
    with pytest.raises(
        ValueError, match=r"input 0: lead\(s\) \['III'\] have no finite sample .*--allow-missing-leads"
    ):
        extractor(kill(record(), 2, "nan"), sampling_rate=500)
    # a required flat lead stays present (standardised to zeros), as before
    features = extractor(kill(record(), 2, "flat"), sampling_rate=500)
    assert features["lead_mask"].all() and not features["signals"][:, 2].any()
    with pytest.raises(ValueError, match="every lead is dead"):
        EcgPmaFeatureExtractor.from_model_config(CONFIG, allow_missing_leads=True)(
            np.full((12, 5000), 0.1), sampling_rate=500
        )


def test_short_nan_runs_follow_the_nan_policy_beside_a_dead_lead():
    signal = kill(record(), 4, "nan")
    signal[1, 1000:1100] = np.nan  # 100 NaN samples in lead II
    with pytest.raises(ValueError, match=r"100 NaN/inf samples \(first in lead II at sample 1000\)"):
        EcgPmaFeatureExtractor.from_model_config(CONFIG, allow_missing_leads=True)(signal, sampling_rate=500)
    extractor = EcgPmaFeatureExtractor.from_model_config(CONFIG, allow_missing_leads=True, nan_policy="interpolate")
    features = extractor(signal, sampling_rate=500)
    assert np.isfinite(features["signals"]).all()
    assert features["lead_mask"][0].tolist() == [lead != 4 for lead in range(12)]


# ------------------------------------------------------------------------------------ a MIMIC-IV-ECG download

DEAD_LEAD_STUDY, FLAT_LEAD_STUDY, NAN_RUN_STUDY = "40000000", "40010000", "40020000"


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    """Six studies in the MIMIC-IV-ECG layout: one with lead III all NaN, one with V4 flat, one with 100 NaN samples."""
    root = tmp_path_factory.mktemp("mimic")
    subjects = {f"1000{i:04d}": [f"40{i:02d}000{j}" for j in range(2)] for i in range(3)}
    signals = write_mimic(root, subjects)
    for study, lead, how in (
        (DEAD_LEAD_STUDY, "III", "nan"),
        (FLAT_LEAD_STUDY, "V4", "flat"),
        (NAN_RUN_STUDY, "II", "run"),
    ):
        folder = next(root.glob(f"files/*/*/s{study}"))
        header = wfdb.rdheader(str(folder / study))
        signal = signals[study].copy()
        row = header.sig_name.index(lead)
        if how == "run":
            signal[1000:1100, row] = np.nan
        else:
            signal[:, row] = np.nan if how == "nan" else 0.25
        wfdb.wrsamp(
            study,
            fs=500,
            units=["mV"] * 12,
            sig_name=header.sig_name,
            p_signal=signal,
            fmt=["16"] * 12,
            adc_gain=[1000.0] * 12,
            baseline=[0] * 12,
            write_dir=str(folder),
        )  # fmt: skip: a fixed gain, as MIMIC-IV-ECG's headers give (wfdb cannot derive one from an all-NaN lead)
    return root


def pretrain_arguments(mimic, output, *extra):
    return [
        "pretrain", "--data", mimic, "--data-format", "mimic-iv-ecg", "--all-splits", "--preset", "tiny",
        "--output-dir", output, "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--save-steps", "0",
        *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_pretrain_refuses_a_dead_lead_by_default_naming_the_study_and_the_options(mimic, tmp_path):
    result = ecg_pma(*pretrain_arguments(mimic, tmp_path / "out", "--cache-dir", tmp_path / "cache"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{DEAD_LEAD_STUDY}: lead(s) ['III'] have no finite sample" in result.stderr
    assert "--allow-missing-leads" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True])
def test_pretrain_reads_dead_leads_as_absent_and_repairs_nan_runs(mimic, tmp_path, streaming):
    options = ["--allow-missing-leads", "--nan-policy", "interpolate"]
    options += ["--streaming", "--shuffle-buffer", "4"] if streaming else ["--cache-dir", tmp_path / "cache"]
    result = ecg_pma(*pretrain_arguments(mimic, tmp_path / "out", *options))
    assert result.returncode == 0, result.stderr[-3000:]
    protocol = json.loads((tmp_path / "out" / "pretraining_data.json").read_text())
    assert protocol["nan_policy"] == "interpolate"
    assert protocol["missing_leads"] == "allowed (dead leads read as absent)"
    assert (tmp_path / "out" / "model.safetensors").is_file()


def dead_lead_record_and_without_it(mimic, folder):
    """The study whose lead III is all NaN, and the same record written without lead III (11 leads) into `folder`."""
    dead = next(mimic.glob(f"files/*/*/s{DEAD_LEAD_STUDY}")) / DEAD_LEAD_STUDY
    source = wfdb.rdrecord(str(dead))
    keep = [row for row, lead in enumerate(source.sig_name) if lead != "III"]
    wfdb.wrsamp(
        "without_iii", fs=500, units=["mV"] * 11, sig_name=[source.sig_name[row] for row in keep],
        p_signal=source.p_signal[:, keep], fmt=["16"] * 11, adc_gain=[1000.0] * 11, baseline=[0] * 11,
        write_dir=str(folder),
    )  # fmt: skip
    return dead, folder / "without_iii"


@pytest.mark.slow
def test_predict_on_a_dead_lead_equals_predict_without_the_lead(mimic, tmp_path):
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    EcgPmaForSequenceClassification(CONFIG).save_pretrained(model_dir)
    EcgPmaFeatureExtractor.from_model_config(CONFIG).save_pretrained(model_dir)
    dead, without = dead_lead_record_and_without_it(mimic, tmp_path)
    refused = ecg_pma("predict", model_dir, dead, "--json")
    assert refused.returncode != 0 and "have no finite sample" in refused.stderr
    result = ecg_pma("predict", model_dir, dead, without, "--json", "--allow-missing-leads")
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads(result.stdout)
    assert predictions[0]["probabilities"] == predictions[1]["probabilities"]


@pytest.mark.slow
def test_finetune_on_dead_leads_and_nan_runs_then_predicts_a_dead_lead_as_the_record_without_it(
    mimic, tmp_path, capsys
):
    """A real `ecg-pma finetune` (tiny model, one epoch) on the six studies, labelled through a CSV (the `wfdb`
    format): refused by default naming the study, finished with the lead options; the classifier it trained reads the
    dead-lead study as that record without lead III."""
    from test_cli_errors import run_cli

    studies = sorted(path.stem for path in mimic.glob("files/*/*/s*/*.hea"))
    splits = {DEAD_LEAD_STUDY: "train", FLAT_LEAD_STUDY: "train", NAN_RUN_STUDY: "train"}
    others = [study for study in studies if study not in splits]
    splits.update(zip(others, ["train", "validation", "test"]))
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(
        "record,labels,split\n"
        + "".join(
            f"{next(mimic.glob(f'files/*/*/s{study}')).relative_to(mimic)}/{study},{'ab'[number % 2]},{splits[study]}\n"
            for number, study in enumerate(studies)
        )
    )
    pretrained = tmp_path / "pretrained"
    torch.manual_seed(0)
    EcgPmaForPreTraining(CONFIG).save_pretrained(pretrained)
    EcgPmaFeatureExtractor.from_model_config(CONFIG).save_pretrained(pretrained)
    arguments = [
        "finetune", "--data", mimic, "--data-format", "wfdb", "--labels-csv", labels_csv, "--model", pretrained,
        "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--aggregation", "pma",
        "--num-train-epochs", "1", "--per-device-train-batch-size", "2", "--disable-tqdm", "true",
    ]  # fmt: skip
    code, err = run_cli(capsys, *arguments)
    assert code == 2 and f"{DEAD_LEAD_STUDY}: lead(s) ['III'] have no finite sample" in err, err
    assert "--allow-missing-leads" in err
    result = ecg_pma(*arguments, "--allow-missing-leads", "--nan-policy", "interpolate")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "interpolate" in json.dumps(results) and "dead leads read as absent" in json.dumps(results)
    dead, without = dead_lead_record_and_without_it(mimic, tmp_path)
    predicted = ecg_pma("predict", tmp_path / "out", dead, without, "--json", "--allow-missing-leads")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    predictions = json.loads(predicted.stdout)
    assert predictions[0]["probabilities"] == predictions[1]["probabilities"]


def test_finetune_data_reads_dead_leads_as_absent(mimic, tmp_path):
    """`finetune`'s data path (every split, as training crops or evaluation windows) with the lead options."""
    from ecg_pma.commands.data_arguments import load_training_data
    from ecg_pma.commands.finetune import parse_finetune_arguments

    arguments = [
        "--data", mimic, "--data-format", "mimic-iv-ecg", "--model", ".", "--output_dir", tmp_path / "out",
        "--cache-dir", tmp_path / "cache", "--allow-missing-leads", "--nan-policy", "interpolate",
    ]  # fmt: skip
    namespace, _ = parse_finetune_arguments([str(argument) for argument in arguments])
    extractor = EcgPmaFeatureExtractor.from_model_config(CONFIG)
    _, splits, protocol = load_training_data(namespace.data_args, extractor)
    assert protocol["nan_policy"] == "interpolate" and not extractor.allow_missing_leads  # the model's own is kept
    masks = {}
    for split, rows in splits.items():
        table = rows.rows if split == "train" else rows
        column = "present_leads" if split == "train" else "lead_mask"
        if not len(table):  # a split the six studies' subjects do not hash into
            continue
        for record_id, mask in zip(table["record_id"], table[column]):
            masks[record_id] = np.asarray(mask).reshape(-1, 12)[0]
    assert masks[DEAD_LEAD_STUDY].tolist() == [lead != "III" for lead in LEADS]
    assert masks[FLAT_LEAD_STUDY].tolist() == [lead != "V4" for lead in LEADS]
    assert masks[NAN_RUN_STUDY].all()


def test_embed_reads_dead_leads_as_absent_and_repairs_nan_runs(mimic, tmp_path, capsys):
    """`ecg-pma embed` follows the lead options as every data command does: refused by default naming the study; with
    them the dead-lead study embeds as the same record without lead III (embedded from its 11 leads here)."""
    from datasets import Dataset
    from test_cli_errors import run_cli

    from ecg_pma import EcgPmaModel
    from ecg_pma.evaluation.embeddings import RecordEmbeddings, embed_records, evaluation_window_mode
    from ecg_pma.training.probe_layers import model_fingerprint

    model_dir = tmp_path / "model"
    torch.manual_seed(0)
    EcgPmaForPreTraining(CONFIG).save_pretrained(model_dir)
    EcgPmaFeatureExtractor.from_model_config(CONFIG).save_pretrained(model_dir)
    arguments = [
        "embed", "--data", mimic, "--data-format", "mimic-iv-ecg", "--model", model_dir,
        "--output", tmp_path / "embeddings.safetensors", "--cache-dir", tmp_path / "cache",
    ]  # fmt: skip
    code, err = run_cli(capsys, *arguments)
    assert code == 2 and f"{DEAD_LEAD_STUDY}': lead(s) ['III'] have no finite sample" in err, err
    code, err = run_cli(capsys, *arguments, "--allow-missing-leads", "--nan-policy", "interpolate")
    assert code == 0, err
    embedded = RecordEmbeddings.load(tmp_path / "embeddings.safetensors")
    assert len(embedded.record_ids) == 6

    _, without = dead_lead_record_and_without_it(mimic, tmp_path)
    source = wfdb.rdrecord(str(without))
    extractor = EcgPmaFeatureExtractor.from_pretrained(model_dir, allow_missing_leads=True)
    features = extractor(
        source.p_signal.T, sampling_rate=500, lead_names=source.sig_name,
        window_mode=evaluation_window_mode(extractor),
    )  # fmt: skip
    windows = Dataset.from_dict(
        {
            "record_id": ["without_iii"] * len(features["signals"]),
            "signals": list(features["signals"]),
            "lead_mask": list(features["lead_mask"]),
        }
    ).with_format("torch")
    encoder = EcgPmaModel.from_pretrained(model_dir)
    reference = embed_records(encoder, windows, tmp_path / "reference.safetensors", model_fingerprint(encoder))
    row = embedded.record_ids.index(DEAD_LEAD_STUDY)
    torch.testing.assert_close(embedded.layer_representations[row], reference.layer_representations[0])


@pytest.mark.parametrize("command", ["evaluate", "probe-layers"])
def test_evaluation_windows_read_dead_leads_as_absent(mimic, tmp_path, command):
    """`evaluate` and `probe-layers` read their windows (`load_windows`) with the lead options as `finetune` does."""
    from ecg_pma.cli import build_parser
    from ecg_pma.commands.data_arguments import load_windows

    arguments = [
        command, "--model", ".", "--data", mimic, "--data-format", "mimic-iv-ecg", "--cache-dir", tmp_path / "cache",
        "--allow-missing-leads", "--nan-policy", "interpolate",
        *(["--output-dir", tmp_path / "out"] if command == "probe-layers" else []),
    ]  # fmt: skip
    args = build_parser().parse_args([str(argument) for argument in arguments])
    _, windows = load_windows(args, EcgPmaFeatureExtractor.from_model_config(CONFIG))
    masks = {
        record_id: np.asarray(mask)
        for split in windows.values()
        if len(split)  # a split the six studies' subjects do not hash into has no columns
        for record_id, mask in zip(split["record_id"], split["lead_mask"])
    }
    assert masks[DEAD_LEAD_STUDY].tolist() == [lead != "III" for lead in LEADS]
    assert masks[FLAT_LEAD_STUDY].tolist() == [lead != "V4" for lead in LEADS]
    assert masks[NAN_RUN_STUDY].all() and len(masks) == 6
