"""Loading fails loudly when checkpoint and config disagree; the documented exceptions warn, naming the weights."""

import json
import logging
import shutil

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, pipeline

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.configuration_ecg_pma import LEAD_SETS
from ecg_pma.modeling_ecg_pma import CheckpointMismatchError


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
    if loader != "pipeline":  # `pipeline` re-raises any loading error as its own ValueError("Could not load model")
        assert isinstance(e.value, CheckpointMismatchError) and isinstance(e.value, RuntimeError)


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


# ------------------------------------------------------------------- transformers' common loading tests, reproduced


def test_weights_given_as_a_state_dict_without_a_folder():
    config = EcgPmaConfig.from_preset("tiny", num_labels=3, aggregation="pma")
    trained = EcgPmaForSequenceClassification(config)
    loaded = EcgPmaForSequenceClassification.from_pretrained(None, config=config, state_dict=trained.state_dict())
    for name, tensor in trained.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def deterministic_initial_weights(model_class, config) -> dict[str, torch.Tensor]:
    """The weights a fresh model gets whatever the seed (zero biases, norms at 1/0, the gate's zero last layer)."""
    torch.manual_seed(0)
    first = model_class(config).state_dict()
    torch.manual_seed(1)
    second = model_class(config).state_dict()
    return {name: tensor for name, tensor in first.items() if torch.equal(tensor, second[name])}


@pytest.mark.parametrize("head_type", ["linear", "mlp"])
def test_can_init_all_missing_weights(head_type):
    # transformers' test loads `from_pretrained(None, config=config, state_dict={})` and expects every weight
    # initialised as in `model_class(config)`. Our loading is strict by design: a checkpoint without the encoder is
    # an error (a RuntimeError too, as transformers' callers expect), so an empty state dict is refused by name; the
    # weights a checkpoint may lack are the new heads on a pre-trained encoder, and those must be initialised by
    # `_init_weights` exactly as in a fresh model (no meta or uninitialised memory left behind).
    config = EcgPmaConfig.from_preset("tiny", num_labels=3, aggregation="pma", head_type=head_type)
    with pytest.raises(RuntimeError, match="weights it needs but lacks: \\['ecg_pma.embeddings"):
        EcgPmaForSequenceClassification.from_pretrained(None, config=config, state_dict={})
    encoder = EcgPmaForPreTraining(config).state_dict()
    model = EcgPmaForSequenceClassification.from_pretrained(None, config=config, state_dict=encoder)
    fresh = EcgPmaForSequenceClassification(config).state_dict()
    fixed = deterministic_initial_weights(EcgPmaForSequenceClassification, config)
    new = [name for name in fresh if name.split(".")[0] in ("aggregator", "classifier")]
    assert new and any(name.startswith("aggregator.gate") for name in new)
    for name in new:
        tensor = model.state_dict()[name]
        assert tensor.device.type == "cpu" and torch.isfinite(tensor.float()).all(), name
        if name in fixed:
            assert torch.equal(tensor, fixed[name]), f"{name} is not initialised as in a fresh model"
        elif tensor.ndim == 2:  # a Linear weight: Xavier-uniform, as `_init_weights` draws it
            bound = (6 / sum(tensor.shape)) ** 0.5
            assert tensor.abs().max() <= bound and tensor.std() > bound / 4, name
    for name, tensor in encoder.items():
        if name.startswith("ecg_pma."):
            assert torch.equal(tensor, model.state_dict()[name]), name


def test_load_with_mismatched_shapes(saved, caplog):
    # transformers' test: a new label count (head shapes) or a new input vocabulary (here: a lead set, which sizes
    # the lead embeddings) fails with a RuntimeError unless `ignore_mismatched_sizes=True`, which loads, reports the
    # weights and gives a model that runs at the new shape.
    folder = saved["pma"]
    with pytest.raises(RuntimeError, match=r"classifier.head.6.weight \(3, 16\) -> \(42, 16\)"):
        AutoModelForSequenceClassification.from_pretrained(folder, num_labels=42)
    six_leads = list(LEAD_SETS["6"])
    with pytest.raises(RuntimeError, match=r"embeddings.lead_embeddings \(12, 32\) -> \(6, 32\)"):
        AutoModel.from_pretrained(folder, num_leads=6, lead_names=six_leads)
    library_logger = logging.getLogger("transformers")  # transformers' loggers do not propagate to pytest's handler
    library_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            classifier = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=42, ignore_mismatched_sizes=True
            )
            encoder = AutoModel.from_pretrained(
                folder, num_leads=6, lead_names=six_leads, ignore_mismatched_sizes=True
            )
    finally:
        library_logger.removeHandler(caplog.handler)
    assert caplog.text.count("MISMATCH") >= 2 and "lead_embeddings" in caplog.text
    config = classifier.config
    with torch.no_grad():
        assert classifier.eval()(torch.randn(2, 12, config.signal_length)).logits.shape == (2, 42)
        output = encoder.eval()(torch.randn(2, 6, config.signal_length))
    assert output.layer_representations.shape[:2] == (2, config.num_hidden_layers)
