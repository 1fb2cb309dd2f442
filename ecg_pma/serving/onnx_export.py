"""
ONNX export of a saved classifier as two graphs: `OUT.onnx` takes `signals (batch, leads, samples)` and `lead_mask
(batch, leads)` (any lead set: absent leads are masked out of attention and of the means), and `OUT.all-leads.onnx`
beside it takes `signals` alone, for records with every lead (no mask operators); both give `logits` and
`layer_weights`. Optionally with ONNX Runtime's graph optimizations applied offline and attention in ORT's fused
`Attention` contrib operator (`optimize=True`), and the encoder blocks' linear layers and attention's input
projection dynamically quantized to int8 (`quantize="int8"`). Every file records how it was made in its ONNX `metadata_props`
(read back with [`read_onnx_metadata`]) and in `onnx_export.json` beside the weights (read by the model card).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import tempfile
import warnings
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
# Dynamic quantization of the products with a weight: the encoder blocks' linear layers and the fused attention's
# packed q/k/v projection (`Attention` -> `QAttention`). Attention's products of two activations have no weight to
# quantize and stay fp32 (inside the fused kernel); so do the PMA gate and the classification head (a few thousand
# multiply-adds, and they set the layer weights and probabilities directly) and the patch embedding: its input is the
# raw signal, whose per-tensor uint8 range (one scale for a whole batch of ECGs, spikes included) cost a pre-trained
# encoder's probabilities up to 0.029 on the challenge records, against 0.0034 with it in fp32
# (benchmarks/README.md), for under 0.1 % of the model's operations.
QUANTIZED_OP_TYPES = ["MatMul", "Attention"]
FP32_MODULES = ("/model/ecg_pma/embeddings/", "/model/aggregator/", "/model/classifier/")
# The graph for records with every lead, saved beside the masked one: `model.onnx` -> `model.all-leads.onnx`.
ALL_LEADS_SUFFIX = ".all-leads.onnx"
GRAPHS = {
    "lead_mask": "any lead set: absent leads (lead_mask False) are left out of attention and of every mean",
    "all_leads": "every lead present (no lead_mask input, no mask operators): the faster graph for complete records",
}


def all_leads_path(onnx_path: str | Path) -> Path:
    """The all-leads graph exported beside the masked graph `onnx_path`: `model.onnx` -> `model.all-leads.onnx`."""
    onnx_path = Path(onnx_path)
    if onnx_path.name.endswith(ALL_LEADS_SUFFIX):
        return onnx_path
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + ALL_LEADS_SUFFIX)


def lead_mask_path(onnx_path: str | Path) -> Path:
    """The masked graph beside the all-leads graph `onnx_path`: `model.all-leads.onnx` -> `model.onnx`."""
    onnx_path = Path(onnx_path)
    if not onnx_path.name.endswith(ALL_LEADS_SUFFIX):
        return onnx_path
    return onnx_path.with_name(onnx_path.name.removesuffix(ALL_LEADS_SUFFIX) + ".onnx")


class _ExportWrapper(torch.nn.Module):
    def __init__(self, model: EcgPmaForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(signals, lead_mask=lead_mask)
        return output.logits, output.layer_weights


class _AllLeadsExportWrapper(torch.nn.Module):
    """`signals` alone: the model's plain path for complete records, with no mask in the graph."""

    def __init__(self, model: EcgPmaForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(signals)
        return output.logits, output.layer_weights


class _FusedAttention(torch.autograd.Function):
    """
    Exports as ONNX Runtime's `com.microsoft::Attention` contrib operator: the packed q/k/v projection and softmax
    attention in one CPU kernel (which `quantize_dynamic` turns into `QAttention`, an int8 projection). Traced
    forward: the same maths in PyTorch. `hidden (batch, tokens, hidden)`, `weight (hidden, 3 * hidden)` (q, k, v
    blocks, heads within each, as `EcgPmaAttention.qkv` packs them), `bias (3 * hidden)`, `key_mask (batch, tokens)`
    int32 (1 where a key may be attended to) or None -> `(batch, tokens, hidden)`.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, key_mask, num_heads: int):
        query, key, value = (hidden @ weight + bias).unflatten(-1, (3, num_heads, -1)).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask.bool()[:, None, None, :]
        attention = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        return attention.transpose(1, 2).flatten(2)

    @staticmethod
    def symbolic(graph, hidden, weight, bias, key_mask, num_heads: int):
        inputs = (hidden, weight, bias) if key_mask is None else (hidden, weight, bias, key_mask)
        output = graph.op("com.microsoft::Attention", *inputs, num_heads_i=num_heads)
        # the output's type for the exporter's shape inference (which warns once per layer without it): the input's
        # dtype and rank, its sizes left symbolic (the traced example's would fix the batch of what follows)
        output.setType(hidden.type().with_sizes([None, None, None]))
        return output


def _fused_attention_forward(attention, hidden_states, output_attentions=False, attention_mask=None):
    """`EcgPmaAttention.forward` through [`_FusedAttention`] (for export; `attention_mask (batch, 1, 1, tokens)`)."""
    bias = (
        attention.qkv.bias
        if attention.qkv.bias is not None
        else attention.qkv.weight.new_zeros(3 * attention.qkv.in_features)
    )
    key_mask = None if attention_mask is None else attention_mask[:, 0, 0, :].to(torch.int32)
    context = _FusedAttention.apply(
        hidden_states, attention.qkv.weight.t(), bias, key_mask, attention.num_attention_heads
    )
    return attention.output_dropout(attention.output(context)), None


@contextlib.contextmanager
def _attention_exported_fused(model: EcgPmaForSequenceClassification, enabled: bool):
    """While tracing, every encoder attention block exports as one fused `Attention` node (when `enabled`)."""
    blocks = [layer.attention for layer in model.ecg_pma.encoder.layers] if enabled else []
    for block in blocks:
        block.forward = functools.partial(_fused_attention_forward, block)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward  # back to the class's forward


def _trace_to_onnx(
    model: EcgPmaForSequenceClassification, path: Path, opset: int, graph: str, fused_attention: bool
) -> None:
    """
    The TorchScript exporter (`dynamo=False`), on the eager attention path (or ORT's fused `Attention`), with a
    dynamic batch dimension; `graph` is `"lead_mask"` (inputs `signals`, `lead_mask`) or `"all_leads"` (`signals`).
    """
    model.set_attn_implementation("eager")
    example = torch.zeros(2, model.config.num_leads, model.config.signal_length)
    if graph == "lead_mask":
        wrapper = _ExportWrapper(model).eval()  # the wrapper too: the exporter restores the mode of what it is given
        # A mask that is not all true, so that the traced graph keeps the masked attention and means.
        example_mask = torch.ones(2, model.config.num_leads, dtype=torch.bool)
        example_mask[1, 1:] = False
        inputs, input_names = (example, example_mask), ["signals", "lead_mask"]
    else:
        wrapper, inputs, input_names = _AllLeadsExportWrapper(model).eval(), (example,), ["signals"]
    with _attention_exported_fused(model, fused_attention), warnings.catch_warnings():
        # the tracer warns that the input checks (leads, samples) and the q/k/v split become constants: they are, by
        # design, since only the batch is dynamic; any other tracer warning (a frozen batch size) is still shown
        for message, module in (
            ("Converting a tensor to a Python boolean", r"ecg_pma\.modeling_ecg_pma"),
            ("Iterating over a tensor", r"ecg_pma\.serving\.onnx_export"),
        ):
            warnings.filterwarnings("ignore", message=message, category=torch.jit.TracerWarning, module=module)
        torch.onnx.export(
            wrapper,
            inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=["logits", "layer_weights"],
            dynamic_axes={name: {0: "batch"} for name in [*input_names, "logits", "layer_weights"]},
            custom_opsets={"com.microsoft": 1} if fused_attention else None,
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
        "fp32": "the patch embedding, attention products of two activations (inside the fused attention kernel), the "
        "PMA gate, the classification head, LayerNorm, softmax",
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


def _export_graph(
    model: EcgPmaForSequenceClassification,
    output_path: Path,
    graph: str,
    spec: dict,
    opset: int,
    optimize: bool,
    quantize: str | None,
    fused_attention: bool,
) -> dict:
    """One graph (`"lead_mask"` or `"all_leads"`) traced, optimized and quantized into `output_path`; its record."""
    config = model.config
    inputs = {"signals": ["batch", config.num_leads, config.signal_length], "dtype": "float32"}
    if graph == "lead_mask":
        inputs["lead_mask"] = ["batch", config.num_leads]
        inputs["lead_mask_dtype"] = "bool (True where the lead is present; all True for complete records)"
    spec = {**spec, "file": output_path.name, "graph": graph, "graph_use": GRAPHS[graph], "inputs": inputs}
    with tempfile.TemporaryDirectory(dir=output_path.parent) as scratch:
        current = Path(scratch) / "traced.onnx"
        _trace_to_onnx(model, current, opset, graph, fused_attention=fused_attention)
        if optimize:
            _optimize(current, Path(scratch) / "optimized.onnx")
            current = Path(scratch) / "optimized.onnx"
            spec["optimization"] = f"onnxruntime graph optimization level {OPTIMIZATION_LEVEL}, applied offline"
        if fused_attention:
            spec["optimization"] += "; attention in onnxruntime's fused Attention contrib operator"
        if quantize == "int8":
            spec["quantization"] = _quantize_int8(current, Path(scratch) / "quantized.onnx")
            current = Path(scratch) / "quantized.onnx"
        spec["operators"] = operator_counts(current)
        _write_metadata(current, spec)
        current.replace(output_path)
    return spec


def export_classifier_onnx(
    model: EcgPmaForSequenceClassification,
    output_path: str | Path,
    opset: int = DEFAULT_OPSET,
    optimize: bool = False,
    quantize: str | None = None,
    fused_attention: bool | None = None,
) -> dict:
    """
    Exports `model` as two graphs: `output_path` (inputs `signals` and `lead_mask`: any lead set) and, beside it,
    [`all_leads_path`] (`signals` only: records with every lead, without the mask's operators). Returns the masked
    graph's export record (also stored in the file's metadata: shapes, labels, preprocessing, and how the graph was
    made: `optimization`, `quantization`, operator counts), with the all-leads graph's record under `all_leads`.
    `fused_attention` (default: with `optimize`) exports attention as ONNX Runtime's fused `Attention` operator;
    `optimize=True, fused_attention=False` gives the graph of earlier releases (for comparisons).
    """
    fused_attention = optimize if fused_attention is None else fused_attention
    if fused_attention and not optimize:
        raise ValueError("fused_attention=True needs optimize=True: the fused operator is ONNX Runtime's own.")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantize!r}; expected one of {QUANTIZATIONS} or None.")
    import onnxruntime

    config = model.config
    output_path = Path(output_path)
    if output_path.name.endswith(ALL_LEADS_SUFFIX):
        raise ValueError(
            f"{output_path.name} ends in {ALL_LEADS_SUFFIX!r}, the name of the all-leads graph written beside the "
            f"masked one: name the masked graph instead (e.g. {lead_mask_path(output_path).name})."
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    spec = {
        "opset": opset,
        "outputs": {"logits": ["batch", config.num_labels], "layer_weights": ["batch", config.num_hidden_layers]},
        "id2label": {str(index): label for index, label in config.id2label.items()},
        "preprocessing": "the model's feature extractor (preprocessor_config.json): model-order leads, "
        f"{config.sampling_rate} Hz, per-lead z-scored windows of {config.signal_length} samples",
        "onnxruntime": onnxruntime.__version__,
        "optimization": None,
        "quantization": None,
    }
    graphs = {"opset": opset, "optimize": optimize, "quantize": quantize, "fused_attention": fused_attention}
    complete = _export_graph(model, all_leads_path(output_path), "all_leads", spec, **graphs)
    masked = _export_graph(model, output_path, "lead_mask", spec, **graphs)
    return {**masked, "all_leads": complete}


def export_onnx(
    model_dir: str | Path,
    output_path: str | Path,
    opset: int = DEFAULT_OPSET,
    optimize: bool = False,
    quantize: str | None = None,
) -> dict:
    """
    Exports the classifier in `model_dir` (see [`export_classifier_onnx`]: the masked graph at `output_path`, the
    all-leads graph beside it) and records the export in `onnx_export.json` beside the weights, read by the model
    card: the latest masked graph's record at the top level, and every exported file's record under `exports`.
    """
    model = load_trained_classifier(model_dir).eval()
    spec = export_classifier_onnx(model, output_path, opset=opset, optimize=optimize, quantize=quantize)
    written = [{key: value for key, value in spec.items() if key != "all_leads"}, spec["all_leads"]]
    record_path = Path(model_dir) / "onnx_export.json"
    previous = json.loads(record_path.read_text()).get("exports", []) if record_path.exists() else []
    names = {entry["file"] for entry in written}
    exports = [entry for entry in previous if entry.get("file") not in names] + written
    record = {**written[0], "exports": exports}
    record_path.write_text(json.dumps(record, indent=2))
    return spec
