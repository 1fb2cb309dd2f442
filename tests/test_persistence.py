"""Saving, loading, Auto classes and `trust_remote_code` loading in a process that cannot import `ecg_pma`."""

import json
import os

import pytest
import torch
from conftest import run_without_package
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining, EcgPmaForSequenceClassification, EcgPmaModel


def test_auto_classes_resolve_to_ours(tiny_config):
    assert isinstance(AutoConfig.for_model("ecg_pma"), EcgPmaConfig)
    assert type(AutoModel.from_config(tiny_config)) is EcgPmaModel
    assert type(AutoModelForPreTraining.from_config(tiny_config)) is EcgPmaForPreTraining
    assert type(AutoModelForSequenceClassification.from_config(tiny_config)) is EcgPmaForSequenceClassification


def test_save_and_load_round_trip_is_exact(tmp_path, tiny_config, signals):
    model = EcgPmaForSequenceClassification(tiny_config).eval()
    model.save_pretrained(tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert "model.safetensors" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    # the code travels with the weights
    assert {"configuration_ecg_pma.py", "modeling_ecg_pma.py"} <= set(files)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForPreTraining",
        "AutoModelForSequenceClassification",
    }

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is EcgPmaForSequenceClassification
    # the weights are bit-identical; the logits agree to float rounding (kernels may differ with memory layout)
    torch.testing.assert_close(loaded(signals).logits, model(signals).logits, rtol=1e-6, atol=1e-6)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pretraining_checkpoint_loads_into_classifier_with_new_head_and_gate(tmp_path, tiny_config, signals):
    pretrained = EcgPmaForPreTraining(tiny_config)
    pretrained.save_pretrained(tmp_path)

    classifier, info = EcgPmaForSequenceClassification.from_pretrained(
        tmp_path, num_labels=4, aggregation="pma", output_loading_info=True
    )
    assert info["missing_keys"], "head and gate must be reported as newly initialised"
    assert {key.split(".")[0] for key in info["missing_keys"]} == {"aggregator", "classifier"}
    assert not info["mismatched_keys"]
    assert not info["unexpected_keys"], "the decoder is dropped silently (it is expected)"
    assert classifier.config.num_labels == 4
    for key, value in pretrained.ecg_pma.state_dict().items():
        assert torch.equal(classifier.ecg_pma.state_dict()[key], value), key
    assert not hasattr(classifier, "decoder")

    encoder = EcgPmaModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(encoder(signals).pooler_output, pretrained.ecg_pma.eval()(signals).pooler_output)


def test_classifier_checkpoint_loads_as_encoder(tmp_path, tiny_config, signals):
    classifier = EcgPmaForSequenceClassification(tiny_config).eval()
    classifier.save_pretrained(tmp_path)
    encoder = AutoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(
        encoder(signals).layer_representations, classifier.ecg_pma(signals).layer_representations
    )


FRESH_PROCESS_SCRIPT = """
import sys
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification

model_dir, tensors_path, output_path = sys.argv[1:]
inputs = load_file(tensors_path)
config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
assert type(config).__name__ == "EcgPmaConfig", type(config)
classifier = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
encoder = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
pretraining = AutoModelForPreTraining.from_pretrained(model_dir, trust_remote_code=True).eval()
with torch.no_grad():
    out = classifier(inputs["signals"])
    save_file(
        {
            "logits": out.logits,
            "layer_weights": out.layer_weights,
            "pooler_output": encoder(inputs["signals"]).pooler_output,
            "reconstruction": pretraining(inputs["signals"], noise=inputs["noise"]).reconstruction,
        },
        output_path,
    )
print(type(classifier).__module__)
"""


def test_fresh_process_loads_with_trust_remote_code_without_the_package(tmp_path, signals):
    config = EcgPmaConfig.from_preset("tiny", num_labels=3, pretraining_aggregation="ipa")
    pretraining = EcgPmaForPreTraining(config).eval()
    pretraining.save_pretrained(tmp_path / "pretrained")
    classifier = EcgPmaForSequenceClassification.from_pretrained(tmp_path / "pretrained").eval()
    with torch.no_grad():  # a trained-looking gate and head, so that identical logits mean something
        for parameter in [*classifier.aggregator.parameters(), *classifier.classifier.parameters()]:
            parameter.normal_(std=0.3)
    model_dir = tmp_path / "model"
    classifier.save_pretrained(model_dir)

    noise = torch.rand(4, 12, config.num_patches)
    save_file({"signals": signals, "noise": noise}, tmp_path / "inputs.safetensors")
    result = run_without_package(
        tmp_path,
        FRESH_PROCESS_SCRIPT,
        str(model_dir),
        str(tmp_path / "inputs.safetensors"),
        str(tmp_path / "out.safetensors"),
    )
    assert "transformers_modules" in result.stdout  # loaded from the copied code, not from the package

    remote = load_file(tmp_path / "out.safetensors")
    with torch.no_grad():
        out = classifier(signals)
        for name, expected in (
            ("logits", out.logits),
            ("layer_weights", out.layer_weights),
            ("pooler_output", classifier.ecg_pma(signals).pooler_output),
        ):
            torch.testing.assert_close(remote[name], expected, rtol=1e-6, atol=1e-6, msg=name)
        # the classifier checkpoint has no decoder (newly initialised there): only its shape is comparable
        assert remote["reconstruction"].shape == (4, 12, config.num_patches, config.patch_size)


@pytest.mark.parametrize("aggregation", ["last", "ppa", "pma", "layer"])
def test_every_aggregation_round_trips(tmp_path, signals, aggregation):
    extra = {"aggregation_layer": 1} if aggregation == "layer" else {}
    config = EcgPmaConfig.from_preset("tiny", num_labels=2, aggregation=aggregation, **extra)
    model = EcgPmaForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    loaded = EcgPmaForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.aggregation == aggregation
    torch.testing.assert_close(loaded(signals).logits, model(signals).logits, rtol=1e-6, atol=1e-6)
