"""Smaller traps a new user met: errors in command-line terms, a pre-trained model given where a classifier is
needed, progress bars that name the split they read, labelled per-label results, and a LICENSE file."""

import pytest
import torch
from conftest import REPO_ROOT, shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.cli import main
from ecg_pma.data import load_physionet2021, load_ptbxl


@pytest.fixture(autouse=True)
def _no_progress_bars_left_behind(monkeypatch):
    # what `main` sets when stderr is not a terminal, undone after the test
    for variable in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(variable, "1")


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_pretrained_model_is_refused_as_not_a_classifier(tmp_path, capsys, command):
    config = EcgPmaConfig.from_preset("tiny")
    torch.manual_seed(0)
    EcgPmaForPreTraining(config).save_pretrained(tmp_path / "pretrained")
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(tmp_path / "pretrained")
    data = shared_data_dir("physionet2021")
    if command == "evaluate":
        words = [
            "evaluate",
            "--data",
            str(data),
            "--data-format",
            "physionet2021",
            "--model",
            str(tmp_path / "pretrained"),
        ]
    else:
        words = ["predict", str(tmp_path / "pretrained"), str(data / "E07500")]
    assert main(words) == 2
    error = capsys.readouterr().err
    assert "is not a classifier (EcgPmaForPreTraining)" in error and "ecg-pma finetune --model" in error
    assert "LABEL_0" not in error and "MISSING" not in error


def test_missing_records_error_names_the_command_line_option(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"leave them out with --skip-missing \(Python: missing='skip'\)"):
        load_ptbxl(shared_data_dir("ptbxl-mini"), sampling_rate=100, cache_dir=tmp_path)


def test_each_split_is_generated_under_its_own_name(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE")
    dataset = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path)
    progress = capfd.readouterr().err
    assert "Generating validation split" in progress and "Generating test split" in progress
    assert [dataset[split].split for split in ("train", "validation", "test")] == ["train", "validation", "test"]


def test_the_licence_pyproject_names_exists():
    assert 'license = "MIT"' in (REPO_ROOT / "pyproject.toml").read_text()
    assert (REPO_ROOT / "LICENSE").read_text().startswith("MIT License")
