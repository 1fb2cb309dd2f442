"""Per-record predictions for WFDB records or arrays: sliding windows, averaged per record, fp32 or bf16, eager or
compiled."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoConfig

from . import register_auto_classes
from .constants import DTYPES
from .feature_extraction_ecg_pma import EcgPmaFeatureExtractor, check_integer
from .modeling_ecg_pma import EcgPmaForSequenceClassification


@dataclass
class RecordPrediction:
    record: str
    probabilities: dict[str, float]
    positive_labels: list[str]
    layer_weights: list[float]
    num_windows: int


def autocast_context(dtype: str, device: torch.device):
    """bf16 autocast (CPU or GPU) or nothing for fp32."""
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; expected one of {DTYPES}.")
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def load_trained_classifier(model_dir, loader=None, **kwargs) -> EcgPmaForSequenceClassification:
    """
    A classifier for prediction or export: `loader.from_pretrained(model_dir)` (default
    `EcgPmaForSequenceClassification`), refusing a checkpoint without a trained gate and head (a pre-training or encoder
    checkpoint), which would otherwise predict with random ones.
    """
    loader = loader or EcgPmaForSequenceClassification
    register_auto_classes()  # the Auto classes know our model type without the code saved beside the weights
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=kwargs.get("trust_remote_code"))
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ValueError(
            f"{model_dir} is not a classifier ({', '.join(architectures) or 'no architecture in its config'}): it is a "
            f"pre-trained model without a trained head. Train one first: ecg-pma finetune --model {model_dir} ..."
        )
    model, info = loader.from_pretrained(model_dir, output_loading_info=True, **kwargs)
    if info["missing_keys"]:
        architectures = ", ".join(getattr(model.config, "architectures", None) or ["unknown"])
        raise ValueError(
            f"{model_dir} has no trained classifier ({architectures} checkpoint; missing "
            f"{sorted({key.rsplit('.', 1)[0] for key in info['missing_keys']})}): train one with `ecg-pma finetune`."
        )
    return model


def decision_thresholds(config) -> list[float]:
    """The per-label thresholds tuned on validation and stored in the config, or 0.5 for every label where none were."""
    return list(config.decision_thresholds or [0.5] * config.num_labels)


def compile_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """
    `torch.compile` for prediction: Inductor with *freezing*, which treats the weights as constants (pre-packed for
    the CPU's matrix kernels, constant-folded) and fuses the element-wise work around the matrix products. One graph
    per input shape (`dynamic=False`): feed it batches of one size. Compiling takes tens of seconds, so it pays off on
    long runs; the weights are read once, so compile again after changing them. Call the result under
    `torch.inference_mode()` or `torch.no_grad()`.
    """
    return torch.compile(model, dynamic=False, options={"freezing": True})


def average_windows(values: torch.Tensor, record_index: torch.Tensor, num_records: int) -> torch.Tensor:
    """Mean of the rows sharing a record index: `(windows, ...)` -> `(records, ...)`."""
    sums = torch.zeros((num_records, *values.shape[1:]), dtype=values.dtype).index_add_(0, record_index, values)
    counts = torch.bincount(record_index, minlength=num_records).clamp(min=1).to(values.dtype)
    return sums / counts.view(-1, *([1] * (values.ndim - 1)))


def record_name(records, index: int) -> str:
    """A WFDB path as given, a record's name, else `input N`."""
    item = records[index] if isinstance(records, (list, tuple)) else (records if index == 0 else None)
    if isinstance(item, str) or hasattr(item, "__fspath__"):
        return str(item)
    return getattr(item, "record_name", None) or f"input {index}"


@torch.inference_mode()
def predict_records(
    model: EcgPmaForSequenceClassification,
    feature_extractor: EcgPmaFeatureExtractor,
    records: list,
    dtype: str = "fp32",
    batch_size: int = 32,
    compile: bool = False,
    **extractor_kwargs,
) -> list[RecordPrediction]:
    """
    Classifies each record (WFDB path, `wfdb.Record`, or array with `sampling_rate=` in `extractor_kwargs`): every
    sliding window is scored, and probabilities and layer weights are averaged per record. Labels above the config's
    `decision_thresholds` (0.5 when unset) are listed as positive. `compile=True` runs the model through
    [`compile_for_inference`]; the last batch is then padded with zero windows to `batch_size` (and their outputs
    discarded) so that one compiled graph serves every batch.
    """
    check_integer("batch_size", batch_size)
    model.eval()
    features = feature_extractor(records, window_mode="sliding", return_tensors="pt", **extractor_kwargs)
    device = next(model.parameters()).device
    forward = compile_for_inference(model) if compile else model
    batch_size = min(batch_size, len(features["signals"]))
    probabilities, layer_weights = [], []
    with autocast_context(dtype, device):
        for start in range(0, len(features["signals"]), batch_size):
            signals = features["signals"][start : start + batch_size].to(device)
            lead_mask = features["lead_mask"][start : start + batch_size].to(device)
            num_windows = len(signals)
            if compile and num_windows < batch_size:
                signals = torch.cat([signals, signals.new_zeros(batch_size - num_windows, *signals.shape[1:])])
                lead_mask = torch.cat([lead_mask, lead_mask.new_ones(batch_size - num_windows, *lead_mask.shape[1:])])
            # Complete records take the plain path (a compiled graph would otherwise always carry the mask).
            output = forward(signals, lead_mask=None if bool(lead_mask.all()) else lead_mask)
            logits = output.logits[:num_windows].float()
            single_label = model.config.problem_type == "single_label_classification"
            probabilities.append((logits.softmax(-1) if single_label else logits.sigmoid()).cpu())
            layer_weights.append(output.layer_weights[:num_windows].float().cpu())
    record_index = features["record_index"]
    num_records = int(record_index.max()) + 1
    per_record = average_windows(torch.cat(probabilities), record_index, num_records)
    weights = average_windows(torch.cat(layer_weights), record_index, num_records)
    thresholds = np.asarray(decision_thresholds(model.config))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    counts = torch.bincount(record_index, minlength=num_records)
    results = []
    for index in range(num_records):
        scores = per_record[index].numpy()
        results.append(
            RecordPrediction(
                record=record_name(records, index),
                probabilities={name: float(score) for name, score in zip(names, scores)},
                positive_labels=[
                    name for name, score, threshold in zip(names, scores, thresholds) if score >= threshold
                ],
                layer_weights=weights[index].tolist(),
                num_windows=int(counts[index]),
            )
        )
    return results
