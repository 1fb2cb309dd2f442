"""LoRA finetuning with `peft` on the real challenge records: Trainer with reentrant gradient checkpointing, adapter
saved and reloaded on a fresh base model, merged into a plain classifier, all giving the same logits."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.data import id2label
from ecg_pma.training import PretrainingArguments, pretrain
from ecg_pma.training.finetune import finetune, load_classifier, reference_training_arguments
from ecg_pma.training.lora import add_lora, load_lora_classifier


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory, challenge):
    _, windows, extractor = challenge
    output = tmp_path_factory.mktemp("pretrained")
    args = PretrainingArguments(output_dir=str(output), per_device_batch_size=8, max_steps=2, save_steps=None)
    pretrain(EcgPmaForPreTraining(EcgPmaConfig.from_preset("tiny")), windows["train"], args, extractor)
    return output


def test_lora_targets_only_the_encoder_projections(tiny_config):
    config = EcgPmaConfig.from_preset("tiny", num_labels=3, aggregation="pma", head_type="linear")
    model = add_lora(EcgPmaForSequenceClassification(config), rank=4)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    lora = {name for name in trainable if ".lora_" in name}
    projections = ("attention.qkv", "attention.output", "mlp.fc1", "mlp.fc2")
    assert lora == {
        f"base_model.model.ecg_pma.encoder.layers.{layer}.{projection}.lora_{factor}.default.weight"
        for layer in range(config.num_hidden_layers)
        for projection in projections
        for factor in "AB"
    }
    assert {name.split(".modules_to_save")[0] for name in trainable - lora} == {
        "base_model.model.aggregator",
        "base_model.model.classifier",
    }
    hidden, intermediate, rank = config.hidden_size, config.intermediate_size, 4
    per_block = rank * ((hidden + 3 * hidden) + 2 * hidden + 2 * (hidden + intermediate))
    head_and_gate = sum(p.numel() for p in [*model.aggregator.parameters(), *model.classifier.parameters()]) // 2
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == (
        config.num_hidden_layers * per_block + head_and_gate
    )


def logits_of(model, signals):
    with torch.no_grad():
        return model.eval()(signals).logits


@pytest.mark.slow
def test_lora_finetune_saves_an_adapter_that_reloads_and_merges_to_the_same_logits(
    tmp_path, challenge, pretrained_dir
):
    raw, windows, extractor = challenge
    signals = torch.as_tensor(windows["test"][:6]["signals"])
    model = load_classifier(pretrained_dir, id2label(raw), aggregation="pma", head_type="mlp")
    encoder_before = {key: value.clone() for key, value in model.ecg_pma.state_dict().items()}
    args = reference_training_arguments(
        "lora",
        str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=8,
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": True},
    )
    finetune(
        model, windows["train"], windows["validation"], args, "lora", windows["test"], extractor, True, lora_rank=4
    )

    # The adapters trained through the checkpointed blocks: merged, they moved every projection of every block.
    merged_state = model.ecg_pma.state_dict()
    for layer in range(model.config.num_hidden_layers):
        for projection in ("attention.qkv", "attention.output", "mlp.fc1", "mlp.fc2"):
            key = f"encoder.layers.{layer}.{projection}.weight"
            assert not torch.equal(merged_state[key], encoder_before[key]), key
    assert torch.equal(merged_state["embeddings.patch_embeddings.projection.weight"],
                       encoder_before["embeddings.patch_embeddings.projection.weight"])  # fmt: skip
    expected = logits_of(model, signals)

    adapter_dir = tmp_path / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= {
        p.name for p in adapter_dir.iterdir()
    }
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    adapter_weights = load_file(adapter_dir / "adapter_model.safetensors")
    assert any(".lora_B." in key and value.abs().sum() > 0 for key, value in adapter_weights.items())

    reloaded = load_lora_classifier(adapter_dir)  # the base model is the path recorded in adapter_config.json
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        pretrained_dir
    )
    torch.testing.assert_close(logits_of(reloaded, signals), expected, atol=1e-5, rtol=1e-5)
    merged = reloaded.merge_and_unload()
    assert isinstance(merged, EcgPmaForSequenceClassification)
    torch.testing.assert_close(logits_of(merged, signals), expected, atol=1e-5, rtol=1e-5)

    saved = EcgPmaForSequenceClassification.from_pretrained(tmp_path)  # the merged model the run saved
    torch.testing.assert_close(logits_of(saved, signals), expected, atol=1e-5, rtol=1e-5)
    assert saved.config.decision_thresholds == merged.config.decision_thresholds is not None
