"""Settings are checked where they are made (config, training arguments), so nothing fails after work was done."""

import re

import pytest
from transformers import AutoConfig

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.training import PretrainingArguments
from ecg_pma.training.finetune import finetune, load_classifier, reference_training_arguments
from ecg_pma.training.pretrain import resolve_mixed_precision


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sampling_rate": 100.5}, "`sampling_rate` must be a positive integer, got 100.5"),
        ({"sampling_rate": float("inf")}, "`sampling_rate` must be a positive integer, got inf"),
        ({"signal_length": 1000.0}, "`signal_length` must be a positive integer, got 1000.0"),
        ({"num_leads": True}, "`num_leads` must be a positive integer, got True"),
        ({"hidden_size": -32}, "`hidden_size` must be a positive integer, got -32"),
        ({"aggregation": "layer", "aggregation_layer": 99}, "`aggregation_layer` 99 is out of range for 4 layers"),
        ({"aggregation": "layer", "aggregation_layer": 1.5}, "`aggregation_layer` must be an integer block index"),
        ({"gate_dropout": 1.0}, "`gate_dropout` must be a probability in [0, 1), got 1.0"),
        ({"hidden_dropout_prob": float("nan")}, "`hidden_dropout_prob` must be a probability"),
        ({"layer_norm_eps": 0.0}, "`layer_norm_eps` must be a positive finite number"),
        (
            {"num_labels": 2, "decision_thresholds": [0.5, float("nan")]},
            "`decision_thresholds` must be finite numbers",
        ),
    ],
)
def test_config_values_are_checked_at_construction(changes, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        EcgPmaConfig.from_preset("tiny", **changes)


def test_overrides_given_when_loading_are_checked_too(tmp_path):
    EcgPmaConfig.from_preset("tiny").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="`aggregation_layer` 99 is out of range"):
        EcgPmaConfig.from_pretrained(tmp_path, aggregation="layer", aggregation_layer=99)
    with pytest.raises(ValueError, match="`aggregation_layer` -5 is out of range"):
        AutoConfig.from_pretrained(tmp_path, aggregation="layer", aggregation_layer=-5)
    assert EcgPmaConfig.from_pretrained(tmp_path, aggregation="layer", aggregation_layer=-1).aggregation_layer == -1


def test_load_classifier_refuses_a_missing_layer_before_any_training(tmp_path):
    config = EcgPmaConfig.from_preset("tiny")
    EcgPmaForPreTraining(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"`aggregation_layer` 99 is out of range for 4 layers \(valid: -4 to 3\)"):
        load_classifier(tmp_path, {0: "a", 1: "b"}, aggregation="layer", aggregation_layer=99)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"num_train_epochs": -1}, "`num_train_epochs` must be positive, got -1"),
        ({"num_train_epochs": 0}, "`num_train_epochs` must be positive, got 0"),
        ({"max_steps": -3}, "`max_steps` must be a positive integer, got -3"),
        ({"max_steps": 0}, "`max_steps` must be a positive integer, got 0"),
        ({"gradient_accumulation_steps": 0}, "`gradient_accumulation_steps` must be a positive integer, got 0"),
        ({"per_device_batch_size": 0}, "`per_device_batch_size` must be a positive integer, got 0"),
        ({"warmup_steps": -5}, "`warmup_steps` must be a non-negative integer or None, got -5"),
        ({"warmup_epochs": -1.0}, "`warmup_epochs` must be non-negative"),
        ({"save_steps": -1}, "`save_steps` must be a non-negative integer or None"),
        ({"mixed_precision": "fp8"}, "`mixed_precision` must be one of"),
        ({"seed": -1}, "`seed` must be a non-negative integer"),
        ({"base_learning_rate": 0.0}, "`base_learning_rate` must be positive"),
    ],
)
def test_pretraining_arguments_are_checked_when_made(tmp_path, changes, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        PretrainingArguments(output_dir=str(tmp_path), **changes)


def test_fp16_needs_a_gpu():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        resolve_mixed_precision("fp16", use_cpu=True)
    assert resolve_mixed_precision("no", use_cpu=True) == "no"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"num_train_epochs": -1}, "num_train_epochs must be > 0 (or max_steps > 0), got -1"),
        ({"num_train_epochs": 0}, "num_train_epochs must be > 0 (or max_steps > 0), got 0"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size must be >= 1, got 0"),
    ],
)
def test_finetuning_that_would_train_nothing_is_refused_before_the_trainer_starts(tmp_path, overrides, expected):
    from ecg_pma import EcgPmaForSequenceClassification

    model = EcgPmaForSequenceClassification(EcgPmaConfig.from_preset("tiny", num_labels=2))
    # refused as soon as the training arguments are made, before any Trainer or output folder exists
    with pytest.raises(ValueError, match=re.escape(expected)):
        arguments = reference_training_arguments("probe", str(tmp_path / "out"), report_to="none", **overrides)
        finetune(model, None, None, arguments, feature_extractor=EcgPmaFeatureExtractor())
    assert not (tmp_path / "out").exists()


def test_python_entry_points_check_batch_sizes_and_epochs_too():
    from ecg_pma import EcgPmaForSequenceClassification, EcgPmaModel
    from ecg_pma.serving.inference import predict_records
    from ecg_pma.training.probe_layers import probe_layers

    config = EcgPmaConfig.from_preset("tiny", num_labels=2)
    with pytest.raises(ValueError, match="`batch_size` must be at least 1, got 0"):
        predict_records(EcgPmaForSequenceClassification(config), EcgPmaFeatureExtractor(), [], batch_size=0)
    with pytest.raises(ValueError, match="`epochs` must be at least 1, got 0"):
        probe_layers(EcgPmaModel(config), {}, "unused", epochs=0)
