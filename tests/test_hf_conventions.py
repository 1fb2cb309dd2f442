"""Hugging Face conventions: meta-device construction, input embeddings for adapters under gradient checkpointing."""

import ast
import re

import accelerate
import pytest
import torch

from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining, EcgPmaForSequenceClassification, EcgPmaModel
from ecg_pma.modeling_ecg_pma import EcgPmaPatchEmbeddings, linear_drop_path_rates


MODEL_CLASSES = [EcgPmaModel, EcgPmaForPreTraining, EcgPmaForSequenceClassification]
EMPTY_WEIGHT_CONTEXTS = {
    "torch.device": lambda: torch.device("meta"),
    "init_empty_weights": lambda: accelerate.init_empty_weights(include_buffers=True),
}


def first_output(model, signals, noise):
    """The forward's first tensor output (pooled state, loss, logits), with a fixed mask for pre-training."""
    kwargs = {"noise": noise} if isinstance(model, EcgPmaForPreTraining) else {}
    with torch.no_grad():
        return model(signals, **kwargs).to_tuple()[0]


@pytest.mark.parametrize("context", sorted(EMPTY_WEIGHT_CONTEXTS))
@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_models_build_on_the_meta_device_and_take_real_weights(model_class, context, signals):
    # drop_path_rate > 0: the per-block schedule is what used to need a tensor holding values
    config = EcgPmaConfig.from_preset("tiny", num_labels=3, drop_path_rate=0.1)
    reference = model_class(config).eval()
    with EMPTY_WEIGHT_CONTEXTS[context]():
        model = model_class(config)
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(tensor.device.type == "meta" for tensor in tensors)
    encoder = model.encoder if isinstance(model, EcgPmaModel) else model.ecg_pma.encoder
    assert [layer.drop_path.drop_prob for layer in encoder.layers] == pytest.approx([0.0, 0.1 / 3, 0.2 / 3, 0.1])

    model.load_state_dict(reference.state_dict(), assign=True)
    model.eval()
    assert all(tensor.device.type == "cpu" for tensor in [*model.parameters(), *model.buffers()])
    noise = torch.rand(len(signals), config.num_leads, config.num_patches)
    torch.testing.assert_close(first_output(model, signals, noise), first_output(reference, signals, noise))


@pytest.mark.parametrize("num_layers", [1, 2, 12, 24])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37])
def test_drop_path_schedule_is_linspace(rate, num_layers):
    expected = torch.linspace(0, rate, num_layers, dtype=torch.float64).tolist()
    assert linear_drop_path_rates(rate, num_layers) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_input_embeddings_are_the_patch_embedding(model_class, tiny_config):
    model = model_class(tiny_config)
    base = model if isinstance(model, EcgPmaModel) else model.ecg_pma
    assert isinstance(model.get_input_embeddings(), EcgPmaPatchEmbeddings)
    assert model.get_input_embeddings() is base.embeddings.patch_embeddings


def adapter_like_classifier(config: EcgPmaConfig) -> tuple[EcgPmaForSequenceClassification, torch.nn.Parameter]:
    """A classifier whose only trainable encoder weight sits inside block 1 (as an adapter would), head trainable."""
    model = EcgPmaForSequenceClassification(config)
    model.ecg_pma.requires_grad_(False)
    inner = model.ecg_pma.encoder.layers[1].attention.qkv.weight
    inner.requires_grad_(True)
    return model.train(), inner


def test_enable_input_require_grads_makes_gradients_flow_under_reentrant_checkpointing(signals):
    # No dropout anywhere, so the checkpointed and plain passes compute the same thing.
    config = EcgPmaConfig.from_preset("tiny", num_labels=3, aggregation="ppa", head_type="linear")
    labels = torch.randint(0, 2, (len(signals), 3)).float()

    model, inner = adapter_like_classifier(config)
    model(signals, labels=labels).loss.backward()
    expected = inner.grad.clone()
    assert expected.abs().sum() > 0

    model.zero_grad(set_to_none=True)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    with pytest.warns(UserWarning, match="requires_grad"):
        model(signals, labels=labels).loss.backward()
    assert inner.grad is None  # the defect: silently no gradient for weights inside checkpointed blocks

    model.enable_input_require_grads()
    model(signals, labels=labels).loss.backward()
    assert inner.grad is not None
    torch.testing.assert_close(inner.grad, expected, atol=1e-6, rtol=1e-5)


def documented_arguments() -> dict[str, tuple[str, str | None]]:
    """`name -> (type, default text)` from the config docstring's transformers-style `Args:` entries."""
    entry = re.compile(r"^ {8}(\w+) \(`([^`]+)`, \*optional\*(?:, defaults to (.+))?\):$", re.MULTILINE)
    return {name: (kind, default) for name, kind, default in entry.findall(EcgPmaConfig.__doc__)}


def test_config_docstring_documents_every_argument_with_type_and_default():
    documented = documented_arguments()
    own_fields = [name for name in EcgPmaConfig.__annotations__ if not name.startswith("_") and name != "model_type"]
    assert sorted(documented) == sorted(own_fields)
    defaults = EcgPmaConfig()
    for name, (_, default_text) in documented.items():
        if default_text is None:  # documented as optional without a default: it must be None
            assert getattr(EcgPmaConfig, name, None) is None, name
            continue
        try:
            stated = ast.literal_eval(default_text.strip("`"))
        except (ValueError, SyntaxError):
            continue  # described in words (lead_names)
        assert getattr(defaults, name) == stated, name


def test_initializer_range_sets_the_learnable_vectors_and_nothing_else():
    def build(initializer_range):
        torch.manual_seed(0)
        config = EcgPmaConfig.from_preset(
            "tiny", hidden_size=256, decoder_hidden_size=256, initializer_range=initializer_range
        )
        return EcgPmaForPreTraining(config)

    narrow, wide = build(0.01), build(0.2)
    vectors = ("ecg_pma.embeddings.sep_embedding", "ecg_pma.embeddings.lead_embeddings", "decoder.mask_token")
    for name, parameter in narrow.named_parameters():
        other = dict(wide.named_parameters())[name]
        if name in vectors:
            assert parameter.std().item() == pytest.approx(0.01, rel=0.2), name
            assert other.std().item() == pytest.approx(0.2, rel=0.2), name
        else:
            # the same seed and the same draws: everything else does not depend on initializer_range
            torch.testing.assert_close(parameter, other, msg=name)
    projection = narrow.ecg_pma.encoder.layers[0].mlp.fc1.weight  # Xavier-uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = (6 / sum(projection.shape)) ** 0.5
    assert projection.abs().max().item() <= bound and projection.abs().max().item() > 0.9 * bound
