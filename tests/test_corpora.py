"""CODE-15%, CODE-test, MIMIC-IV-ECG and PhysioNet 2021 sources, on small files written in the published layouts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import shared_data_dir
from datasets.exceptions import DatasetGenerationError

from ecg_pma.data import FORMATS, load_code15, load_code_test, load_mimic_iv_ecg, load_physionet2021, load_records
from ecg_pma.data.code15 import CODE_LABELS, CODE_LEAD_NAMES
from ecg_pma.data.physionet2021 import record_source


LABELS_IN_CSV_ORDER = ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")  # exams.csv's column order


def code_signal(seconds: float, seed: int) -> np.ndarray:
    """A non-zero 400 Hz `(samples, 12)` signal in mV, first and last samples non-zero."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * 400)
    signal = rng.normal(0, 0.3, size=(samples, 12)).astype(np.float32)
    signal[0] = signal[-1] = 0.5
    return signal


def pad_to_4096(signal: np.ndarray) -> np.ndarray:
    """The published padding: zeros at both ends, half before (e.g. 648 + 2800 + 648)."""
    before = (4096 - len(signal)) // 2
    padded = np.zeros((4096, 12), np.float32)
    padded[before : before + len(signal)] = signal
    return padded


def write_code15(root: Path, exams: list[dict], files: int = 2, drop: str | None = None) -> dict[int, np.ndarray]:
    """`exams.csv` + `exams_part{i}.hdf5` (tracings (N, 4096, 12) float32, exam_id (N,)). Returns the unpadded signals."""
    root.mkdir(parents=True, exist_ok=True)
    signals = {}
    for part in range(files):
        members = [exam for exam in exams if exam["part"] == part]
        with h5py.File(root / f"exams_part{part}.hdf5", "w") as handle:
            tracings = []
            for exam in members:
                signals[exam["exam_id"]] = code_signal(exam["seconds"], exam["exam_id"])
                tracings.append(pad_to_4096(signals[exam["exam_id"]]))
            # the published files end with one all-zero row whose exam_id is 0, listed in no exams.csv row
            tracings.append(np.zeros((4096, 12), np.float32))
            if drop != "tracings":
                handle.create_dataset("tracings", data=np.stack(tracings))
            if drop != "exam_id":
                exam_ids = [exam["exam_id"] for exam in members] + [0]
                handle.create_dataset("exam_id", data=np.array(exam_ids, dtype=np.int64))
    rows = []
    for exam in exams:
        row = {
            "exam_id": exam["exam_id"],
            "age": 60,
            "is_male": exam["exam_id"] % 2 == 0,
            "nn_predicted_age": 58.1,
            **{label: label in exam.get("labels", ()) for label in LABELS_IN_CSV_ORDER},
            "patient_id": exam["patient_id"],
            "death": "",
            "timey": "",
            "normal_ecg": not exam.get("labels"),
            "trace_file": f"exams_part{exam['part']}.hdf5",
        }
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "exams.csv", index=False)
    return signals


def small_code15(root: Path, **kwargs) -> tuple[list[dict], dict]:
    exams = [
        {"exam_id": 1000 + i, "patient_id": 50 + i // 3, "part": i % 2, "seconds": 10 if i % 4 else 7}
        for i in range(24)
    ]
    exams[0]["labels"] = ("AF", "RBBB")
    exams[5]["labels"] = ("ST",)
    return exams, write_code15(root, exams, **kwargs)


def generation_error(pattern: str, load) -> None:
    """An error raised while `datasets` writes the rows reaches the caller as it is (not datasets' generic one)."""
    with pytest.raises(ValueError) as info:
        load()
    assert not isinstance(info.value, DatasetGenerationError)
    assert re.search(pattern, str(info.value)), str(info.value)


def all_rows(splits) -> dict[str, dict]:
    return {row["record_id"]: {**row, "split": name} for name, split in splits.items() for row in split}


def test_code15_records_leads_rate_padding_units_labels(tmp_path):
    exams, signals = small_code15(tmp_path / "code15")
    splits = load_code15(tmp_path / "code15", cache_dir=tmp_path / "cache")
    rows = all_rows(splits)
    assert len(rows) == len(exams)
    for exam in exams:
        row = rows[str(exam["exam_id"])]
        assert row["sampling_rate"] == 400.0
        assert row["lead_names"] == list(CODE_LEAD_NAMES)
        signal = np.asarray(row["signal"])
        assert signal.shape == (int(exam["seconds"] * 400), 12)  # padding stripped: 2800 or 4000 samples
        np.testing.assert_array_equal(signal, signals[exam["exam_id"]])  # mV, as stored
    assert rows["1000"]["label_ids"] == [CODE_LABELS.index("RBBB"), CODE_LABELS.index("AF")]
    assert rows["1005"]["labels"] == [1.0 if name == "ST" else 0.0 for name in CODE_LABELS]
    assert splits["train"].features["label_ids"].feature.names == list(CODE_LABELS)


def test_code15_splits_by_patient(tmp_path):
    small_code15(tmp_path / "code15")
    rows = all_rows(load_code15(tmp_path / "code15", validation_fraction=0.3, test_fraction=0.3))
    split_of_patient = {}
    for row in rows.values():
        split_of_patient.setdefault(row["patient_id"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_patient.values())
    assert len({split for splits in split_of_patient.values() for split in splits}) > 1


def test_code15_listing_is_held_once_as_arrays(tmp_path):
    """
    What a streamed CODE-15% run keeps of its listing for the whole run (345,779 exams in the real corpus): text cells
    read as Python strings, not into Arrow's memory pool (which keeps what it allocated after the table is gone), and
    chunks of arrays that the deep copies `datasets` makes at every concatenate and interleave share instead of
    copying. `benchmarks/corpus_memory.py` measures what this keeps flat.
    """
    import copy

    from datasets import concatenate_datasets, interleave_datasets

    from ecg_pma.data.code15 import ExamChunk
    from ecg_pma.data.records import read_text_csv

    exams, _ = small_code15(tmp_path / "code15")
    listing = read_text_csv(tmp_path / "code15" / "exams.csv")
    # object columns hold Python strings; pandas 3's `dtype=str` gives Arrow-backed ones (dtype `str`)
    assert set(listing.dtypes) == {np.dtype(object)} and len(listing) == len(exams)

    splits = load_code15(tmp_path / "code15", streaming=True, validation_fraction=0.3, test_fraction=0.3)
    chunks = [chunk for split in splits.values() for chunk in split.record_reader.items]
    assert all(isinstance(chunk, ExamChunk) for chunk in chunks)
    assert sum(len(chunk.positions) for chunk in chunks) == len(exams)
    assert all(len(column) == len(chunk.positions) for chunk in chunks for column in chunk.exams.values())
    mixed = interleave_datasets([concatenate_datasets(list(splits.values())), splits["train"]])
    copied = copy.deepcopy(mixed)
    assert all(copy.deepcopy(chunk) is chunk for chunk in chunks)
    assert sorted(row["record_id"] for row in copied.take(len(exams))) == sorted(
        row["record_id"] for row in mixed.take(len(exams))
    )


def test_code15_second_load_reads_the_cache_and_num_proc_agrees(tmp_path):
    small_code15(tmp_path / "code15")
    first = load_code15(tmp_path / "code15", cache_dir=tmp_path / "cache")
    second = load_code15(tmp_path / "code15", cache_dir=tmp_path / "cache")
    assert first["train"].cache_files == second["train"].cache_files
    parallel = load_code15(tmp_path / "code15", cache_dir=tmp_path / "cache2", num_proc=2)
    assert sorted(parallel["train"]["record_id"]) == sorted(first["train"]["record_id"])


@pytest.mark.parametrize("drop", ["tracings", "exam_id"])
def test_code15_missing_dataset_names_the_file(tmp_path, drop):
    small_code15(tmp_path / "code15", drop=drop)
    with pytest.raises(ValueError, match=rf"exams_part0\.hdf5.*no `{drop}`"):
        load_code15(tmp_path / "code15")


def test_code15_malformed_files_name_file_and_exam(tmp_path):
    root = tmp_path / "code15"
    small_code15(root)
    table = pd.read_csv(root / "exams.csv")
    table.loc[3, "exam_id"] = 999999
    table.to_csv(root / "exams.csv", index=False)
    with pytest.raises(ValueError, match=r"exam 999999 .*exams\.csv, row 5.*exams_part1\.hdf5"):
        load_code15(root)

    small_code15(root)
    with h5py.File(root / "exams_part1.hdf5", "a") as handle:
        handle["tracings"][2, 100, 3] = np.nan
    rows = all_rows(load_code15(root, cache_dir=tmp_path / "c1"))  # kept: the extractor's nan_policy decides
    assert int(np.isnan(np.asarray(rows["1005"]["signal"])).sum()) == 1

    small_code15(root)
    with h5py.File(root / "exams_part0.hdf5", "a") as handle:
        handle["tracings"][1] = 0.0
    generation_error(
        r"exams_part0\.hdf5.*exam 1002: every sample is zero", lambda: load_code15(root, cache_dir=tmp_path / "c2")
    )

    (root / "exams_part1.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"exams_part1\.hdf5.*cannot be opened as HDF5"):
        load_code15(root)
    (root / "exams_part1.hdf5").unlink()
    with pytest.raises(FileNotFoundError, match=r"exams_part1\.hdf5"):
        load_code15(root)


def test_code15_wrong_shape_and_columns(tmp_path):
    root = tmp_path / "code15"
    small_code15(root)
    with h5py.File(root / "exams_part0.hdf5", "a") as handle:
        del handle["tracings"]
        handle.create_dataset("tracings", data=np.zeros((12, 4096, 8), np.float32))
    with pytest.raises(ValueError, match=r"exams_part0\.hdf5.*shape \(12, 4096, 8\)"):
        load_code15(root)
    pd.read_csv(root / "exams.csv").drop(columns=["patient_id"]).to_csv(root / "exams.csv", index=False)
    with pytest.raises(ValueError, match=r"exams\.csv: no column\(s\) \['patient_id'\]"):
        load_code15(root)


def write_code_test(root: Path, exams: int = 6) -> list[np.ndarray]:
    """`ecg_tracings.hdf5` (only `tracings`), `attributes.csv` (age, sex), `annotations/gold_standard.csv`."""
    (root / "annotations").mkdir(parents=True)
    signals = [code_signal(7 if i % 2 else 10, i) for i in range(exams)]
    with h5py.File(root / "ecg_tracings.hdf5", "w") as handle:
        handle.create_dataset("tracings", data=np.stack([pad_to_4096(signal) for signal in signals]))
    pd.DataFrame({"age": [34 + i for i in range(exams)], "sex": ["M", "F"] * (exams // 2)}).to_csv(
        root / "attributes.csv", index=False
    )
    gold = pd.DataFrame(0, index=range(exams), columns=["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"])
    gold.loc[1, "LBBB"] = 1
    gold.loc[2, "AF"] = gold.loc[2, "ST"] = 1
    gold.to_csv(root / "annotations" / "gold_standard.csv", index=False)
    return signals


def test_code_test_layout(tmp_path):
    signals = write_code_test(tmp_path / "code-test")
    splits = load_code_test(tmp_path / "code-test")
    assert len(splits["train"]) == 0 and len(splits["test"]) == 6
    rows = {row["record_id"]: row for row in splits["test"]}
    assert len(rows["code-test-0001"]["signal"]) == 2800
    np.testing.assert_array_equal(np.asarray(rows["code-test-0000"]["signal"]), signals[0])
    assert rows["code-test-0001"]["label_ids"] == [CODE_LABELS.index("LBBB")]
    assert rows["code-test-0002"]["label_ids"] == [CODE_LABELS.index("AF"), CODE_LABELS.index("ST")]
    assert rows["code-test-0000"]["age"] == 34 and rows["code-test-0000"]["is_male"] is True
    pd.DataFrame({"age": [1], "sex": ["M"]}).to_csv(tmp_path / "code-test" / "attributes.csv", index=False)
    with pytest.raises(ValueError, match=r"attributes\.csv: 1 rows for the 6 tracings"):
        load_code_test(tmp_path / "code-test")


def write_mimic(root: Path, subjects: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """The MIMIC-IV-ECG tree: files/pNNNN/pXXXXXXXX/sYYYYYYYY/YYYYYYYY.{hea,dat} from real records, record_list.csv."""
    sources = sorted(shared_data_dir("physionet2021").glob("*.hea"))
    rows, signals = [], {}
    for subject, studies in subjects.items():
        for study in studies:
            source = wfdb.rdrecord(str(sources[len(rows)].with_suffix("")))
            folder = root / "files" / f"p{subject[:4]}" / f"p{subject}" / f"s{study}"
            folder.mkdir(parents=True)
            wfdb.wrsamp(
                study,
                fs=500,
                units=["mV"] * 12,
                sig_name=list(source.sig_name),
                p_signal=source.p_signal,
                fmt=["16"] * 12,
                write_dir=str(folder),
            )
            signals[study] = source.p_signal
            relative = f"files/p{subject[:4]}/p{subject}/s{study}/{study}"
            rows.append(
                {
                    "subject_id": subject,
                    "study_id": study,
                    "file_name": study,
                    "ecg_time": "2180-07-23 08:44:00",
                    "path": relative,
                }
            )
    pd.DataFrame(rows).to_csv(root / "record_list.csv", index=False)
    return signals


MIMIC_SUBJECTS = {f"1000{i:04d}": [f"4{i:03d}000{j}" for j in range(2)] for i in range(6)}


def test_mimic_iv_ecg_tree(tmp_path):
    signals = write_mimic(tmp_path / "mimic", MIMIC_SUBJECTS)
    splits = load_mimic_iv_ecg(tmp_path / "mimic", validation_fraction=0.3, test_fraction=0.3)
    rows = all_rows(splits)
    assert sorted(rows) == sorted(signals)
    for study, row in rows.items():
        assert row["sampling_rate"] == 500.0 and row["lead_names"][:3] == ["I", "II", "III"]
        np.testing.assert_allclose(np.asarray(row["signal"]), signals[study], atol=2e-3)  # format 16 rounding
        assert row["labels"] == [] and row["label_ids"] == []
    split_of_subject = {}
    for row in rows.values():
        split_of_subject.setdefault(row["subject_id"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_subject.values())


def test_mimic_iv_ecg_report_labels_and_errors(tmp_path):
    root = tmp_path / "mimic"
    write_mimic(root, {"10000032": ["40689238", "44458630"]})
    pd.DataFrame(
        {
            "subject_id": ["10000032"] * 2,
            "study_id": ["40689238", "44458630"],
            "report_0": ["Sinus rhythm", "Atrial fibrillation"],
            "report_1": ["Normal ECG", ""],
        }
    ).to_csv(root / "machine_measurements.csv", index=False)
    rows = all_rows(load_records("mimic-iv-ecg", root, label_set="reports"))
    names = ["Atrial fibrillation", "Normal ECG", "Sinus rhythm"]
    assert rows["40689238"]["label_ids"] == [names.index("Normal ECG"), names.index("Sinus rhythm")]
    assert rows["44458630"]["label_ids"] == [names.index("Atrial fibrillation")]

    (root / "files/p1000/p10000032/s44458630/44458630.hea").unlink()
    with pytest.raises(FileNotFoundError, match=r"not on disk: 44458630"):
        load_mimic_iv_ecg(root)
    assert len(all_rows(load_mimic_iv_ecg(root, missing="skip"))) == 1
    table = pd.read_csv(root / "record_list.csv", dtype=str)
    table.drop(columns=["subject_id"]).to_csv(root / "record_list.csv", index=False)
    with pytest.raises(ValueError, match=r"record_list\.csv: no column\(s\) \['subject_id'\]"):
        load_mimic_iv_ecg(root)


def test_physionet2021_sources_by_prefix(tmp_path):
    physionet = shared_data_dir("physionet2021")
    assert record_source("A0001") == "cpsc2018" and record_source("Q0001") == "cpsc2018-extra"
    assert record_source("I0001") == "incart" and record_source("S0001") == "ptb"
    assert record_source("JS00001") == "chapman" and record_source("JS10647") == "ningbo"
    georgia = load_physionet2021(physionet, sources=["georgia"], cache_dir=tmp_path)
    names = [name for split in georgia.values() for name in split["record_id"]]
    assert len(names) == 15 and all(name.startswith("E") for name in names)
    mixed = load_physionet2021(physionet, sources=["ptb-xl", "ningbo"], cache_dir=tmp_path)
    names = [name for split in mixed.values() for name in split["record_id"]]
    assert len(names) == 25 and {name[:2] for name in names} == {"HR", "JS"}
    with pytest.raises(ValueError, match="Unknown PhysioNet 2021 source"):
        load_physionet2021(physionet, sources=["code15"])
    # the sample's JS200xx records are numbered past Chapman-Shaoxing's last (JS10646): they are Ningbo's
    with pytest.raises(FileNotFoundError, match=r"no record of source\(s\) \['incart', 'chapman'\]"):
        load_physionet2021(physionet, sources=["incart", "chapman"])


def test_formats_registered():
    from ecg_pma.commands.data_arguments import DATA_FORMATS

    assert {"code15", "code-test", "mimic-iv-ecg"} <= set(FORMATS) and DATA_FORMATS == FORMATS


def test_mixture_of_corpora_at_the_model_rate(tmp_path):
    """`--data FORMAT:PATH` twice: both corpora in `train`, resampled to the model's rate, counted per corpus."""
    import argparse

    from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
    from ecg_pma.commands import pretrain
    from ecg_pma.commands.data_arguments import load_pretraining_data

    small_code15(tmp_path / "code15")
    parser = argparse.ArgumentParser()
    pretrain.add_parser(parser.add_subparsers())
    physionet = shared_data_dir("physionet2021")
    args = parser.parse_args(
        ["pretrain", "--data", f"physionet2021:{physionet}", "--data", f"code15:{tmp_path / 'code15'}"]
        + ["--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    )
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    train, protocol = load_pretraining_data(args, extractor, all_splits=True)
    counts = {corpus["format"]: sum(corpus["records"].values()) for corpus in protocol["corpora"]}
    assert counts == {"physionet2021": 40, "code15": 24}
    # no raw cache: what is on disk is the model-rate rows (40 + 24 records of 10 s at 100 Hz, float32), not the
    # source-rate signals (500 and 400 Hz: over 4x as much)
    cached_bytes = sum(path.stat().st_size for path in (tmp_path / "cache").rglob("*.arrow"))
    assert cached_bytes < 1.5 * (40 + 24) * 10 * extractor.sampling_rate * 12 * 4
    rows = train.rows
    names = list(rows["record_id"])
    assert sum(name.startswith("physionet2021:") for name in names) == 40
    # the six 7 s exams are shorter than the 10 s window: dropped and named
    assert sum(name.startswith("code15:") for name in names) == 18
    dropped = [name for names in protocol["short_records_dropped"].values() for name in names]  # per source split
    assert len(dropped) == 6 and all(name.startswith("code15:") for name in dropped)
    per_split = {split: len(names) for split, names in protocol["short_records_dropped"].items()}
    assert per_split == {"train": 5, "validation": 0, "test": 1}  # each under the split it was read from
    lengths = {name.split(":")[0]: len(rows[i]["signal"]) for i, name in enumerate(names)}
    assert lengths["physionet2021"] == lengths["code15"] == 10 * extractor.sampling_rate  # 500 / 400 Hz -> model rate
    assert train[0]["signals"].shape == (12, extractor.signal_length)


@pytest.mark.slow
def test_pretrain_cli_on_a_mixture(tmp_path):
    from test_cli import ecg_pma

    small_code15(tmp_path / "code15")
    physionet = shared_data_dir("physionet2021")
    result = ecg_pma(
        "pretrain", "--data", f"physionet2021:{physionet}", "--data", f"code15:{tmp_path / 'code15'}",
        "--all-splits", "--preset", "tiny", "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache",
        "--per-device-train-batch-size", "8", "--max-steps", "3", "--warmup-steps", "1", "--save-steps", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Corpus code15:" in result.stderr and "Corpus physionet2021:" in result.stderr
    protocol = json.loads((tmp_path / "out" / "pretraining_data.json").read_text())
    assert [(corpus["format"], sum(corpus["records"].values())) for corpus in protocol["corpora"]] == [
        ("physionet2021", 40),
        ("code15", 24),
    ]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_streaming_crops_without_a_cache(tmp_path):
    """`streaming=True`: rows read from the HDF5 files as iterated, shuffled, resampled and cropped like the cache."""
    from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
    from ecg_pma.data import stream_training_records

    small_code15(tmp_path / "code15")
    records = load_code15(tmp_path / "code15", streaming=True, validation_fraction=0, test_fraction=0)
    assert not list(tmp_path.glob("**/*.arrow"))
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    stream = stream_training_records(records["train"], extractor, seed=3, shuffle_buffer=8)
    first = list(stream)
    assert len(first) == 18  # the six 7 s exams are shorter than the 10 s window: dropped
    assert {row["record_id"] for row in first} == {str(1000 + i) for i in range(24) if i % 4}
    assert all(np.asarray(row["signals"]).shape == (12, extractor.signal_length) for row in first)
    again = list(stream_training_records(records["train"], extractor, seed=3, shuffle_buffer=8))
    assert [row["record_id"] for row in again] == [row["record_id"] for row in first]  # seeded
    np.testing.assert_array_equal(np.asarray(again[0]["signals"]), np.asarray(first[0]["signals"]))
    stream.set_epoch(1)
    assert [row["record_id"] for row in stream] != [row["record_id"] for row in first]  # reshuffled each epoch

    # the same resample + standardise path as the cached crops: a 10 s record at the window's length has one crop
    cached = load_code15(tmp_path / "code15", validation_fraction=0, test_fraction=0, cache_dir=tmp_path / "cache")
    from ecg_pma.data import build_training_splits

    splits, _ = build_training_splits(cached, extractor, seed=3)
    by_id = {splits["train"][i]["record_id"]: splits["train"][i]["signals"] for i in range(len(splits["train"]))}
    for row in first:
        np.testing.assert_allclose(np.asarray(row["signals"]), by_id[row["record_id"]].numpy(), atol=1e-5)


def test_float16_storage_halves_the_cache(tmp_path):
    from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
    from ecg_pma.data import EcgTrainingDataset, handle_short_records, prepare_records

    small_code15(tmp_path / "code15")
    raw = load_code15(tmp_path / "code15", validation_fraction=0, test_fraction=0, cache_dir=tmp_path / "cache")
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    raw["train"], extractor, _ = handle_short_records(raw["train"], extractor)
    full = prepare_records(raw["train"], extractor)
    half = prepare_records(raw["train"], extractor, storage_dtype="float16")
    assert half.features["signal"].dtype == "float16"
    size = {
        name: sum(Path(f["filename"]).stat().st_size for f in rows.cache_files)
        for name, rows in [("full", full), ("half", half)]
    }
    assert size["half"] < 0.6 * size["full"]
    again = prepare_records(raw["train"], extractor, storage_dtype="float16")
    assert again.cache_files == half.cache_files  # a second run reads the cache
    crops = (
        EcgTrainingDataset(half, extractor, seed=1)[0]["signals"],
        EcgTrainingDataset(full, extractor, seed=1)[0]["signals"],
    )
    np.testing.assert_allclose(crops[0].numpy(), crops[1].numpy(), atol=5e-3)  # standardised: float16 rounding only
    with pytest.raises(ValueError, match="storage_dtype"):
        prepare_records(raw["train"], extractor, storage_dtype="int8")


@pytest.mark.slow  # a fresh interpreter (torch imported): seconds on an idle machine, 26 s on the loaded one
def test_an_abandoned_code15_stream_exits_cleanly(tmp_path):
    """A streamed CODE-15% iteration left unfinished in a global (a script, a notebook) and the interpreter leaving:
    no open HDF5 file is left for Python to close after h5py is torn down ("Exception ignored ... TypeError")."""
    import subprocess
    import sys

    small_code15(tmp_path / "code15")
    code = (
        "from ecg_pma.data import load_code15\n"
        f"stream = load_code15({str(tmp_path / 'code15')!r}, streaming=True)['train']\n"
        "rows = iter(stream)\n"
        "first = next(rows)\n"
        "print(first['record_id'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]
    assert "Exception ignored" not in result.stderr and "TypeError" not in result.stderr, result.stderr[-3000:]


def test_prepare_records_follows_the_short_record_policy(tmp_path):
    """CODE-15%'s 7 s exams under a 10 s window: named with the options before any record is resampled, or dropped."""
    from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
    from ecg_pma.data import handle_short_records, prepare_records

    small_code15(tmp_path / "code15")
    raw = load_code15(tmp_path / "code15", validation_fraction=0, test_fraction=0, cache_dir=tmp_path / "cache")
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    short = ", ".join(f"{1000 + i} (7 s)" for i in range(0, 24, 4))
    with pytest.raises(ValueError, match=rf"6 record\(s\) shorter than the 10 s the model needs: {re.escape(short)}\. "
                       r"Pass short_records='drop'.*handle_short_records\(dataset, extractor, 'pad'\)"):  # fmt: skip
        prepare_records(raw["train"], extractor)
    rows = prepare_records(raw["train"], extractor, short_records="drop")
    kept, _, _ = handle_short_records(raw["train"], extractor)
    assert rows["record_id"] == prepare_records(kept, extractor)["record_id"] and len(rows) == 18
    with pytest.raises(ValueError, match=r"expected 'raise' or 'drop' \(to pad, run handle_short_records"):
        prepare_records(raw["train"], extractor, short_records="pad")


@pytest.mark.slow
def test_pretrain_cli_streaming(tmp_path):
    from test_cli import ecg_pma

    small_code15(tmp_path / "code15")
    physionet = shared_data_dir("physionet2021")
    arguments = [
        "pretrain", "--data", f"physionet2021:{physionet}", "--data", f"code15:{tmp_path / 'code15'}", "--streaming",
        "--shuffle-buffer", "16", "--all-splits", "--preset", "tiny", "--output-dir", tmp_path / "out",
        "--per-device-train-batch-size", "8", "--warmup-steps", "1", "--save-steps", "0",
    ]  # fmt: skip
    refused = ecg_pma(*arguments)
    assert refused.returncode != 0 and "give --max-steps" in refused.stderr
    result = ecg_pma(*arguments, "--max-steps", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.glob("**/*.arrow"))  # nothing cached
    log = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3]
    protocol = json.loads((tmp_path / "out" / "pretraining_data.json").read_text())
    assert [corpus["format"] for corpus in protocol["corpora"]] == ["physionet2021", "code15"]


@pytest.mark.parametrize("variable", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharded_training_is_refused_at_start(tmp_path, variable):
    """What `accelerate launch` sets from an FSDP / DeepSpeed config: refused before any record is read."""
    import os
    import subprocess
    import sys

    arguments = [
        "pretrain", "--data", tmp_path / "nothing-here", "--data-format", "code15", "--preset", "tiny",
        "--output-dir", tmp_path / "out", "--max-steps", "1",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", variable: "true"},
    )
    assert result.returncode != 0
    assert "sharded training" in result.stderr and "could not be resumed" in result.stderr
    assert "exams.csv" not in result.stderr  # stopped before reading the data


def test_streamed_source_is_prepared_at_the_model_rate_without_a_raw_cache(tmp_path):
    """`prepare_streamed_records`: HDF5 -> model-rate shards directly, the same rows as the raw cache + `prepare_records`
    path, short records named and dropped (or padded), `num_proc` giving the same rows, a second run reading the
    cache."""
    from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
    from ecg_pma.data import handle_short_records, prepare_records
    from ecg_pma.data.crops import prepare_streamed_records

    small_code15(tmp_path / "code15")
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    stream = load_code15(tmp_path / "code15", streaming=True, validation_fraction=0, test_fraction=0)["train"]
    rows, used, dropped = prepare_streamed_records(stream, extractor, cache_dir=tmp_path / "direct")
    assert sorted(dropped) == [str(1000 + i) for i in range(0, 24, 4)]  # the six 7 s exams
    assert used is extractor
    caches = list((tmp_path / "direct").rglob("*.arrow"))
    raw_signal_bytes = 18 * 4000 * 12 * 4
    assert sum(path.stat().st_size for path in caches) < 0.5 * raw_signal_bytes  # model rate, not the source's

    cached = load_code15(tmp_path / "code15", validation_fraction=0, test_fraction=0, cache_dir=tmp_path / "raw")
    kept, _, _ = handle_short_records(cached["train"], extractor)
    two_step = prepare_records(kept, extractor)
    assert sorted(rows["record_id"]) == sorted(two_step["record_id"])
    by_id = {row["record_id"]: row for row in two_step.with_format("numpy")}
    for row in rows.with_format("numpy"):
        np.testing.assert_array_equal(row["signal"], by_id[row["record_id"]]["signal"])
        np.testing.assert_array_equal(row["present_leads"], by_id[row["record_id"]]["present_leads"])
        np.testing.assert_array_equal(row["labels"], by_id[row["record_id"]]["labels"])

    again, _, _ = prepare_streamed_records(stream, extractor, cache_dir=tmp_path / "direct")
    assert [f["filename"] for f in again.cache_files] == [f["filename"] for f in rows.cache_files]
    parallel, _, _ = prepare_streamed_records(stream, extractor, num_proc=2, cache_dir=tmp_path / "parallel")
    assert parallel["record_id"] == rows["record_id"]
    # a stream transformed after loading (here cut to its first 10 records) is refused, not read shard by shard
    transformed = stream.take(10)
    with pytest.raises(ValueError, match="has been transformed since"):
        prepare_streamed_records(transformed, extractor, cache_dir=tmp_path / "transformed")

    padded, padder, named = prepare_streamed_records(stream, extractor, short_records="pad", cache_dir=tmp_path / "p")
    assert len(padded) == 24 and sorted(named) == sorted(dropped) and padder.min_duration == 0.0
    with pytest.raises(ValueError) as raised:
        prepare_streamed_records(stream, extractor, short_records="raise", cache_dir=tmp_path / "r")
    assert re.search(r"Record '1000': 7 s, shorter than the 10 s", str(raised.value))

    # ST-MEM's 10 s segments cannot be padded: an error naming the first short record, only if there is one
    from ecg_pma.feature_extraction_ecg_pma import ST_MEM_PREPROCESSING

    segments = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"), **ST_MEM_PREPROCESSING)
    with pytest.raises(ValueError) as raised:
        prepare_streamed_records(stream, segments, short_records="pad", cache_dir=tmp_path / "s")
    assert re.search(r"Record '\d+': 7 s, .* segment cannot be padded", str(raised.value))
    complete = load_physionet2021(shared_data_dir("physionet2021"), streaming=True)["validation"]
    rows, _, named = prepare_streamed_records(complete, segments, short_records="pad", cache_dir=tmp_path / "s")
    assert len(rows) == 5 and named == []


def test_each_process_streams_its_own_shards(tmp_path):
    """`stream_share`: with at least as many shards as processes each process gets whole shards (it opens only its
    own files), the shares are disjoint and together the whole corpus; with fewer, one record in `num_processes`."""
    from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
    from ecg_pma.data import stream_training_records
    from ecg_pma.training.pretrain import stream_share

    small_code15(tmp_path / "code15")
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    physionet = load_physionet2021(shared_data_dir("physionet2021"), streaming=True)["train"]
    code15 = load_code15(tmp_path / "code15", streaming=True, validation_fraction=0, test_fraction=0)["train"]
    for records, shards, expected in ((physionet, 29, 29), (code15, 2, 18)):
        stream = stream_training_records(records, extractor, seed=1, shuffle_buffer=4)
        assert stream.n_shards == shards
        shares = [stream_share(stream, rank, 2) for rank in (0, 1)]
        assert sorted(share.n_shards for share in shares) == [shards // 2, shards - shards // 2]  # files, not records
        ids = [[row["record_id"] for row in share] for share in shares]
        assert not set(ids[0]) & set(ids[1]) and len(ids[0]) + len(ids[1]) == expected
    shares = [stream_share(stream, rank, 3) for rank in range(3)]  # two shards, three processes
    ids = [[row["record_id"] for row in share] for share in shares]
    assert sorted(sum(ids, [])) == sorted(row["record_id"] for row in stream) and all(ids)


def test_model_rate_shards_from_a_stream_are_rebuilt_when_a_record_changes(tmp_path):
    """The shards written from a WFDB stream are keyed by the size and time of each record's header and signal file:
    a replaced signal file or an edited header is read again, an unchanged folder reads the shards."""
    import shutil

    from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
    from ecg_pma.data import load_wfdb_folder
    from ecg_pma.data.crops import prepare_streamed_records

    folder = tmp_path / "records"
    folder.mkdir()
    for path in sorted(shared_data_dir("physionet2021").glob("HR0*"))[:6]:
        shutil.copy(path, folder / path.name)
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))

    def prepare():
        stream = load_wfdb_folder(folder, streaming=True)["train"]
        return prepare_streamed_records(stream, extractor, cache_dir=tmp_path / "cache")[0]

    first = prepare()
    assert [f["filename"] for f in prepare().cache_files] == [f["filename"] for f in first.cache_files]
    # a signal file replaced, its header unchanged: read again
    names = sorted(first["record_id"])  # the train split's
    shutil.copy(folder / f"{names[1]}.mat", folder / f"{names[0]}.mat")
    replaced = prepare()
    assert [f["filename"] for f in replaced.cache_files] != [f["filename"] for f in first.cache_files]
    signals = {row["record_id"]: np.asarray(row["signal"]) for row in replaced}
    np.testing.assert_array_equal(signals[names[0]], signals[names[1]])
    record_id = first[0]["record_id"]
    header = folder / f"{record_id}.hea"
    lines = header.read_text().splitlines()
    lines[0] = lines[0].replace(" 500 ", " 250 ")  # the record was at half the rate all along: twice as long
    header.write_text("\n".join(lines) + "\n")
    edited = prepare()
    assert [f["filename"] for f in edited.cache_files] != [f["filename"] for f in first.cache_files]
    by_id = {row["record_id"]: len(row["signal"]) for row in edited}
    assert by_id[record_id] == 2 * len(first[0]["signal"])
