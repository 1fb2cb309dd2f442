"""
`ecg-pma finetune` through `HfArgumentParser` (every `TrainingArguments` option, validated ranges), seeded so that
two runs agree, and resumable from its safetensors checkpoints.
"""

import contextlib
import io
import json

import pytest
import torch
from conftest import shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.cli import build_parser, main


@pytest.fixture(autouse=True)
def _no_progress_bars_left_behind(monkeypatch):
    # what `main` sets when stderr is not a terminal, undone after the test
    for variable in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(variable, "1")


def parse(*words):
    """(exit code, stdout, stderr) of parsing `words`; exit code None when parsing succeeded."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(list(map(str, words)))
        except SystemExit as error:
            return error.code, " ".join(out.getvalue().split()), err.getvalue()  # help text unwrapped
    return None, out.getvalue(), err.getvalue()


def test_the_parser_choices_are_the_package_ones():
    """`ecg_pma.constants` (light, for the parser) writes the self-contained config module's choices again."""
    from ecg_pma import PRESETS, configuration_ecg_pma, constants

    assert tuple(sorted(PRESETS)) == constants.PRESET_NAMES
    for name in ("AGGREGATIONS", "PRETRAINING_AGGREGATIONS", "HEAD_TYPES"):
        assert getattr(configuration_ecg_pma, name) == getattr(constants, name), name


def test_finetune_help_lists_training_arguments_with_the_modes_defaults():
    code, probe_help, _ = parse("finetune", "--help")
    assert code == 0
    for option in ("--report_to", "--bf16", "--gradient_accumulation_steps", "--resume_from_checkpoint", "--data"):
        assert option in probe_help, option
    assert "Total number of training epochs to perform. (default: 100)" in probe_help  # the paper's schedule
    _, finetune_help, _ = parse("finetune", "--mode", "finetune", "--help")
    assert "(default: 6.25e-05)" in finetune_help and "(default: 6.25e-05)" not in probe_help


def test_finetune_arguments_are_parsed_into_dataclasses():
    args = build_parser().parse_args(
        ["finetune", "--data", "d", "--model", "m", "--output-dir", "o", "--mode", "finetune", "--report_to",
         "tensorboard", "--gradient_accumulation_steps", "4", "--bf16", "--use_cpu", "--aggregation", "layer",
         "--aggregation_layer", "-1"]
    )  # fmt: skip
    assert (args.finetune_args.mode, args.finetune_args.aggregation_layer) == ("finetune", -1)
    training = args.training_args
    assert (training.output_dir, training.gradient_accumulation_steps, training.bf16) == ("o", 4, True)
    assert training.report_to == ["tensorboard"]
    assert training.num_train_epochs == 100 and training.learning_rate == pytest.approx(1e-3 * 16 / 256)
    assert args.data_args.data == "d" and args.data_args.data_format == "ptbxl"


@pytest.mark.parametrize(
    "words, message",
    [
        (["--num_train_epochs", "0"], "num_train_epochs must be > 0"),
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1"),
        (["--learning_rate", "-1"], "learning_rate must be > 0"),
        (["--aggregation", "layer"], "--aggregation layer needs --aggregation_layer"),
        (["--aggregation", "pma", "--aggregation_layer", "2"], "used only with --aggregation layer"),
        (["--mode", "probes"], "invalid choice"),
    ],
)
def test_finetune_refuses_bad_values_as_usage_errors(words, message):
    code, _, err = parse("finetune", "--data", "d", "--model", "m", "--output_dir", "o", *words)
    assert code == 2 and message in err


# ------------------------------------------------------------------------------------------------ runs on records


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny pre-training checkpoint (random weights are enough: the runs are compared with each other)."""
    folder = tmp_path_factory.mktemp("pretrained")
    config = EcgPmaConfig.from_preset("tiny")
    torch.manual_seed(0)
    EcgPmaForPreTraining(config).save_pretrained(folder)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


def finetune(pretrained, output_dir, *extra):
    data = shared_data_dir("physionet2021")
    words = [
        "finetune", "--data", data, "--data-format", "physionet2021", "--cache-dir", output_dir.parent / "cache",
        "--model", pretrained, "--output_dir", output_dir, "--aggregation", "pma", "--num_train_epochs", "2",
        "--per_device_train_batch_size", "8", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(list(map(str, words))) == 0
    return json.loads((output_dir / "results.json").read_text())


def test_an_aggregation_layer_out_of_range_stops_before_any_data_is_read(tmp_path, pretrained, capsys):
    code = main(
        ["finetune", "--data", str(tmp_path / "no-data"), "--model", str(pretrained), "--output_dir",
         str(tmp_path / "out"), "--aggregation", "layer", "--aggregation_layer", "4"]
    )  # fmt: skip
    assert code == 2
    assert "--aggregation_layer 4 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_runs_with_one_seed_agree_and_another_seed_differs(tmp_path, pretrained):
    first = finetune(pretrained, tmp_path / "first", "--seed", "7")
    second = finetune(pretrained, tmp_path / "second", "--seed", "7")
    assert first == second
    other = finetune(pretrained, tmp_path / "other", "--seed", "8")
    assert other["validation"]["macro_auroc"] != first["validation"]["macro_auroc"]
    assert first["labels"][:3] == ["AF", "AFL", "BBB"] and len(first["labels"]) == len(first["test"]["thresholds"])


@pytest.mark.slow
def test_a_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path, pretrained):
    full = finetune(pretrained, tmp_path / "full", "--save_total_limit", "2")
    checkpoints = sorted((tmp_path / "full").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    first_epoch = checkpoints[0]
    names = {path.name for path in first_epoch.iterdir()}
    assert {"model.safetensors", "optimizer.safetensors", "scheduler.json", "random_state_0.safetensors"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    resumed = finetune(pretrained, tmp_path / "resumed", "--resume_from_checkpoint", first_epoch)
    assert resumed["validation"] == full["validation"] and resumed["test"] == full["test"]


def test_fewer_training_rows_than_a_batch_say_the_counts_and_what_to_lower(tmp_path):
    from datasets import Dataset

    from ecg_pma.training.finetune import check_one_batch, reference_training_arguments

    rows = Dataset.from_dict({"signals": [[[0.0]]] * 32, "labels": [[0.0]] * 32, "record_id": list("a" * 32)})
    args = reference_training_arguments("probe", str(tmp_path), per_device_train_batch_size=64)
    with pytest.raises(ValueError, match=r"32 windows, fewer than one batch of 64 .*batch_size to at most 32"):
        check_one_batch(rows, args)
    check_one_batch(rows, reference_training_arguments("probe", str(tmp_path), per_device_train_batch_size=32))
