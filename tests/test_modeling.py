"""The model core: encoder, masked modeling (last / IPA), mixture-of-layers heads and their invariants."""

import pytest
import torch

from ecg_pma import (
    PRESETS,
    EcgPmaConfig,
    EcgPmaForPreTraining,
    EcgPmaForSequenceClassification,
    EcgPmaModel,
)
from ecg_pma.modeling_ecg_pma import mean_over_patch_tokens, sincos_position_table


@pytest.mark.parametrize("preset", sorted(PRESETS))
@torch.no_grad()
def test_shapes_for_every_preset(preset):
    config = EcgPmaConfig.from_preset(preset, num_labels=5)
    batch = 1 if config.hidden_size >= 768 else 2  # ViT-B forward passes are the slowest tests
    signals = torch.randn(batch, config.num_leads, config.signal_length)
    depth, hidden, patches = config.num_hidden_layers, config.hidden_size, config.num_patches
    tokens = config.num_leads * (patches + 2)

    encoder = EcgPmaModel(config).eval()
    out = encoder(signals, output_hidden_states=True)
    assert out.last_hidden_state.shape == (batch, tokens, hidden)
    assert out.pooler_output.shape == (batch, hidden)
    assert out.layer_representations.shape == (batch, depth, hidden)
    assert out.input_representation.shape == (batch, hidden)
    assert len(out.hidden_states) == depth + 1
    del encoder

    pretraining = EcgPmaForPreTraining(config).eval()
    out = pretraining(signals)
    assert out.reconstruction.shape == (batch, config.num_leads, patches, config.patch_size)
    assert out.mask.shape == (batch, config.num_leads, patches)
    kept = int(patches * (1 - config.mask_ratio))
    assert out.aggregated_hidden_state.shape == (batch, config.num_leads * (kept + 2), hidden)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    del pretraining

    classifier = EcgPmaForSequenceClassification(config).eval()
    out = classifier(signals)
    assert out.logits.shape == (batch, 5)
    assert out.layer_weights.shape == (batch, depth)


def test_position_table_is_sincos_with_zero_sep_rows():
    table = sincos_position_table(20, 8)
    assert table.shape == (22, 8)
    assert torch.all(table[0] == 0) and torch.all(table[-1] == 0)
    # position p, frequency 0: sin(p) in the first half, cos(p) in the second
    assert torch.allclose(table[1:-1, 0], torch.sin(torch.arange(20.0)))
    assert torch.allclose(table[1:-1, 4], torch.cos(torch.arange(20.0)))


def test_position_tables_are_fixed_and_saved(tiny_config):
    model = EcgPmaForPreTraining(tiny_config)
    assert not model.ecg_pma.embeddings.position_embeddings.requires_grad
    assert not model.decoder.decoder_position_embeddings.requires_grad
    expected = sincos_position_table(tiny_config.num_patches, tiny_config.hidden_size)
    assert torch.equal(model.ecg_pma.embeddings.position_embeddings[0], expected)


# ---------------------------------------------------------------------------------------------------------------- encoder


def test_layer_representations_are_token_means_of_raw_block_outputs(tiny_config, signals):
    model = EcgPmaModel(tiny_config).eval()
    out = model(signals, output_hidden_states=True)
    for layer in range(tiny_config.num_hidden_layers):
        block_output = out.hidden_states[layer + 1].unflatten(1, (12, -1))
        by_hand = block_output[:, :, 1:-1].reshape(4, -1, tiny_config.hidden_size).mean(dim=1)
        torch.testing.assert_close(out.layer_representations[:, layer], by_hand)
    torch.testing.assert_close(out.input_representation, mean_over_patch_tokens(out.hidden_states[0], 12))
    torch.testing.assert_close(out.pooler_output, model.layernorm(out.layer_representations[:, -1]))
    torch.testing.assert_close(out.last_hidden_state, model.layernorm(out.hidden_states[-1]))


def test_sdpa_and_eager_attention_agree(tiny_config, signals):
    sdpa = EcgPmaModel(tiny_config).eval()
    assert sdpa.config._attn_implementation == "sdpa"
    eager = EcgPmaModel(tiny_config).eval()
    eager.load_state_dict(sdpa.state_dict())
    eager.set_attn_implementation("eager")
    out_sdpa = sdpa(signals)
    out_eager = eager(signals, output_attentions=True)
    torch.testing.assert_close(out_sdpa.layer_representations, out_eager.layer_representations, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_sdpa.last_hidden_state, out_eager.last_hidden_state, atol=1e-5, rtol=1e-5)
    tokens = 12 * (tiny_config.num_patches + 2)
    assert len(out_eager.attentions) == tiny_config.num_hidden_layers
    assert out_eager.attentions[0].shape == (4, tiny_config.num_attention_heads, tokens, tokens)
    torch.testing.assert_close(out_eager.attentions[0].sum(-1), torch.ones(4, tiny_config.num_attention_heads, tokens))


def test_attention_maps_requested_from_sdpa_model_fall_back_to_eager(tiny_config, signals):
    model = EcgPmaModel(tiny_config).eval()
    with_maps = model(signals, output_attentions=True)
    assert with_maps.attentions is not None and with_maps.attentions[0] is not None
    torch.testing.assert_close(
        with_maps.layer_representations, model(signals).layer_representations, atol=1e-5, rtol=1e-5
    )


def test_lead_embeddings_make_leads_distinguishable(tiny_config, signals):
    model = EcgPmaModel(tiny_config).eval()
    swapped = signals[:, [1, 0, *range(2, 12)]]
    assert not torch.allclose(model(signals).pooler_output, model(swapped).pooler_output)


def test_dropout_and_drop_path_only_in_training(signals):
    config = EcgPmaConfig.from_preset("tiny", drop_path_rate=0.5, hidden_dropout_prob=0.1)
    model = EcgPmaModel(config)
    model.eval()
    torch.testing.assert_close(model(signals).pooler_output, model(signals).pooler_output)
    model.train()
    assert not torch.allclose(model(signals).pooler_output, model(signals).pooler_output)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config, signals):
    model = EcgPmaForPreTraining(tiny_config)
    noise = torch.rand(4, 12, tiny_config.num_patches)
    model(signals, noise=noise).loss.backward()
    reference = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    model.gradient_checkpointing_enable()  # every transformers 5 release has it (a deprecated alias from 5.23 on)
    model(signals, noise=noise).loss.backward()
    checkpointed = [p.grad for p in model.parameters() if p.grad is not None]
    for expected, actual in zip(reference, checkpointed, strict=True):
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------- pre-training


def test_exact_number_of_masked_patches_per_lead(tiny_config, signals):
    model = EcgPmaForPreTraining(tiny_config)
    out = model(signals)
    patches = tiny_config.num_patches
    masked = patches - int(patches * (1 - tiny_config.mask_ratio))
    assert torch.all(out.mask.sum(dim=-1) == masked)  # every lead of every ECG
    # masks are drawn per lead: not all leads share one mask
    assert not torch.all(out.mask == out.mask[:, :1])


def test_noise_fixes_the_mask(tiny_config, signals):
    model = EcgPmaForPreTraining(tiny_config).eval()
    noise = torch.rand(4, 12, tiny_config.num_patches)
    first, second = model(signals, noise=noise), model(signals, noise=noise)
    assert torch.equal(first.mask, second.mask)
    assert torch.equal(first.loss, second.loss)
    # the patches with the smallest noise are kept
    kept = noise.argsort(dim=-1)[..., : int(tiny_config.num_patches * (1 - tiny_config.mask_ratio))]
    assert torch.all(first.mask.gather(-1, kept) == 0)
    with pytest.raises(ValueError, match="`noise` must have shape"):
        model(signals, noise=torch.rand(4, 12, 3))


def test_loss_ignores_unmasked_patches(tiny_config, signals):
    model = EcgPmaForPreTraining(tiny_config).eval()
    out = model(signals)
    mask = out.mask.bool()
    loss = model.forward_loss(signals, out.reconstruction, out.mask)
    torch.testing.assert_close(loss, out.loss)

    changed_where_kept = out.reconstruction.clone()
    changed_where_kept[~mask] += 100.0
    assert torch.equal(model.forward_loss(signals, changed_where_kept, out.mask), loss)

    changed_signal = model.patchify(signals).clone()
    changed_signal[~mask] = torch.randn_like(changed_signal[~mask])
    assert torch.equal(model.forward_loss(model.unpatchify(changed_signal), out.reconstruction, out.mask), loss)

    changed_where_masked = out.reconstruction.clone()
    changed_where_masked[mask] += 1.0
    assert model.forward_loss(signals, changed_where_masked, out.mask) > loss


def test_norm_pix_loss_normalises_targets_per_patch(tiny_config, signals):
    model = EcgPmaForPreTraining(tiny_config).eval()
    out = model(signals)
    target = model.patchify(signals)
    normalised = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    perfect = torch.where(out.mask.bool()[..., None], normalised, out.reconstruction)
    assert model.forward_loss(signals, perfect, out.mask) < 1e-10
    # scaling and shifting a lead does not change a norm-pix target
    assert model.forward_loss(signals * 3 + 2, perfect, out.mask) < 1e-8


def test_ipa_decoder_input_is_the_per_token_layer_mean(signals):
    config = EcgPmaConfig.from_preset("tiny", pretraining_aggregation="ipa")
    model = EcgPmaForPreTraining(config).eval()
    noise = torch.rand(4, 12, config.num_patches)
    out = model(signals, noise=noise, output_hidden_states=True)
    norm = model.ecg_pma.layernorm
    by_hand = sum(norm(block_output) for block_output in out.hidden_states[1:]) / config.num_hidden_layers
    torch.testing.assert_close(out.aggregated_hidden_state, by_hand)

    last = EcgPmaForPreTraining(EcgPmaConfig.from_preset("tiny", pretraining_aggregation="last")).eval()
    last.load_state_dict(model.state_dict())
    out_last = last(signals, noise=noise, output_hidden_states=True)
    torch.testing.assert_close(out_last.aggregated_hidden_state, norm(out_last.hidden_states[-1]))
    assert not torch.allclose(out_last.aggregated_hidden_state, out.aggregated_hidden_state)
    assert not torch.allclose(out_last.loss, out.loss)


def test_reconstruction_ignores_other_leads_only_through_encoder(tiny_config, signals):
    # the decoder runs lead by lead: decoding one lead's tokens does not depend on another lead's decoder tokens
    model = EcgPmaForPreTraining(tiny_config).eval()
    hidden = torch.randn(2, 12 * 7, tiny_config.hidden_size)
    ids_restore = torch.stack([torch.randperm(20) for _ in range(24)]).view(2, 12, 20)
    reference = model.decoder(hidden, ids_restore)
    changed = hidden.clone().unflatten(1, (12, 7))
    changed[:, 5] += 1.0
    reconstruction = model.decoder(changed.flatten(1, 2), ids_restore)
    others = [lead for lead in range(12) if lead != 5]
    torch.testing.assert_close(reconstruction[:, others], reference[:, others])
    assert not torch.allclose(reconstruction[:, 5], reference[:, 5])


def test_pretraining_step_lowers_the_loss_on_a_fixed_batch(tiny_config, signals):
    model = EcgPmaForPreTraining(tiny_config)
    noise = torch.rand(4, 12, tiny_config.num_patches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = model(signals, noise=noise).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] * 0.9


# ------------------------------------------------------------------------------------------------------ classification


def _classifier(aggregation, **overrides):
    config = EcgPmaConfig.from_preset("tiny", aggregation=aggregation, num_labels=3, **overrides)
    return EcgPmaForSequenceClassification(config).eval()


def test_last_aggregation_is_the_encoder_pooler_output(signals):
    model = _classifier("last")
    out = model(signals)
    torch.testing.assert_close(out.pooled_output, model.ecg_pma(signals).pooler_output)
    assert torch.all(out.layer_weights[:, -1] == 1) and torch.all(out.layer_weights[:, :-1] == 0)


def test_ppa_is_the_mean_of_layer_representations(signals):
    model = _classifier("ppa")
    out = model(signals)
    layer_representations = model.ecg_pma(signals).layer_representations
    torch.testing.assert_close(out.pooled_output, model.ecg_pma.layernorm(layer_representations.mean(dim=1)))
    torch.testing.assert_close(out.layer_weights, torch.full((4, 4), 0.25))


@pytest.mark.parametrize("layer", [0, 2, -1])
def test_single_layer_aggregation(signals, layer):
    model = _classifier("layer", aggregation_layer=layer)
    out = model(signals)
    layer_representations = model.ecg_pma(signals).layer_representations
    torch.testing.assert_close(out.pooled_output, model.ecg_pma.layernorm(layer_representations[:, layer]))
    assert out.layer_weights.argmax(dim=-1).eq(layer % 4).all()


def test_pma_weights_are_a_per_sample_softmax(signals):
    model = _classifier("pma")
    with torch.no_grad():  # a non-trivial gate, as after training
        for parameter in model.aggregator.gate.parameters():
            parameter.normal_(std=0.5)
    out = model(signals)
    torch.testing.assert_close(out.layer_weights.sum(dim=-1), torch.ones(4))
    assert torch.all(out.layer_weights >= 0)
    assert not torch.allclose(out.layer_weights[0], out.layer_weights[1], atol=1e-4)
    layer_representations = model.ecg_pma(signals).layer_representations
    fused = (out.layer_weights[..., None] * layer_representations).sum(dim=1)
    torch.testing.assert_close(out.pooled_output, model.ecg_pma.layernorm(fused), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head_type", ["linear", "mlp"])
def test_heads(signals, head_type):
    model = _classifier("pma", head_type=head_type)
    linear_layers = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear_layers) == (1 if head_type == "linear" else 2)
    assert model(signals).logits.shape == (4, 3)


def test_freeze_encoder_trains_only_gate_and_head(signals):
    model = _classifier("pma")
    model.freeze_encoder()
    model.train()
    assert not model.ecg_pma.training, "a frozen encoder stays in eval mode"
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"aggregator", "classifier"}

    encoder_before = {k: v.clone() for k, v in model.ecg_pma.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float)
    model(signals, labels=labels).loss.backward()
    optimizer.step()

    for key, value in model.ecg_pma.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    named = dict(model.named_parameters())
    changed = [name for name, value in head_before.items() if not torch.equal(named[name], value)]
    assert any(name.startswith("aggregator.gate") for name in changed)
    assert any(name.startswith("classifier") for name in changed)

    model.unfreeze_encoder()
    assert model.ecg_pma.embeddings.lead_embeddings.requires_grad
    assert not model.ecg_pma.embeddings.position_embeddings.requires_grad
    model.train()
    assert model.ecg_pma.training


def test_losses_by_problem_type(signals):
    multi = _classifier("pma")
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float)
    out = multi(signals, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels))
    assert multi.config.problem_type == "multi_label_classification"

    single = _classifier("pma")
    classes = torch.tensor([0, 2, 1, 2])
    out = single(signals, labels=classes)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, classes))
    assert single.config.problem_type == "single_label_classification"

    regression = EcgPmaForSequenceClassification(EcgPmaConfig.from_preset("tiny", num_labels=1)).eval()
    targets = torch.tensor([0.5, 1.0, -1.0, 2.0])
    out = regression(signals, labels=targets)
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), targets))


def test_labels_that_do_not_match_the_config_are_rejected(signals):
    multi = _classifier("pma", problem_type="multi_label_classification")
    with pytest.raises(ValueError, match=r"Multi-label `labels` must have shape \(batch, num_labels\) = \(4, 3\)"):
        multi(signals, labels=torch.zeros(4, 5))
    single = _classifier("pma", problem_type="single_label_classification")
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        single(signals, labels=torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="integer class indices"):
        single(signals, labels=torch.zeros(4))


# ------------------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda: torch.randn(2, 8, 1000), r"has 8 leads but the model expects 12 \(I, II, III"),
        (lambda: torch.randn(2, 12, 5000), r"has 5000 samples per lead but the model expects 1000 \(10 s at 100 Hz\)"),
        (lambda: torch.randn(12, 1000), r"must have 3 dimensions \(batch, 12, 1000\).*signals\[None\]"),
        (lambda: torch.randn(1, 2, 12, 1000), "must have 3 dimensions"),
        (lambda: torch.randint(0, 5, (2, 12, 1000)), "must be a floating-point tensor, got dtype torch.int64"),
        (lambda: torch.randn(2, 12, 1000).numpy(), "must be a torch.Tensor"),
        (
            lambda: torch.randn(2, 12, 1000).index_put_(
                (torch.tensor(1), torch.tensor(3), torch.tensor(17)), torch.tensor(float("nan"))
            ),
            "NaN or inf \\(first at batch item 1, lead aVR, sample 17\\)",
        ),
        (lambda: torch.randn(2, 12, 1000).index_fill_(2, torch.tensor([5]), float("inf")), "NaN or inf"),
    ],
)
@pytest.mark.parametrize("model_class", [EcgPmaModel, EcgPmaForPreTraining, EcgPmaForSequenceClassification])
def test_bad_input_raises_value_error(tiny_config, model_class, make_input, message):
    model = model_class(tiny_config).eval()
    with pytest.raises(ValueError, match=message):
        model(make_input())
