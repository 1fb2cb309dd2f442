"""ONNX export of a saved classifier: `signals (batch, leads, samples)` and `lead_mask (batch, leads)` in, `logits` and
`layer_weights` out."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .inference import load_trained_classifier
from .modeling_ecg_pma import EcgPmaForSequenceClassification


DEFAULT_OPSET = 17


class _ExportWrapper(torch.nn.Module):
    def __init__(self, model: EcgPmaForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(signals, lead_mask=lead_mask)
        return output.logits, output.layer_weights


def export_onnx(model_dir: str | Path, output_path: str | Path, opset: int = DEFAULT_OPSET) -> dict:
    """
    Exports the classifier in `model_dir` to `output_path` with a dynamic batch dimension and records the export
    (`onnx_export.json` beside the weights, read by the model card). Uses the TorchScript exporter
    (`dynamo=False`), which needs only the `onnx` package, not `onnxscript`; attention is exported on the eager path,
    which is the same maths as SDPA but traces with a dynamic batch size.
    """
    model = load_trained_classifier(model_dir)
    model.set_attn_implementation("eager")
    wrapper = _ExportWrapper(model).eval()  # the wrapper too: the exporter restores the mode of what it is given
    config = model.config
    example = torch.zeros(2, config.num_leads, config.signal_length)
    # A mask that is not all true, so that the traced graph keeps the masked attention and means.
    example_mask = torch.ones(2, config.num_leads, dtype=torch.bool)
    example_mask[1, 1:] = False
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapper,
        (example, example_mask),
        str(output_path),
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
        "preprocessing": "the model's feature extractor (preprocessor_config.json): model-order leads, "
        f"{config.sampling_rate} Hz, per-lead z-scored windows of {config.signal_length} samples",
    }
    (Path(model_dir) / "onnx_export.json").write_text(json.dumps(spec, indent=2))
    return spec
