"""
ONNX export of a saved classifier: `signals (batch, leads, samples)` and `lead_mask (batch, leads)` in, `logits` and
`layer_weights` out; optionally
with ONNX Runtime's graph optimizations applied offline (`optimize=True`) and the encoder's linear layers dynamically
quantized to int8 (`quantize="int8"`). Every file records how it was made in its ONNX `metadata_props` (read back
with [`read_onnx_metadata`]) and in `onnx_export.json` beside the weights (read by the model card).
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

import torch

from ..modeling_ecg_pma import EcgPmaForSequenceClassification
from .loading import load_trained_classifier


DEFAULT_OPSET = 17
QUANTIZATIONS = ("int8",)
# The key under which the export record is stored in the ONNX file's metadata_props.
METADATA_KEY = "ecg_pma.export"
# ORT's "extended" level fuses LayerNormalization, GELU (with its bias), MatMul + scale and MatMul + Add into CPU
# kernels, and only that: unlike "all", it writes no layouts specific to the exporting CPU, so the file stays portable.
OPTIMIZATION_LEVEL = "ORT_ENABLE_EXTENDED"
# Dynamic quantization of the products with a weight: the encoder's linear layers and patch embedding. Attention's
# products of two activations have no weight to quantize and stay fp32; so do the PMA gate and the classification
# head (a few thousand multiply-adds, and they set the layer weights and probabilities directly).
QUANTIZED_OP_TYPES = ["MatMul"]
FP32_MODULES = ("/model/aggregator/", "/model/classifier/")


class _ExportWrapper(torch.nn.Module):
    def __init__(self, model: EcgPmaForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(signals, lead_mask=lead_mask)
        return output.logits, output.layer_weights


def _trace_to_onnx(model: EcgPmaForSequenceClassification, path: Path, opset: int) -> None:
    """The TorchScript exporter (`dynamo=False`), on the eager attention path, with a dynamic batch dimension."""
    model.set_attn_implementation("eager")
    wrapper = _ExportWrapper(model).eval()  # the wrapper too: the exporter restores the mode of what it is given
    example = torch.zeros(2, model.config.num_leads, model.config.signal_length)
    # A mask that is not all true, so that the traced graph keeps the masked attention and means.
    example_mask = torch.ones(2, model.config.num_leads, dtype=torch.bool)
    example_mask[1, 1:] = False
    torch.onnx.export(
        wrapper,
        (example, example_mask),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["signals", "lead_mask"],
        output_names=["logits", "layer_weights"],
        dynamic_axes={
            "signals": {0: "batch"},
            "lead_mask": {0: "batch"},
            "logits": {0: "batch"},
            "layer_weights": {0: "batch"},
        },
    )


def _optimize(source: Path, target: Path) -> None:
    """ONNX Runtime's own graph optimizer at `OPTIMIZATION_LEVEL`, saved to `target` (the session is discarded)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, OPTIMIZATION_LEVEL)
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _quantize_int8(source: Path, target: Path) -> dict:
    """`onnxruntime.quantization.quantize_dynamic`: int8 weights per output channel, uint8 activations per tensor."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = {"weight_type": "QInt8", "activation_type": "QUInt8 (dynamic, per tensor)", "per_channel": True}
    kept_fp32 = [node.name for node in onnx.load(str(source)).graph.node if node.name.startswith(FP32_MODULES)]
    # the quantizer first rewrites each `Gemm` as a `MatMul` named `<gemm>_MatMul`, then matches names
    kept_fp32 += [f"{name}_MatMul" for name in kept_fp32]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=QUANTIZED_OP_TYPES,
        nodes_to_exclude=kept_fp32,
        # fused ops (BiasGelu, FusedMatMul) are outside ONNX's shape inference: their outputs are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        **settings,
        "op_types": QUANTIZED_OP_TYPES,
        "fp32": "attention products of two activations, the PMA gate, the classification head, LayerNorm, softmax",
    }


def operator_counts(path: str | Path) -> dict[str, int]:
    """How many nodes of each operator type the ONNX graph holds (shows what was fused or quantized)."""
    import onnx

    return dict(collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node).most_common())


def read_onnx_metadata(path: str | Path) -> dict:
    """The export record stored in an ONNX file by [`export_classifier_onnx`] (empty for other files)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    properties = {prop.key: prop.value for prop in model.metadata_props}
    return json.loads(properties[METADATA_KEY]) if METADATA_KEY in properties else {}


def _write_metadata(path: Path, spec: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in {METADATA_KEY: json.dumps(spec), "producer": "ecg-pma"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def export_classifier_onnx(
    model: EcgPmaForSequenceClassification,
    output_path: str | Path,
    opset: int = DEFAULT_OPSET,
    optimize: bool = False,
    quantize: str | None = None,
) -> dict:
    """
    Exports `model` to `output_path` and returns the export record also stored in the file's metadata: shapes,
    labels, preprocessing, and how the graph was made (`optimization`, `quantization`, operator counts).
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantize!r}; expected one of {QUANTIZATIONS} or None.")
    import onnxruntime

    config = model.config
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    spec = {
        "file": output_path.name,
        "opset": opset,
        "inputs": {
            "signals": ["batch", config.num_leads, config.signal_length],
            "dtype": "float32",
            "lead_mask": ["batch", config.num_leads],
            "lead_mask_dtype": "bool (True where the lead is present; all True for complete records)",
        },
        "outputs": {"logits": ["batch", config.num_labels], "layer_weights": ["batch", config.num_hidden_layers]},
        "id2label": {str(index): label for index, label in config.id2label.items()},
        "preprocessing": "the model's feature extractor (preprocessor_config.json): model-order leads, "
        f"{config.sampling_rate} Hz, per-lead z-scored windows of {config.signal_length} samples",
        "onnxruntime": onnxruntime.__version__,
        "optimization": None,
        "quantization": None,
    }
    with tempfile.TemporaryDirectory(dir=output_path.parent) as scratch:
        current = Path(scratch) / "traced.onnx"
        _trace_to_onnx(model, current, opset)
        if optimize:
            _optimize(current, Path(scratch) / "optimized.onnx")
            current = Path(scratch) / "optimized.onnx"
            spec["optimization"] = f"onnxruntime graph optimization level {OPTIMIZATION_LEVEL}, applied offline"
        if quantize == "int8":
            spec["quantization"] = _quantize_int8(current, Path(scratch) / "quantized.onnx")
            current = Path(scratch) / "quantized.onnx"
        spec["operators"] = operator_counts(current)
        _write_metadata(current, spec)
        current.replace(output_path)
    return spec


def export_onnx(
    model_dir: str | Path,
    output_path: str | Path,
    opset: int = DEFAULT_OPSET,
    optimize: bool = False,
    quantize: str | None = None,
) -> dict:
    """
    Exports the classifier in `model_dir` (see [`export_classifier_onnx`]) and records the export in
    `onnx_export.json` beside the weights, read by the model card: the latest export's record at the top level, and
    every exported file's record under `exports`.
    """
    model = load_trained_classifier(model_dir).eval()
    spec = export_classifier_onnx(model, output_path, opset=opset, optimize=optimize, quantize=quantize)
    record_path = Path(model_dir) / "onnx_export.json"
    previous = json.loads(record_path.read_text()).get("exports", []) if record_path.exists() else []
    exports = [entry for entry in previous if entry.get("file") != spec["file"]] + [spec]
    record = {**spec, "exports": exports}
    record_path.write_text(json.dumps(record, indent=2))
    return spec
