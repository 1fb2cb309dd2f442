"""Paths from files and servers stay inside their root; push checks the folder first; pickles are refused."""

import os
import pickle
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import shared_data_dir
from hub_server import LocalHub, serve_directory

from ecg_pma.data import load_ptbxl, load_wfdb_folder
from ecg_pma.data.records import path_inside


def cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        cwd=cwd,
    )


def assert_clean_failure(result, *expected):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("entry", ["../outside", "a/../../outside", "/etc/passwd", "records100/../../x"])
def test_entries_leaving_the_root_are_refused(tmp_path, entry):
    with pytest.raises(ValueError, match="row 7"):
        path_inside(tmp_path / "root", entry, "listing, row 7")


def test_entries_inside_the_root_are_kept(tmp_path):
    assert path_inside(tmp_path, "records100/00000/00001_lr", "x") == os.path.join(
        str(tmp_path), "records100/00000/00001_lr"
    )
    assert path_inside(tmp_path, "a/../b", "x").endswith("a/../b")


# ------------------------------------------------------------------------------------------------------ local tables


def test_a_labels_csv_row_leading_outside_the_root_is_named(tmp_path):
    root = tmp_path / "records"
    shutil.copytree(shared_data_dir("physionet2021"), root)
    outside = tmp_path / "secret"
    outside.mkdir()
    shutil.copy(root / "E07500.hea", outside / "E07500.hea")
    csv = tmp_path / "labels.csv"
    csv.write_text("record,labels,split\nE07501,x,train\n../secret/E07500,y,train\n")
    with pytest.raises(ValueError, match=r"labels.csv, row 3 \(record\): '../secret/E07500' leads outside"):
        load_wfdb_folder(root, labels_csv=csv, cache_dir=tmp_path / "cache")
    csv.write_text(f"record,labels,split\n{root / 'E07501'},x,train\n")
    with pytest.raises(ValueError, match=r"labels.csv, row 2 \(record\): '.*E07501' is an absolute path"):
        load_wfdb_folder(root, labels_csv=csv, cache_dir=tmp_path / "cache")


def test_a_ptbxl_filename_leading_outside_the_root_is_named(tmp_path):
    root = tmp_path / "ptbxl"
    shutil.copytree(shared_data_dir("ptbxl-mini"), root)
    table = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    ecg_id = table.index[1]
    table.loc[ecg_id, "filename_lr"] = "../../elsewhere/00001_lr"
    table.to_csv(root / "ptbxl_database.csv")
    with pytest.raises(
        ValueError, match=rf"ecg_id {ecg_id} \(filename_lr\): '../../elsewhere/00001_lr' leads outside"
    ):
        load_ptbxl(root, sampling_rate=100, missing="skip", cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------------------------------- download from a mirror


@pytest.fixture
def hostile_mirror(tmp_path):
    """A PhysioNet-like server on 127.0.0.1 whose RECORDS lists a record two folders above the output."""
    source = shared_data_dir("ptbxl-mini")
    tree = tmp_path / "server" / "ptb-xl" / "1.0.3"
    shutil.copytree(source, tree)
    (tree.parent / "index.html").write_text("<html><body><p>Version: 1.0.3</p></body></html>")
    # what `../../x/rec` resolves to on the server, so that the header is served and only our check stops it
    escaped = tmp_path / "server" / "x"
    escaped.mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(tree / "records100" / "00000" / f"00001_lr{suffix}", escaped / f"00001_lr{suffix}")
    (tree / "RECORDS").write_text("records100/00000/00001_lr\n../../x/00001_lr\n")
    with serve_directory(tmp_path / "server") as url:
        yield url


def test_download_refuses_records_that_leave_the_output_folder(tmp_path, hostile_mirror):
    output = tmp_path / "work" / "a" / "downloaded"
    result = cli("download", "ptb-xl", output, "--index-url", hostile_mirror)
    assert_clean_failure(result, "'../../x/00001_lr.hea' leads outside", str(output))
    # nothing written above the output folder, and the folders the failed download created are gone
    assert not (tmp_path / "work").exists()
    assert not (tmp_path / "work" / "x").exists() and not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------------------- push


def test_push_of_a_missing_folder_creates_no_repository(tmp_path):
    with LocalHub("hf_test_token") as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_test_token", "HF_HUB_OFFLINE": "0"}
        missing = cli("push", tmp_path / "no_such_model", "me/ecg", env=env)
        assert_clean_failure(missing, "no_such_model is not a saved model folder (no config.json)")
        (tmp_path / "empty").mkdir()
        empty = cli("push", tmp_path / "empty", "me/ecg", env=env)
        assert_clean_failure(empty, "empty is not a saved model folder (no config.json); nothing was pushed")
        assert hub.state.repos == {}
        assert not [path for method, path in hub.state.requests if method == "POST"]


# ----------------------------------------------------------------------------------------------------------- pickles


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickles_are_refused_and_never_executed(tmp_path, tiny_config):
    from ecg_pma import EcgPmaForSequenceClassification

    malicious = tmp_path / "st_mem.pth"
    malicious.write_bytes(pickle.dumps({"model": Payload()}))
    result = cli("convert-st-mem", malicious, tmp_path / "converted", cwd=tmp_path)
    assert_clean_failure(result, f"{malicious}: refusing to unpickle it")

    model_dir = tmp_path / "model"
    EcgPmaForSequenceClassification(tiny_config).save_pretrained(model_dir)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    result = cli("predict", model_dir, shared_data_dir("physionet2021") / "E07500", cwd=tmp_path)
    assert_clean_failure(result, "pytorch_model.bin: refusing to unpickle it")
    assert not (tmp_path / "PWNED").exists()
