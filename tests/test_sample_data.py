"""
Where an outside user's data comes from: `ecg-pma download physionet2021-sample` from a PhysioNet-like server (here
one on 127.0.0.1 serving the real records of ../shared/data in the challenge's folder layout), and `ecg-pma simulate`.
"""

import os
import subprocess
import sys

import pytest
from conftest import shared_data_dir
from hub_server import serve_directory

from ecg_pma.data import SAMPLES, load_physionet2021, load_wfdb_folder


# The challenge-2021 training folders of the sample's records (1000 records per folder, numbered per source).
FOLDERS = {"E": "training/georgia/g8", "HR060": "training/ptb-xl/g7", "JS": "training/ningbo/g10"}


def folder_of(name):
    if name == "HR06000":
        return "training/ptb-xl/g6"
    return next(folder for prefix, folder in FOLDERS.items() if name.startswith(prefix))


@pytest.fixture
def challenge_mirror(tmp_path):
    """`challenge-2021/1.0.3/` as PhysioNet lays it out: a top RECORDS naming folders, each with its own RECORDS."""
    source = shared_data_dir("physionet2021")
    root = tmp_path / "server" / "challenge-2021"
    version = root / "1.0.3"
    version.mkdir(parents=True)
    (root / "index.html").write_text("<html><body><p>Version: 1.0.3</p></body></html>")
    names = SAMPLES["physionet2021-sample"][1]
    folders = {}
    for name in names:
        folders.setdefault(folder_of(name), []).append(name)
    folders["training/cpsc_2018/g1"] = ["A0001"]  # a record of the database that is not in the sample
    (version / "RECORDS").write_text("".join(f"{folder}/\n" for folder in folders))
    for folder, members in folders.items():
        (version / folder).mkdir(parents=True)
        (version / folder / "RECORDS").write_text("".join(f"{name}\n" for name in members))
        for name in members:
            for suffix in (".hea", ".mat"):
                if (source / f"{name}{suffix}").exists():
                    os.symlink(source / f"{name}{suffix}", version / folder / f"{name}{suffix}")
    with serve_directory(tmp_path / "server") as url:
        yield url


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_download_the_challenge_sample_from_a_mirror(tmp_path, challenge_mirror):
    output = tmp_path / "sample"
    result = cli("download", "physionet2021-sample", output, "--index-url", challenge_mirror)
    assert result.returncode == 0, result.stderr[-3000:]
    source = shared_data_dir("physionet2021")
    headers = sorted(output.rglob("*.hea"))
    assert len(headers) == 40 and not list(output.rglob("A0001*"))
    assert sorted(path.name for path in output.iterdir()) == sorted(path.name for path in source.iterdir())
    for header in headers:
        for suffix in (".hea", ".mat"):
            assert header.with_suffix(suffix).read_bytes() == (source / header.with_suffix(suffix).name).read_bytes()
    downloaded = load_physionet2021(output, cache_dir=tmp_path / "cache-downloaded")
    shared = load_physionet2021(source, cache_dir=tmp_path / "cache-shared")
    for split in ("train", "validation", "test"):
        assert sorted(downloaded[split]["record_id"]) == sorted(shared[split]["record_id"])


@pytest.mark.slow
def test_a_sample_record_missing_from_the_mirror_is_named(tmp_path, challenge_mirror):
    records = tmp_path / "server/challenge-2021/1.0.3/training/ningbo/g10/RECORDS"
    records.write_text(records.read_text().replace("JS20014\n", ""))
    result = cli("download", "physionet2021-sample", tmp_path / "sample", "--index-url", challenge_mirror)
    assert result.returncode != 0 and "['JS20014'] are not in its RECORDS lists" in result.stderr


def test_simulate_writes_loadable_records_marked_as_simulated(tmp_path):
    result = cli("simulate", tmp_path / "sim", "--num-records", "40", "--seed", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "sim" / "simulated.json").exists()
    dataset = load_wfdb_folder(tmp_path / "sim", labels_csv=tmp_path / "sim" / "labels.csv", cache_dir=tmp_path / "c")
    assert {split: len(rows) for split, rows in dataset.items()} == {"train": 32, "validation": 4, "test": 4}
    too_few = cli("simulate", tmp_path / "few", "--num-records", "12")
    assert too_few.returncode == 2 and "--num-records must be at least 40" in too_few.stderr
