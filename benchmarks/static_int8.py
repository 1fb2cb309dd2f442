"""
Static int8 (activations calibrated on real records) against the dynamic int8 that `export-onnx --quantize int8`
ships, on the all-leads graph of the same classifier (random weights, `--preset`). Static: `quantize_static`, QDQ
format, every `MatMul` quantized — attention's products of two activations included, so attention runs in int8 too —
with per-channel int8 weights and uint8 activations whose ranges are calibrated (MinMax) on the sliding windows of
`--calibration-records` real challenge records; the PMA gate and head stay fp32 as in the dynamic file. Dynamic: the
shipped export (fused `QAttention`, `DynamicQuantizeMatMul`). Reports ECGs/s of both in interleaved rounds (median of
`--repeats`) on the same input, and each one's largest |Δprobability| (sigmoid of the logits) against PyTorch fp32
on windows of the other challenge records. Prints one JSON line.

    python benchmarks/static_int8.py --preset vit-s-paper --batch 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.serving.onnx_export import FP32_MODULES, _trace_to_onnx, all_leads_path, export_classifier_onnx
from ecg_pma.serving.onnx_runtime import onnx_session


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, machine_info  # noqa: E402
from speed import interleaved_timings  # noqa: E402


def quantize_static_int8(model, scratch: Path, calibration: torch.Tensor) -> Path:
    """The all-leads graph (standard operators), every MatMul statically quantized with `calibration` windows."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _trace_to_onnx(model, scratch / "traced.onnx", 17, "all_leads", fused_attention=False)
    quant_pre_process(
        str(scratch / "traced.onnx"), str(scratch / "prepared.onnx"), skip_optimization=True, skip_symbolic_shape=True
    )

    class Windows(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"signals": calibration[i : i + 4].numpy()} for i in range(0, len(calibration), 4)])

        def get_next(self):
            return next(self.batches, None)

    kept_fp32 = [
        n.name for n in onnx.load(str(scratch / "prepared.onnx")).graph.node if n.name.startswith(FP32_MODULES)
    ]
    quantize_static(
        str(scratch / "prepared.onnx"),
        str(scratch / "static.onnx"),
        Windows(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept_fp32,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return scratch / "static.onnx"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibration-records", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(args.preset, num_labels=6, aggregation="pma")
    model = EcgPmaForSequenceClassification(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    paths = sorted(str(path.with_suffix("")) for path in CHALLENGE_RECORDS.glob("*.hea"))
    calibration = extractor(paths[: args.calibration_records], window_mode="sliding", return_tensors="pt")["signals"]
    held_out = extractor(paths[args.calibration_records :], window_mode="sliding", return_tensors="pt")["signals"]
    signals = torch.randn(args.batch, config.num_leads, config.signal_length)
    with tempfile.TemporaryDirectory() as scratch:
        export_classifier_onnx(model, Path(scratch) / "model-int8.onnx", optimize=True, quantize="int8")
        files = {
            "dynamic_int8": all_leads_path(Path(scratch) / "model-int8.onnx"),
            "static_int8": quantize_static_int8(model, Path(scratch), calibration),
        }
        model.set_attn_implementation("sdpa")
        sessions = {name: onnx_session(path) for name, path in files.items()}
        with torch.inference_mode():
            expected = model(held_out).logits.sigmoid().numpy()
        max_abs_diff = {
            name: float(
                np.abs(1 / (1 + np.exp(-session.run(None, {"signals": held_out.numpy()})[0])) - expected).max()
            )
            for name, session in sessions.items()
        }
        steps = {name: partial(session.run, None, {"signals": signals.numpy()}) for name, session in sessions.items()}
        timings = interleaved_timings(steps, args.repeats, torch.device("cpu"))
    speed = {name: round(args.batch / timing["seconds"], 3) for name, timing in timings.items()}
    print(
        json.dumps(
            {
                "benchmark": "static_int8",
                **machine_info(),
                "load_average": Path("/proc/loadavg").read_text().split()[:3],
                "preset": args.preset,
                "batch": args.batch,
                "calibration_windows": len(calibration),
                "held_out_windows": len(held_out),
                "ecgs_per_s": speed,
                "static_vs_dynamic": round(speed["static_int8"] / speed["dynamic_int8"], 2),
                "max_abs_prob_diff_vs_pytorch": {name: float(f"{value:.3g}") for name, value in max_abs_diff.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
