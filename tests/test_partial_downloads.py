"""
Partial downloads through `finetune` and `predict`, on corpora written in the published layouts: a CODE-15% part file
absent or cut short, MIMIC-IV-ECG records absent (header and signal) or with their signal file absent or cut short.
`finetune` stops naming the file or record and the option, or with `--skip-missing` / `--bad-records skip` trains on
the rest, counting what it left out per corpus and split in `results.json` and listing it in
`OUTPUT/skipped_records.csv`, and stops past `--max-bad-share`. `predict` screens a MIMIC-IV-ECG folder into its CSV
with the broken records in the errors CSV, and names what it reads when given a CODE HDF5 file.
"""

from __future__ import annotations

import csv
import json
import os

import pandas as pd
import pytest
import torch
from test_cli import ecg_pma
from test_cli_errors import run_cli
from test_corpora import write_code15, write_mimic

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification


# patients / subjects whose hash puts them in each split (`hash_split`, default fractions): every split has records
CODE_PATIENTS = {"train": [50, 51, 52, 53], "validation": [58, 64], "test": [55]}
MIMIC_SUBJECTS = {"train": ["10000000", "10000001", "10000002"], "validation": ["10000019"], "test": ["10000008"]}
ABSENT_STUDY, CUT_STUDY, NO_SIGNAL_STUDY = "40000001", "40010000", "40020001"  # all three in train


def code15_exams() -> list[dict]:
    """Four 10 s exams per patient, alternating between two part files, the second pair of each patient AF: every
    split has AF and non-AF exams in either part file."""
    patients = [patient for split in CODE_PATIENTS.values() for patient in split]
    return [
        {
            "exam_id": 2000 + 4 * n + i,
            "patient_id": patient,
            "part": i % 2,
            "seconds": 10,
            "labels": ("AF",) * (i // 2),
        }
        for n, patient in enumerate(patients)
        for i in range(4)
    ]


def mimic_studies() -> dict[str, list[str]]:
    subjects = [subject for split in MIMIC_SUBJECTS.values() for subject in split]
    return {subject: [f"4{n:03d}000{j}" for j in range(2)] for n, subject in enumerate(subjects)}


def write_reports(root, studies: dict[str, list[str]]) -> None:
    """`machine_measurements.csv`: each subject's first study in sinus rhythm, the second in atrial fibrillation."""
    rows = [
        {"subject_id": subject, "study_id": study, "report_0": ("Sinus rhythm", "Atrial fibrillation")[j]}
        for subject, names in studies.items()
        for j, study in enumerate(names)
    ]
    pd.DataFrame(rows).to_csv(root / "machine_measurements.csv", index=False)


def study_folder(root, study: str):
    return next(root.glob(f"files/*/*/s{study}"))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    """CODE-15% without its second part file, the same with it cut short, MIMIC-IV-ECG (report labels) with one study
    absent, one whose signal file is cut short and one whose signal file is absent; a tiny pre-trained model and a tiny
    classifier."""
    root = tmp_path_factory.mktemp("downloads")
    exams = code15_exams()
    for name in ("code15-absent", "code15-cut"):
        write_code15(root / name, exams)
    (root / "code15-absent" / "exams_part1.hdf5").unlink()
    part1 = root / "code15-cut" / "exams_part1.hdf5"
    os.truncate(part1, int(part1.stat().st_size * 0.9))  # a download stopped short: h5py cannot open it
    studies = mimic_studies()
    mimic = root / "mimic"
    write_mimic(mimic, studies)
    write_reports(mimic, studies)
    for suffix in (".hea", ".dat"):
        (study_folder(mimic, ABSENT_STUDY) / f"{ABSENT_STUDY}{suffix}").unlink()
    signal = study_folder(mimic, CUT_STUDY) / f"{CUT_STUDY}.dat"
    os.truncate(signal, signal.stat().st_size // 2)
    (study_folder(mimic, NO_SIGNAL_STUDY) / f"{NO_SIGNAL_STUDY}.dat").unlink()
    torch.manual_seed(0)
    for name, model in (("pretrained", EcgPmaForPreTraining), ("classifier", EcgPmaForSequenceClassification)):
        config = EcgPmaConfig.from_preset("tiny", **({"num_labels": 2} if name == "classifier" else {}))
        model(config).save_pretrained(root / name)
        EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(root / name)
    in_part1 = sorted(str(exam["exam_id"]) for exam in exams if exam["part"] == 1)
    return root, in_part1


def finetune_words(root, data: str, data_format: str, output, *extra) -> list:
    label_set = ["--label-set", "reports"] if data_format == "mimic-iv-ecg" else []
    return [
        "finetune", "--data", root / data, "--data-format", data_format, *label_set, "--model", root / "pretrained",
        "--output-dir", output, "--cache-dir", root / "cache", "--num-train-epochs", "1", "--batch-size", "4",
        "--report-to", "none", "--seed", "0", *extra,
    ]  # fmt: skip


def skipped_records(output) -> list[dict]:
    with open(output / "skipped_records.csv") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------ without the policy: a clear stop


@pytest.mark.parametrize(
    "data, data_format, expected",
    [
        ("code15-absent", "code15", ["exams_part1.hdf5, which is not on disk", "--skip-missing"]),
        ("code15-cut", "code15", ["exams_part1.hdf5, which cannot be read", "truncated file", "--skip-missing"]),
        ("mimic", "mimic-iv-ecg", [f"not on disk: {ABSENT_STUDY}", f"{ABSENT_STUDY}.hea", "--skip-missing"]),
    ],
)
def test_finetune_stops_on_a_partial_download_naming_the_file_and_the_option(
    downloads, tmp_path, capsys, data, data_format, expected
):
    root, _ = downloads
    code, err = run_cli(capsys, *finetune_words(root, data, data_format, tmp_path / "out"))
    assert code == 2, err
    for text in expected:
        assert text in err, err


def test_finetune_stops_on_a_record_it_cannot_read_naming_it_and_bad_records(downloads, tmp_path, capsys):
    root, _ = downloads
    code, err = run_cli(capsys, *finetune_words(root, "mimic", "mimic-iv-ecg", tmp_path / "out", "--skip-missing"))
    assert code == 2, err
    assert CUT_STUDY in err or NO_SIGNAL_STUDY in err, err
    assert "could not be read" in err or "signal file missing" in err, err
    assert "pass --bad-records skip" in err, err


def test_pretrain_stops_on_a_record_it_cannot_read_naming_it_and_bad_records(downloads, tmp_path, capsys):
    root, _ = downloads
    code, err = run_cli(
        capsys, "pretrain", "--data", root / "mimic", "--data-format", "mimic-iv-ecg", "--skip-missing", "--preset",
        "tiny", "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--max-steps", "1",
    )  # fmt: skip
    assert code == 2, err
    assert (CUT_STUDY in err and "could not be read" in err) or (
        NO_SIGNAL_STUDY in err and "signal file missing" in err
    )
    assert "pass --bad-records skip" in err, err


@pytest.mark.parametrize(
    "data, data_format, options, lost",
    [
        ("code15-absent", "code15", ["--skip-missing"], "14 of 28 records skipped or missing (50.0%)"),
        ("code15-cut", "code15", ["--bad-records", "skip"], "14 of 28 records skipped or missing (50.0%)"),
        ("mimic", "mimic-iv-ecg", ["--skip-missing", "--bad-records", "skip"], "3 of 10 records skipped or missing"),
    ],
)
def test_finetune_stops_past_max_bad_share_with_the_records_listed(
    downloads, tmp_path, capsys, data, data_format, options, lost
):
    root, _ = downloads
    code, err = run_cli(capsys, *finetune_words(root, data, data_format, tmp_path / "out", *options))
    assert code == 2, err
    assert lost in err and "more than --max-bad-share 0.05" in err, err
    assert (tmp_path / "out" / "skipped_records.csv").is_file()
    assert not (tmp_path / "out" / "model.safetensors").exists()


# ------------------------------------------------------------------- with the policy: the run finishes and counts


@pytest.fixture(scope="module")
def finetuned(downloads):
    """Three finetune runs that finish: CODE-15% without its second part file (--skip-missing) and with it cut short
    (--bad-records skip, which leaves out files absent or cut short too), MIMIC-IV-ECG with all three holes."""
    root, _ = downloads
    runs = {
        "code15-absent": ("code15", ["--skip-missing", "--max-bad-share", "0.6"]),
        "code15-cut": ("code15", ["--bad-records", "skip", "--max-bad-share", "0.6"]),
        "mimic": ("mimic-iv-ecg", ["--skip-missing", "--bad-records", "skip", "--max-bad-share", "0.5",
                                   "--batch-size", "2"]),
    }  # fmt: skip
    outputs = {}
    for data, (data_format, options) in runs.items():
        output = root / f"finetuned-{data}"
        result = ecg_pma(*finetune_words(root, data, data_format, output, *options))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[data] = (output, result.stderr)
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("data", ["code15-absent", "code15-cut"])
def test_finetune_leaves_out_a_code15_part_file_absent_or_cut_short_and_counts_it(downloads, finetuned, data):
    _, in_part1 = downloads
    output, log = finetuned[data]
    results = json.loads((output / "results.json").read_text())
    (corpus,) = results["protocol"]["corpora"]
    assert corpus["format"] == "code15" and corpus["missing"] == 14
    # the first part file's exams, two of each patient, in the split of their patient
    assert corpus["records"] == {"train": 8, "validation": 4, "test": 2}
    assert corpus["skipped"] == {"train": 0, "validation": 0, "test": 0}
    assert results["test"]["num_records"] == 2
    listed = skipped_records(output)
    assert sorted(row["record_id"] for row in listed) == in_part1
    why = "not on disk" if data == "code15-absent" else "unreadable"
    assert all(row["reason"].startswith("missing: ") and f"exams_part1.hdf5: {why}" in row["reason"] for row in listed)
    assert "0 skipped (unreadable or unusable), 14 missing, listed in" in log
    assert (output / "model.safetensors").is_file()


@pytest.mark.slow
def test_finetune_leaves_out_absent_and_unreadable_mimic_records_per_split(finetuned):
    output, log = finetuned["mimic"]
    results = json.loads((output / "results.json").read_text())
    protocol = results["protocol"]
    (corpus,) = protocol["corpora"]
    # absent from the disk (no header; a header without its signal file) before anything is read, and one cut short
    assert corpus["format"] == "mimic-iv-ecg" and corpus["missing"] == 2
    assert corpus["records"] == {"train": 3, "validation": 2, "test": 2}
    assert corpus["skipped"] == {"train": 1, "validation": 0, "test": 0}
    assert protocol["bad_records"].startswith("skip") and results["test"]["num_records"] == 2
    reasons = {row["record_id"]: (row["split"], row["reason"]) for row in skipped_records(output)}
    assert sorted(reasons) == sorted([ABSENT_STUDY, CUT_STUDY, NO_SIGNAL_STUDY])
    split, reason = reasons[ABSENT_STUDY]
    assert split == "" and reason.startswith("missing: ") and reason.endswith(f"{ABSENT_STUDY}.hea not on disk")
    split, reason = reasons[CUT_STUDY]
    assert split == "train" and reason.startswith("unreadable: ") and "could not be read" in reason
    assert CUT_STUDY in reason  # the record's path
    split, reason = reasons[NO_SIGNAL_STUDY]
    assert split == "" and reason.startswith(f"missing: signal file {NO_SIGNAL_STUDY}.dat of ")
    assert reason.endswith(f"{NO_SIGNAL_STUDY} not on disk")
    assert "1 skipped (unreadable or unusable), 2 missing, listed in" in log
    assert (output / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------- predict


def read_csv(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_predict_screens_a_mimic_folder_scoring_the_rest_and_naming_the_broken_records(downloads, tmp_path, capsys):
    root, _ = downloads
    output = tmp_path / "predictions.csv"
    code, err = run_cli(
        capsys, "predict", root / "classifier", root / "mimic", "--output", output, "--num-workers", "0"
    )
    assert code == 1, err  # some record failed
    errors = {row["record"]: row["error"] for row in read_csv(tmp_path / "predictions.errors.csv")}
    cut, no_signal = (
        str(study_folder(root / "mimic", study).relative_to(root / "mimic") / study)
        for study in (CUT_STUDY, NO_SIGNAL_STUDY)
    )
    assert "could not be read (truncated or malformed file?)" in errors.pop(cut)
    reason = errors.pop(no_signal)
    assert "signal file missing" in reason and f"{NO_SIGNAL_STUDY}.dat" in reason
    # the corpus's listings are CSV files too, not ECGs: each named with what it lacks, nothing passed over silently
    assert sorted(errors) == ["machine_measurements.csv", "record_list.csv"]
    assert all("does not say its sampling rate" in error for error in errors.values())
    # every other study on disk scored once; the absent one (no files at all) is not found by a folder screening
    scored = sorted(row["record"].rsplit("/", 1)[-1] for row in read_csv(output))
    broken = (ABSENT_STUDY, CUT_STUDY, NO_SIGNAL_STUDY)
    assert scored == sorted(study for studies in mimic_studies().values() for study in studies if study not in broken)
    assert "4 record(s) could not be read: see" in err


@pytest.mark.parametrize("part_file", ["code15-absent/exams_part0.hdf5", "code15-cut/exams_part1.hdf5"])
def test_predict_on_a_code15_part_file_says_what_it_reads_and_where_to_read_it(downloads, capsys, part_file):
    """A part file, whole or cut short, holds many exams: predict reads one ECG per file and says so, naming it."""
    root, _ = downloads
    code, err = run_cli(capsys, "predict", root / "classifier", root / part_file)
    assert code == 2, err
    assert f"{root / part_file}: an HDF5 file, which holds many exams" in err, err
    assert "read one ECG per file" in err and "--data-format code15" in err, err


def test_predict_screening_a_code15_folder_names_each_part_file(downloads, tmp_path, capsys):
    root, _ = downloads
    output = tmp_path / "predictions.csv"
    code, err = run_cli(
        capsys, "predict", root / "classifier", root / "code15-cut", "--output", output, "--num-workers", "0"
    )
    assert code == 1, err
    errors = {row["record"]: row["error"] for row in read_csv(tmp_path / "predictions.errors.csv")}
    assert sorted(errors) == ["exams.csv", "exams_part0.hdf5", "exams_part1.hdf5"]  # none passed over
    assert all(
        "an HDF5 file, which holds many exams" in errors[name] for name in ("exams_part0.hdf5", "exams_part1.hdf5")
    )
    assert not output.exists() or not read_csv(output)
