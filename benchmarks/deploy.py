"""
CPU deployment speed of the classifier (encoder + PMA gate + head) on the same input: PyTorch eager fp32 (SDPA),
PyTorch compiled (`predict --compile`), ONNX Runtime fp32 with its graph optimizations (`export-onnx --optimize`) and
ONNX Runtime int8 (`export-onnx --optimize --quantize int8`). ECGs/s and one call's peak memory, in interleaved
rounds (median of `--repeats`), as `speed.py` measures them; ONNX Runtime runs on as many threads as PyTorch. With
`--profile`, each ONNX Runtime variant's time per operator type (ORT's own profiler) is reported too. Prints one JSON
line.

    python benchmarks/deploy.py                                      # ViT-S and ViT-B, paper setting, batch 1 and 32
    python benchmarks/deploy.py --presets vit-s-paper --batches 32 --repeats 5 --profile
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ecg_pma import EcgPmaConfig, EcgPmaForSequenceClassification
from ecg_pma.serving.inference import compile_for_inference
from ecg_pma.serving.onnx_export import export_classifier_onnx
from ecg_pma.serving.onnx_runtime import onnx_session


sys.path.insert(0, str(Path(__file__).parent))
from common import machine_info  # noqa: E402
from speed import interleaved_timings, record  # noqa: E402


VARIANTS = ("eager_fp32", "compiled_fp32", "ort_fp32_optimized", "ort_int8")


def operator_profile(onnx_path: Path, signals: torch.Tensor, calls: int = 2) -> dict[str, float]:
    """Share of kernel time per operator type over `calls` runs, from ONNX Runtime's profiler (largest first)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        for _ in range(calls + 1):  # the first call warms up and is left out
            session.run(None, onnx_inputs(signals))
        events = json.loads(Path(session.end_profiling()).read_text())
    per_call = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_call[event["args"]["op_name"]].append(event["dur"])
    # drop the warm-up call: its events come first for every operator
    durations = {op: sum(values[len(values) // (calls + 1) :]) for op, values in per_call.items()}
    total = sum(durations.values())
    return {op: round(time / total, 3) for op, time in sorted(durations.items(), key=lambda item: -item[1])}


def onnx_inputs(signals: torch.Tensor) -> dict:
    """The exported classifier's inputs for complete 12-lead windows (every lead present)."""
    return {"signals": signals.numpy(), "lead_mask": np.ones(signals.shape[:2], dtype=bool)}


def classifier_variants(model, scratch: Path, signals: torch.Tensor, compile: bool) -> tuple[dict, dict]:
    """The callables to time on `signals`, and the ONNX files they run."""
    files = {
        "ort_fp32_optimized": scratch / "model.onnx",
        "ort_int8": scratch / "model-int8.onnx",
    }
    export_classifier_onnx(model, files["ort_fp32_optimized"], optimize=True)
    export_classifier_onnx(model, files["ort_int8"], optimize=True, quantize="int8")
    model.set_attn_implementation("sdpa")  # the export switched it to eager attention
    variants = {"eager_fp32": partial(model, signals)}
    if compile:
        variants["compiled_fp32"] = partial(compile_for_inference(model), signals)
    inputs = onnx_inputs(signals)
    for name, path in files.items():
        # no memory arena: freed buffers go back to the system, so a call's peak is measured as for PyTorch
        variants[name] = partial(onnx_session(path, memory_arena=False).run, None, inputs)
    return variants, files


def speedups(results: list[dict]) -> list[dict]:
    """Every variant against eager fp32, per preset and batch size (targets: ORT int8 >= 2x, ORT fp32 >= 1.1x)."""
    table = {(r["preset"], r["batch"], r["variant"]): r["ecgs_per_s"] for r in results}
    entries = []
    for preset, batch in dict.fromkeys((r["preset"], r["batch"]) for r in results):
        eager = table[preset, batch, "eager_fp32"]
        entry = {"preset": preset, "batch": batch}
        for variant in VARIANTS[1:]:
            if (preset, batch, variant) in table:
                entry[f"{variant}_vs_eager"] = round(table[preset, batch, variant] / eager, 2)
        entry["ort_int8_target_2x_met"] = entry["ort_int8_vs_eager"] >= 2.0
        entry["ort_fp32_target_1.1x_met"] = entry["ort_fp32_optimized_vs_eager"] >= 1.1
        entries.append(entry)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["vit-s-paper", "vit-b-paper"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-labels", type=int, default=6)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant (tens of seconds)")
    parser.add_argument("--profile", action="store_true", help="time per operator type of the ONNX Runtime variants")
    args = parser.parse_args()
    torch.manual_seed(0)
    results, profiles = [], []
    device = torch.device("cpu")
    for preset in args.presets:
        config = EcgPmaConfig.from_preset(preset, num_labels=args.num_labels, aggregation="pma")
        model = EcgPmaForSequenceClassification(config).eval()
        for batch in args.batches:
            signals = torch.randn(batch, config.num_leads, config.signal_length)
            with tempfile.TemporaryDirectory() as scratch, torch.inference_mode():
                variants, files = classifier_variants(model, Path(scratch), signals, not args.no_compile)
                timings = interleaved_timings(variants, args.repeats, device)
                file_mb = {name: round(path.stat().st_size / 2**20, 1) for name, path in files.items()}
                if args.profile:
                    for name, path in files.items():
                        profiles.append(
                            {
                                "preset": preset,
                                "batch": batch,
                                "variant": name,
                                "share": operator_profile(path, signals),
                            }
                        )
            for name, timing in timings.items():
                record(results, {
                    "task": "classifier_inference", "preset": preset, "batch": batch, "variant": name,
                    "ecgs_per_s": round(batch / timing["seconds"], 2), "first_call_s": timing["first_call_s"],
                    "peak_memory_mb": timing["peak_memory_mb"],
                    "onnx_file_mb": file_mb.get(name),
                })  # fmt: skip
    print(
        json.dumps(
            {
                "benchmark": "deploy",
                **machine_info(),
                "note": "random weights; encoder + PMA gate + linear head; the same input for every variant",
                "results": results,
                "speedups": speedups(results),
                "operator_profiles": profiles,
            }
        )
    )


if __name__ == "__main__":
    main()
