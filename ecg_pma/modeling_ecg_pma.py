"""
PyTorch ECG-PMA: a 1-D Vision Transformer over multi-lead ECG (ST-MEM layout) whose downstream heads fuse the
representations of every encoder layer (PPA, PMA) and whose masked-modeling pre-training can feed the decoder the
layer-averaged tokens (IPA). Method: arXiv:2509.00102.

This file is self-contained (torch, transformers and the configuration module only) so that a saved model loads with
`trust_remote_code=True` where the `ecg_pma` package is not installed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_ecg_pma import EcgPmaConfig


logger = logging.get_logger(__name__)

# One saved directory should load with any of these Auto classes, whichever class saved it.
_AUTO_MAP = {
    "AutoConfig": "configuration_ecg_pma.EcgPmaConfig",
    "AutoModel": "modeling_ecg_pma.EcgPmaModel",
    "AutoModelForPreTraining": "modeling_ecg_pma.EcgPmaForPreTraining",
    "AutoModelForSequenceClassification": "modeling_ecg_pma.EcgPmaForSequenceClassification",
}


# --------------------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class EcgPmaModelOutput(ModelOutput):
    """
    Output of [`EcgPmaModel`].

    Args:
        last_hidden_state (`(batch, leads * (patches + 2), hidden)`): tokens of the last block after the final
            LayerNorm, lead by lead, each lead's patches framed by its two SEP tokens.
        pooler_output (`(batch, hidden)`): final LayerNorm of the last block's mean over non-SEP tokens
            (ST-MEM's downstream representation, `aggregation="last"`).
        layer_representations (`(batch, depth, hidden)`): per block, the mean over non-SEP tokens of the raw block
            output (before the final LayerNorm). What PPA and PMA fuse.
        input_representation (`(batch, hidden)`): mean over non-SEP tokens of the input embeddings (before block 0).
            What the PMA gate reads.
        hidden_states (`tuple` of `depth + 1` tensors `(batch, tokens, hidden)`, *optional*): embeddings, then every
            block's raw output.
        attentions (`tuple` of `depth` tensors `(batch, heads, tokens, tokens)`, *optional*).
        present_leads (`(kept_leads,)`, *optional*): set when a `lead_mask` left some leads absent from every sample
            of the batch: those leads' tokens were not computed, and the token outputs above (`last_hidden_state`,
            `hidden_states`, `attentions`) hold only the leads listed here (indices into `config.lead_names`).
        mask (`(batch, leads, patches)`, *optional*): with `mask_ratio > 0`, 1 where a patch was masked (dropped
            from the encoder), 0 where kept; the token dimension then holds `leads * (kept + 2)` tokens.
        ids_restore (`(batch, leads, patches)`, *optional*): with `mask_ratio > 0`, the permutation that puts kept
            and masked patches back in order.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    layer_representations: torch.FloatTensor | None = None
    input_representation: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    present_leads: torch.LongTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None


@dataclass
class EcgPmaForPreTrainingOutput(ModelOutput):
    """
    Output of [`EcgPmaForPreTraining`].

    Args:
        loss (`()`): mean squared error over masked patches only (per-patch normalised targets if `norm_pix_loss`).
        reconstruction (`(batch, leads, patches, patch_size)`): the decoder's prediction of every patch.
        mask (`(batch, leads, patches)`): 1 where a patch was masked (dropped from the encoder) and is scored, 0 where
            kept (and on absent leads).
        ids_restore (`(batch, leads, patches)`): the permutation that puts kept and masked patches back in order.
        aggregated_hidden_state (`(batch, leads * (kept + 2), hidden)`): what the decoder reads: the last block's
            tokens, or with IPA every token's mean over all blocks, each after the final LayerNorm.
        hidden_states, attentions: as in [`EcgPmaModelOutput`], over the kept tokens only.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    aggregated_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class EcgPmaSequenceClassifierOutput(ModelOutput):
    """
    Output of [`EcgPmaForSequenceClassification`].

    Args:
        loss (`()`, *optional*): BCE-with-logits (multi-label), cross-entropy (single-label) or MSE (regression).
        logits (`(batch, num_labels)`).
        layer_weights (`(batch, depth)`): the weight of each block in the fused representation (one-hot for
            `last` and `layer`, uniform for `ppa`, the gate's softmax for `pma`); sums to 1 per sample.
        pooled_output (`(batch, hidden)`): the fused representation after the final LayerNorm, as fed to the head.
        hidden_states, attentions: as in [`EcgPmaModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    layer_weights: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def sincos_position_table(num_patches: int, dim: int) -> torch.Tensor:
    """
    Fixed 1-D sin-cos table `(num_patches + 2, dim)`: rows 1..num_patches encode the patch positions, rows 0 and
    -1 (the two SEP tokens of a lead) are zero, as in ST-MEM.
    """
    if dim % 2 != 0:
        raise ValueError(f"A sin-cos position table needs an even width, got {dim}.")
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = torch.arange(num_patches, dtype=torch.float64)[:, None] * frequencies[None, :]
    table = torch.zeros(num_patches + 2, dim, dtype=torch.float64)
    table[1:-1] = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return table.float()


def mean_over_patch_tokens(
    tokens: torch.Tensor, num_leads: int, lead_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """
    Mean over the non-SEP tokens (of the present leads only, when a `lead_mask` is given).

    Args:
        tokens: `(batch, leads * (patches + 2), hidden)`, each lead framed by its two SEP tokens.
        lead_mask: `(batch, leads)` bool, True where a lead is present; None when all are.
    Returns:
        `(batch, hidden)`.
    """
    patch_tokens = tokens.unflatten(1, (num_leads, -1))[:, :, 1:-1]
    if lead_mask is None:
        return patch_tokens.mean(dim=(1, 2))
    # Every lead has the same number of patches, so the mean of the present leads' means is the token mean.
    weights = lead_mask.to(tokens.dtype)[..., None]
    return (patch_tokens.mean(dim=2) * weights).sum(dim=1) / weights.sum(dim=1)


def attention_mask_from_lead_mask(lead_mask: torch.Tensor, tokens_per_lead: int) -> torch.Tensor:
    """
    `(batch, leads)` bool -> `(batch, 1, 1, leads * tokens_per_lead)` bool, True where a key may be attended to: no
    token (present or absent) attends to an absent lead's tokens.
    """
    keys = lead_mask[:, :, None].expand(-1, -1, tokens_per_lead).flatten(1)
    return keys[:, None, None, :]


def is_exporting() -> bool:
    """True while tracing, compiling or exporting, where data-dependent checks and shapes are not allowed."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def validate_lead_mask(lead_mask: torch.Tensor, signals: torch.Tensor, config: EcgPmaConfig) -> torch.Tensor:
    """Raises `ValueError` unless `lead_mask` is `(batch, leads)` 0/1 or bool with a present lead per sample."""
    if is_exporting():
        return lead_mask.to(device=signals.device, dtype=torch.bool)
    expected = f"({signals.shape[0]}, {config.num_leads}) (batch, leads), True where the lead is present"
    if not isinstance(lead_mask, torch.Tensor):
        raise ValueError(f"`lead_mask` must be a torch.Tensor of shape {expected}, got {type(lead_mask).__name__}.")
    if tuple(lead_mask.shape) != (signals.shape[0], config.num_leads):
        raise ValueError(f"`lead_mask` must have shape {expected}, got {tuple(lead_mask.shape)}.")
    if lead_mask.is_floating_point() or lead_mask.is_complex():
        raise ValueError(f"`lead_mask` must be bool (or 0/1 integers), got dtype {lead_mask.dtype}.")
    if lead_mask.dtype != torch.bool and bool(((lead_mask != 0) & (lead_mask != 1)).any()):
        raise ValueError(f"`lead_mask` must hold only 0 and 1, got values {sorted(set(lead_mask.unique().tolist()))}.")
    lead_mask = lead_mask.to(device=signals.device, dtype=torch.bool)
    empty = (~lead_mask.any(dim=1)).nonzero()
    if len(empty):
        raise ValueError(
            f"`lead_mask` leaves batch item {int(empty[0])} without any lead; every sample needs at least one of "
            f"{list(config.lead_names)}."
        )
    return lead_mask


def select_present_leads(
    signals: torch.Tensor, lead_mask: torch.Tensor | None, drop_absent_leads: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """
    Prepares a batch whose samples may lack leads. Absent slots are zeroed, so their content (even NaN) cannot reach
    any output. With `drop_absent_leads`, the leads absent from every sample are cut out of the batch (fewer tokens:
    a uniformly 2-lead batch runs 2 leads' tokens); outside tracing only, where shapes may depend on data.

    Args:
        signals: `(batch, leads, samples)`. lead_mask: `(batch, leads)` bool (validated) or None.
    Returns:
        signals `(batch, kept_leads, samples)`; the lead mask over the kept leads, or None when every kept lead is
        present in every sample (then no attention mask is needed); the kept leads' indices, or None for all leads.
    """
    if lead_mask is None:
        return signals, None, None
    if is_exporting():
        return signals.masked_fill(~lead_mask[..., None], 0.0), lead_mask, None
    if bool(lead_mask.all()):
        return signals, None, None
    signals = signals.masked_fill(~lead_mask[..., None], 0.0)
    lead_indices = None
    present_somewhere = lead_mask.any(dim=0)
    if drop_absent_leads and not bool(present_somewhere.all()):
        lead_indices = present_somewhere.nonzero()[:, 0]
        signals, lead_mask = signals[:, lead_indices], lead_mask[:, lead_indices]
        if bool(lead_mask.all()):
            lead_mask = None
    return signals, lead_mask, lead_indices


def linear_drop_path_rates(drop_path_rate: float, num_layers: int) -> list[float]:
    """
    Stochastic-depth rate of each block, rising linearly from 0 to `drop_path_rate` (the values of
    `torch.linspace(0, drop_path_rate, num_layers)`). Plain Python, so that a model can be built under
    `torch.device("meta")` or `accelerate.init_empty_weights()`, where a tensor has no values to read.
    """
    if num_layers == 1:
        return [0.0]
    return [drop_path_rate * index / (num_layers - 1) for index in range(num_layers)]


def validate_signals(
    signals: torch.Tensor, config: EcgPmaConfig, lead_mask: torch.Tensor | None = None
) -> torch.Tensor | None:
    """
    Raises `ValueError` naming what was expected when `signals` is not a finite `(batch, leads, samples)` batch
    (absent leads, per `lead_mask`, may hold anything). Returns the validated lead mask as bool, or None.
    """
    expected = f"(batch, {config.num_leads}, {config.signal_length})"
    if not isinstance(signals, torch.Tensor):
        raise ValueError(f"`signals` must be a torch.Tensor of shape {expected}, got {type(signals).__name__}.")
    if signals.ndim != 3:
        hint = " (a single ECG needs a batch dimension: `signals[None]`)" if signals.ndim == 2 else ""
        raise ValueError(f"`signals` must have 3 dimensions {expected}, got shape {tuple(signals.shape)}{hint}.")
    if not signals.is_floating_point():
        raise ValueError(f"`signals` must be a floating-point tensor, got dtype {signals.dtype}.")
    if signals.shape[1] != config.num_leads:
        raise ValueError(
            f"`signals` has {signals.shape[1]} leads but the model expects {config.num_leads} "
            f"({', '.join(config.lead_names)}); shape {tuple(signals.shape)}, expected {expected}."
        )
    if signals.shape[2] != config.signal_length:
        raise ValueError(
            f"`signals` has {signals.shape[2]} samples per lead but the model expects {config.signal_length} "
            f"({config.signal_length / config.sampling_rate:g} s at {config.sampling_rate} Hz); resample and crop with "
            "EcgPmaFeatureExtractor."
        )
    if lead_mask is not None:
        lead_mask = validate_lead_mask(lead_mask, signals, config)
    # Data-dependent checks cannot be traced or compiled; exported graphs skip them.
    if is_exporting():
        return lead_mask
    finite = torch.isfinite(signals)
    if lead_mask is not None and not bool(finite.all()):
        finite = finite | ~lead_mask[..., None]  # absent leads may hold anything
    if not bool(finite.all()):
        sample, lead, position = (int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"`signals` contains NaN or inf (first at batch item {sample}, lead {config.lead_names[lead]}, "
            f"sample {position}); clean or interpolate the record before the model."
        )
    return lead_mask


# --------------------------------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------------------------------


class EcgPmaPatchEmbeddings(nn.Module):
    """
    Cuts every lead into non-overlapping patches and embeds each: LayerNorm(patch) -> Linear -> LayerNorm(hidden),
    shared across leads.

    `(batch, leads, samples)` -> `(batch, leads, patches, hidden)`
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__()
        self.num_patches = config.num_patches
        self.patch_size = config.patch_size
        self.patch_norm = nn.LayerNorm(config.patch_size, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.patch_size, config.hidden_size)
        self.embedding_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        patches = signals.unflatten(-1, (self.num_patches, self.patch_size))
        return self.embedding_norm(self.projection(self.patch_norm(patches)))


class EcgPmaEmbeddings(nn.Module):
    """
    Patch embeddings + fixed sin-cos positions, a learnable SEP token at both ends of every lead, and a learnable
    embedding per lead added to all of that lead's tokens. Optionally drops a random subset of patches per lead
    (masked modeling); SEP tokens are always kept.

    `(batch, leads, samples)` -> `(batch, leads, kept + 2, hidden)`
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = EcgPmaPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.num_patches + 2, config.hidden_size), requires_grad=False
        )
        self.sep_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.lead_embeddings = nn.Parameter(torch.zeros(config.num_leads, config.hidden_size))

    def initialize_weights(self):
        init.copy_(
            self.position_embeddings, sincos_position_table(self.config.num_patches, self.config.hidden_size)[None]
        )
        init.normal_(self.sep_embedding, std=self.config.initializer_range)
        init.normal_(self.lead_embeddings, std=self.config.initializer_range)

    def random_masking(
        self, patches: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Keeps `int(patches * (1 - mask_ratio))` patches of every lead, chosen independently per lead.

        Args:
            patches: `(batch, leads, patches, hidden)`.
            noise: `(batch, leads, patches)`, optional; the patches with the smallest noise are kept (for
                reproducible masks).
        Returns:
            kept `(batch, leads, kept, hidden)`, mask `(batch, leads, patches)` (1 = masked) and ids_restore
            `(batch, leads, patches)`.
        """
        batch_size, num_leads, num_patches, hidden_size = patches.shape
        num_kept = int(num_patches * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(batch_size, num_leads, num_patches, device=patches.device)
        elif noise.shape != (batch_size, num_leads, num_patches):
            raise ValueError(
                f"`noise` must have shape {(batch_size, num_leads, num_patches)} (batch, leads, patches), "
                f"got {tuple(noise.shape)}."
            )
        ids_shuffle = torch.argsort(noise.to(patches.device), dim=-1)
        ids_restore = torch.argsort(ids_shuffle, dim=-1)
        ids_keep = ids_shuffle[..., :num_kept]
        kept = torch.gather(patches, 2, ids_keep[..., None].expand(-1, -1, -1, hidden_size))
        mask = torch.ones(batch_size, num_leads, num_patches, device=patches.device, dtype=patches.dtype)
        mask[..., :num_kept] = 0
        mask = torch.gather(mask, -1, ids_restore)
        return kept, mask, ids_restore

    def forward(
        self,
        signals: torch.Tensor,
        mask_ratio: float = 0.0,
        noise: torch.Tensor | None = None,
        lead_indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """`lead_indices` (`(leads_in,)`, *optional*): which of the config's leads the rows of `signals` are."""
        patches = self.patch_embeddings(signals) + self.position_embeddings[:, 1:-1]
        mask = ids_restore = None
        if mask_ratio > 0:
            patches, mask, ids_restore = self.random_masking(patches, mask_ratio, noise)
        # expand_as, not expand(batch, ...): traced exports (ONNX) keep the batch dimension dynamic
        left_sep = (self.sep_embedding + self.position_embeddings[:, :1]).expand_as(patches[:, :, :1])
        right_sep = (self.sep_embedding + self.position_embeddings[:, -1:]).expand_as(patches[:, :, :1])
        tokens = torch.cat([left_sep, patches, right_sep], dim=2)
        lead_embeddings = self.lead_embeddings if lead_indices is None else self.lead_embeddings[lead_indices]
        tokens = tokens + lead_embeddings[None, :, None, :]
        return tokens, mask, ids_restore


# --------------------------------------------------------------------------------------------------------------------
# Transformer blocks (shared by encoder and decoder)
# --------------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention that also returns the attention maps. `(batch, heads, tokens, head_dim)` in."""
    attention_scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        attention_scores = attention_scores.masked_fill(~attention_mask, torch.finfo(attention_scores.dtype).min)
    elif attention_mask is not None:
        attention_scores = attention_scores + attention_mask
    attention_probs = nn.functional.softmax(attention_scores, dim=-1, dtype=torch.float32).to(query.dtype)
    attention_probs = nn.functional.dropout(attention_probs, p=dropout, training=module.training)
    attention_output = torch.matmul(attention_probs, value).transpose(1, 2).contiguous()
    return attention_output, attention_probs


class EcgPmaAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection. `(batch, tokens, hidden)` in and out."""

    def __init__(self, config: EcgPmaConfig, hidden_size: int, num_attention_heads: int):
        super().__init__()
        self.config = config
        self.num_attention_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=config.qkv_bias)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`attention_mask` (`(batch, 1, 1, tokens)` bool, *optional*): True where a key may be attended to."""
        query, key, value = (
            self.qkv(hidden_states)
            .unflatten(-1, (3, self.num_attention_heads, self.head_dim))
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        # SDPA cannot return attention maps, so a call that asks for them takes the eager path.
        implementation = "eager" if output_attentions else (self.config._attn_implementation or "sdpa")
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        attention_output, attention_probs = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        attention_output = self.output_dropout(self.output(attention_output.flatten(2)))
        return attention_output, attention_probs if output_attentions else None


class EcgPmaMLP(nn.Module):
    def __init__(self, config: EcgPmaConfig, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.activation(self.fc1(hidden_states)))
        return self.dropout(self.fc2(hidden_states))


class EcgPmaDropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability `drop_prob` in training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
        return hidden_states * keep / keep_prob

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class EcgPmaLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer block: x + Attention(LN(x)), then x + MLP(LN(x)). `(batch, tokens, hidden)`."""

    def __init__(
        self,
        config: EcgPmaConfig,
        hidden_size: int,
        num_attention_heads: int,
        intermediate_size: int,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = EcgPmaAttention(config, hidden_size, num_attention_heads)
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = EcgPmaMLP(config, hidden_size, intermediate_size)
        self.drop_path = EcgPmaDropPath(drop_path)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, attention_probs = self.attention(
            self.layernorm_before(hidden_states), output_attentions, attention_mask
        )
        hidden_states = hidden_states + self.drop_path(attention_output)
        hidden_states = hidden_states + self.drop_path(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states, attention_probs


class EcgPmaEncoder(nn.Module):
    """The stack of encoder blocks; returns every block's raw output (the layers PPA/PMA/IPA fuse)."""

    def __init__(self, config: EcgPmaConfig):
        super().__init__()
        drop_path_rates = linear_drop_path_rates(config.drop_path_rate, config.num_hidden_layers)
        self.layers = nn.ModuleList(
            EcgPmaLayer(
                config,
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                drop_path=rate,
            )
            for rate in drop_path_rates
        )

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, attention_mask: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...] | None]:
        """
        `(batch, tokens, hidden)` -> (depth outputs `(batch, tokens, hidden)`, depth attention maps or None).
        `attention_mask` (`(batch, 1, 1, tokens)` bool, *optional*): True where a key may be attended to.
        """
        layer_outputs, attentions = [], []
        for layer in self.layers:
            hidden_states, attention_probs = layer(hidden_states, output_attentions, attention_mask)
            layer_outputs.append(hidden_states)
            attentions.append(attention_probs)
        return tuple(layer_outputs), tuple(attentions) if output_attentions else None


# --------------------------------------------------------------------------------------------------------------------
# Pre-trained model base
# --------------------------------------------------------------------------------------------------------------------


_loading_report = threading.local()


class CheckpointMismatchError(ValueError, RuntimeError):
    """
    Weights that do not fit the config (names or shapes). A `ValueError` like every other bad input of this package,
    and a `RuntimeError` as transformers raises for mismatched shapes, so callers catching either still catch it.
    """


def check_loaded_keys(model: nn.Module, missing_keys, unexpected_keys, source: str = "the checkpoint") -> None:
    """
    Raises `CheckpointMismatchError` when a checkpoint has weights that a module of `model` does not use, or lacks
    weights it needs; a checkpoint without any weight of the new-head modules (a pre-trained encoder under a new
    classifier) only warns, naming them. Checkpoint weights of modules `model` does not have (a classifier's head when loading
    the encoder alone) are left out as usual.
    """
    modules = {name for name, _ in model.named_children()}
    unused = sorted(key for key in unexpected_keys if key.split(".")[0] in modules)
    heads = [name for name in model._new_head_modules if name in modules]
    head_keys = [key for key in model.state_dict() if key.split(".")[0] in heads]
    new_heads = bool(head_keys) and set(head_keys) <= set(missing_keys) and not unused
    lacking = sorted(key for key in missing_keys if not (new_heads and key.split(".")[0] in heads))
    if unused or lacking:
        raise CheckpointMismatchError(
            f"{source} does not fit the config of {type(model).__name__}: "
            + "; ".join(
                part
                for part in (
                    f"weights the config does not use: {unused[:8]}" if unused else "",
                    f"weights it needs but lacks: {lacking[:8]}" if lacking else "",
                )
                if part
            )
            + " (was config.json edited, e.g. `head_type`, `qkv_bias` or `aggregation`?)."
        )
    if new_heads:  # one line: the modules, not each of their weights (transformers' load report lists those)
        modules = ", ".join(sorted({".".join(key.split(".")[:2]) for key in head_keys}))
        logger.warning(
            f"{type(model).__name__}: created a new {modules} on the pre-trained encoder of {source}, randomly "
            "initialised: train them before use."
        )


class EcgPmaPreTrainedModel(PreTrainedModel):
    config: EcgPmaConfig
    config_class = EcgPmaConfig
    base_model_prefix = "ecg_pma"
    main_input_name = "signals"
    supports_gradient_checkpointing = True
    _no_split_modules = ["EcgPmaEmbeddings", "EcgPmaLayer"]
    _supports_sdpa = True
    # The losses are means over the batch: the Trainer must scale them for gradient accumulation itself.
    accepts_loss_kwargs = False
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]

    def _init_weights(self, module: nn.Module):
        # Linear layers as in ST-MEM / MAE (Xavier-uniform, zero bias), independent of `initializer_range`; norms
        # through the base class; the learnable vectors (SEP, leads, mask token) normal with std `initializer_range`
        # (see the config's docstring). Children are initialised before their parent, so a branch for a parent
        # module (a gate whose last Linear starts at zero, say) overrides the generic Linear init of its children.
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)
        if isinstance(module, (EcgPmaEmbeddings, EcgPmaDecoder, EcgPmaGateOutput)):
            module.initialize_weights()

    # Modules a checkpoint may lack entirely (a new head, gate or decoder on a pre-trained encoder); every other
    # missing weight, and any checkpoint weight that a module of this model does not use, fails the load.
    _new_head_modules = ("aggregator", "classifier", "decoder")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """
        `PreTrainedModel.from_pretrained`, strict: safetensors weights only (a pickled `pytorch_model.bin` is refused,
        never unpickled), unreadable weight files and weights that do not fit the config fail with the file named
        (`CheckpointMismatchError`, a `ValueError` and a `RuntimeError`). `None` with `config=` and `state_dict=`
        loads from the state dict, as in transformers.
        """
        from_state_dict = pretrained_model_name_or_path is None  # weights given as `state_dict=` with `config=`
        path = "the given state_dict" if from_state_dict else os.fspath(pretrained_model_name_or_path)
        if (
            not from_state_dict
            and os.path.isdir(path)
            and not any(name.endswith(".safetensors") for name in os.listdir(path))
        ):
            pickled = sorted(name for name in os.listdir(path) if name.endswith((".bin", ".pt", ".pth", ".pkl")))
            if pickled:
                raise ValueError(
                    f"{os.path.join(path, pickled[0])}: refusing to unpickle it (a pickle can run any code); "
                    "ecg-pma loads safetensors weights only (model.safetensors)."
                )
        kwargs.setdefault("use_safetensors", True)
        _loading_report.mismatched, _loading_report.source = [], path
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error) or not _loading_report.mismatched:
                raise
            shown = ", ".join(
                f"{key} {tuple(old)} -> {tuple(new)}" for key, old, new in _loading_report.mismatched[:5]
            )
            raise CheckpointMismatchError(
                f"{path}: weights do not fit the config: {shown}; pass `ignore_mismatched_sizes=True` to "
                "re-initialise them."
            ) from error
        except Exception as error:
            if type(error).__name__ != "SafetensorError":
                raise
            raise ValueError(
                f"{path}: model.safetensors is not a readable safetensors file (truncated or corrupt?): {error}"
            ) from error

    def _adjust_missing_and_unexpected_keys(self, loading_info) -> None:
        # Called by `from_pretrained` (every Auto class and pipeline loads through it) once the weights are in.
        super()._adjust_missing_and_unexpected_keys(loading_info)
        _loading_report.mismatched = sorted(loading_info.mismatched_keys)
        source = getattr(_loading_report, "source", "the checkpoint")
        check_loaded_keys(self, loading_info.missing_keys, loading_info.unexpected_keys, source)

    def resolve_output_flags(
        self, output_hidden_states: bool | None, output_attentions: bool | None
    ) -> tuple[bool, bool]:
        """The call's `output_hidden_states` / `output_attentions`, or the config's where the call leaves them unset.
        (`return_dict` is resolved by `can_return_tuple` on every forward.)"""
        return (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states,
            self.config.output_attentions if output_attentions is None else output_attentions,
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **_AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Encoder model
# --------------------------------------------------------------------------------------------------------------------


class EcgPmaModel(EcgPmaPreTrainedModel):
    """
    The ECG encoder. Reads `signals (batch, leads, samples)` (leads in `config.lead_names` order, `signal_length`
    samples at `sampling_rate`, each lead standardised) and returns every layer's representation.
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__(config)
        self.embeddings = EcgPmaEmbeddings(config)
        self.encoder = EcgPmaEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> EcgPmaPatchEmbeddings:
        """
        The patch embedding, as in ViT / ViTMAE: what `enable_input_require_grads()` hooks so that gradients reach
        trainable weights inside the encoder (adapters) under reentrant gradient checkpointing. The task models find
        it through their base model.
        """
        return self.embeddings.patch_embeddings

    @can_return_tuple
    def forward(
        self,
        signals: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        noise: torch.Tensor | None = None,
        mask_ratio: float = 0.0,
        lead_mask: torch.Tensor | None = None,
    ) -> EcgPmaModelOutput:
        r"""
        Args:
            signals (`(batch, leads, samples)`): standardised ECG windows, as produced by `EcgPmaFeatureExtractor`
                (its `record_index` is bookkeeping for the caller, not a model input: pop it before `model(**x)`).
            noise (`(batch, leads, patches)`, *optional*): with `mask_ratio > 0`, fixes which patches are kept (the
                smallest noise values), for reproducible masks.
            mask_ratio (`float`, *optional*, defaults to 0.0): fraction of every lead's patches to drop before the
                encoder (masked modeling); 0 encodes every patch. `EcgPmaForPreTraining` passes `config.mask_ratio`.
            lead_mask (`(batch, leads)` bool, *optional*): True where a lead is present. Absent leads' slots may hold
                anything: their tokens are left out of attention and of every mean, so each sample's outputs equal
                those of that sample run alone on its present leads. None (all present) is the plain 12-lead path.
                With `mask_ratio > 0`, `mask` is 0 on absent leads (they are not scored).
            return_dict (`bool`, *optional*): `False` returns a tuple (through `can_return_tuple`).
        """
        output_hidden_states, output_attentions = self.resolve_output_flags(output_hidden_states, output_attentions)
        lead_mask = validate_signals(signals, self.config, lead_mask)
        if noise is not None and mask_ratio == 0:
            raise ValueError("`noise` chooses which patches to mask and needs `mask_ratio > 0`; got mask_ratio=0.")
        # Masked modeling keeps the config's lead layout (the decoder and `mask` are per lead): absent leads stay.
        signals, lead_mask, lead_indices = select_present_leads(signals, lead_mask, drop_absent_leads=mask_ratio == 0)

        embeddings, mask, ids_restore = self.embeddings(signals, mask_ratio, noise, lead_indices=lead_indices)
        num_leads, tokens_per_lead = embeddings.shape[1:3]
        if mask is not None and lead_mask is not None:
            mask = mask * lead_mask[..., None].to(mask.dtype)
        embeddings = embeddings.flatten(1, 2)
        attention_mask = None if lead_mask is None else attention_mask_from_lead_mask(lead_mask, tokens_per_lead)
        layer_outputs, attentions = self.encoder(
            embeddings, output_attentions=output_attentions, attention_mask=attention_mask
        )

        layer_representations = torch.stack(
            [mean_over_patch_tokens(layer_output, num_leads, lead_mask) for layer_output in layer_outputs], dim=1
        )
        return EcgPmaModelOutput(
            last_hidden_state=self.layernorm(layer_outputs[-1]),
            pooler_output=self.layernorm(layer_representations[:, -1]),
            layer_representations=layer_representations,
            input_representation=mean_over_patch_tokens(embeddings, num_leads, lead_mask),
            hidden_states=(embeddings, *layer_outputs) if output_hidden_states else None,
            attentions=attentions,
            mask=mask,
            ids_restore=ids_restore,
            present_leads=lead_indices,
        )


# --------------------------------------------------------------------------------------------------------------------
# Masked modeling
# --------------------------------------------------------------------------------------------------------------------


class EcgPmaDecoder(nn.Module):
    """
    Lead-wise masked-patch decoder with weights shared across leads: the leads are decoded in one batched pass over
    `batch * leads` sequences.

    `(batch, leads * (kept + 2), hidden)` -> `(batch, leads, patches, patch_size)`
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__()
        self.config = config
        self.decoder_embed = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        self.decoder_position_embeddings = nn.Parameter(
            torch.zeros(1, config.num_patches + 2, config.decoder_hidden_size), requires_grad=False
        )
        self.layers = nn.ModuleList(
            EcgPmaLayer(
                config,
                config.decoder_hidden_size,
                config.decoder_num_attention_heads,
                config.decoder_intermediate_size,
            )
            for _ in range(config.decoder_num_hidden_layers)
        )
        self.decoder_norm = nn.LayerNorm(config.decoder_hidden_size, eps=config.decoder_layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, config.patch_size)

    def initialize_weights(self):
        init.copy_(
            self.decoder_position_embeddings,
            sincos_position_table(self.config.num_patches, self.config.decoder_hidden_size)[None],
        )
        init.normal_(self.mask_token, std=self.config.initializer_range)

    def forward(self, hidden_states: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        batch_size, num_leads, num_patches = ids_restore.shape
        tokens = self.decoder_embed(hidden_states).unflatten(1, (num_leads, -1))
        kept = tokens[:, :, 1:-1]
        mask_tokens = self.mask_token.expand(batch_size, num_leads, num_patches - kept.shape[2], -1)
        patches = torch.cat([kept, mask_tokens], dim=2)
        patches = torch.gather(patches, 2, ids_restore[..., None].expand(-1, -1, -1, tokens.shape[-1]))
        tokens = torch.cat([tokens[:, :, :1], patches, tokens[:, :, -1:]], dim=2) + self.decoder_position_embeddings
        # Every lead is its own sequence: leads attend only within themselves in the decoder.
        tokens = tokens.flatten(0, 1)
        for layer in self.layers:
            tokens, _ = layer(tokens)
        reconstruction = self.decoder_pred(self.decoder_norm(tokens))[:, 1:-1]
        return reconstruction.unflatten(0, (batch_size, num_leads)).contiguous()


class EcgPmaForPreTraining(EcgPmaPreTrainedModel):
    """
    Masked modeling (ST-MEM / MAE style): drops `mask_ratio` of every lead's patches, encodes the rest and
    reconstructs the dropped patches lead by lead. With `pretraining_aggregation="ipa"` the decoder reads every
    token averaged over all encoder blocks instead of the last block.
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__(config)
        self.ecg_pma = EcgPmaModel(config)
        self.decoder = EcgPmaDecoder(config)
        self.post_init()

    def patchify(self, signals: torch.Tensor) -> torch.Tensor:
        """`(batch, leads, samples)` -> `(batch, leads, patches, patch_size)`"""
        return signals.unflatten(-1, (self.config.num_patches, self.config.patch_size))

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """`(batch, leads, patches, patch_size)` -> `(batch, leads, samples)`"""
        return patches.flatten(-2)

    def forward_loss(self, signals: torch.Tensor, reconstruction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over masked patches only; targets normalised per patch when `norm_pix_loss`."""
        target = self.patchify(signals)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            variance = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (variance + 1e-6) ** 0.5
        loss_per_patch = ((reconstruction - target) ** 2).mean(dim=-1)
        return (loss_per_patch * mask).sum() / mask.sum()

    def aggregate_layers(self, encoder_outputs: EcgPmaModelOutput) -> torch.Tensor:
        """What the decoder reads: the last block's tokens, or (IPA) every token's mean over blocks, normalised."""
        if self.config.pretraining_aggregation == "ipa":
            layer_outputs = encoder_outputs.hidden_states[1:]
            return torch.stack([self.ecg_pma.layernorm(output) for output in layer_outputs]).mean(dim=0)
        return encoder_outputs.last_hidden_state

    @can_return_tuple
    def forward(
        self,
        signals: torch.Tensor,
        noise: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        lead_mask: torch.Tensor | None = None,
    ) -> EcgPmaForPreTrainingOutput:
        r"""
        Args:
            signals (`(batch, leads, samples)`): standardised ECG windows.
            noise (`(batch, leads, patches)`, *optional*): fixes which patches are kept (the smallest noise values),
                for reproducible masks.
            lead_mask (`(batch, leads)` bool, *optional*): True where a lead is present. Absent leads take no part in
                attention and are not scored: `mask` is 0 on them and the loss covers the present leads' masked
                patches only.
            return_dict (`bool`, *optional*): `False` returns a tuple (through `can_return_tuple`).
        """
        output_hidden_states, output_attentions = self.resolve_output_flags(output_hidden_states, output_attentions)
        encoder_outputs = self.ecg_pma(
            signals,
            # IPA reads every block's tokens
            output_hidden_states=output_hidden_states or self.config.pretraining_aggregation == "ipa",
            output_attentions=output_attentions,
            noise=noise,
            mask_ratio=self.config.mask_ratio,
            lead_mask=lead_mask,
            return_dict=True,
        )
        if lead_mask is not None:  # absent slots may hold anything (NaN included): they are no target
            signals = signals.masked_fill(~lead_mask.to(device=signals.device, dtype=torch.bool)[..., None], 0.0)
        aggregated = self.aggregate_layers(encoder_outputs)
        reconstruction = self.decoder(aggregated, encoder_outputs.ids_restore)
        loss = self.forward_loss(signals, reconstruction, encoder_outputs.mask)

        return EcgPmaForPreTrainingOutput(
            loss=loss,
            reconstruction=reconstruction,
            mask=encoder_outputs.mask,
            ids_restore=encoder_outputs.ids_restore,
            aggregated_hidden_state=aggregated,
            hidden_states=encoder_outputs.hidden_states if output_hidden_states else None,
            attentions=encoder_outputs.attentions,
        )


# --------------------------------------------------------------------------------------------------------------------
# Downstream: mixture of layers
# --------------------------------------------------------------------------------------------------------------------


class EcgPmaGateOutput(nn.Linear):
    """The gate's last Linear (one logit per block), initialised at zero: the first softmax is uniform."""

    def initialize_weights(self):
        init.zeros_(self.weight)
        init.zeros_(self.bias)


class EcgPmaLayerGate(nn.Module):
    """
    The PMA gate: reads the input representation and returns a softmax over encoder blocks, per sample. Its last
    Linear starts at zero, so a new gate gives every block the weight 1 / depth for any input: PMA starts at PPA.

    `(batch, hidden)` -> `(batch, depth)`
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__()
        sizes = [config.hidden_size, *config.gate_hidden_sizes]
        modules: list[nn.Module] = [nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)]
        for in_size, out_size in zip(sizes[:-1], sizes[1:]):
            modules += [nn.Linear(in_size, out_size), nn.GELU(), nn.Dropout(config.gate_dropout)]
        modules.append(EcgPmaGateOutput(sizes[-1], config.num_hidden_layers))
        self.gate = nn.Sequential(*modules)

    def forward(self, input_representation: torch.Tensor) -> torch.Tensor:
        return self.gate(input_representation).softmax(dim=-1)


class EcgPmaLayerAggregator(nn.Module):
    """
    Fuses the per-block representations into one vector with per-sample layer weights, by `config.aggregation`:
    `last` (one-hot on the last block), `ppa` (uniform), `layer` (one-hot on `aggregation_layer`) or `pma` (gate).

    `(batch, depth, hidden)` -> fused `(batch, hidden)`, layer_weights `(batch, depth)`
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__()
        self.strategy = config.aggregation
        self.num_layers = config.num_hidden_layers
        self.layer_index = {"last": config.num_hidden_layers - 1, "layer": config.resolved_aggregation_layer}.get(
            config.aggregation
        )
        self.gate = EcgPmaLayerGate(config) if config.aggregation == "pma" else None

    def layer_weights(self, layer_representations: torch.Tensor, input_representation: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            return self.gate(input_representation)
        if self.strategy == "ppa":
            weights = layer_representations.new_full((1, self.num_layers), 1.0 / self.num_layers)
        else:
            weights = layer_representations.new_zeros(1, self.num_layers)
            weights[:, self.layer_index] = 1.0
        # expand_as keeps the batch dimension dynamic in traced exports
        return weights.expand_as(layer_representations[..., 0])

    def forward(
        self, layer_representations: torch.Tensor, input_representation: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer_weights = self.layer_weights(layer_representations, input_representation)
        fused = torch.einsum("bd,bdh->bh", layer_weights.to(layer_representations.dtype), layer_representations)
        return fused, layer_weights

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}" + (f", layer={self.layer_index}" if self.layer_index is not None else "")


class EcgPmaClassificationHead(nn.Module):
    """
    `linear`: one Linear layer. `mlp` (the PMA authors' head): BatchNorm -> Dropout -> Linear -> ReLU -> BatchNorm ->
    Dropout -> Linear.

    `(batch, hidden)` -> `(batch, num_labels)`
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__()
        if config.head_type == "linear":
            self.head = nn.Linear(config.hidden_size, config.num_labels)
        else:
            self.head = nn.Sequential(
                nn.BatchNorm1d(config.hidden_size),
                nn.Dropout(config.classifier_dropout),
                nn.Linear(config.hidden_size, config.classifier_hidden_size),
                nn.ReLU(),
                nn.BatchNorm1d(config.classifier_hidden_size),
                nn.Dropout(config.classifier_hidden_dropout),
                nn.Linear(config.classifier_hidden_size, config.num_labels),
            )

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_output)


class EcgPmaForSequenceClassification(EcgPmaPreTrainedModel):
    """
    ECG classifier on a mixture of encoder layers: the per-block representations are fused by `config.aggregation`
    (`last`, `ppa`, `pma`, `layer`), normalised by the encoder's final LayerNorm and classified by a linear or MLP
    head. Multi-label (BCE) is the main case; the loss follows `config.problem_type`.

    `freeze_encoder()` sets up linear probing: the encoder is frozen (and kept in eval mode), gate and head train.
    """

    def __init__(self, config: EcgPmaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ecg_pma = EcgPmaModel(config)
        self.aggregator = EcgPmaLayerAggregator(config)
        self.classifier = EcgPmaClassificationHead(config)
        self._frozen_encoder_parameters: list[nn.Parameter] = []
        self.post_init()

    @property
    def encoder_frozen(self) -> bool:
        return bool(getattr(self, "_frozen_encoder_parameters", None))

    def freeze_encoder(self) -> None:
        """Linear probing: freeze every encoder parameter; the aggregation gate and the head stay trainable."""
        self._frozen_encoder_parameters += [p for p in self.ecg_pma.parameters() if p.requires_grad]
        for parameter in self._frozen_encoder_parameters:
            parameter.requires_grad_(False)
        self.ecg_pma.eval()

    def unfreeze_encoder(self) -> None:
        """Finetuning: make trainable again what `freeze_encoder` froze (fixed position tables stay fixed)."""
        for parameter in self._frozen_encoder_parameters:
            parameter.requires_grad_(True)
        self._frozen_encoder_parameters = []
        self.ecg_pma.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen encoder runs deterministically (no dropout / drop path) while the head trains.
        if self.encoder_frozen:
            self.ecg_pma.eval()
        return self

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        problem_type = self.config.problem_type
        if problem_type is None:
            if self.num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
            self.config.problem_type = problem_type

        if problem_type == "multi_label_classification":
            if labels.shape != logits.shape:
                raise ValueError(
                    f"Multi-label `labels` must have shape (batch, num_labels) = {tuple(logits.shape)} "
                    f"(one 0/1 column per label: {list(self.config.id2label.values())}), got {tuple(labels.shape)}."
                )
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        if problem_type == "single_label_classification":
            labels = labels.view(-1)
            if labels.is_floating_point() or labels.shape[0] != logits.shape[0]:
                raise ValueError(
                    f"Single-label `labels` must be {logits.shape[0]} integer class indices, got dtype {labels.dtype} "
                    f"and shape {tuple(labels.shape)}."
                )
            if bool((labels < 0).any() or (labels >= self.num_labels).any()):
                raise ValueError(
                    f"Single-label `labels` must be class indices in [0, {self.num_labels}), got {labels.tolist()}."
                )
            return nn.functional.cross_entropy(logits, labels)
        return nn.functional.mse_loss(
            logits.squeeze(-1), labels.to(logits.dtype).view(logits.shape[0], -1).squeeze(-1)
        )

    @can_return_tuple
    def forward(
        self,
        signals: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        lead_mask: torch.Tensor | None = None,
    ) -> EcgPmaSequenceClassifierOutput:
        r"""
        Args:
            signals (`(batch, leads, samples)`): standardised ECG windows; the logits are per window (average them
                per record with the feature extractor's `record_index`, which is not a model input).
            labels (*optional*): `(batch, num_labels)` 0/1 for multi-label, `(batch,)` class indices for single-label,
                `(batch,)` values for regression.
            lead_mask (`(batch, leads)` bool, *optional*): True where a lead is present; see [`EcgPmaModel`]. The gate
                and every aggregation read the present leads only.
            return_dict (`bool`, *optional*): `False` returns a tuple (through `can_return_tuple`).
        """
        # No graph through a frozen encoder: the gate reads the (frozen) input embeddings, not a trainable path.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            outputs = self.ecg_pma(
                signals,
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                return_dict=True,
                lead_mask=lead_mask,
            )
        fused, layer_weights = self.aggregator(outputs.layer_representations, outputs.input_representation)
        pooled_output = self.ecg_pma.layernorm(fused)
        logits = self.classifier(pooled_output)
        loss = self.compute_loss(logits, labels) if labels is not None else None

        return EcgPmaSequenceClassifierOutput(
            loss=loss,
            logits=logits,
            layer_weights=layer_weights,
            pooled_output=pooled_output,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = [
    "CheckpointMismatchError",
    "EcgPmaForPreTraining",
    "EcgPmaForSequenceClassification",
    "EcgPmaModel",
    "EcgPmaPreTrainedModel",
]
