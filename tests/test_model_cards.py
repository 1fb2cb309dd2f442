"""Model cards from `ecg_pma.sharing.modelcard`: every split in `model-index`, data and protocol stated, Hub-valid metadata."""

import pytest
from hub_server import LocalHub, validate_card
from huggingface_hub import ModelCard

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.sharing.modelcard import build_model_card


SCORES = {
    "validation": {
        "macro_auroc": 0.81234,
        "macro_average_precision": 0.5,
        "macro_f1": 0.4,
        "accuracy": 0.9,
        "num_records": 5,
    },
    "test": {
        "macro_auroc": 0.71234,
        "macro_average_precision": 0.45,
        "macro_f1": 0.35,
        "accuracy": 0.85,
        "num_records": 6,
    },
}


@pytest.fixture
def classifier_config():
    config = EcgPmaConfig.from_preset("tiny", id2label={0: "NSR", 1: "AF"})
    config.architectures = ["EcgPmaForSequenceClassification"]
    return config


def round_trip(card, tmp_path):
    card.save(tmp_path / "README.md")
    return ModelCard.load(tmp_path / "README.md")


def test_a_classifier_card_reports_every_split_with_its_data_and_protocol(tmp_path, classifier_config):
    card = build_model_card(
        classifier_config,
        EcgPmaFeatureExtractor.from_model_config(classifier_config),
        training={"mode": "probe", "seed": 7},
        evaluation=SCORES,
        dataset={"name": "ecg-pma demo simulator", "description": "simulated ECGs, not real recordings"},
        base_model="cardio-lab/ecg-pma-base",
    )
    loaded = round_trip(card, tmp_path)
    reported = {(r.dataset_split, r.metric_type): r.metric_value for r in loaded.data.eval_results}
    assert reported[("validation", "macro_auroc")] == 0.8123 and reported[("test", "macro_auroc")] == 0.7123
    assert len(reported) == 8
    assert {r.dataset_name for r in loaded.data.eval_results} == {"ecg-pma demo simulator"}
    assert loaded.data.base_model == "cardio-lab/ecg-pma-base"
    for text in (
        "Data: **ecg-pma demo simulator**: simulated ECGs, not real recordings.",
        "- seed: 7",
        "| validation | 5 | 0.8123 | 0.5 | 0.4 | 0.9 |",
        "| test | 6 | 0.7123 | 0.45 | 0.35 | 0.85 |",
        "The validation numbers are optimistic",
        'pipeline("ecg-classification", model="path/to/this/folder", trust_remote_code=True)',
    ):
        assert text in loaded.text, text
    assert "Results (test split)" not in loaded.text
    with LocalHub("token") as hub:
        validate_card(hub.endpoint, loaded)


def test_a_pretrained_models_card_has_no_results_and_validates(tmp_path):
    config = EcgPmaConfig.from_preset("tiny", pretraining_aggregation="ipa")
    config.architectures = ["EcgPmaForPreTraining"]
    card = build_model_card(
        config, EcgPmaFeatureExtractor.from_model_config(config), training={"pretraining_steps": 3}
    )
    loaded = round_trip(card, tmp_path)
    assert not loaded.data.eval_results and "## Results" not in loaded.text and "- pretraining_steps: 3" in loaded.text
    with LocalHub("token") as hub:
        validate_card(hub.endpoint, loaded)
