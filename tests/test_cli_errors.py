"""Every `ecg-pma` command ends bad input with a short message naming the file, record or argument, and no traceback
unless asked for with --debug or ECG_PMA_DEBUG=1."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import shared_data_dir
from hub_server import LocalHub

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.cli import main


RECORD = None  # set lazily: shared data may be absent locally


def run_cli(capsys, *args):
    """`ecg-pma ARGS` in this process: (exit code, stderr)."""
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as stop:  # argparse
        code = stop.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.err


def assert_fails(capsys, expected, *args, code=2):
    status, err = run_cli(capsys, *args)
    assert status == code, err
    for text in [expected] if isinstance(expected, str) else expected:
        assert text in err, err
    return err


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    config = EcgPmaConfig.from_preset("tiny", num_labels=3, aggregation="pma")
    torch.manual_seed(0)
    EcgPmaForSequenceClassification(config).save_pretrained(folder)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    config = EcgPmaConfig.from_preset("tiny")
    EcgPmaForPreTraining(config).save_pretrained(folder)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


@pytest.fixture
def damaged(tmp_path, classifier_dir):
    """A copy of the classifier folder, for one test to damage."""
    copy = tmp_path / "model"
    shutil.copytree(classifier_dir, copy)
    return copy


def data_args(tmp_path):
    return ["--data", shared_data_dir("physionet2021"), "--data-format", "physionet2021", "--cache-dir", tmp_path]


# ------------------------------------------------------------------------------------------------- arguments (parse)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--num-train-epochs", "-1", "argument --num-train-epochs: must be a number > 0, got '-1'"),
        ("--num-train-epochs", "0", "argument --num-train-epochs: must be a number > 0, got '0'"),
        ("--max-steps", "-3", "argument --max-steps: must be an integer >= 1, got '-3'"),
        ("--max-steps", "0", "argument --max-steps: must be an integer >= 1, got '0'"),
        ("--gradient-accumulation-steps", "0", "argument --gradient-accumulation-steps: must be an integer >= 1"),
        ("--warmup-steps", "-5", "argument --warmup-steps: must be an integer >= 0, got '-5'"),
        (
            "--per-device-train-batch-size",
            "0",
            "argument --per-device-train-batch-size: must be an integer >= 1, got '0'",
        ),
        (
            "--per-device-train-batch-size",
            "-1",
            "argument --per-device-train-batch-size: must be an integer >= 1, got '-1'",
        ),
        ("--base-learning-rate", "nan", "argument --base-learning-rate: must be a number > 0, got 'nan'"),
        ("--seed", "-1", "argument --seed: must be an integer >= 0, got '-1'"),
    ],
)
def test_pretrain_arguments_are_checked_at_parse_time(capsys, tmp_path, option, value, expected):
    assert_fails(capsys, expected, "pretrain", *data_args(tmp_path), "--output-dir", tmp_path / "out", option, value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["probe-layers", "--model", ".", "--output-dir", "o", "--num-train-epochs", "0"],
            "argument --num-train-epochs: must be an integer >= 1",
        ),
        (["evaluate", "--model", ".", "--batch-size", "-1"], "argument --batch-size: must be an integer >= 1"),
        (["predict", ".", "r", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
        (
            ["export-onnx", ".", "out.onnx", "--opset", "0"],
            "argument --opset: must be an integer >= 7 and <= 20, got '0'",
        ),
        (["demo", "--num-records", "0"], "argument --num-records: must be an integer >= 1"),
        (["convert-st-mem", "no_such.pth", "out"], "no_such.pth: no such checkpoint file"),
        (["push", "no_such_folder", "me/repo"], "no_such_folder is not a saved model folder (no config.json)"),
        # a model that is neither a folder nor a Hub id that can be reached
        (
            ["predict", "no/such/model", "r"],
            "no such folder no/such/model (and not a reachable Hub id: not of the form",
        ),
        (
            ["evaluate", "--model", "missing-model"],
            "no such folder missing-model (and not a reachable Hub id: ",
        ),
        (
            ["probe-layers", "--model", "./missing", "--output-dir", "o"],
            "no such folder ./missing (and not a reachable",
        ),
        (["export-onnx", "missing-model", "out.onnx"], "model_dir: no such folder missing-model"),
        (["pretrain", "--data", "d", "--config", "missing", "--output-dir", "o"], "--config: no such folder missing"),
        (["finetune", "--data", "d", "--model", "missing", "--output_dir", "o"], "--model: no such folder missing"),
        # screening usage errors are usage errors: exit status 2 and the command's name
        (["predict", ".", ".", "--output", "x.csv", "--dtype", "bf16"], "ecg-pma predict: error: --output screening"),
        (["predict", ".", "."], "ecg-pma predict: error: a folder of records is screened into a CSV"),
    ],
)
def test_other_commands_check_their_arguments(capsys, tmp_path, command, expected):
    needs_data = command[0] in ("probe-layers", "evaluate")
    assert_fails(capsys, expected, *command, *(data_args(tmp_path) if needs_data else []))


def test_the_opset_range_is_torch_onnx_s():
    from torch.onnx import _constants

    from ecg_pma.commands.export_onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
    from ecg_pma.serving.onnx_export import DEFAULT_OPSET as EXPORT_DEFAULT

    assert (MIN_OPSET, MAX_OPSET) == (_constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    assert DEFAULT_OPSET == EXPORT_DEFAULT


def test_output_paths_that_are_files_or_folders_of_the_wrong_kind(capsys, tmp_path, classifier_dir):
    existing_file = tmp_path / "taken"
    existing_file.write_text("x")
    assert_fails(
        capsys, f"argument --output-dir: {existing_file} exists and is not a folder",
        "pretrain", *data_args(tmp_path), "--output-dir", existing_file,
    )  # fmt: skip
    assert_fails(
        capsys, f"argument --output-dir: {existing_file / 'sub'}: {existing_file} is a file",
        "probe-layers", *data_args(tmp_path), "--model", classifier_dir, "--output-dir", existing_file / "sub",
    )  # fmt: skip
    assert_fails(capsys, f"argument output: {tmp_path} is a folder", "export-onnx", classifier_dir, tmp_path)


def test_fp16_on_the_cpu_is_refused_before_any_record_is_read(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid where a GPU is")
    assert_fails(
        capsys, "`mixed_precision='fp16'` needs a CUDA GPU",
        "pretrain", *data_args(tmp_path / "cache"), "--output-dir", tmp_path / "out", "--mixed-precision", "fp16",
    )  # fmt: skip
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------------ model folders (run)


def record():
    return shared_data_dir("physionet2021") / "E07500"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: (d / "config.json").unlink(), "Should have a `model_type` key in its config.json"),
        (lambda d: (d / "config.json").write_text(""), "config.json' is not a valid JSON file"),
        (lambda d: (d / "config.json").write_text('{"model_type": "ecg_pma",'), "config.json' is not a valid JSON"),
        (
            lambda d: (d / "preprocessor_config.json").write_text("[1,"),
            "preprocessor_config.json' is not a valid JSON",
        ),
        (lambda d: (d / "model.safetensors").unlink(), "no file named model.safetensors"),
        (lambda d: (d / "model.safetensors").write_bytes(b""), "model.safetensors is not a readable safetensors file"),
        (
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]),
            "model.safetensors is not a readable safetensors file",
        ),
        (lambda d: (d / "model.safetensors").write_bytes(b"garbage" * 100), "not a readable safetensors file"),
    ],
)
def test_predict_names_the_damaged_file(capsys, damaged, damage, expected):
    damage(damaged)
    err = assert_fails(capsys, expected, "predict", damaged, record())
    assert str(damaged) in err
    assert len([line for line in err.splitlines() if line.startswith("ecg-pma predict")]) == 1


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"hidden_size": 64, "intermediate_size": 128}, "weights do not fit the config: "),
        ({"head_type": "linear"}, "weights the config does not use: ['classifier.head.0.bias'"),
        ({"qkv_bias": False}, "weights the config does not use: ['ecg_pma.encoder.layers.0.attention.qkv.bias'"),
        ({"aggregation": "last"}, "weights the config does not use: ['aggregator.gate.gate.0.bias'"),
        ({"aggregation": "ppa"}, "weights the config does not use: ['aggregator.gate.gate.0.bias'"),
        ({"aggregation_layer": 99, "aggregation": "layer"}, "`aggregation_layer` 99 is out of range for 4 layers"),
        ({"signal_length": 1000.5}, "`signal_length` must be a positive integer, got 1000.5"),
    ],
)
def test_a_config_that_does_not_fit_the_weights_fails_loudly(capsys, damaged, changes, expected):
    _edit_config(damaged, **changes)
    assert_fails(capsys, expected, "predict", damaged, record())


def test_predict_and_export_refuse_a_pretraining_checkpoint(capsys, tmp_path, pretrained_dir):
    expected = f"{pretrained_dir} is not a classifier (EcgPmaForPreTraining): it is a pre-trained model without a"
    assert_fails(capsys, expected, "predict", pretrained_dir, record())
    assert_fails(capsys, expected, "export-onnx", pretrained_dir, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


# ----------------------------------------------------------------------------------------------------- other commands


def test_convert_st_mem_names_a_text_or_truncated_file(capsys, tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    assert_fails(capsys, f"{text}: not a readable PyTorch checkpoint", "convert-st-mem", text, tmp_path / "out")
    torch.save({"w": torch.zeros(1000)}, tmp_path / "whole.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((tmp_path / "whole.pth").read_bytes()[:500])
    assert_fails(
        capsys, f"{truncated}: not a readable PyTorch checkpoint", "convert-st-mem", truncated, tmp_path / "o"
    )


def test_an_unreadable_record_in_a_folder_is_named(capsys, tmp_path):
    folder = tmp_path / "records"
    shutil.copytree(shared_data_dir("physionet2021"), folder)
    (folder / "E07501.mat").write_bytes(b"\x00" * 10)  # truncated signal file
    err = assert_fails(
        capsys, "E07501",
        "pretrain", "--data", folder, "--data-format", "wfdb", "--cache-dir", tmp_path / "cache", "--all-splits",
        "--output-dir", tmp_path / "out", "--preset", "tiny", "--max-steps", "1",
    )  # fmt: skip  # --all-splits: pretrain reads only the splits it trains on, and E07501 is not in train
    assert "WFDB record" in err and "could not be read" in err  # the record's own error, not datasets' generic one


def test_finetune_with_an_out_of_range_layer_fails_before_training(capsys, tmp_path, pretrained_dir):
    assert_fails(
        capsys, f"--aggregation-layer 99 is out of range: {pretrained_dir} has 4 layers",
        "finetune", *data_args(tmp_path / "cache"), "--model", pretrained_dir, "--output-dir", tmp_path / "out",
        "--aggregation", "layer", "--aggregation-layer", "99", "--num-train-epochs", "1",
    )  # fmt: skip
    assert not (tmp_path / "out").exists()


def cli_process(*args, env=None):
    """`ecg-pma ARGS` in a fresh process (huggingface_hub reads HF_ENDPOINT when imported)."""
    variables = {**os.environ, "HF_HUB_OFFLINE": "0", **(env or {})}
    variables.pop("ECG_PMA_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=variables,
        timeout=300,
    )


def test_push_failures_are_one_line(classifier_dir):
    with LocalHub("hf_right_token") as hub:
        refused = cli_process(
            "push", classifier_dir, "me/ecg", "--token", "hf_wrong", env={"HF_ENDPOINT": hub.endpoint}
        )
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
        assert (
            "ecg-pma push: error: Client error '401 Unauthorized'" in refused.stderr
            and "hf_wrong" not in refused.stderr
        )
        assert hub.state.repos == {}
    # a closed port on the loopback: refused at once
    unreachable = cli_process(
        "push", classifier_dir, "me/ecg", "--token", "hf_x", env={"HF_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert unreachable.returncode == 2 and "Traceback" not in unreachable.stderr, unreachable.stderr[-3000:]
    assert "ecg-pma push: error: could not reach the server http://127.0.0.1:9/" in unreachable.stderr


# ------------------------------------------------------------------------------------------------------------ --debug


def test_debug_shows_the_traceback_and_only_then(tmp_path, damaged):
    (damaged / "config.json").write_text("")
    command = [sys.executable, "-m", "ecg_pma.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ECG_PMA_DEBUG", None)
    quiet = subprocess.run([*command, "predict", damaged, record()], capture_output=True, text=True, env=env)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert "config.json' is not a valid JSON file" in quiet.stderr and "--debug" in quiet.stderr
    for extra, variables in (([], {"ECG_PMA_DEBUG": "1"}), (["--debug"], {})):
        loud = subprocess.run(
            [*command, *extra, "predict", damaged, record()], capture_output=True, text=True, env={**env, **variables}
        )
        assert loud.returncode != 0 and "Traceback" in loud.stderr and "JSONDecodeError" in loud.stderr


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_pretrained_model_is_refused_as_not_a_classifier(tmp_path, capsys, command):
    config = EcgPmaConfig.from_preset("tiny")
    torch.manual_seed(0)
    EcgPmaForPreTraining(config).save_pretrained(tmp_path / "pretrained")
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(tmp_path / "pretrained")
    data = shared_data_dir("physionet2021")
    if command == "evaluate":
        words = ["evaluate", "--data", data, "--data-format", "physionet2021", "--model", tmp_path / "pretrained"]
    else:
        words = ["predict", tmp_path / "pretrained", data / "E07500"]
    error = assert_fails(capsys, ["is not a classifier (EcgPmaForPreTraining)", "ecg-pma finetune --model"], *words)
    assert "LABEL_0" not in error and "MISSING" not in error
