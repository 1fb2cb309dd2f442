"""ONNX Runtime sessions on an exported classifier: the file found beside the model, checked against its config."""

from __future__ import annotations

import os

import torch

from .onnx_export import read_onnx_metadata


DEFAULT_ONNX_FILE = "model.onnx"


def onnx_session(onnx_path: str | os.PathLike, num_threads: int | None = None, memory_arena: bool = True):
    """
    An ONNX Runtime CPU session with every graph optimization enabled at load time, on as many threads as PyTorch uses
    (`torch.get_num_threads()`) unless `num_threads` says otherwise. `memory_arena=False` returns freed buffers to the
    system allocator instead of keeping them in ORT's arena (slower; for measuring a call's peak memory).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = memory_arena
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    return onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def check_onnx_matches_config(onnx_path: str | os.PathLike, config) -> None:
    """Refuses an ONNX file exported from another model: its labels and input shape must be the config's."""
    spec = read_onnx_metadata(onnx_path)
    expected_labels = {str(index): label for index, label in config.id2label.items()}
    expected_input = ["batch", config.num_leads, config.signal_length]
    if spec and (
        spec.get("id2label", expected_labels) != expected_labels or spec["inputs"]["signals"] != expected_input
    ):
        raise ValueError(
            f"ONNX file {onnx_path} was exported from another model: labels {spec.get('id2label')} and input "
            f"{spec['inputs']['signals']}, but this model has labels {expected_labels} and input {expected_input}. "
            "Export it again with `ecg-pma export-onnx`."
        )


def resolve_onnx_path(model, onnx_path: str | os.PathLike | None) -> str:
    """`onnx_path`, else `model.onnx` in the folder the model was loaded from; a clear error when there is none."""
    if onnx_path is None:
        model_dir = getattr(model, "name_or_path", "") or ""
        onnx_path = os.path.join(model_dir, DEFAULT_ONNX_FILE) if model_dir else None
        if onnx_path is None or not os.path.isfile(onnx_path):
            raise FileNotFoundError(
                f"backend='onnxruntime' needs an ONNX file: none given and no {DEFAULT_ONNX_FILE} in "
                f"{model_dir or 'the model folder'}. Export one with `ecg-pma export-onnx MODEL OUT.onnx` and pass "
                "it as onnx_path= (CLI: --onnx OUT.onnx)."
            )
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(f"ONNX file {onnx_path} not found.")
    return str(onnx_path)


def run_onnx_session(session, signals: torch.Tensor, lead_mask: torch.Tensor | None = None):
    """`logits`, `layer_weights` of an exported classifier's session; every lead present when `lead_mask` is None."""
    if lead_mask is None:
        lead_mask = torch.ones(signals.shape[:2], dtype=torch.bool)
    inputs = {"signals": signals.cpu().numpy(), "lead_mask": lead_mask.cpu().numpy().astype(bool)}
    logits, layer_weights = session.run(["logits", "layer_weights"], inputs)
    return torch.from_numpy(logits), torch.from_numpy(layer_weights)
