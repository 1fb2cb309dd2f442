"""
CPU deployment speed of the classifier (encoder + PMA gate + head) on the same complete 12-lead input: PyTorch eager
fp32 (SDPA), PyTorch compiled (`predict --compile`), ONNX Runtime fp32 with its graph optimizations and fused
attention (`export-onnx --optimize`) and ONNX Runtime int8 (`export-onnx --optimize --quantize int8`), both on the
all-leads graph the backend runs for complete records, and int8 on the masked graph (`model-int8.onnx` with an
all-true `lead_mask`), and int8 as exported before this release (`ort_int8_unfused_masked_graph`: the masked graph
without fused attention). ECGs/s in interleaved rounds (median of `--repeats`), as `speed.py` measures them, each
ORT variant timed as the backend runs it (`onnx_session`: ORT's memory arena on; ONNX Runtime on as many threads as
PyTorch), and one call's peak memory, measured for ORT on a session without the arena (as PyTorch frees memory).

The limit row: the CPU's instruction peak, the ceiling (`cpu_peak.c`, built with the system's C compiler: AVX-512 VNNI
`vpdpbusd` and fp32 FMA throughput on every core; where it cannot run, the best kernel below is the ceiling and the
report says so), and the best rate of the product kernels on a 2048^3 product and on the model's own product shapes
at the largest batch (ORT `MatMulInteger`, uint8 x int8 -> int32; ORT `DynamicQuantizeMatMul`, the int8 graphs'
linear layers; ORT fp32 `MatMul`; torch fp32 `mm`), all measured in the same run; every variant's achieved rate (the
model's floating-point operations per window, counted by `FlopCounterMode`, times ECGs/s) as a fraction of each.
With `--profile`, each ONNX Runtime variant's time per operator type (ORT's
own profiler) is reported too. Prints one JSON line.

    python benchmarks/deploy.py                                      # ViT-S and ViT-B, paper setting, batch 1 and 32
    python benchmarks/deploy.py --presets vit-s-paper --batches 32 --repeats 5 --profile
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import statistics
import subprocess
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
from speed import interleaved_timings, model_flops, peak_memory, record  # noqa: E402


VARIANTS = (
    "eager_fp32",
    "compiled_fp32",
    "ort_fp32_optimized",
    "ort_int8",
    "ort_int8_masked_graph",
    "ort_int8_unfused_masked_graph",
)
INT8_VARIANTS = ("ort_int8", "ort_int8_masked_graph", "ort_int8_unfused_masked_graph")
# A large square product, timed beside the model's own products (see `product_shapes`).
SQUARE_SHAPE = (2048, 2048, 2048)
CPU_PEAK_SOURCE = Path(__file__).with_name("cpu_peak.c")


def product_shapes(config: EcgPmaConfig, batch: int) -> list[tuple[int, int, int]]:
    """
    `(M, K, N)` of the encoder's products with a weight at `batch` windows (`M` = windows x tokens): the packed q/k/v
    projection, attention's output projection, fc1 and fc2.
    """
    tokens = batch * config.num_leads * (config.num_patches + 2)  # each lead's patches, plus its two extra tokens
    hidden, intermediate = config.hidden_size, config.intermediate_size
    return [
        (tokens, hidden, 3 * hidden),
        (tokens, hidden, hidden),
        (tokens, hidden, intermediate),
        (tokens, intermediate, hidden),
    ]


def matmul_session(path: Path, m: int, k: int, n: int, kernel: str):
    """
    An ORT session of one product `A (M, K) @ B (K, N)` with `B` a constant (pre-packed, as a layer's weight):
    `kernel` is `MatMulInteger` (uint8 x int8 -> int32), `DynamicQuantizeMatMul` (fp32 in, quantized to uint8 on the
    fly, int8 weight with per-column scales, fp32 out: the int8 graphs' linear layers) or `MatMul` (fp32).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    generator = np.random.default_rng(0)
    initializers = []
    if kernel == "MatMul":
        initializers.append(numpy_helper.from_array(generator.standard_normal((k, n), dtype=np.float32), "B"))
        node, types = helper.make_node("MatMul", ["A", "B"], ["Y"]), (TensorProto.FLOAT, TensorProto.FLOAT)
    else:
        initializers.append(numpy_helper.from_array(generator.integers(-127, 128, (k, n), dtype=np.int8), "B"))
        if kernel == "MatMulInteger":
            node, types = helper.make_node("MatMulInteger", ["A", "B"], ["Y"]), (TensorProto.UINT8, TensorProto.INT32)
        else:
            initializers.append(numpy_helper.from_array(np.full(n, 0.01, dtype=np.float32), "scale"))
            initializers.append(numpy_helper.from_array(np.zeros(n, dtype=np.int8), "zero_point"))
            node = helper.make_node(
                "DynamicQuantizeMatMul", ["A", "B", "scale", "zero_point"], ["Y"], domain="com.microsoft"
            )
            types = (TensorProto.FLOAT, TensorProto.FLOAT)
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("A", types[0], [m, k])],
        [helper.make_tensor_value_info("Y", types[1], [m, n])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return onnx_session(path)


def kernel_rates(shapes: list[tuple[int, int, int]], repeats: int) -> dict[str, dict[str, float]]:
    """
    Operations per second (2 * M * K * N / s, in G) of each product kernel on each shape, in interleaved rounds
    (median of `repeats`): ORT `MatMulInteger`, ORT `DynamicQuantizeMatMul`, ORT fp32 `MatMul`, torch fp32 `mm`.
    """
    generator = np.random.default_rng(0)
    steps = {}
    with tempfile.TemporaryDirectory() as scratch:
        for m, k, n in shapes:
            shape = f"{m}x{k}x{n}"
            floats = generator.standard_normal((m, k), dtype=np.float32)
            inputs = {
                "MatMulInteger": generator.integers(0, 256, (m, k), dtype=np.uint8),
                "DynamicQuantizeMatMul": floats,
                "MatMul": floats,
            }
            for kernel, activations in inputs.items():
                session = matmul_session(Path(scratch) / f"{kernel}-{shape}.onnx", m, k, n, kernel)
                steps[(f"ort_{kernel}", shape)] = partial(session.run, None, {"A": activations})
            steps[("torch_mm", shape)] = partial(torch.mm, torch.from_numpy(floats), torch.randn(k, n))
        seconds = median_seconds_rotated(steps, repeats)
    rates = {}
    for (kernel, shape), median in seconds.items():
        m, k, n = (int(size) for size in shape.split("x"))
        rates.setdefault(kernel, {})[shape] = significant(2 * m * k * n / median / 1e9)
    return rates


def median_seconds_rotated(steps: dict, repeats: int) -> dict:
    """Each step warmed up once (weight pre-packing), then `repeats` rounds in a rotated order; median seconds."""
    seconds = {key: [] for key in steps}
    for step in steps.values():
        step()
    keys = list(steps)
    for round_index in range(repeats):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            steps[key]()
            seconds[key].append(time.perf_counter() - start)
    return {key: statistics.median(times) for key, times in seconds.items()}


def instruction_peaks() -> dict:
    """
    The CPU's instruction peak (`cpu_peak.c`: AVX-512 VNNI `vpdpbusd` and fp32 FMA throughput in registers, every
    core, and the clock the cores ran at), compiled with the system's C compiler; `{"skipped": why}` where there is
    no compiler or no AVX-512 VNNI, or where AMX (which the int8 kernels may use) makes VNNI no ceiling.
    """
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    compiler = shutil.which("cc") or shutil.which("gcc")
    if "amx_int8" in flags:  # ORT's int8 kernels may run on AMX tiles, faster than any VNNI instruction stream
        return {"skipped": "AMX: the int8 kernels may use AMX tiles, whose peak cpu_peak.c does not measure"}
    if "avx512_vnni" not in flags or compiler is None:
        vnni = "avx512_vnni" in flags
        return {"skipped": f"needs a C compiler (found: {compiler}) and AVX-512 VNNI (this CPU has it: {vnni})"}
    with tempfile.TemporaryDirectory() as scratch:
        binary = Path(scratch) / "cpu_peak"
        build = [compiler, "-O2", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vnni", str(CPU_PEAK_SOURCE)]
        subprocess.run([*build, "-o", str(binary)], check=True, capture_output=True)
        threads = str(torch.get_num_threads())  # as many cores as the backends use
        run = subprocess.run(
            [str(binary)], check=True, capture_output=True, text=True, env={"OMP_NUM_THREADS": threads}
        )
    return json.loads(run.stdout)


def matrix_product_peaks(configs: list[EcgPmaConfig], batch: int, repeats: int) -> dict:
    """
    The limit row's references: the instruction peak (the ceiling: no product kernel can beat it) and the best rate
    of ORT's and torch's product kernels over a large square product and the model's own product shapes at `batch`.
    Without the instruction peak (no VNNI, no compiler) the ceiling is the best kernel rate, and says so.
    """
    shapes = list(
        dict.fromkeys([SQUARE_SHAPE, *(shape for config in configs for shape in product_shapes(config, batch))])
    )
    rates = kernel_rates(shapes, repeats)
    best_int8 = max(max(rates["ort_MatMulInteger"].values()), max(rates["ort_DynamicQuantizeMatMul"].values()))
    best_fp32 = max(max(rates["ort_MatMul"].values()), max(rates["torch_mm"].values()))
    instructions = instruction_peaks()
    measured = "skipped" not in instructions
    return {
        "instruction_peak": instructions,
        "kernel_gops_per_s": rates,
        "int8_best_kernel_gops": best_int8,
        "fp32_best_kernel_gflops": best_fp32,
        "int8_ceiling_gops": instructions["int8_vnni_gops"] if measured else best_int8,
        "fp32_ceiling_gflops": instructions["fp32_fma_gflops"] if measured else best_fp32,
        "ceiling_source": "instruction peak (cpu_peak.c)"
        if measured
        else "best measured kernel (no instruction peak)",
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
        # timed as the backend runs it: ORT's memory arena on (`onnx_session`'s default)
        variants[name] = partial(onnx_session(path).run, None, inputs)
    return variants, files


def onnx_peak_memory(path: Path, signals: torch.Tensor) -> float:
    """
    One call's peak memory (MiB) on a session without ORT's memory arena (freed buffers go back to the system, as
    PyTorch's do), so that it is measured as for PyTorch; the arena's session would show no growth once warm.
    """
    session = onnx_session(path, memory_arena=False)
    inputs = onnx_inputs(
        signals, masked_graph="lead_mask" in [graph_input.name for graph_input in session.get_inputs()]
    )
    session.run(None, inputs)  # warm-up: the weights' pre-packing is not a call's memory
    return peak_memory(partial(session.run, None, inputs), torch.device("cpu"))


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
    """
    Every variant's achieved rate (GOP/s of the model's operations) as a fraction of the ceilings (int8 and fp32
    instruction peaks) and of the best measured product kernels; `fraction_of_its_own_ceiling` takes the int8
    ceiling for the int8 variants and the fp32 one for the others.
    """
    rows = []
    for r in results:
        int8 = r["variant"] in INT8_VARIANTS
        rows.append({
            "preset": r["preset"], "batch": r["batch"], "variant": r["variant"], "achieved_gops": r["achieved_gops"],
            "fraction_of_int8_ceiling": significant(r["achieved_gops"] / peaks["int8_ceiling_gops"], 3),
            "fraction_of_fp32_ceiling": significant(r["achieved_gops"] / peaks["fp32_ceiling_gflops"], 3),
            "fraction_of_its_own_ceiling": significant(
                r["achieved_gops"] / peaks["int8_ceiling_gops" if int8 else "fp32_ceiling_gflops"], 3
            ),
            "fraction_of_its_own_best_kernel": significant(
                r["achieved_gops"] / peaks["int8_best_kernel_gops" if int8 else "fp32_best_kernel_gflops"], 3
            ),
        })  # fmt: skip
    return rows


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
    configs = {
        preset: EcgPmaConfig.from_preset(preset, num_labels=args.num_labels, aggregation="pma")
        for preset in args.presets
    }
    peaks = matrix_product_peaks(list(configs.values()), max(args.batches), args.peak_repeats)
    print(json.dumps({"matrix_product_peaks": peaks}), file=sys.stderr, flush=True)
    for preset, config in configs.items():
        model = EcgPmaForSequenceClassification(config).eval()
        window_flops = flops_per_window(model)
        for batch in args.batches:
            signals = torch.randn(batch, config.num_leads, config.signal_length)
            with tempfile.TemporaryDirectory() as scratch, torch.inference_mode():
                variants, files = classifier_variants(model, Path(scratch), signals, not args.no_compile)
                timings = interleaved_timings(variants, args.repeats, device)
                for name, path in files.items():  # measured apart: the timed sessions keep ORT's arena
                    timings[name]["peak_memory_mb"] = onnx_peak_memory(path, signals)
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
