"""The scripts in examples/ run as a user would run them (small settings, real records)."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_data_dir


def run_example(name, *args, cwd):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_examples_chain_pretrain_probe_and_study(tmp_path):
    data = shared_data_dir("physionet2021")
    out = run_example(
        "pretrain_accelerate.py", "--data", data, "--max-steps", "4", "--output-dir", tmp_path / "pre", cwd=tmp_path
    )
    assert "4 steps" in out
    out = run_example(
        "finetune_trainer.py",
        "--model",
        tmp_path / "pre",
        "--data",
        data,
        "--num-train-epochs",
        "2",
        "--output-dir",
        tmp_path / "probe",
        cwd=tmp_path,
    )
    assert "eval_macro_auroc" in out
    assert (tmp_path / "probe" / "model.safetensors").exists()
    out = run_example(
        "layerwise_probe.py",
        "--model",
        tmp_path / "pre",
        "--data",
        data,
        "--num-train-epochs",
        "2",
        "--output-dir",
        tmp_path / "study",
        cwd=tmp_path,
    )
    assert "PMA" in out and (tmp_path / "study" / "layerwise_probe.png").exists()


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    out = run_example("quickstart.py", shared_data_dir("physionet2021") / "HR06002", tmp_path / "quick", cwd=tmp_path)
    assert "reloaded with the Auto classes" in out
