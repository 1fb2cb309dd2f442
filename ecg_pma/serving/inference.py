"""Per-record predictions for WFDB records or arrays: sliding windows, averaged per record, fp32 or bf16, eager or
compiled, or through ONNX Runtime."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..constants import DTYPES
from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor, check_integer
from ..modeling_ecg_pma import EcgPmaForSequenceClassification
from .loading import decision_thresholds, label_names
from .onnx_runtime import ClassifierSessions, resolve_onnx_path


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


BACKENDS = ("torch", "onnxruntime")


def window_forward(
    model: EcgPmaForSequenceClassification,
    backend: str = "torch",
    onnx_path: str | os.PathLike | None = None,
    compile: bool = False,
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """
    A function `(signals (windows, leads, samples), lead_mask (windows, leads) or None)` -> `(logits (windows,
    labels), layer_weights (windows, depth))`: the PyTorch model (optionally compiled), or for
    `backend="onnxruntime"` ONNX Runtime on the export at `onnx_path` ([`ClassifierSessions`]: the all-leads graph
    for complete batches, the masked graph for batches lacking leads).
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; expected one of {BACKENDS}.")
    if backend == "torch":
        module = compile_for_inference(model) if compile else model
        device = next(model.parameters()).device

        def forward(signals: torch.Tensor, lead_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            # Complete records take the plain path (a compiled graph would otherwise always carry the mask).
            if lead_mask is not None and bool(lead_mask.all()):
                lead_mask = None
            output = module(signals.to(device), lead_mask=None if lead_mask is None else lead_mask.to(device))
            return output.logits, output.layer_weights

        return forward
    if compile:
        raise ValueError("compile=True compiles the PyTorch model; it does not apply to backend='onnxruntime'.")
    # complete batches run the all-leads graph exported beside `onnx_path`, batches lacking leads the masked one
    return ClassifierSessions(resolve_onnx_path(model, onnx_path), model.config)


def score_windows(
    forward: Callable,
    signals: torch.Tensor,
    config,
    batch_size: int,
    pad_batches: bool = False,
    lead_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Probabilities `(windows, labels)` (softmax for single-label models, else sigmoid) and layer weights
    `(windows, depth)` of `signals` (with `lead_mask (windows, leads)` where records lack leads), scored `batch_size`
    windows at a time. `pad_batches` pads the last batch with zero
    windows (outputs discarded), for compiled models that serve one batch shape.
    """
    single_label = config.problem_type == "single_label_classification"
    probabilities, layer_weights = [], []
    for start in range(0, len(signals), batch_size):
        batch = signals[start : start + batch_size]
        batch_mask = None if lead_mask is None else lead_mask[start : start + batch_size]
        num_windows = len(batch)
        if pad_batches and num_windows < batch_size:
            batch = torch.cat([batch, batch.new_zeros(batch_size - num_windows, *batch.shape[1:])])
            if batch_mask is not None:
                batch_mask = torch.cat(
                    [batch_mask, batch_mask.new_ones(batch_size - num_windows, *batch_mask.shape[1:])]
                )
        logits, weights = forward(batch, batch_mask)
        logits = logits[:num_windows].float()
        probabilities.append((logits.softmax(-1) if single_label else logits.sigmoid()).cpu())
        layer_weights.append(weights[:num_windows].float().cpu())
    return torch.cat(probabilities), torch.cat(layer_weights)


def summarize_records(
    config, probabilities: torch.Tensor, layer_weights: torch.Tensor, record_index: torch.Tensor, names: list[str]
) -> list[RecordPrediction]:
    """Window scores averaged per record (`record_index`), thresholded with the config's `decision_thresholds`."""
    num_records = len(names)
    per_record = average_windows(probabilities, record_index, num_records)
    weights = average_windows(layer_weights, record_index, num_records)
    thresholds = np.asarray(decision_thresholds(config))
    labels = label_names(config)
    counts = torch.bincount(record_index, minlength=num_records)
    results = []
    for index, name in enumerate(names):
        scores = per_record[index].numpy()
        results.append(
            RecordPrediction(
                record=name,
                probabilities={label: float(score) for label, score in zip(labels, scores)},
                positive_labels=[
                    label for label, score, threshold in zip(labels, scores, thresholds) if score >= threshold
                ],
                layer_weights=weights[index].tolist(),
                num_windows=int(counts[index]),
            )
        )
    return results


@torch.inference_mode()
def predict_records(
    model: EcgPmaForSequenceClassification,
    feature_extractor: EcgPmaFeatureExtractor,
    records: list,
    dtype: str = "fp32",
    batch_size: int = 32,
    compile: bool = False,
    backend: str = "torch",
    onnx_path: str | os.PathLike | None = None,
    **extractor_kwargs,
) -> list[RecordPrediction]:
    """
    Classifies each record (WFDB path, `wfdb.Record`, or array with `sampling_rate=` in `extractor_kwargs`): every
    sliding window is scored, and probabilities and layer weights are averaged per record. Labels above the config's
    `decision_thresholds` (0.5 when unset) are listed as positive. `compile=True` runs the model through
    [`compile_for_inference`]; the last batch is then padded with zero windows to `batch_size` (and their outputs
    discarded) so that one compiled graph serves every batch. `backend="onnxruntime"` scores the windows with ONNX
    Runtime on `onnx_path` (default: `model.onnx` in the model's folder; made by `ecg-pma export-onnx`, optionally
    optimized and int8-quantized) instead of PyTorch: same windows, averaging, thresholds and output.
    """
    check_integer("batch_size", batch_size)
    if backend == "onnxruntime" and dtype != "fp32":
        raise ValueError(f"dtype={dtype!r} is for the PyTorch backend; an ONNX file carries its own precision.")
    model.eval()
    features = feature_extractor(records, window_mode="sliding", return_tensors="pt", **extractor_kwargs)
    device = next(model.parameters()).device
    forward = window_forward(model, backend, onnx_path, compile)
    batch_size = min(batch_size, len(features["signals"]))
    with autocast_context(dtype, device):
        probabilities, layer_weights = score_windows(
            forward,
            features["signals"],
            model.config,
            batch_size,
            pad_batches=compile,
            lead_mask=features["lead_mask"],
        )
    record_index = features["record_index"]
    names = [record_name(records, index) for index in range(int(record_index.max()) + 1)]
    return summarize_records(model.config, probabilities, layer_weights, record_index, names)
