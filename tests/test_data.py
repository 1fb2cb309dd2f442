"""Dataset builders on the real records in ../shared/data, and `ecg-pma download` against a local PhysioNet-like server."""

import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import shared_data_dir
from hub_server import serve_directory

from ecg_pma import EcgPmaFeatureExtractor
from ecg_pma.data import (
    SCORED_SNOMED,
    extract_features,
    id2label,
    load_physionet2021,
    load_ptbxl,
    load_records,
    load_wfdb_folder,
)
from ecg_pma.data.ptbxl import ptbxl_label_names, ptbxl_record_labels


@pytest.fixture
def statements():
    return pd.read_csv(shared_data_dir("ptbxl-mini") / "scp_statements.csv", index_col=0)


# ----------------------------------------------------------------------------------------------------------------- PTB-XL


@pytest.mark.parametrize(
    "label_set, size",
    [("all", 71), ("diagnostic", 44), ("subdiagnostic", 23), ("superdiagnostic", 5), ("form", 19), ("rhythm", 12)],
)
def test_ptbxl_label_set_sizes(statements, label_set, size):
    assert len(ptbxl_label_names(statements, label_set)) == size


def test_ptbxl_record_labels_follow_the_benchmark(statements):
    # ecg_id 8: {'IMI': 35.0, 'ABQRS': 0.0, 'SR': 0.0}
    codes = {"IMI": 35.0, "ABQRS": 0.0, "SR": 0.0}
    assert ptbxl_record_labels(codes, statements, "all") == ["ABQRS", "IMI", "SR"]
    assert ptbxl_record_labels(codes, statements, "diagnostic") == ["IMI"]
    assert ptbxl_record_labels(codes, statements, "subdiagnostic") == ["IMI"]
    assert ptbxl_record_labels(codes, statements, "superdiagnostic") == ["MI"]
    assert ptbxl_record_labels(codes, statements, "form") == ["ABQRS"]
    assert ptbxl_record_labels(codes, statements, "rhythm") == ["SR"]
    assert ptbxl_record_labels(codes, statements, "all", min_likelihood=50) == []


def test_ptbxl_missing_records_raise_unless_skipped(tmp_path):
    root = shared_data_dir("ptbxl-mini")
    with pytest.raises(
        FileNotFoundError, match=r"5 record\(s\) listed but not on disk: 2 \(.*00002_lr.hea not on disk\)"
    ):
        load_ptbxl(root, sampling_rate=100, cache_dir=tmp_path)
    dataset = load_ptbxl(root, sampling_rate=100, label_set="superdiagnostic", missing="skip", cache_dir=tmp_path)
    assert [len(dataset[split]) for split in ("train", "validation", "test")] == [1, 0, 0]
    row = dataset["train"].with_format("numpy")[0]
    assert row["record_id"] == "1" and row["strat_fold"] == 3
    assert row["signal"].shape == (1000, 12) and row["sampling_rate"] == 100
    assert id2label(dataset) == {0: "CD", 1: "HYP", 2: "MI", 3: "NORM", 4: "STTC"}
    assert row["labels"].tolist() == [0, 0, 0, 1, 0]  # NORM
    record = wfdb.rdrecord(str(root / "records100/00000/00001_lr"))
    np.testing.assert_allclose(row["signal"], record.p_signal, atol=1e-6)

    high = load_ptbxl(root, sampling_rate=500, label_set="rhythm", missing="skip", cache_dir=tmp_path)
    row = high["train"].with_format("numpy")[0]
    assert row["record_id"] == "6009" and row["signal"].shape == (5000, 12)
    assert [id2label(high)[i] for i in row["label_ids"]] == ["SR"]


def test_ptbxl_splits_follow_strat_fold_and_a_second_load_hits_the_cache(tmp_path):
    # a copy of the mini tree whose two records sit in folds 9 and 10
    root = tmp_path / "ptbxl"
    shutil.copytree(shared_data_dir("ptbxl-mini"), root)
    database = pd.read_csv(root / "ptbxl_database.csv")
    database.loc[database["ecg_id"] == 1, "strat_fold"] = 9
    database.loc[database["ecg_id"] == 6009, "strat_fold"] = 10
    database["filename_lr"] = database["filename_hr"].where(database["ecg_id"] == 6009, database["filename_lr"])
    database.to_csv(root / "ptbxl_database.csv", index=False)

    first = load_ptbxl(root, sampling_rate=100, missing="skip", cache_dir=tmp_path / "cache")
    assert [len(first[split]) for split in ("train", "validation", "test")] == [0, 1, 1]
    assert first["validation"][0]["record_id"] == "1" and first["test"][0]["record_id"] == "6009"

    cache_files = [file["filename"] for file in first["validation"].cache_files]
    written = [os.stat(path).st_mtime_ns for path in cache_files]
    second = load_ptbxl(root, sampling_rate=100, missing="skip", cache_dir=tmp_path / "cache")
    # the same Arrow files, not rewritten: the records were not read again
    assert [file["filename"] for file in second["validation"].cache_files] == cache_files
    assert [os.stat(path).st_mtime_ns for path in cache_files] == written


def test_ptbxl_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="100 or 500 Hz"):
        load_ptbxl(shared_data_dir("ptbxl-mini"), sampling_rate=250)
    with pytest.raises(ValueError, match="Unknown PTB-XL `label_set`"):
        load_ptbxl(shared_data_dir("ptbxl-mini"), label_set="beats")
    with pytest.raises(FileNotFoundError, match="ptbxl_database.csv not found"):
        load_ptbxl(tmp_path)


# -------------------------------------------------------------------------------------------------------- PhysioNet 2021


def test_physionet2021_labels_decode_to_the_header_codes(tmp_path):
    root = shared_data_dir("physionet2021")
    dataset = load_physionet2021(root, label_set="all", merge_equivalent=False, cache_dir=tmp_path)
    assert sum(len(split) for split in dataset.values()) == 40
    names = id2label(dataset)
    abbreviation_to_code = {abbreviation: code for code, abbreviation in SCORED_SNOMED.items()}
    for split in dataset.values():
        for row in split:
            header = wfdb.rdheader(str(root / row["record_id"]))
            dx_line = next(c for c in header.comments if c.startswith("Dx:"))
            header_codes = {code.strip() for code in dx_line.split(":", 1)[1].split(",")}
            decoded = {abbreviation_to_code.get(names[i], names[i]) for i in row["label_ids"]}
            assert decoded == header_codes, row["record_id"]
            assert set(row["dx_codes"]) == header_codes
            assert [names[i] for i, v in enumerate(row["labels"]) if v == 1] == [names[i] for i in row["label_ids"]]


def test_physionet2021_scored_classes_and_equivalences(tmp_path):
    dataset = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    names = list(id2label(dataset).values())
    assert len(names) == 26 and "RBBB" not in names and "CRBBB" in names
    rows = {row["record_id"]: row for split in dataset.values() for row in split}
    # HR06001's header lists 59118001 (RBBB): scored as CRBBB; E07500 has 426177001 (SB) and an unscored code
    assert [names[i] for i in rows["E07500"]["label_ids"]] == ["SB"]
    assert "67741000119109" in rows["E07500"]["dx_codes"]
    rbbb = [record for record, row in rows.items() if "59118001" in row["dx_codes"]]
    assert rbbb and all("CRBBB" in [names[i] for i in rows[r]["label_ids"]] for r in rbbb)
    unmerged = load_physionet2021(shared_data_dir("physionet2021"), merge_equivalent=False, cache_dir=tmp_path)
    assert len(id2label(unmerged)) == 30


def test_physionet2021_split_is_deterministic(tmp_path):
    first = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path / "a")
    second = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path / "b", num_proc=2)
    for split in ("train", "validation", "test"):
        assert sorted(first[split]["record_id"]) == sorted(second[split]["record_id"])
    assert len(first["train"]) > len(first["test"]) > 0


def test_physionet2021_without_dx_line_is_refused(tmp_path):
    source = shared_data_dir("physionet2021")
    shutil.copy(source / "E07500.mat", tmp_path / "E07500.mat")
    header = (source / "E07500.hea").read_text().replace("# Dx:", "# Diagnosis:")
    (tmp_path / "E07500.hea").write_text(header)
    with pytest.raises(ValueError, match=r"E07500': no '# Dx:' line"):
        load_physionet2021(tmp_path, cache_dir=tmp_path / "cache")


def three_challenge_records(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    for name in ("E07500", "E07501", "E07502"):
        for suffix in (".hea", ".mat"):
            shutil.copy(shared_data_dir("physionet2021") / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def break_record(folder, name: str, how: str) -> None:
    """Damages one WFDB record of `folder` as real downloads are damaged."""
    header, signal = folder / f"{name}.hea", folder / f"{name}.mat"
    if how == "mmHg units":
        lines = header.read_text().splitlines()
        header.write_text("\n".join([lines[0], lines[1].replace("/mV", "/mmHg"), *lines[2:]]) + "\n")
    elif how == "truncated signal file":
        os.truncate(signal, signal.stat().st_size // 2)
    else:
        signal.unlink()


@pytest.mark.parametrize(
    ("load", "how", "error", "message"),
    [
        *(
            (load, how, ValueError, message)
            for load in (load_physionet2021, load_wfdb_folder)
            for how, message in (
                ("mmHg units", r"E07501': unknown physical unit 'mmHg'"),
                ("truncated signal file", r"E07501' could not be read \(truncated or malformed"),
            )
        ),
        # load_physionet2021 tells it before reading: test_physionet2021_records_without_their_signal_file
        # found before any record is read, as a partial download, with the option that leaves it out
        (
            load_wfdb_folder,
            "missing signal file",
            FileNotFoundError,
            r"E07501 \(signal file E07501\.mat of "
            r".*E07501 not on disk\)\. Download them, or leave them out with --skip-missing",
        ),
    ],
)
def test_a_bad_record_raises_its_own_error_not_datasets_generic_one(tmp_path, load, how, error, message):
    from datasets.exceptions import DatasetGenerationError

    folder = three_challenge_records(tmp_path)
    break_record(folder, "E07501", how)
    with pytest.raises(error, match=message) as raised:
        load(folder, cache_dir=tmp_path / "cache")
    assert not isinstance(raised.value, DatasetGenerationError)


@pytest.mark.parametrize("streaming", [False, True])
def test_physionet2021_records_without_their_signal_file(tmp_path, streaming):
    """A partial download (a header whose .mat is absent): named with --skip-missing, or left out and counted."""
    folder = three_challenge_records(tmp_path)
    (folder / "E07501.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 record\(s\) whose signal file is not on disk: E07501 \(signal "
                       r"file E07501\.mat not on disk\)\. Download them, or leave them out with --skip-missing"):  # fmt: skip
        load_physionet2021(folder, cache_dir=tmp_path / "cache", streaming=streaming)
    splits = load_records("physionet2021", folder, missing="skip", cache_dir=tmp_path / "cache", streaming=streaming)
    assert splits.missing_records == {"E07501": "signal file E07501.mat not on disk"}
    assert sorted(row["record_id"] for split in splits.values() for row in split) == ["E07500", "E07502"]


# ----------------------------------------------------------------------------------------------------------- own folder


def test_wfdb_folder_with_a_labels_csv(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("record,labels,split\nE07500,brady,train\nE07501,,validation\nJS20001,brady;tachy,test\n")
    dataset = load_wfdb_folder(shared_data_dir("physionet2021"), labels_csv=csv, cache_dir=tmp_path / "cache")
    assert id2label(dataset) == {0: "brady", 1: "tachy"}
    assert dataset["test"][0]["labels"] == [1.0, 1.0] and dataset["validation"][0]["labels"] == [0.0, 0.0]

    csv.write_text("record,labels\nE07500,x\nNOPE1,y\n")
    with pytest.raises(FileNotFoundError, match=r"1 record\(s\) listed but not on disk: NOPE1"):
        load_wfdb_folder(shared_data_dir("physionet2021"), labels_csv=csv, cache_dir=tmp_path / "cache")
    csv.write_text("name,labels\nE07500,x\n")
    with pytest.raises(ValueError, match="no column 'record'"):
        load_wfdb_folder(shared_data_dir("physionet2021"), labels_csv=csv)


def test_wfdb_folder_without_labels_loads_everything(tmp_path):
    dataset = load_wfdb_folder(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    assert sum(len(split) for split in dataset.values()) == 40
    assert id2label(dataset) == {}


# ------------------------------------------------------------------------------------------------------- to model input


def test_extract_features_with_sliding_windows(tmp_path):
    dataset = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    extractor = EcgPmaFeatureExtractor(window_mode="sliding", stride=250)
    features = extract_features(dataset, extractor, num_proc=2)
    # 10 s records, 10 s windows: one window per record whatever the stride; 5 s windows at 2.5 s stride: 3
    assert len(features["train"]) == len(dataset["train"])
    half = EcgPmaFeatureExtractor(signal_length=500, window_mode="sliding", stride=250)
    windows = extract_features(dataset["test"], half)
    assert len(windows) == 3 * len(dataset["test"])
    everything = windows[:]
    assert everything["signals"].shape == (3 * len(dataset["test"]), 12, 500)
    assert everything["record_id"][:3] == [dataset["test"][0]["record_id"]] * 3
    reference = half(wfdb.rdrecord(str(shared_data_dir("physionet2021") / dataset["test"][0]["record_id"])))
    np.testing.assert_allclose(everything["signals"][:3].numpy(), reference["signals"], atol=1e-5)


# -------------------------------------------------------------------------------------------------------------- download


@pytest.fixture
def physionet_like_server(tmp_path):
    """
    A PhysioNet-like tree served over HTTP on 127.0.0.1: `ptb-xl/` answers with a page naming the latest version
    (as PhysioNet's content pages do) and `ptb-xl/1.0.3/` holds the files and the RECORDS list.
    """
    source = shared_data_dir("ptbxl-mini")
    tree = tmp_path / "server" / "ptb-xl" / "1.0.3"
    shutil.copytree(source, tree)
    (tree.parent / "index.html").write_text("<html><body><p>Version: 1.0.3</p></body></html>")
    (tree / "RECORDS").write_text("records100/00000/00001_lr\nrecords500/06000/06009_hr\n")
    with serve_directory(tmp_path / "server") as url:
        yield url, tree


def test_download_ptbxl_from_a_local_server(tmp_path, physionet_like_server):
    index_url, tree = physionet_like_server
    output = tmp_path / "downloaded"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecg_pma.cli",
            "download",
            "ptb-xl",
            str(output),
            "--index-url",
            index_url,
            "--subset",
            "records100",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for name in (
        "ptbxl_database.csv",
        "scp_statements.csv",
        "records100/00000/00001_lr.hea",
        "records100/00000/00001_lr.dat",
    ):
        assert (output / name).read_bytes() == (tree / name).read_bytes(), name
    assert not (output / "records500").exists()
    dataset = load_ptbxl(output, sampling_rate=100, missing="skip", cache_dir=tmp_path / "cache")
    assert dataset["train"][0]["record_id"] == "1"


def download(*args):
    return subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", "download", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_a_database_the_server_lacks_is_named_as_asked_and_leaves_nothing(tmp_path, physionet_like_server):
    index_url, _ = physionet_like_server
    output = tmp_path / "new" / "sample"
    result = download("physionet2021-sample", output, "--index-url", index_url)
    assert result.returncode == 2, result.stderr
    assert f"physionet2021-sample: no such database at {index_url}" in result.stderr
    assert "challenge-2021" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "new").exists()


def test_an_unreachable_server_is_told_apart_and_earlier_files_stay(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "existing"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    result = download("ptb-xl", output, "--index-url", f"http://127.0.0.1:{port}/")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"ecg-pma download: error: ptb-xl: cannot reach the server http://127.0.0.1:{port}/ (no network, or a wrong "
        "--index-url?): Connection refused\n"
    ), result.stderr
    assert "no such database" not in result.stderr
    assert sorted(path.name for path in output.iterdir()) == ["notes.txt"]


def test_missing_records_error_names_the_command_line_option(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"leave them out with --skip-missing \(Python: missing='skip'\)"):
        load_ptbxl(shared_data_dir("ptbxl-mini"), sampling_rate=100, cache_dir=tmp_path)


def test_each_split_is_generated_under_its_own_name(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # `ecg-pma` sets it when stderr is not a terminal
    dataset = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    progress = capfd.readouterr().err
    assert "Generating validation split" in progress and "Generating test split" in progress
    assert [dataset[split].split for split in ("train", "validation", "test")] == ["train", "validation", "test"]
