"""
LoRA finetuning of `EcgPmaForSequenceClassification` with the `peft` library: low-rank adapters on the encoder's
attention and MLP projections, the fusion gate and the classification head trained in full.

A LoRA run (`ecg_pma.training.finetune.finetune(..., mode="lora")`) saves two things:

- `adapter/`: PEFT's `adapter_config.json` + `adapter_model.safetensors` (the low-rank factors, and the gate and head
  as `modules_to_save`) next to the classifier's `config.json`. Load it on its base model with `load_lora_classifier`.
- the merged model (adapters folded into the encoder weights) as a plain ecg-pma classifier, loadable with
  `EcgPmaForSequenceClassification.from_pretrained` and usable by `ecg-pma predict` / `evaluate` like any other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model

from ..configuration_ecg_pma import EcgPmaConfig
from ..modeling_ecg_pma import EcgPmaForSequenceClassification


# The encoder blocks' four projections: fused QKV and attention output, the MLP's two Linears. A full-match regex,
# so the pre-training decoder's blocks (same module names) are never targeted.
LORA_TARGET_MODULES = r".*encoder\.layers\.\d+\.(attention\.(qkv|output)|mlp\.(fc1|fc2))"
ADAPTER_FOLDER = "adapter"


def lora_config(config: EcgPmaConfig, rank: int = 8, alpha: float | None = None, dropout: float = 0.0) -> LoraConfig:
    """
    The `LoraConfig` for a classifier with `config`: rank-`rank` adapters (scaled by `alpha / rank`; `alpha` defaults
    to `2 * rank`) on every encoder block's projections; the head, and the PMA gate when there is one, are trained
    in full and saved with the adapter. No `task_type`: the adapted model keeps the classifier's own forward
    (`signals`, `labels`), which PEFT's text-oriented task wrappers would replace.
    """
    if rank < 1:
        raise ValueError(f"The LoRA rank must be a positive integer, got {rank}.")
    modules_to_save = ["classifier"] + (["aggregator"] if config.aggregation == "pma" else [])
    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank if alpha is None else alpha,
        lora_dropout=dropout,
        target_modules=LORA_TARGET_MODULES,
        modules_to_save=modules_to_save,
    )


def add_lora(
    model: EcgPmaForSequenceClassification, rank: int = 8, alpha: float | None = None, dropout: float = 0.0
) -> PeftModel:
    """
    Wraps `model` for LoRA finetuning: every base weight frozen except the head (and PMA gate), new low-rank factors
    trainable. The returned `PeftModel` takes the classifier's inputs and works with the Trainer, gradient
    checkpointing included (`enable_input_require_grads()` hooks the patch embedding).
    """
    if model.encoder_frozen:
        model.unfreeze_encoder()  # a probed model comes frozen; PEFT decides what trains
    peft_model = get_peft_model(model, lora_config(model.config, rank, alpha, dropout))
    # PEFT hooks the input embeddings only when checkpointing is already on; the Trainer turns it on later, and
    # without the hook reentrant checkpointing leaves every adapter inside the encoder without a gradient.
    model.enable_input_require_grads()
    return peft_model


def save_lora_adapter(peft_model: PeftModel, output_dir: str | os.PathLike) -> Path:
    """
    Saves the adapter (low-rank factors, gate and head) and the classifier's config (labels, aggregation, tuned
    thresholds) under `output_dir/adapter`, and returns that folder. Merge with `peft_model.merge_and_unload()` to
    get a plain classifier to save as a normal model.
    """
    adapter_dir = Path(output_dir) / ADAPTER_FOLDER
    peft_model.save_pretrained(adapter_dir)
    peft_model.get_base_model().config.save_pretrained(adapter_dir)
    return adapter_dir


def load_lora_classifier(
    adapter_dir: str | os.PathLike, base_model: str | os.PathLike | None = None, is_trainable: bool = False
) -> PeftModel:
    """
    A saved LoRA classifier: its base model (the pre-trained or probed model it was finetuned from; by default the
    path recorded in `adapter_config.json`) built with the classifier config saved beside the adapter, then the
    adapter loaded onto it. `.merge_and_unload()` turns it into a plain `EcgPmaForSequenceClassification`.
    """
    adapter_dir = Path(adapter_dir)
    if base_model is None:
        base_model = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        if not base_model:
            raise ValueError(f"{adapter_dir}/adapter_config.json names no base model; pass `base_model`.")
    config = EcgPmaConfig.from_pretrained(adapter_dir)
    model = EcgPmaForSequenceClassification.from_pretrained(base_model, config=config)
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=is_trainable)
