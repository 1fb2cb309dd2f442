"""Loading fails loudly when checkpoint and config disagree; the documented exceptions warn, naming the weights."""

import json
import logging
import shutil

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, pipeline

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained-looking PMA classifier with an MLP head, and a last-layer one, saved with their extractor."""
    folders = {}
    for aggregation in ("pma", "last"):
        folder = tmp_path_factory.mktemp(aggregation)
        config = EcgPmaConfig.from_preset("tiny", num_labels=3, aggregation=aggregation)
        EcgPmaForSequenceClassification(config).save_pretrained(folder)
        EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(folder)
        folders[aggregation] = folder
    return folders


def edited(source, tmp_path, **changes):
    folder = tmp_path / "edited"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


LOADERS = {
    "class": EcgPmaForSequenceClassification.from_pretrained,
    "auto": AutoModelForSequenceClassification.from_pretrained,
    "pipeline": lambda folder: pipeline("ecg-classification", model=str(folder)),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize(
    ("source", "changes", "named"),
    [
        ("pma", {"head_type": "linear"}, "weights the config does not use: ['classifier.head.0.bias'"),
        (
            "pma",
            {"qkv_bias": False},
            "weights the config does not use: ['ecg_pma.encoder.layers.0.attention.qkv.bias'",
        ),
        ("pma", {"aggregation": "last"}, "weights the config does not use: ['aggregator.gate.gate.0.bias'"),
        ("pma", {"aggregation": "ppa"}, "weights the config does not use: ['aggregator.gate.gate.0.bias'"),
        ("last", {"aggregation": "pma"}, "weights it needs but lacks: ['aggregator.gate.gate.0.bias'"),
    ],
)
def test_config_edits_that_drop_or_invent_trained_weights_fail(saved, tmp_path, loader, source, changes, named):
    folder = edited(saved[source], tmp_path, **changes)
    with pytest.raises(ValueError, match=rf"{folder} does not fit the config of EcgPmaForSequenceClassification") as e:
        LOADERS[loader](folder)
    assert named in str(e.value)


def test_a_new_head_and_gate_on_a_pretrained_encoder_warn_by_name(tmp_path, caplog):
    config = EcgPmaConfig.from_preset("tiny")
    EcgPmaForPreTraining(config).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ecg_pma.modeling_ecg_pma"):
        model = EcgPmaForSequenceClassification.from_pretrained(tmp_path, num_labels=2, aggregation="pma")
    (warning,) = [record.getMessage() for record in caplog.records if record.name == "ecg_pma.modeling_ecg_pma"]
    assert warning == (
        f"EcgPmaForSequenceClassification: created a new aggregator.gate, classifier.head on the pre-trained encoder "
        f"of {tmp_path}, randomly initialised: train them before use."
    )
    assert torch.equal(
        model.ecg_pma.embeddings.lead_embeddings,
        EcgPmaForPreTraining.from_pretrained(tmp_path).ecg_pma.embeddings.lead_embeddings,
    )


def test_a_classifier_loads_as_its_encoder(saved):
    encoder = AutoModel.from_pretrained(saved["pma"])  # the head is another module's: left out as usual
    classifier = EcgPmaForSequenceClassification.from_pretrained(saved["pma"])
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, classifier.ecg_pma.state_dict()[name]), name


def test_ignore_mismatched_sizes_loads_and_reports_the_weights_by_name(saved, caplog):
    with pytest.raises(ValueError, match=r"weights do not fit the config: classifier.head.6.bias \(3,\) -> \(5,\)"):
        EcgPmaForSequenceClassification.from_pretrained(saved["pma"], num_labels=5)
    caplog.clear()
    # transformers' loggers do not propagate; its recent releases hand their records to pytest, 5.5 (our floor) not
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            model = EcgPmaForSequenceClassification.from_pretrained(
                saved["pma"], num_labels=5, ignore_mismatched_sizes=True
            )
    finally:
        library_logger.removeHandler(caplog.handler)
    assert model.config.num_labels == 5
    report = caplog.text  # transformers' load report
    assert "classifier.head.6.{bias, weight}" in report or "classifier.head.6.bias" in report, report
    assert "MISMATCH" in report
