"""
Converting ST-MEM checkpoints (Na et al., ICLR 2024; PyTorch state dicts, encoder-only or encoder + decoder) into
ECG-PMA models, exactly: every tensor mapped, none left over, shapes checked, the config inferred from the tensors.

    ecg-pma convert-st-mem st_mem_vit_base_encoder.pth converted/          # -> EcgPmaModel
    ecg-pma convert-st-mem st_mem_vit_base_full.pth converted/ --full      # -> EcgPmaForPreTraining
A checkpoint with a classifier `head` becomes an `EcgPmaForSequenceClassification` with `aggregation="last"` and a
linear head (ST-MEM's downstream representation is the last block's token mean, then the final LayerNorm).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from ..configuration_ecg_pma import SIGNAL_PRESETS, STANDARD_LEAD_NAMES, EcgPmaConfig
from ..feature_extraction_ecg_pma import ST_MEM_PREPROCESSING, EcgPmaFeatureExtractor
from ..modeling_ecg_pma import EcgPmaForPreTraining, EcgPmaForSequenceClassification, EcgPmaModel


# ST-MEM splits attention into heads of 64 dimensions; the head count is not stored in the tensors.
ST_MEM_HEAD_DIM = 64

_BLOCK = {
    "attn.norm": "layernorm_before",
    "attn.fn.to_qkv": "attention.qkv",
    "attn.fn.to_out.0": "attention.output",
    "ff.norm": "layernorm_after",
    "ff.fn.net.0": "mlp.fc1",
    "ff.fn.net.3": "mlp.fc2",
}
_ENCODER = {
    "pos_embedding": "embeddings.position_embeddings",
    "sep_embedding": "embeddings.sep_embedding",
    "to_patch_embedding.1": "embeddings.patch_embeddings.patch_norm",
    "to_patch_embedding.2": "embeddings.patch_embeddings.projection",
    "to_patch_embedding.3": "embeddings.patch_embeddings.embedding_norm",
    "norm": "layernorm",
}
_DECODER = {
    "mask_embedding": "decoder.mask_token",
    "decoder_pos_embed": "decoder.decoder_position_embeddings",
    "to_decoder_embedding": "decoder.decoder_embed",
    "decoder_norm": "decoder.decoder_norm",
    "decoder_head": "decoder.decoder_pred",
}


class ConversionError(ValueError):
    """The checkpoint does not have ST-MEM's layout; the message lists what does not fit."""


def load_st_mem_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """
    Reads a checkpoint with `torch.load(weights_only=True)` (tensors and plain containers only, no code) and unwraps
    `{"model": ...}`: ST-MEM's `misc.save_model` writes `{"epoch", "model", "optimizer", "scaler", "config"}`.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise ConversionError(f"{path}: not a PyTorch checkpoint ({_first_line(str(error))}).") from error
        # torch's restricted unpickler stopped at something other than tensors: it is never loaded unrestricted
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        raise ConversionError(
            f"{path}: refusing to unpickle it: it holds objects other than tensors and plain containers"
            + (f" (it calls {found.group(1)})" if found else "")
            + "."
        ) from error
    except Exception as error:
        raise ConversionError(
            f"{path}: not a readable PyTorch checkpoint (truncated, or not a .pth file?): "
            f"{type(error).__name__}: {_first_line(str(error))[:200]}"
        ) from error
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: not a state dict of tensors.")
    return state


def drop_shared_patch_embedding(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """
    ST-MEM's pre-training module holds the encoder's patch embedding twice (`self.to_patch_embedding =
    self.encoder.to_patch_embedding`), so its state dict has the six `to_patch_embedding.*` tensors both at the top
    level and under `encoder.`. Drops the top-level copies when they equal the `encoder.` ones; a copy that differs
    (or has no `encoder.` twin) raises.
    """
    shared = sorted(key for key in state if key.startswith("to_patch_embedding."))
    differing = [
        key
        for key in shared
        if f"encoder.{key}" not in state
        or state[key].shape != state[f"encoder.{key}"].shape
        or not torch.equal(state[key], state[f"encoder.{key}"])
    ]
    if differing:
        raise ConversionError(
            f"Top-level {differing} should be the same tensors as `encoder.{differing[0]}` (ST-MEM shares the patch "
            "embedding between the encoder and the pre-training module), but they differ or have no `encoder.` twin."
        )
    return {key: value for key, value in state.items() if key not in shared}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _count(keys, pattern: str) -> int:
    indices = {int(m.group(1)) for key in keys if (m := re.match(pattern, key))}
    if indices != set(range(len(indices))):
        raise ConversionError(f"Block indices are not contiguous: {sorted(indices)}.")
    return len(indices)


def infer_config(
    encoder: dict[str, torch.Tensor], decoder: dict[str, torch.Tensor], sampling_rate: int
) -> EcgPmaConfig:
    """The EcgPmaConfig of an ST-MEM state dict (`encoder` keys without prefix, `decoder` keys possibly empty)."""
    try:
        hidden_size = encoder["sep_embedding"].shape[0]
        patch_size = encoder["to_patch_embedding.1.weight"].shape[0]
        num_patches = encoder["pos_embedding"].shape[1] - 2
        intermediate_size = encoder["block0.ff.fn.net.0.weight"].shape[0]
    except KeyError as error:
        raise ConversionError(f"Not an ST-MEM encoder: tensor {error} is missing.") from error
    num_leads = _count(encoder, r"lead_embeddings\.(\d+)$")
    depth = _count(encoder, r"block(\d+)\.")
    values = {
        "num_leads": num_leads,
        "lead_names": list(STANDARD_LEAD_NAMES[:num_leads]),
        "sampling_rate": sampling_rate,
        "signal_length": num_patches * patch_size,
        "patch_size": patch_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": depth,
        "num_attention_heads": hidden_size // ST_MEM_HEAD_DIM,
        "intermediate_size": intermediate_size,
        "qkv_bias": "block0.attn.fn.to_qkv.bias" in encoder,
        "layer_norm_eps": 1e-5,
        "aggregation": "last",
        "head_type": "linear",
    }
    if decoder:
        decoder_hidden = decoder["mask_embedding"].shape[-1]
        values |= {
            "decoder_hidden_size": decoder_hidden,
            "decoder_num_hidden_layers": _count(decoder, r"decoder_blocks\.(\d+)\."),
            "decoder_num_attention_heads": decoder_hidden // ST_MEM_HEAD_DIM,
            "decoder_intermediate_size": decoder["decoder_blocks.0.ff.fn.net.0.weight"].shape[0],
            "decoder_layer_norm_eps": 1e-6,
        }
    if "head.weight" in encoder:
        values["num_labels"] = encoder["head.weight"].shape[0]
    return EcgPmaConfig(**values)


def _rename(key: str, block_prefix: str, layers: str, names: dict[str, str]) -> str | None:
    """One ST-MEM key -> ours: a block of the stack `block_prefix<i>.` or a module of `names`; None if unknown."""
    if match := re.match(rf"{block_prefix}(\d+)\.(.+)\.(weight|bias)$", key):
        index, module, kind = match.groups()
        return f"{layers}.{index}.{_BLOCK[module]}.{kind}" if module in _BLOCK else None
    if key in names:
        return names[key]
    module, _, kind = key.rpartition(".")
    return f"{names[module]}.{kind}" if module in names else None


def map_state_dict(
    encoder: dict[str, torch.Tensor], decoder: dict[str, torch.Tensor], prefix: str
) -> tuple[dict, list[str]]:
    """ST-MEM names -> ours. Returns the mapped tensors and the ST-MEM keys nothing mapped."""
    mapped, unmapped = {}, []
    lead_embeddings = {}
    encoder_names = {key: prefix + name for key, name in _ENCODER.items()}
    for key, tensor in encoder.items():
        if match := re.match(r"lead_embeddings\.(\d+)$", key):
            lead_embeddings[int(match.group(1))] = tensor
        elif match := re.match(r"head\.(weight|bias)$", key):
            mapped[f"classifier.head.{match.group(1)}"] = tensor
        elif name := _rename(key, "block", f"{prefix}encoder.layers", encoder_names):
            mapped[name] = tensor
        else:
            unmapped.append(key)
    if lead_embeddings:
        mapped[f"{prefix}embeddings.lead_embeddings"] = torch.stack(
            [lead_embeddings[i] for i in sorted(lead_embeddings)]
        )
    for key, tensor in decoder.items():
        if name := _rename(key, r"decoder_blocks\.", "decoder.layers", _DECODER):
            mapped[name] = tensor
        else:
            unmapped.append(key)
    return mapped, unmapped


def convert_st_mem(
    checkpoint: str | Path | dict[str, torch.Tensor],
    output_dir: str | Path | None = None,
    full: bool = False,
    sampling_rate: int = SIGNAL_PRESETS["st-mem"]["sampling_rate"],
    band_pass: bool = True,
):
    """
    Converts an ST-MEM checkpoint (path or state dict). `full`: the file holds encoder + decoder (`encoder.` prefix,
    as ST-MEM's pre-training script writes it, patch embedding duplicated at the top level) and becomes an
    `EcgPmaForPreTraining`; otherwise the encoder (an `EcgPmaModel`, or a classifier when the file has a `head`).
    Raises `ConversionError` listing unmapped, missing or mis-shaped tensors. With `output_dir`, saves the model
    (safetensors), its code and a feature extractor with ST-MEM's preprocessing (`ST_MEM_PREPROCESSING`: FFT
    resampling of 10 s segments, order-5 high-pass 0.67 Hz + low-pass 40 Hz on each crop, one z-score per window,
    3 crops averaged); `band_pass=False` leaves the filters out.
    """
    # A few lines over 80: one pass from ST-MEM's names to ours, each refusal naming the tensors at fault.
    state = load_st_mem_state_dict(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    has_prefix = any(key.startswith("encoder.") for key in state)
    if full and has_prefix:
        state = drop_shared_patch_embedding(state)
    decoder_keys = sorted(
        key
        for key in state
        if not key.startswith("encoder.") and re.match(r"(mask_embedding|decoder_|to_decoder_embedding)", key)
    )
    if full and not has_prefix:
        raise ConversionError("--full expects the encoder + decoder file, whose encoder keys start with 'encoder.'.")
    if not full and (has_prefix or decoder_keys):
        raise ConversionError(
            f"This file holds a decoder ({(decoder_keys or ['encoder.*'])[:3]}...): convert it with --full."
        )
    encoder = (
        {key[len("encoder.") :]: value for key, value in state.items() if key.startswith("encoder.")}
        if full
        else dict(state)
    )
    decoder = {key: value for key, value in state.items() if not key.startswith("encoder.")} if full else {}

    config = infer_config(encoder, decoder, sampling_rate)
    if full:
        model_class, prefix = EcgPmaForPreTraining, "ecg_pma."
    elif "head.weight" in encoder:
        model_class, prefix = EcgPmaForSequenceClassification, "ecg_pma."
    else:
        model_class, prefix = EcgPmaModel, ""
    model = model_class(config).eval()

    mapped, unmapped = map_state_dict(encoder, decoder, prefix)
    expected = model.state_dict()
    # Buffers our classifier has and ST-MEM's linear head does not (none for a linear head) would show up here.
    missing = sorted(set(expected) - set(mapped))
    mismatched = [
        f"{key}: checkpoint {tuple(mapped[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(mapped) & set(expected))
        if mapped[key].shape != expected[key].shape
    ]
    unexpected = sorted(set(mapped) - set(expected))
    if unmapped or missing or mismatched or unexpected:
        raise ConversionError(
            "The checkpoint does not match ST-MEM's layout:\n"
            + "".join(
                f"  {title}: {items}\n"
                for title, items in (
                    ("ST-MEM tensors with no counterpart", unmapped),
                    ("model tensors the checkpoint lacks", missing),
                    ("shape mismatches", mismatched),
                    ("mapped names the model does not have", unexpected),
                )
                if items
            )
        )
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in mapped.items()}, strict=True)

    if output_dir is not None:
        output_dir = Path(output_dir)
        model.save_pretrained(output_dir)
        extractor = EcgPmaFeatureExtractor.from_model_config(
            config, **{**ST_MEM_PREPROCESSING, "do_filter": band_pass}
        )
        extractor.save_pretrained(output_dir)
        from ..sharing.modelcard import write_model_card

        write_model_card(output_dir, model.config, extractor, training={"converted_from": "ST-MEM checkpoint"})
    return model
