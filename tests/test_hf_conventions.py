"""Hugging Face conventions: meta-device construction, input embeddings for adapters under gradient checkpointing."""

import ast
import inspect
import re

import accelerate
import pytest
import torch
from conftest import shared_data_dir

from ecg_pma import (
    EcgPmaConfig,
    EcgPmaFeatureExtractor,
    EcgPmaForPreTraining,
    EcgPmaForSequenceClassification,
    EcgPmaModel,
)
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
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
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


def test_pretraining_encodes_through_the_base_model(signals):
    """One encode path: the task model calls `self.ecg_pma(...)` (as ViTMAEForPreTraining calls `self.vit`), whose
    output carries the mask and `ids_restore`."""
    config = EcgPmaConfig.from_preset("tiny")
    model = EcgPmaForPreTraining(config).eval()
    calls = []
    model.ecg_pma.register_forward_hook(lambda module, args, kwargs, output: calls.append((kwargs, output)),
                                        with_kwargs=True)  # fmt: skip
    noise = torch.rand(len(signals), config.num_leads, config.num_patches)
    with torch.no_grad():
        output = model(signals, noise=noise)
    assert len(calls) == 1
    kwargs, encoded = calls[0]
    assert kwargs["mask_ratio"] == config.mask_ratio and kwargs["noise"] is noise
    torch.testing.assert_close(output.mask, encoded.mask)
    torch.testing.assert_close(output.ids_restore, encoded.ids_restore)
    torch.testing.assert_close(output.aggregated_hidden_state, encoded.last_hidden_state)

    with torch.no_grad():
        direct = model.ecg_pma(signals, noise=noise, mask_ratio=config.mask_ratio)
    kept = int(config.num_patches * (1 - config.mask_ratio))
    assert direct.last_hidden_state.shape == (len(signals), config.num_leads * (kept + 2), config.hidden_size)
    assert direct.mask.sum(-1).eq(config.num_patches - kept).all()
    torch.testing.assert_close(direct.mask, output.mask)
    unmasked = model.ecg_pma(signals)
    assert unmasked.mask is None and unmasked.ids_restore is None
    with pytest.raises(ValueError, match="mask_ratio > 0"):
        model.ecg_pma(signals, noise=noise)


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_output_flags_come_from_the_call_else_the_config(model_class, signals):
    config = EcgPmaConfig.from_preset("tiny", num_labels=3)
    model = model_class(config).eval()
    with torch.no_grad():
        plain = model(signals)
        assert plain.hidden_states is None and plain.attentions is None
        full = model(signals, output_hidden_states=True, output_attentions=True)
        assert len(full.hidden_states) == config.num_hidden_layers + 1
        assert len(full.attentions) == config.num_hidden_layers
        as_tuple = model(signals, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == len(plain.to_tuple())
        model.config.output_hidden_states = True
        model.config.return_dict = False
        from_config = model(signals)
    assert isinstance(from_config, tuple) and len(from_config) == len(plain.to_tuple()) + 1


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_models_take_model_inputs_only(model_class, tiny_config):
    """`record_index` is the caller's bookkeeping (like a tokenizer's `overflow_to_sample_mapping`): popped before
    `model(**features)`, never a forward argument."""
    assert "record_index" not in inspect.signature(model_class.forward).parameters
    model = model_class(tiny_config).eval()
    records = [str(shared_data_dir("physionet2021") / name) for name in ("JS20005", "E07500")]
    features = EcgPmaFeatureExtractor.from_model_config(tiny_config)(
        records, window_mode="sliding", return_tensors="pt"
    )
    with pytest.raises(TypeError, match="record_index"):
        model(**features)
    record_index = features.pop("record_index")
    assert record_index.tolist()[0] == 0 and record_index.tolist()[-1] == 1
    with torch.no_grad():
        model(**features)  # the model inputs alone


# Markdown files the package writes (named in docstrings that describe its outputs), not sources it cites.
WRITTEN_MARKDOWN = {"results.md", "layerwise_probe.md", "README.md", "benchmark.md"}


def test_docstrings_cite_only_files_in_the_repository():
    from conftest import REPO_ROOT

    in_repository = {path.name for path in REPO_ROOT.rglob("*") if ".git" not in path.parts}
    cited = set()
    for source in (REPO_ROOT / "ecg_pma").rglob("*.py"):
        tree = ast.parse(source.read_text())
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]
        for node in nodes:
            for name in re.findall(r"[\w.-]+\.(?:py|md)\b", ast.get_docstring(node) or ""):
                cited.add((source.name, name))
    missing = {(where, name) for where, name in cited if name not in in_repository | WRITTEN_MARKDOWN}
    assert not missing
