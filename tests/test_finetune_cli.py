"""
`ecg-pma finetune` through `HfArgumentParser` (every `TrainingArguments` option, validated ranges), seeded so that
two runs agree, and resumable from its safetensors checkpoints.
"""

import contextlib
import io
import json
import logging
import subprocess
import sys

import pytest
import torch
from conftest import shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.cli import build_parser, load_report_shown, main


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
    for option in ("--report-to", "--bf16", "--gradient-accumulation-steps", "--resume-from-checkpoint", "--data"):
        assert option in probe_help, option
    assert "passes over the training records (default: 100)" in probe_help  # the paper's schedule
    _, finetune_help, _ = parse("finetune", "--mode", "finetune", "--help")
    assert "(default: 6.25e-05)" in finetune_help and "(default: 6.25e-05)" not in probe_help


def test_finetune_arguments_are_parsed_into_dataclasses():
    args = build_parser().parse_args(
        ["finetune", "--data", "d", "--model", "m", "--output-dir", "o", "--mode", "finetune", "--report-to",
         "tensorboard", "--gradient-accumulation-steps", "4", "--bf16", "--use-cpu", "--aggregation", "layer",
         "--aggregation-layer", "-1"]
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
        (["--num-train-epochs", "0"], "num_train_epochs must be > 0"),
        (["--per-device-train-batch-size", "0"], "per_device_train_batch_size must be >= 1"),
        (["--learning-rate", "-1"], "learning_rate must be > 0"),
        (["--aggregation", "layer"], "--aggregation layer needs --aggregation-layer"),
        (["--aggregation", "pma", "--aggregation-layer", "2"], "used only with --aggregation layer"),
        (["--mode", "probes"], "invalid choice"),
    ],
)
def test_finetune_refuses_bad_values_as_usage_errors(words, message):
    code, _, err = parse("finetune", "--data", "d", "--model", "m", "--output-dir", "o", *words)
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


def finetune(pretrained, output_dir, *extra, in_process=True):
    """
    `ecg-pma finetune` on the challenge records: (results.json, what it wrote to stderr, as a user sees it only
    with `in_process=False`: pytest captures the log records of a run in its own process).
    """
    data = shared_data_dir("physionet2021")
    words = [
        "finetune", "--data", data, "--data-format", "physionet2021", "--cache-dir", output_dir.parent / "cache",
        "--model", pretrained, "--output-dir", output_dir, "--aggregation", "pma", "--num-train-epochs", "2",
        "--per-device-train-batch-size", "8", "--disable-tqdm", "true", *extra,
    ]  # fmt: skip
    words = list(map(str, words))
    if in_process:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(words) == 0
        errors = None
    else:
        result = subprocess.run(
            [sys.executable, "-m", "ecg_pma.cli", *words], capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        errors = result.stderr
    return json.loads((output_dir / "results.json").read_text()), errors


SEEDED = ("--seed", "7", "--save-total-limit", "2")


@pytest.fixture(scope="module")
def seeded_run(pretrained, tmp_path_factory):
    """One finetune run that the seed, resume and output tests share: (results, stderr, its folder)."""
    output_dir = tmp_path_factory.mktemp("seeded") / "run"
    return (*finetune(pretrained, output_dir, *SEEDED, in_process=False), output_dir)


def test_an_aggregation_layer_out_of_range_stops_before_any_data_is_read(tmp_path, pretrained, capsys):
    code = main(
        ["finetune", "--data", str(tmp_path / "no-data"), "--model", str(pretrained), "--output-dir",
         str(tmp_path / "out"), "--aggregation", "layer", "--aggregation-layer", "4"]
    )  # fmt: skip
    assert code == 2
    assert "--aggregation-layer 4 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bare_debug_after_the_subcommand_is_the_commands_own():
    words = ["finetune", "--data", "d", "--model", "m", "--output-dir", "o"]
    assert build_parser().parse_args([*words, "--debug"]).debug is True
    assert build_parser().parse_args(words).debug is False
    training_debug = build_parser().parse_args([*words, "--debug", "underflow_overflow"])
    assert training_debug.debug is False and training_debug.training_args.debug == ["underflow_overflow"]


def test_transformers_load_report_is_shown_only_under_debug(pretrained):
    reports = []
    handler = logging.Handler()
    handler.emit = lambda record: reports.append(" LOAD REPORT" in record.getMessage())
    modeling_logger = logging.getLogger("transformers.modeling_utils")
    modeling_logger.addHandler(handler)
    try:
        for debug in (False, True):
            with load_report_shown(debug):
                EcgPmaForSequenceClassification.from_pretrained(pretrained, num_labels=2, aggregation="pma")
        EcgPmaForSequenceClassification.from_pretrained(pretrained, num_labels=2, aggregation="pma")
    finally:
        modeling_logger.removeHandler(handler)
    assert reports == [True, True]  # the second load, and any load after the command: the logger is left as it was


@pytest.mark.slow
def test_a_run_says_in_one_line_that_a_new_gate_and_head_were_created(seeded_run, pretrained):
    _, errors, _ = seeded_run
    lines = errors.splitlines()
    created = [line for line in lines if "created a new" in line]
    assert created == [
        f"EcgPmaForSequenceClassification: created a new aggregator.gate, classifier.head on the pre-trained encoder "
        f"of {pretrained}, randomly initialised: train them before use."
    ]
    assert lines[0] == created[0]  # the first thing a run says
    assert "LOAD REPORT" not in errors and "MISSING" not in errors  # transformers' table: --debug only


@pytest.mark.slow
def test_two_runs_with_one_seed_agree_and_another_seed_differs(tmp_path, pretrained, seeded_run):
    first = seeded_run[0]
    second, _ = finetune(pretrained, tmp_path / "second", *SEEDED)
    assert first == second
    other, _ = finetune(pretrained, tmp_path / "other", "--seed", "8", "--save-total-limit", "2")
    assert other["validation"]["macro_auroc"] != first["validation"]["macro_auroc"]
    assert first["labels"][:3] == ["AF", "AFL", "BBB"] and len(first["labels"]) == len(first["test"]["thresholds"])


@pytest.mark.slow
def test_a_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path, pretrained, seeded_run):
    full, _, full_dir = seeded_run
    checkpoints = sorted(full_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    first_epoch = checkpoints[0]
    names = {path.name for path in first_epoch.iterdir()}
    assert {"model.safetensors", "optimizer.safetensors", "scheduler.json", "random_state_0.safetensors"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    resumed, _ = finetune(pretrained, tmp_path / "resumed", *SEEDED, "--resume-from-checkpoint", first_epoch)
    assert resumed["validation"] == full["validation"] and resumed["test"] == full["test"]


def test_fewer_training_rows_than_a_batch_say_the_counts_and_what_to_lower(tmp_path):
    from datasets import Dataset

    from ecg_pma import EcgPmaConfig, EcgPmaForSequenceClassification
    from ecg_pma.training.finetune import check_one_batch, finetune, reference_training_arguments

    rows = Dataset.from_dict({"signals": [[[0.0]]] * 32, "labels": [[0.0]] * 32, "record_id": list("a" * 32)})
    args = reference_training_arguments("probe", str(tmp_path), per_device_train_batch_size=64)
    too_few = r"32 windows, fewer than one batch of 64 .*--per-device-train-batch-size to at most 32"
    with pytest.raises(ValueError, match=too_few):
        check_one_batch(rows, args)
    model = EcgPmaForSequenceClassification(EcgPmaConfig.from_preset("tiny", num_labels=1))
    with pytest.raises(ValueError, match=too_few):  # what `ecg-pma finetune` runs, before the Trainer's own error
        finetune(model, rows, rows, args)
    check_one_batch(rows, reference_training_arguments("probe", str(tmp_path), per_device_train_batch_size=32))
