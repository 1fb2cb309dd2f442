"""Real-data tests must not pass silently when ../shared/data is missing: under CI they fail."""

import conftest
import pytest


def test_missing_shared_data_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "nowhere")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="real test data not found"):
        conftest.shared_data_dir("physionet2021")


def test_missing_shared_data_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "nowhere")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        conftest.shared_data_dir("physionet2021")


def test_shared_data_is_found_here():
    assert (conftest.shared_data_dir("physionet2021") / "E07500.hea").exists()
