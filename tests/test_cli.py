"""The `ecg-pma` command end to end on the real challenge records: pretrain -> finetune -> evaluate / predict / study."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_data_dir


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
        "--per-device-train-batch-size", "8", "--max-steps", "3", "--warmup-steps", "1", "--save-steps", "0",
    )  # fmt: skip
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    probed = ecg_pma(
        "finetune", *data, "--model", root / "pretrained", "--output-dir", root / "probed",
        "--mode", "probe", "--aggregation", "pma", "--num-train-epochs", "2", "--per-device-train-batch-size", "8",
    )  # fmt: skip
    assert probed.returncode == 0, probed.stderr[-3000:]
    assert "| test |" in probed.stdout
    # stderr is not a terminal here: no progress bars (one line per refresh in a log) and no colour codes
    assert "Writing model shards" not in probed.stderr and "Loading weights" not in probed.stderr
    assert "\x1b[" not in probed.stderr
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
def test_evaluate_by_lead_set_prints_one_table_whose_12_lead_row_is_the_plain_evaluation(workspace):
    root, data = workspace
    plain = ecg_pma("evaluate", *data, "--model", root / "probed", "--output", root / "plain.json")
    assert plain.returncode == 0, plain.stderr[-3000:]
    by_set = ecg_pma(
        "evaluate", *data, "--model", root / "probed", "--lead-sets", "12", "6", "4", "3", "2", "I,V2",
        "--output", root / "lead_sets.json",
    )  # fmt: skip
    assert by_set.returncode == 0, by_set.stderr[-3000:]
    assert "pin_memory" not in by_set.stderr  # no DataLoader warning per lead set on a CPU
    assert "| lead set | leads | macro AUROC | macro F1 | mAP | records |" in by_set.stdout
    for row in ("| 12 | I, II, III", "| 6 | I, II, III, aVR, aVL, aVF |", "| 4 | I, II, III, V2 |", "| 3 | I, II, V2 |",
                "| 2 | I, II |", "| I,V2 | I, V2 |"):  # fmt: skip
        assert row in by_set.stdout, row
    scores = json.loads((root / "lead_sets.json").read_text())["lead_sets"]
    reference = json.loads((root / "plain.json").read_text())
    for key in ("macro_auroc", "macro_f1", "macro_average_precision", "num_records"):
        assert scores["12"][key] == pytest.approx(reference[key], abs=1e-9), key
    # fewer leads, other predictions: the lead sets are really applied
    assert scores["2"]["per_label_auroc"] != scores["12"]["per_label_auroc"]

    unknown = ecg_pma("evaluate", *data, "--model", root / "probed", "--lead-sets", "7")
    assert unknown.returncode == 2 and "Lead set '7'" in unknown.stderr


@pytest.mark.slow
def test_lora_finetune_saves_an_adapter_and_a_merged_model_that_predicts(workspace):
    root, data = workspace
    result = ecg_pma(
        "finetune", *data, "--model", root / "probed", "--output-dir", root / "lora",
        "--mode", "lora", "--lora-rank", "2", "--num-train-epochs", "1", "--per-device-train-batch-size", "8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| test |" in result.stdout
    adapter_config = json.loads((root / "lora" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 2 and adapter_config["base_model_name_or_path"] == str(root / "probed")
    assert json.loads((root / "lora" / "results.json").read_text())["mode"] == "lora"
    predicted = ecg_pma("predict", root / "lora", shared_data_dir("physionet2021") / "E07500", "--json")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len(json.loads(predicted.stdout)[0]["probabilities"]) == 26


@pytest.mark.slow
def test_probe_layers_command(workspace):
    root, data = workspace
    result = ecg_pma(
        "probe-layers",
        *data,
        "--model",
        root / "pretrained",
        "--output-dir",
        root / "study",
        "--num-train-epochs",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| layer 4 |" in result.stdout and "| PMA |" in result.stdout
    assert (root / "study" / "layerwise_probe.png").exists()


NUMBER = r"\d+(?:\.\d+)?"
POSITIVE = "  <- positive"


def readme_demo_output() -> list[str]:
    """
    The output README.md shows for `ecg-pma demo`, one pattern per line: its numbers (scores, thresholds, seconds) and
    which labels are positive vary with the machine; every word, label and layout does not.
    """
    shown = re.search(r"```text\n\$ ecg-pma demo\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)[1]
    patterns = []
    for line in shown.splitlines():
        text = line.removesuffix(POSITIVE)
        pattern = NUMBER.join(map(re.escape, re.split(NUMBER, text)))
        patterns.append(pattern + f"(?:{re.escape(POSITIVE)})?" if "(threshold" in text else pattern)
    return patterns


def demo_output_matches_the_readme(output: str) -> None:
    """Every line printed (stdout and stderr, as a terminal shows them) is the README's line, numbers aside."""
    printed = [line for line in output.splitlines() if line.strip()]
    shown = readme_demo_output()
    assert len(printed) == len(shown), "\n".join(printed)
    for line, pattern in zip(printed, shown):
        assert re.fullmatch(pattern, line), f"printed {line!r}, README.md shows {pattern!r}"


@pytest.mark.slow
def test_demo_runs_offline_end_to_end(tmp_path):
    result = ecg_pma("demo", "--output-dir", tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    # what a newcomer sees, stderr included (no warning between the steps), is the output README.md shows
    demo_output_matches_the_readme((result.stdout + result.stderr).replace(str(tmp_path), "outputs/demo"))
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary["masked_loss"]["last_20_mean"] < summary["masked_loss"]["first"]
    assert set(summary["probe_macro_auroc"]) == {"last", "ppa", "pma"}
    # the simulated classes are learnable: the PMA probe is far better than chance
    assert summary["probe_macro_auroc"]["pma"]["test"] > 0.65
    assert (tmp_path / "probe-pma" / "model.safetensors").exists()
    card = (tmp_path / "probe-pma" / "README.md").read_text()
    assert "simulated 12-lead ECGs" in card and "not real recordings" in card
    print(result.stdout)


@pytest.mark.slow
def test_the_demo_runs_on_real_records_with_data(tmp_path):
    """`--data FOLDER` runs the demo on PhysioNet-2021-style records instead of simulated ones (a short run)."""
    records = shared_data_dir("physionet2021")
    result = ecg_pma(
        "demo", "--data", records, "--output-dir", tmp_path, "--pretrain-steps", "4", "--probe-epochs", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"[1/5] data: real records in {records}; labels [" in result.stdout
    assert f"[5/5] prediction for WFDB record {records}/" in result.stdout
    assert not (tmp_path / "data").exists()  # nothing simulated
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary["pretraining_steps"] == 4 and summary["prediction"]["record"].startswith(str(records))


def test_option_choices_are_the_package_constants():
    from ecg_pma.cli import build_parser
    from ecg_pma.commands.finetune import finetune_argument_parser
    from ecg_pma.configuration_ecg_pma import AGGREGATIONS, HEAD_TYPES, PRETRAINING_AGGREGATIONS
    from ecg_pma.constants import SPLITS
    from ecg_pma.serving.inference import DTYPES
    from ecg_pma.training.finetune import MODES
    from ecg_pma.training.pretrain import MIXED_PRECISIONS

    subcommands = dict(next(a for a in build_parser()._actions if a.dest == "command").choices)
    subcommands["finetune"] = finetune_argument_parser("probe")  # built when the subcommand is chosen
    choices = {
        (name, action.dest): tuple(action.choices)
        for name, subparser in subcommands.items()
        for action in subparser._actions
        if action.choices is not None
    }
    assert choices[("finetune", "mode")] == MODES and "lora" in MODES
    assert choices[("finetune", "aggregation")] == AGGREGATIONS
    assert choices[("finetune", "head_type")] == choices[("probe-layers", "head_type")] == HEAD_TYPES
    assert choices[("pretrain", "pretraining_aggregation")] == PRETRAINING_AGGREGATIONS
    assert choices[("pretrain", "mixed_precision")] == MIXED_PRECISIONS
    assert choices[("evaluate", "split")] == SPLITS
    assert choices[("predict", "dtype")] == DTYPES
    args = build_parser().parse_args(["finetune", "--data", "d", "--model", "m", "--output-dir", "o", "--mode", "lora",
                                      "--lora-rank", "4"])  # fmt: skip
    options = args.finetune_args
    assert (options.mode, options.lora_rank, options.lora_alpha, options.lora_dropout) == ("lora", 4, None, 0.0)
