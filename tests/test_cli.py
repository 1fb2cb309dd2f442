"""The `ecg-pma` command end to end on the real challenge records: pretrain -> finetune -> evaluate / predict / study."""

import json
import os
import subprocess
import sys

import pytest
from conftest import shared_data_dir


def ecg_pma(*args, timeout=600):
    result = subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = [
        "--data",
        shared_data_dir("physionet2021"),
        "--data-format",
        "physionet2021",
        "--cache-dir",
        root / "cache",
    ]
    pretrained = ecg_pma(
        "pretrain", *data, "--preset", "tiny", "--output-dir", root / "pretrained",
        "--batch-size", "8", "--max-steps", "3", "--warmup-steps", "1", "--save-steps", "0",
    )  # fmt: skip
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    probed = ecg_pma(
        "finetune", *data, "--model", root / "pretrained", "--output-dir", root / "probed",
        "--mode", "probe", "--aggregation", "pma", "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
    )  # fmt: skip
    assert probed.returncode == 0, probed.stderr[-3000:]
    assert "| test |" in probed.stdout
    # stderr is not a terminal here: no progress bars (one line per refresh in a log)
    assert "Writing model shards" not in probed.stderr and "Loading weights" not in probed.stderr
    return root, data


@pytest.mark.slow
def test_evaluate_reproduces_the_finetune_test_scores(workspace):
    root, data = workspace
    result = ecg_pma("evaluate", *data, "--model", root / "probed", "--split", "test", "--output", root / "eval.json")
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((root / "eval.json").read_text())
    finetuned = json.loads((root / "probed" / "results.json").read_text())["test"]
    for key in ("macro_auroc", "macro_average_precision", "macro_f1", "accuracy", "num_records"):
        assert scores[key] == pytest.approx(finetuned[key], abs=1e-6), key


@pytest.mark.slow
def test_evaluate_refuses_a_dataset_with_other_labels(workspace, tmp_path):
    root, _ = workspace
    csv = tmp_path / "labels.csv"
    csv.write_text("record,labels,split\nE07500,x,test\nE07501,y,test\n")
    result = ecg_pma(
        "evaluate", "--data", shared_data_dir("physionet2021"), "--data-format", "wfdb", "--labels-csv", csv,
        "--cache-dir", tmp_path / "cache", "--model", root / "probed",
    )  # fmt: skip
    assert result.returncode == 2
    assert "The dataset's labels ['x', 'y'] are not the model's" in result.stderr


@pytest.mark.slow
def test_predict_prints_probabilities_and_layer_weights(workspace):
    root, _ = workspace
    records = [shared_data_dir("physionet2021") / "E07500", str(shared_data_dir("physionet2021") / "JS20003") + ".hea"]
    result = ecg_pma("predict", root / "probed", *records, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads(result.stdout)
    assert [p["record"] for p in predictions] == [str(r) for r in records]
    assert len(predictions[0]["probabilities"]) == 26 and "NSR" in predictions[0]["probabilities"]
    assert sum(predictions[0]["layer_weights"]) == pytest.approx(1.0, abs=1e-5)

    table = ecg_pma("predict", root / "probed", records[0], "--dtype", "bf16", "--compile")
    assert table.returncode == 0, table.stderr[-3000:]
    assert "layer weights:" in table.stdout and "STach" in table.stdout

    missing = ecg_pma("predict", root / "probed", root / "no_such_record")
    assert missing.returncode == 2 and "no_such_record.hea not found" in missing.stderr


@pytest.mark.slow
def test_probe_layers_command(workspace):
    root, data = workspace
    result = ecg_pma(
        "probe-layers", *data, "--model", root / "pretrained", "--output-dir", root / "study", "--epochs", "2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| layer 4 |" in result.stdout and "| PMA |" in result.stdout
    assert (root / "study" / "layerwise_probe.png").exists()


@pytest.mark.slow
def test_demo_runs_offline_end_to_end(tmp_path):
    result = ecg_pma("demo", "--output-dir", tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in result.stdout
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary["masked_loss"]["last_20_mean"] < summary["masked_loss"]["first"]
    assert set(summary["probe_macro_auroc"]) == {"last", "ppa", "pma"}
    # the simulated classes are learnable: the PMA probe is far better than chance
    assert summary["probe_macro_auroc"]["pma"]["test"] > 0.65
    assert (tmp_path / "probe-pma" / "model.safetensors").exists()
    card = (tmp_path / "probe-pma" / "README.md").read_text()
    assert "simulated 12-lead ECGs" in card and "not real recordings" in card
    print(result.stdout)
