"""
Real downloads have holes: part files absent or cut short, records truncated, leads dead. Pre-training skips what it
cannot read or use when asked (`--bad-records skip`, `--skip-missing`), lists each record with the reason in the output
folder, counts them per corpus and split, and stops past `--max-bad-share`.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import wfdb
from test_cli import ecg_pma
from test_corpora import small_code15, write_mimic

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.data import load_code15, load_mimic_iv_ecg, prepare_streamed_records, read_usable_records


MIMIC_STUDIES = {f"1000{i:04d}": [f"40{i:02d}000{j}" for j in range(2)] for i in range(3)}
TRUNCATED_STUDY, DEAD_LEAD_STUDY = "40000001", "40010000"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """CODE-15% without its second part file, and MIMIC-IV-ECG with a truncated signal file and a dead lead."""
    root = tmp_path_factory.mktemp("downloads")
    small_code15(root / "code15")
    (root / "code15" / "exams_part1.hdf5").unlink()
    signals = write_mimic(root / "mimic", MIMIC_STUDIES)
    signal_file = next((root / "mimic").glob(f"files/*/*/s{TRUNCATED_STUDY}")) / f"{TRUNCATED_STUDY}.dat"
    os.truncate(signal_file, signal_file.stat().st_size // 2)
    folder = next((root / "mimic").glob(f"files/*/*/s{DEAD_LEAD_STUDY}"))
    header = wfdb.rdheader(str(folder / DEAD_LEAD_STUDY))
    dead = signals[DEAD_LEAD_STUDY].copy()
    dead[:, header.sig_name.index("V2")] = np.nan
    wfdb.wrsamp(
        DEAD_LEAD_STUDY, fs=500, units=["mV"] * 12, sig_name=header.sig_name, p_signal=dead, fmt=["16"] * 12,
        adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder),
    )  # fmt: skip
    return root


def test_code15_partial_download_raises_or_is_skipped_with_the_exams_listed(tmp_path):
    root = tmp_path / "code15"
    exams, _ = small_code15(root)
    (root / "exams_part1.hdf5").unlink()
    with pytest.raises(FileNotFoundError, match=r"exams_part1\.hdf5, which is not on disk.*--skip-missing"):
        load_code15(root)
    splits = load_code15(root, missing="skip", cache_dir=tmp_path / "cache")
    in_part1 = sorted(str(exam["exam_id"]) for exam in exams if exam["part"] == 1)
    assert sorted(splits.missing_records) == in_part1
    assert all(reason.endswith("not on disk") for reason in splits.missing_records.values())
    assert sum(len(split) for split in splits.values()) == len(exams) - len(in_part1)

    small_code15(root)
    part0 = root / "exams_part0.hdf5"
    os.truncate(part0, part0.stat().st_size // 2)  # a download cut short: h5py cannot open it
    with pytest.raises(ValueError, match=r"exams_part0\.hdf5.*cannot be opened as HDF5.*truncated"):
        load_code15(root)
    splits = load_code15(root, missing="skip", streaming=True)
    assert len(splits.missing_records) == len(in_part1)
    assert all("unreadable" in reason and "truncated" in reason for reason in splits.missing_records.values())


def test_prepared_records_skip_an_unreadable_record_and_an_unusable_one(corpora, tmp_path):
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    stream = load_mimic_iv_ecg(corpora / "mimic", streaming=True, validation_fraction=0, test_fraction=0)["train"]
    with pytest.raises(ValueError, match=rf"{DEAD_LEAD_STUDY}|{TRUNCATED_STUDY}"):
        prepare_streamed_records(stream, extractor, cache_dir=tmp_path / "raise")
    skipped = []
    rows, _, dropped = prepare_streamed_records(
        stream, extractor, cache_dir=tmp_path / "skip", bad_records="skip", skipped=skipped
    )
    reasons = dict(skipped)
    assert sorted(reasons) == sorted([TRUNCATED_STUDY, DEAD_LEAD_STUDY]) and dropped == []
    assert reasons[TRUNCATED_STUDY].startswith("unreadable: ") and TRUNCATED_STUDY in reasons[TRUNCATED_STUDY]
    assert "['V2'] have no finite sample" in reasons[DEAD_LEAD_STUDY]
    assert reasons[DEAD_LEAD_STUDY].endswith(f"/s{DEAD_LEAD_STUDY}/{DEAD_LEAD_STUDY})")  # (file PATH): where it is
    assert sorted(rows["record_id"]) == sorted(
        study for studies in MIMIC_STUDIES.values() for study in studies if study not in reasons
    )
    assert "problem" not in rows.column_names


def test_raw_records_for_finetuning_skip_an_unreadable_record_and_an_unusable_one(corpora, tmp_path):
    """`finetune --bad-records skip` reads raw splits through `read_usable_records`: the same records left out, for
    the same reasons, as the model-rate preparation above; the others as the loader's cached split holds them."""
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    options = {"validation_fraction": 0, "test_fraction": 0}
    stream = load_mimic_iv_ecg(corpora / "mimic", streaming=True, **options)["train"]
    skipped = []
    rows = read_usable_records(stream, extractor, cache_dir=tmp_path / "skip", skipped=skipped)
    reasons = dict(skipped)
    assert sorted(reasons) == sorted([TRUNCATED_STUDY, DEAD_LEAD_STUDY])
    assert reasons[TRUNCATED_STUDY].startswith("unreadable: ") and "could not be read" in reasons[TRUNCATED_STUDY]
    assert "['V2'] have no finite sample" in reasons[DEAD_LEAD_STUDY]
    assert reasons[DEAD_LEAD_STUDY].endswith(f"/s{DEAD_LEAD_STUDY}/{DEAD_LEAD_STUDY})")  # (file PATH)
    assert "problem" not in rows.column_names and rows.features == stream.features
    readable = {study for studies in MIMIC_STUDIES.values() for study in studies} - set(reasons)
    assert sorted(rows["record_id"]) == sorted(readable)
    # the dead lead is the extractor's business: allowed missing leads, the record is read as it is
    allowing = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"), allow_missing_leads=True)
    skipped = []
    read_usable_records(stream, allowing, cache_dir=tmp_path / "allow", skipped=skipped)
    assert [name for name, _ in skipped] == [TRUNCATED_STUDY]


def pretrain(corpora, output, *extra):
    return ecg_pma(
        "pretrain", "--data", f"code15:{corpora / 'code15'}", "--data", f"mimic-iv-ecg:{corpora / 'mimic'}",
        "--all-splits", "--preset", "tiny", "--output-dir", output, "--cache-dir", corpora / "cache",
        "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--save-steps", "0", *extra,
    )  # fmt: skip


@pytest.mark.slow
def test_pretrain_skips_and_counts_bad_and_missing_records(corpora, tmp_path):
    refused = pretrain(corpora, tmp_path / "refused", "--skip-missing", "--bad-records", "skip")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "12 of 24 records skipped or missing (50.0%), more than --max-bad-share 0.05" in refused.stderr
    assert (tmp_path / "refused" / "skipped_records.csv").is_file()

    result = pretrain(corpora, tmp_path / "out", "--skip-missing", "--bad-records", "skip", "--max-bad-share", "0.6")
    assert result.returncode == 0, result.stderr[-3000:]
    protocol = json.loads((tmp_path / "out" / "pretraining_data.json").read_text())
    code15, mimic = protocol["corpora"]
    assert (code15["missing"], sum(code15["skipped"].values()), sum(code15["records"].values())) == (12, 0, 12)
    assert (mimic["missing"], sum(mimic["skipped"].values()), sum(mimic["records"].values())) == (0, 2, 4)
    assert set(mimic["skipped"]) == {"train", "validation", "test"} & set(mimic["records"])
    assert "unlabeled_records" not in protocol  # PTB-XL's rule, for PTB-XL only
    dropped = protocol["short_records_dropped"]  # the six 7 s exams, under the split each was read from
    assert sum(map(len, dropped.values())) == 6 and set(dropped) <= {"train", "validation", "test"}
    with open(tmp_path / "out" / "skipped_records.csv") as handle:
        listed = list(csv.DictReader(handle))
    assert len(listed) == 14
    by_id = {row["record_id"].rsplit("/", 1)[-1]: row for row in listed}
    assert (
        by_id[TRUNCATED_STUDY]["reason"].startswith("unreadable")
        and by_id[TRUNCATED_STUDY]["corpus"] == "mimic-iv-ecg"
    )
    assert "no finite sample" in by_id[DEAD_LEAD_STUDY]["reason"]
    assert sum(row["reason"].startswith("missing:") for row in listed) == 12
    assert "2 skipped (unreadable or unusable), 0 missing, listed in" in result.stderr


def test_streaming_skips_an_unreadable_record_and_an_unusable_one(corpora, tmp_path):
    from ecg_pma.cli import build_parser
    from ecg_pma.commands.data_arguments import load_streaming_training_data

    arguments = [
        "pretrain", "--data", corpora / "mimic", "--data-format", "mimic-iv-ecg", "--streaming", "--all-splits",
        "--bad-records", "skip", "--max-bad-share", "0.5", "--shuffle-buffer", "2", "--output-dir", tmp_path / "out",
        "--max-steps", "1",
    ]  # fmt: skip
    args = build_parser().parse_args([str(argument) for argument in arguments])
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    train, protocol = load_streaming_training_data(args, extractor, all_splits=True)
    studies = sorted(study for studies in MIMIC_STUDIES.values() for study in studies)
    read = sorted(row["record_id"] for row in train)
    assert read == [study for study in studies if study not in (TRUNCATED_STUDY, DEAD_LEAD_STUDY)]
    (corpus,) = protocol["corpora"]
    assert corpus["records"] == {"read": 4, "dropped_short": 0, "skipped": 2}
    with open(tmp_path / "out" / "skipped_records.csv") as handle:
        reasons = {row["record_id"]: row["reason"] for row in csv.DictReader(handle)}
    assert reasons[TRUNCATED_STUDY].startswith("unreadable: ") and "no finite sample" in reasons[DEAD_LEAD_STUDY]
    assert reasons[DEAD_LEAD_STUDY].endswith(f"/s{DEAD_LEAD_STUDY}/{DEAD_LEAD_STUDY})")  # (file PATH), as cached


# ------------------------------------------------------------------------ a CODE-15% part file cut short, by command


@pytest.fixture(scope="module")
def truncated_code15(tmp_path_factory):
    """24 exams in two part files, the second cut to 90 % of its size (a download stopped short): h5py cannot open
    it. Its 12 exams are 10 s; the six 7 s exams are in the first."""
    root = tmp_path_factory.mktemp("truncated") / "code15"
    exams, _ = small_code15(root)
    part1 = root / "exams_part1.hdf5"
    os.truncate(part1, int(part1.stat().st_size * 0.9))
    return root, sorted(str(exam["exam_id"]) for exam in exams if exam["part"] == 1)


def pretrain_code15(root, output, *extra):
    return [
        "pretrain", "--data", root, "--data-format", "code15", "--all-splits", "--preset", "tiny",
        "--output-dir", output, "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--save-steps", "0",
        *extra,
    ]  # fmt: skip


def test_pretrain_names_a_truncated_part_file_and_the_options(truncated_code15, tmp_path, capsys):
    from test_cli_errors import run_cli

    root, _ = truncated_code15
    for options in ([], ["--streaming"]):
        code, err = run_cli(capsys, *pretrain_code15(root, tmp_path / "out", "--cache-dir", tmp_path / "c", *options))
        assert code == 2, err
        assert "exams_part1.hdf5, which cannot be read" in err and "truncated file" in err, err
        assert "Download it again, or leave its exams out with --skip-missing" in err, err
    # either option skips it, and the default --max-bad-share stops a corpus that lost half its exams
    for options in (["--bad-records", "skip"], ["--streaming", "--skip-missing"]):
        code, err = run_cli(capsys, *pretrain_code15(root, tmp_path / "out", "--cache-dir", tmp_path / "c", *options))
        assert code == 2 and "12 of 24 records skipped or missing (50.0%), more than --max-bad-share 0.05" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("options", [["--skip-missing"], ["--streaming", "--bad-records", "skip"]])
def test_pretrain_skips_a_truncated_part_file_counting_and_listing_its_exams(truncated_code15, tmp_path, options):
    root, in_part1 = truncated_code15
    output = tmp_path / "out"
    result = ecg_pma(*pretrain_code15(root, output, "--cache-dir", tmp_path / "c", "--max-bad-share", "0.6", *options))
    assert result.returncode == 0, result.stderr[-3000:]
    (corpus,) = json.loads((output / "pretraining_data.json").read_text())["corpora"]
    assert corpus["missing"] == 12
    if "--streaming" in options:  # counted as read: 2 steps of 4 crops from the six 10 s exams of the first file
        assert corpus["records"]["read"] >= 8 and corpus["records"]["skipped"] == 0
        assert corpus["records"]["dropped_short"] >= 1
    else:
        assert sum(corpus["records"].values()) == 12 and sum(corpus["skipped"].values()) == 0
    with open(output / "skipped_records.csv") as handle:
        listed = list(csv.DictReader(handle))
    assert sorted(row["record_id"] for row in listed) == in_part1
    assert all(row["reason"].startswith("missing: ") for row in listed)
    assert all("exams_part1.hdf5: unreadable" in row["reason"] and "truncated" in row["reason"] for row in listed)
    assert (output / "model.safetensors").is_file()


@pytest.mark.parametrize(("streaming", "lost"), [(False, "folder"), (True, "folder"), (False, "signal file")])
def test_a_missing_mimic_study_is_left_out_counted_and_listed(tmp_path, streaming, lost):
    """A MIMIC-IV-ECG study listed in record_list.csv whose folder, or only whose signal file (a download cut short),
    is not on disk, through pretrain's data path with --skip-missing: counted as missing in pretraining_data.json's
    entry and the log's line, listed with its reason."""
    import shutil

    from ecg_pma.cli import build_parser
    from ecg_pma.commands.data_arguments import load_pretraining_data, load_streaming_training_data

    write_mimic(tmp_path / "mimic", MIMIC_STUDIES)
    study = next((tmp_path / "mimic").glob(f"files/*/*/s{TRUNCATED_STUDY}"))
    if lost == "folder":
        shutil.rmtree(study)
    else:
        (dat,) = study.glob("*.dat")
        dat.unlink()
    arguments = [
        "pretrain", "--data", tmp_path / "mimic", "--data-format", "mimic-iv-ecg", "--all-splits", "--skip-missing",
        "--max-bad-share", "0.5", "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache",
        *(["--streaming"] if streaming else []),
    ]  # fmt: skip
    args = build_parser().parse_args([str(argument) for argument in arguments])
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    load = load_streaming_training_data if streaming else load_pretraining_data
    train, protocol = load(args, extractor, all_splits=True)
    (corpus,) = protocol["corpora"]
    assert corpus["missing"] == 1
    with open(tmp_path / "out" / "skipped_records.csv") as handle:
        (listed,) = list(csv.DictReader(handle))
    reason = f"{TRUNCATED_STUDY}.hea not on disk" if lost == "folder" else f"signal file {TRUNCATED_STUDY}.dat of "
    assert listed["record_id"] == TRUNCATED_STUDY and listed["reason"].startswith("missing: "), listed
    assert reason in listed["reason"] and str(study) in listed["reason"], listed
    if streaming:
        assert sorted(row["record_id"] for row in train) == sorted(
            study for studies in MIMIC_STUDIES.values() for study in studies if study != TRUNCATED_STUDY
        )
        (line,) = train.report.summary()
        assert "5 read, 0 dropped_short, 0 skipped, 1 missing" in line
    else:
        assert sum(corpus["records"].values()) == 5 and len(set(train.rows["record_id"])) == 5
