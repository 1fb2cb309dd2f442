"""Serving a trained classifier: per-record prediction (PyTorch or ONNX Runtime), ONNX export, folder screening."""

from .inference import RecordPrediction, predict_records
from .loading import decision_thresholds, load_trained_classifier
from .onnx_export import export_onnx, read_onnx_metadata
from .screening import screen_records


__all__ = [
    "RecordPrediction",
    "decision_thresholds",
    "export_onnx",
    "load_trained_classifier",
    "predict_records",
    "read_onnx_metadata",
    "screen_records",
]
