"""
A straightforward reference implementation of the same maths as `ecg_pma`, the baseline the benchmarks compare
against: per-lead Python loops (embedding, masking, decoding), per-lead parameters re-stacked every call, separate
q / k / v projections and hand-written attention — the way the ST-MEM / PMA reference code is laid out. It reads the
weights of an `EcgPmaForPreTraining` / `EcgPmaModel`, so outputs can be compared number for number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _block(x: torch.Tensor, layer, heads: int, eps: float) -> torch.Tensor:
    width = x.shape[-1]
    h = F.layer_norm(x, (width,), layer.layernorm_before.weight, layer.layernorm_before.bias, eps)
    weight, bias = layer.attention.qkv.weight, layer.attention.qkv.bias
    q = F.linear(h, weight[:width], None if bias is None else bias[:width])
    k = F.linear(h, weight[width : 2 * width], None if bias is None else bias[width : 2 * width])
    v = F.linear(h, weight[2 * width :], None if bias is None else bias[2 * width :])

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    scores = torch.matmul(q, k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
    attention = torch.softmax(scores, dim=-1)
    out = torch.matmul(attention, v).transpose(1, 2).reshape(x.shape)
    x = x + F.linear(out, layer.attention.output.weight, layer.attention.output.bias)
    h = F.layer_norm(x, (width,), layer.layernorm_after.weight, layer.layernorm_after.bias, eps)
    return x + F.linear(
        F.gelu(F.linear(h, layer.mlp.fc1.weight, layer.mlp.fc1.bias)), layer.mlp.fc2.weight, layer.mlp.fc2.bias
    )


def reference_embed(encoder, signals: torch.Tensor, keep: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
    """Lead by lead, as the reference code does; `keep[b][lead]` lists kept patch indices (all when None)."""
    config, embeddings = encoder.config, encoder.embeddings
    patch = embeddings.patch_embeddings
    lead_embeddings = torch.stack(
        [embeddings.lead_embeddings[i] for i in range(config.num_leads)]
    )  # re-stacked each call
    position = embeddings.position_embeddings[0]
    batch = []
    for b in range(signals.shape[0]):
        leads = []
        for lead in range(config.num_leads):
            patches = signals[b, lead].reshape(config.num_patches, config.patch_size)
            x = F.layer_norm(
                patches, (config.patch_size,), patch.patch_norm.weight, patch.patch_norm.bias, config.layer_norm_eps
            )
            x = F.linear(x, patch.projection.weight, patch.projection.bias)
            x = F.layer_norm(
                x, (config.hidden_size,), patch.embedding_norm.weight, patch.embedding_norm.bias, config.layer_norm_eps
            )
            x = x + position[1:-1]
            if keep is not None:
                x = x[keep[b][lead]]
            left = embeddings.sep_embedding + position[0]
            right = embeddings.sep_embedding + position[-1]
            leads.append(torch.cat([left[None], x, right[None]]) + lead_embeddings[lead])
        batch.append(torch.cat(leads))
    return torch.stack(batch)


def reference_encoder(encoder, signals: torch.Tensor, keep=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Returns (layer representations `(batch, depth, hidden)`, every block's output)."""
    config = encoder.config
    x = reference_embed(encoder, signals, keep)
    outputs, representations = [], []
    for layer in encoder.encoder.layers:
        x = _block(x, layer, config.num_attention_heads, config.layer_norm_eps)
        outputs.append(x)
        per_lead = x.reshape(x.shape[0], config.num_leads, -1, config.hidden_size)[:, :, 1:-1]
        representations.append(per_lead.mean(dim=(1, 2)))
    return torch.stack(representations, dim=1), outputs


def reference_pretraining_loss(model, signals: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Masked modeling with per-lead loops for masking and decoding (last-layer aggregation)."""
    config, encoder, decoder = model.config, model.ecg_pma, model.decoder
    batch, num_kept = signals.shape[0], int(config.num_patches * (1 - config.mask_ratio))
    keep = [[noise[b, lead].argsort()[:num_kept] for lead in range(config.num_leads)] for b in range(batch)]
    _, outputs = reference_encoder(encoder, signals, keep)
    hidden = F.layer_norm(
        outputs[-1], (config.hidden_size,), encoder.layernorm.weight, encoder.layernorm.bias, config.layer_norm_eps
    )
    tokens = F.linear(hidden, decoder.decoder_embed.weight, decoder.decoder_embed.bias)
    tokens = tokens.reshape(batch, config.num_leads, num_kept + 2, -1)
    losses, counts = [], 0
    for b in range(batch):
        for lead in range(config.num_leads):  # the decoder runs lead by lead
            sequence = decoder.mask_token[0].repeat(config.num_patches, 1)
            sequence = sequence.index_copy(0, keep[b][lead], tokens[b, lead, 1:-1])
            sequence = (
                torch.cat([tokens[b, lead, :1], sequence, tokens[b, lead, -1:]])
                + decoder.decoder_position_embeddings[0]
            )
            x = sequence[None]
            for layer in decoder.layers:
                x = _block(x, layer, config.decoder_num_attention_heads, config.layer_norm_eps)
            x = F.layer_norm(
                x,
                (x.shape[-1],),
                decoder.decoder_norm.weight,
                decoder.decoder_norm.bias,
                config.decoder_layer_norm_eps,
            )
            prediction = F.linear(x, decoder.decoder_pred.weight, decoder.decoder_pred.bias)[0, 1:-1]
            target = signals[b, lead].reshape(config.num_patches, config.patch_size)
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
            masked = torch.ones(config.num_patches, dtype=torch.bool, device=signals.device)
            masked[keep[b][lead]] = False
            losses.append(((prediction - target) ** 2).mean(-1)[masked].sum())
            counts += int(masked.sum())
    return torch.stack(losses).sum() / counts
