"""Reduced-lead support in the model: any subset of the config's leads, per sample, through a `lead_mask`."""

import numpy as np
import pytest
import torch

from ecg_pma import (
    LEAD_SETS,
    EcgPmaConfig,
    EcgPmaForPreTraining,
    EcgPmaForSequenceClassification,
    EcgPmaModel,
    resolve_lead_set,
)


# One mixed batch: every challenge lead set, a single lead (watch) and a Holter-like pair.
SUBSETS = [LEAD_SETS[name] for name in ("12", "6", "4", "3", "2")] + [("I",), ("II", "V1")]
AGGREGATIONS = [("last", None), ("ppa", None), ("pma", None), ("layer", 1)]


def mixed_batch(config: EcgPmaConfig, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals with garbage (large values, NaN) in absent slots, and the lead mask of `SUBSETS`."""
    generator = torch.Generator().manual_seed(seed)
    signals = torch.randn(len(SUBSETS), config.num_leads, config.signal_length, generator=generator)
    lead_mask = torch.tensor([[name in subset for name in config.lead_names] for subset in SUBSETS])
    garbage = 100 * torch.randn(signals.shape, generator=generator)
    signals = torch.where(lead_mask[..., None], signals, garbage)
    signals[~lead_mask] = signals[~lead_mask].index_fill(1, torch.tensor([3]), float("nan"))
    return signals, lead_mask


def perturb_weights(model: torch.nn.Module, seed: int = 1) -> None:
    """Random weights everywhere (the PMA gate included, whatever its initialisation), so nothing is trivially equal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))


def reduced_model(model, lead_names: list[str]):
    """The same weights in a model built for just `lead_names`: a plain model with no mask, the reference."""
    indices = [model.config.lead_names.index(name) for name in lead_names]
    config = EcgPmaConfig.from_dict({**model.config.to_dict(), "num_leads": len(indices), "lead_names": lead_names})
    reduced = type(model)(config)
    state = model.state_dict()
    key = next(name for name in state if name.endswith("embeddings.lead_embeddings"))
    state[key] = state[key][indices]
    reduced.load_state_dict(state)
    reduced.set_attn_implementation(model.config._attn_implementation)
    return reduced.eval(), indices


def make_model(model_class, aggregation, layer, attention):
    config = EcgPmaConfig.from_preset(
        "tiny", num_labels=3, aggregation=aggregation, aggregation_layer=layer, head_type="mlp"
    )
    model = model_class(config)
    model.set_attn_implementation(attention)
    perturb_weights(model)
    return model.eval()


OUTPUTS = {
    EcgPmaModel: ("pooler_output", "layer_representations", "input_representation"),
    EcgPmaForSequenceClassification: ("logits", "layer_weights", "pooled_output"),
}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize(("aggregation", "layer"), AGGREGATIONS)
@pytest.mark.parametrize("model_class", [EcgPmaModel, EcgPmaForSequenceClassification])
@torch.no_grad()
def test_mixed_batch_equals_each_sample_alone_on_its_present_leads(model_class, aggregation, layer, attention):
    if model_class is EcgPmaModel and aggregation != "last":
        pytest.skip("the encoder has no aggregation; covered once")
    model = make_model(model_class, aggregation, layer, attention)
    signals, lead_mask = mixed_batch(model.config)
    mixed = model(signals, lead_mask=lead_mask, output_hidden_states=True)

    for index, subset in enumerate(SUBSETS):
        reference_model, indices = reduced_model(model, list(subset))
        alone = reference_model(signals[index : index + 1, indices], output_hidden_states=True)
        for name in OUTPUTS[model_class]:
            torch.testing.assert_close(
                getattr(mixed, name)[index : index + 1], getattr(alone, name), atol=1e-5, rtol=0
            )
        if model_class is EcgPmaModel:
            # Token outputs: the present leads' tokens, every layer (the batch holds every lead: 12 are in sample 0).
            tokens_per_lead = model.config.num_patches + 2
            for mixed_layer, alone_layer in zip(mixed.hidden_states, alone.hidden_states):
                present = mixed_layer[index].unflatten(0, (-1, tokens_per_lead))[indices].flatten(0, 1)
                torch.testing.assert_close(present, alone_layer[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize(("aggregation", "layer"), AGGREGATIONS)
@torch.no_grad()
def test_absent_slots_change_nothing(aggregation, layer, attention):
    model = make_model(EcgPmaForSequenceClassification, aggregation, layer, attention)
    signals, lead_mask = mixed_batch(model.config)
    first = model(signals, lead_mask=lead_mask, output_hidden_states=True)
    rewritten = torch.where(lead_mask[..., None], signals, torch.full_like(signals, -7.5))
    second = model(rewritten, lead_mask=lead_mask, output_hidden_states=True)
    for name in ("logits", "layer_weights", "pooled_output"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    for a, b in zip(first.hidden_states, second.hidden_states):
        assert torch.equal(a, b)
    # and the mask does matter: the same slots read as present give other outputs
    assert not torch.allclose(model(rewritten).logits, second.logits)


@pytest.mark.parametrize("subset", [LEAD_SETS["2"], ("I",)])
@torch.no_grad()
def test_leads_absent_from_the_whole_batch_are_not_computed(tiny_config, signals, subset):
    model = EcgPmaModel(tiny_config).eval()
    lead_mask = torch.tensor([[name in subset for name in tiny_config.lead_names]] * len(signals))
    out = model(signals, lead_mask=lead_mask, output_attentions=True)
    tokens = len(subset) * (tiny_config.num_patches + 2)
    assert out.last_hidden_state.shape == (len(signals), tokens, tiny_config.hidden_size)
    assert out.attentions[0].shape[-1] == tokens
    assert out.present_leads.tolist() == [tiny_config.lead_names.index(name) for name in subset]


@pytest.mark.parametrize("model_class", [EcgPmaModel, EcgPmaForSequenceClassification])
@torch.no_grad()
def test_all_true_mask_is_the_plain_path(tiny_config, signals, model_class):
    model = model_class(tiny_config).eval()
    plain = model(signals, output_hidden_states=True)
    masked = model(signals, lead_mask=torch.ones(len(signals), 12, dtype=torch.bool), output_hidden_states=True)
    for a, b in zip(plain.to_tuple(), masked.to_tuple()):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.equal(x, y)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("aggregation", ["last", "ipa"])
@torch.no_grad()
def test_pretraining_loss_on_present_leads_only(aggregation, attention):
    config = EcgPmaConfig.from_preset("tiny", pretraining_aggregation=aggregation)
    model = EcgPmaForPreTraining(config)
    model.set_attn_implementation(attention)
    perturb_weights(model)
    model.eval()
    signals, lead_mask = mixed_batch(config)
    noise = torch.rand(len(signals), config.num_leads, config.num_patches)
    mixed = model(signals, noise=noise, lead_mask=lead_mask)
    assert torch.isfinite(mixed.loss)
    assert not mixed.mask[~lead_mask].any(), "absent leads are never scored"
    masked_per_lead = config.num_patches - int(config.num_patches * (1 - config.mask_ratio))
    assert torch.equal(mixed.mask.sum(dim=-1)[lead_mask], torch.full((int(lead_mask.sum()),), masked_per_lead * 1.0))

    weighted_loss, num_masked = 0.0, 0
    for index, subset in enumerate(SUBSETS):
        reference_model, indices = reduced_model(model, list(subset))
        alone = reference_model(signals[index : index + 1, indices], noise=noise[index : index + 1, indices])
        torch.testing.assert_close(mixed.mask[index, indices], alone.mask[0])
        torch.testing.assert_close(mixed.reconstruction[index, indices], alone.reconstruction[0], atol=1e-5, rtol=0)
        weighted_loss += alone.loss * len(indices) * masked_per_lead
        num_masked += len(indices) * masked_per_lead
    torch.testing.assert_close(mixed.loss, weighted_loss / num_masked, atol=1e-5, rtol=1e-5)

    rewritten = torch.where(lead_mask[..., None], signals, torch.zeros_like(signals))
    assert torch.equal(model(rewritten, noise=noise, lead_mask=lead_mask).loss, mixed.loss)


@pytest.mark.parametrize(
    ("make_mask", "message"),
    [
        (lambda batch: torch.ones(batch, 11, dtype=torch.bool), r"shape \(4, 12\)"),
        (lambda batch: torch.ones(batch, 12), "bool"),
        (lambda batch: torch.full((batch, 12), 2), "only 0 and 1"),
        (
            lambda batch: torch.zeros(batch, 12, dtype=torch.bool).index_fill(0, torch.tensor([0]), True),
            "batch item 1",
        ),
    ],
)
def test_bad_lead_mask_raises(tiny_config, signals, make_mask, message):
    with pytest.raises(ValueError, match=message):
        EcgPmaModel(tiny_config)(signals, lead_mask=make_mask(len(signals)))


def test_nan_in_a_present_lead_still_raises(tiny_config, signals):
    signals = signals.clone()
    signals[1, 0, 5] = float("nan")
    lead_mask = torch.ones(4, 12, dtype=torch.bool)
    lead_mask[1, 1] = False
    with pytest.raises(ValueError, match="batch item 1, lead I"):
        EcgPmaModel(tiny_config)(signals, lead_mask=lead_mask)


def test_resolve_lead_set():
    names = list(LEAD_SETS["12"])
    assert resolve_lead_set("3", names) == ["I", "II", "V2"]
    assert resolve_lead_set("v2, I", names) == ["I", "V2"]
    assert resolve_lead_set(["avr", "II"], names) == ["II", "aVR"]
    with pytest.raises(ValueError, match=r"\['MLII'\]"):
        resolve_lead_set(["MLII"], names)


@pytest.mark.parametrize("aggregation", ["pma", "ppa"])
def test_onnx_export_with_the_lead_mask_matches_pytorch(tmp_path, aggregation):
    import onnxruntime

    from ecg_pma.serving.onnx_export import export_onnx

    model = make_model(EcgPmaForSequenceClassification, aggregation, None, "sdpa")
    model.save_pretrained(tmp_path / "model")
    spec = export_onnx(tmp_path / "model", tmp_path / "model.onnx")
    assert spec["inputs"]["lead_mask"] == ["batch", 12]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["signals", "lead_mask"]
    signals, lead_mask = mixed_batch(model.config)
    assert signals[~lead_mask].isnan().any()  # the graph zeroes absent slots, NaN included
    for rows in (slice(0, 7), slice(2, 3), slice(0, 2)):  # dynamic batch: mixed, one reduced sample, 12 + 6 leads
        logits, layer_weights = session.run(
            None, {"signals": signals[rows].numpy(), "lead_mask": lead_mask[rows].numpy()}
        )
        with torch.no_grad():
            expected = model(signals[rows], lead_mask=lead_mask[rows])
        np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(layer_weights, expected.layer_weights.numpy(), atol=1e-4, rtol=0)
