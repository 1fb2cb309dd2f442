"""
CPU deployment speed of the classifier (encoder + PMA gate + head) on the same complete 12-lead input: PyTorch eager
fp32 (SDPA), PyTorch compiled (`predict --compile`), ONNX Runtime fp32 with its graph optimizations and fused
attention (`export-onnx --optimize`) and ONNX Runtime int8 (`export-onnx --optimize --quantize int8`), both on the
all-leads graph the backend runs for complete records, and int8 on the masked graph (`model-int8.onnx` with an
all-true `lead_mask`), and int8 as exported before this release (`ort_int8_unfused_masked_graph`: the masked graph
without fused attention). ECGs/s and one call's peak memory, in
interleaved rounds (median of `--repeats`), as `speed.py` measures them; ONNX Runtime runs on as many threads as
PyTorch.

The limit row: the machine's matrix-product rate measured on large products in the same run (ORT `MatMulInteger`,
uint8 x int8 -> int32, the kernel of the int8 graphs; ORT fp32 `MatMul`; torch fp32 `mm`), and every variant's
achieved rate (the model's floating-point operations per window, counted by `FlopCounterMode`, times ECGs/s) as a
fraction of the int8 and of the fp32 peak. With `--profile`, each ONNX Runtime variant's time per operator type (ORT's
own profiler) is reported too. Prints one JSON line.

    python benchmarks/deploy.py                                      # ViT-S and ViT-B, paper setting, batch 1 and 32
    python benchmarks/deploy.py --presets vit-s-paper --batches 32 --repeats 5 --profile
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ecg_pma import EcgPmaConfig, EcgPmaForSequenceClassification
from ecg_pma.serving.inference import compile_for_inference
from ecg_pma.serving.onnx_export import all_leads_path, export_classifier_onnx
from ecg_pma.serving.onnx_runtime import onnx_session


sys.path.insert(0, str(Path(__file__).parent))
from common import machine_info, significant  # noqa: E402
from speed import interleaved_timings, model_flops, record  # noqa: E402


VARIANTS = (
    "eager_fp32",
    "compiled_fp32",
    "ort_fp32_optimized",
    "ort_int8",
    "ort_int8_masked_graph",
    "ort_int8_unfused_masked_graph",
)
INT8_VARIANTS = ("ort_int8", "ort_int8_masked_graph", "ort_int8_unfused_masked_graph")
# (M, K, N) of the peak microbenchmark: a large square product and ViT-B's fc1 at batch 32 (32 x 264 tokens).
PEAK_SHAPES = ((2048, 2048, 2048), (8448, 768, 3072))


def matmul_session(path: Path, m: int, k: int, n: int, integer: bool):
    """An ORT session of one product `A (M, K) @ B (K, N)` with `B` a constant (pre-packed, as a layer's weight)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    generator = np.random.default_rng(0)
    if integer:  # uint8 activations x int8 weights -> int32: the int8 graphs' kernel
        weight = numpy_helper.from_array(generator.integers(-127, 128, (k, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        types = (TensorProto.UINT8, TensorProto.INT32)
    else:
        weight = numpy_helper.from_array(generator.standard_normal((k, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        types = (TensorProto.FLOAT, TensorProto.FLOAT)
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("A", types[0], [m, k])],
        [helper.make_tensor_value_info("Y", types[1], [m, n])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return onnx_session(path)


def matrix_product_peaks(repeats: int) -> dict:
    """
    Operations per second (2 * M * K * N / s, in G) of large products on this CPU, per kernel and shape, in
    interleaved rounds (median of `repeats`); the peak of each kind is its best shape.
    """
    generator = np.random.default_rng(0)
    steps = {}
    with tempfile.TemporaryDirectory() as scratch:
        for m, k, n in PEAK_SHAPES:
            shape = f"{m}x{k}x{n}"
            activations = generator.integers(0, 256, (m, k), dtype=np.uint8)
            session = matmul_session(Path(scratch) / f"int8-{shape}.onnx", m, k, n, integer=True)
            steps[("ort_int8_matmulinteger", shape)] = partial(session.run, None, {"A": activations})
            floats = generator.standard_normal((m, k), dtype=np.float32)
            session = matmul_session(Path(scratch) / f"fp32-{shape}.onnx", m, k, n, integer=False)
            steps[("ort_fp32_matmul", shape)] = partial(session.run, None, {"A": floats})
            a, b = torch.from_numpy(floats), torch.randn(k, n)
            steps[("torch_fp32_mm", shape)] = partial(torch.mm, a, b)
        seconds = {key: [] for key in steps}
        for step in steps.values():
            step()  # warm-up (weight pre-packing)
        for round_index in range(repeats):
            keys = list(steps)
            shift = round_index % len(keys)
            for key in keys[shift:] + keys[:shift]:
                start = time.perf_counter()
                steps[key]()
                seconds[key].append(time.perf_counter() - start)
    rates = {}
    for (kernel, shape), times in seconds.items():
        m, k, n = (int(size) for size in shape.split("x"))
        rates.setdefault(kernel, {})[shape] = significant(2 * m * k * n / statistics.median(times) / 1e9)
    return {
        "gops_per_s": rates,
        "int8_peak_gops": max(rates["ort_int8_matmulinteger"].values()),
        "fp32_peak_gflops": max(max(rates["ort_fp32_matmul"].values()), max(rates["torch_fp32_mm"].values())),
    }


def flops_per_window(model) -> int:
    """The classifier's floating-point operations for one window (products and attention; eager attention counted)."""
    model.set_attn_implementation("eager")
    signals = torch.zeros(1, model.config.num_leads, model.config.signal_length)
    with torch.inference_mode():
        flops = model_flops(lambda: model(signals))
    model.set_attn_implementation("sdpa")
    return flops


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
        inputs = onnx_inputs(signals, masked_graph="lead_mask" in [i.name for i in session.get_inputs()])
        for _ in range(calls + 1):  # the first call warms up and is left out
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_call = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_call[event["args"]["op_name"]].append(event["dur"])
    # drop the warm-up call: its events come first for every operator
    durations = {op: sum(values[len(values) // (calls + 1) :]) for op, values in per_call.items()}
    total = sum(durations.values())
    return {op: round(time / total, 3) for op, time in sorted(durations.items(), key=lambda item: -item[1])}


def onnx_inputs(signals: torch.Tensor, masked_graph: bool) -> dict:
    """An exported graph's inputs for complete 12-lead windows: the masked graph with every lead present."""
    if masked_graph:
        return {"signals": signals.numpy(), "lead_mask": np.ones(signals.shape[:2], dtype=bool)}
    return {"signals": signals.numpy()}


def classifier_variants(model, scratch: Path, signals: torch.Tensor, compile: bool) -> tuple[dict, dict]:
    """The callables to time on `signals`, and the ONNX files they run."""
    export_classifier_onnx(model, scratch / "model.onnx", optimize=True)
    export_classifier_onnx(model, scratch / "model-int8.onnx", optimize=True, quantize="int8")
    # the int8 file of the release before the all-leads graph and fused attention, for the same-run comparison
    export_classifier_onnx(model, scratch / "unfused-int8.onnx", optimize=True, quantize="int8", fused_attention=False)
    files = {
        "ort_fp32_optimized": all_leads_path(scratch / "model.onnx"),
        "ort_int8": all_leads_path(scratch / "model-int8.onnx"),
        "ort_int8_masked_graph": scratch / "model-int8.onnx",
        "ort_int8_unfused_masked_graph": scratch / "unfused-int8.onnx",
    }
    model.set_attn_implementation("sdpa")  # the export switched it to eager attention
    variants = {"eager_fp32": partial(model, signals)}
    if compile:
        variants["compiled_fp32"] = partial(compile_for_inference(model), signals)
    for name, path in files.items():
        inputs = onnx_inputs(signals, masked_graph="masked_graph" in name)
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
        if (preset, batch, "ort_int8_masked_graph") in table:
            entry["all_leads_vs_masked_graph_int8"] = round(
                table[preset, batch, "ort_int8"] / table[preset, batch, "ort_int8_masked_graph"], 2
            )
            entry["int8_vs_unfused_masked_graph_int8"] = round(
                table[preset, batch, "ort_int8"] / table[preset, batch, "ort_int8_unfused_masked_graph"], 2
            )
        entries.append(entry)
    return entries


def limit_fractions(results: list[dict], peaks: dict) -> list[dict]:
    """Every variant's achieved rate (GOP/s of the model's operations) as a fraction of the int8 and fp32 peaks."""
    return [
        {
            "preset": r["preset"],
            "batch": r["batch"],
            "variant": r["variant"],
            "achieved_gops": r["achieved_gops"],
            "fraction_of_int8_peak": significant(r["achieved_gops"] / peaks["int8_peak_gops"], 3),
            "fraction_of_fp32_peak": significant(r["achieved_gops"] / peaks["fp32_peak_gflops"], 3),
            "fraction_of_its_own_peak": significant(
                r["achieved_gops"]
                / (peaks["int8_peak_gops"] if r["variant"] in INT8_VARIANTS else peaks["fp32_peak_gflops"]),
                3,
            ),
        }
        for r in results
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["vit-s-paper", "vit-b-paper"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-labels", type=int, default=6)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant (tens of seconds)")
    parser.add_argument("--profile", action="store_true", help="time per operator type of the ONNX Runtime variants")
    parser.add_argument("--peak-repeats", type=int, default=5, help="rounds of the matrix-product peak benchmark")
    args = parser.parse_args()
    torch.manual_seed(0)
    results, profiles = [], []
    device = torch.device("cpu")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    peaks = matrix_product_peaks(args.peak_repeats)
    print(json.dumps({"matrix_product_peaks": peaks}), file=sys.stderr, flush=True)
    for preset in args.presets:
        config = EcgPmaConfig.from_preset(preset, num_labels=args.num_labels, aggregation="pma")
        model = EcgPmaForSequenceClassification(config).eval()
        window_flops = flops_per_window(model)
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
                    "achieved_gops": significant(window_flops * batch / timing["seconds"] / 1e9),
                    "flops_per_window": window_flops, "peak_memory_mb": timing["peak_memory_mb"],
                    "onnx_file_mb": file_mb.get(name),
                })  # fmt: skip
    print(
        json.dumps(
            {
                "benchmark": "deploy",
                **machine_info(),
                "note": "random weights; encoder + PMA gate + linear head; the same complete 12-lead input for every "
                "variant; ORT variants on the all-leads graph except ort_int8_masked_graph",
                "load_average": {"before": load_before, "after": Path("/proc/loadavg").read_text().split()[:3]},
                "matrix_product_peaks": peaks,
                "results": results,
                "speedups": speedups(results),
                "limit": limit_fractions(results, peaks),
                "operator_profiles": profiles,
            }
        )
    )


if __name__ == "__main__":
    main()
