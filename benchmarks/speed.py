"""
Encoder inference and pre-training-step throughput: ecg_pma against the straightforward reference implementation
(`reference_impl.py`: per-lead loops, manual attention) at the same precision, plus SDPA vs eager attention, fp32 vs
bf16 autocast, and `torch.compile` as the package runs it (`predict --compile`: Inductor with freezing;
`pretrain --torch-compile`: regional compilation). Prints one JSON line: every measurement and the speed-ups
measured in this run; each measurement also goes to stderr as soon as it is made.

Variants are timed in interleaved rounds (median of `--repeats`), so drifts of a shared machine hit all of them
alike. `first_call_s` is the first call: warm-up, and for compiled variants the compilation (shorter on a second run,
which finds Inductor's on-disk cache). `peak_memory_mb` is one call's resident-memory growth after freed memory has
been handed back to the system (CPU) or its allocator peak (GPU). `tflops_per_s` counts the matrix products and
attention of the same maths (FlopCounterMode on the reference implementation); with `--peak-tflops`, `mfu` divides
it by the device's peak. On a GPU (`--device cuda`, the default where one is present) every timing waits for the
device.

    python benchmarks/speed.py                                   # a grid sized for a 2-core CPU
    python benchmarks/speed.py --presets vit-s-paper vit-b-paper vit-s-st-mem vit-b-st-mem --batches 1 8 32 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import statistics
import sys
import threading
import time
from functools import partial
from pathlib import Path

import psutil
import torch
from accelerate.utils import compile_regions
from torch.utils.flop_counter import FlopCounterMode

from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining
from ecg_pma.serving.inference import compile_for_inference


sys.path.insert(0, str(Path(__file__).parent))
from common import machine_info, significant  # noqa: E402
from reference_impl import reference_encoder, reference_pretraining_loss  # noqa: E402


class PeakMemory:
    """Peak resident memory above the start, sampled every millisecond (CPU), or CUDA's allocator peak."""

    def __enter__(self):
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.megabytes = significant((self.peak - self.start) / 2**20)


def release_freed_memory() -> None:
    """Hands memory that was freed but kept by the C allocator back to the system (glibc), so that RSS growth
    measures what a call needs rather than what earlier calls left behind."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so that a timing covers the work and not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(step, device: torch.device) -> float:
    """
    Peak memory of one call in MiB above the start, measured apart from the timings it would disturb: resident memory
    on the CPU, the caching allocator's peak on a GPU.
    """
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return significant((torch.cuda.max_memory_allocated(device) - start) / 2**20)
    release_freed_memory()
    with PeakMemory() as memory:
        step()
    return memory.megabytes


def model_flops(step) -> int:
    """Floating-point operations of one call (matrix products and attention), counted by PyTorch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def interleaved_timings(steps: dict, repeats: int, device: torch.device) -> dict[str, dict]:
    """
    Seconds per call of each variant, the median of `repeats` rounds in which every variant runs once, in an order
    rotated each round: the variants share whatever the machine does meanwhile, so their ratios stay fair even where
    absolute timings drift (shared VMs). The first call of each variant (warm-up; for a compiled variant, the
    compilation) is timed apart as `first_call_s`.
    """
    names = list(steps)
    first_call, seconds = {}, {name: [] for name in names}
    for name in names:
        start = time.perf_counter()
        steps[name]()
        synchronize(device)
        first_call[name] = time.perf_counter() - start
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return {
        name: {
            "seconds": statistics.median(seconds[name]),
            "first_call_s": significant(first_call[name]),
            "peak_memory_mb": peak_memory(steps[name], device),
        }
        for name in names
    }


def record(results: list, measurement: dict) -> None:
    """Keeps a measurement, and shows it on stderr at once: a long grid cut short still leaves its numbers."""
    results.append(measurement)
    print(json.dumps(measurement), file=sys.stderr, flush=True)


def autocast(dtype: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["vit-s-paper", "vit-b-paper"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    parser.add_argument("--skip-pretraining", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--peak-tflops", type=float, default=None,
        help="the device's peak TFLOP/s at the measured precision (e.g. 989 for an H100 SXM in dense bf16): adds MFU",
    )  # fmt: skip
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    results = []

    def record_all(timings: dict, flops: int, **key) -> None:
        """`flops`: of one call of the same maths (counted on the reference), for achieved TFLOP/s and MFU."""
        for name, timing in timings.items():
            tflops = flops / timing["seconds"] / 1e12
            record(results, {
                **key, "variant": name, "ecgs_per_s": significant(key["batch"] / timing["seconds"]),
                "first_call_s": timing["first_call_s"], "peak_memory_mb": timing["peak_memory_mb"],
                "tflops_per_s": significant(tflops), "mfu": significant(tflops / args.peak_tflops) if args.peak_tflops else None,
            })  # fmt: skip

    for preset in args.presets:
        config = EcgPmaConfig.from_preset(preset)
        model = EcgPmaForPreTraining(config).to(device)
        encoder = model.ecg_pma.eval()
        eager_encoder = copy.deepcopy(encoder)
        eager_encoder.set_attn_implementation("eager")
        for batch in args.batches:
            signals = torch.randn(batch, config.num_leads, config.signal_length, device=device)
            # FLOPs depend on the maths, not on the precision: counted once per batch size
            with torch.inference_mode():
                inference_flops = model_flops(lambda: reference_encoder(encoder, signals))
            for dtype in args.dtypes:
                with torch.inference_mode(), autocast(dtype, device):
                    variants = {
                        "ours_sdpa": lambda: encoder(signals),
                        "ours_eager": lambda: eager_encoder(signals),
                        "reference": lambda: reference_encoder(encoder, signals),
                    }
                    if args.compile:
                        # what `ecg-pma predict --compile` runs; compiled inside autocast, as prediction does
                        variants["ours_compiled"] = partial(compile_for_inference(encoder), signals)
                    timings = interleaved_timings(variants, args.repeats, device)
                record_all(timings, inference_flops, task="encoder_inference", preset=preset, batch=batch, dtype=dtype)
            if args.skip_pretraining:
                continue
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            noise = torch.rand(batch, config.num_leads, config.num_patches, device=device)
            training_flops = model_flops(lambda: reference_pretraining_loss(model, signals, noise).backward())
            optimizer.zero_grad()
            losses = {
                "ours_sdpa": lambda: model(signals, noise=noise).loss,
                "reference": lambda: reference_pretraining_loss(model, signals, noise),
            }
            model.train()
            if args.compile:
                # what `ecg-pma pretrain --torch-compile` runs: regional compilation, weights shared with `model`
                compiled_model = compile_regions(model, backend="inductor").train()
                losses["ours_compiled"] = lambda: compiled_model(signals, noise=noise).loss
            for dtype in args.dtypes:

                def training_step(loss_fn, dtype=dtype):
                    with autocast(dtype, device):
                        loss = loss_fn()
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()

                steps = {name: partial(training_step, fn) for name, fn in losses.items()}
                timings = interleaved_timings(steps, args.repeats, device)
                record_all(timings, training_flops, task="pretraining_step", preset=preset, batch=batch, dtype=dtype)
            model.eval()

    def speed(task, preset, batch, dtype, variant):
        for r in results:
            if (r["task"], r["preset"], r["batch"], r["dtype"], r["variant"]) == (task, preset, batch, dtype, variant):
                return r["ecgs_per_s"]
        return None

    speedups = []
    for r in results:
        if r["variant"] != "ours_sdpa":
            continue
        key = (r["task"], r["preset"], r["batch"], r["dtype"])
        entry = {"task": key[0], "preset": key[1], "batch": key[2], "dtype": key[3],
                 "vs_reference": significant(r["ecgs_per_s"] / speed(*key, "reference"))}  # fmt: skip
        if r["dtype"] == "bf16" and speed(key[0], key[1], key[2], "fp32", "ours_sdpa"):
            entry["bf16_vs_fp32"] = significant(r["ecgs_per_s"] / speed(key[0], key[1], key[2], "fp32", "ours_sdpa"))
        if speed(*key, "ours_eager"):
            entry["sdpa_vs_eager"] = significant(r["ecgs_per_s"] / speed(*key, "ours_eager"))
        if speed(*key, "ours_compiled"):
            entry["compiled_vs_reference"] = significant(speed(*key, "ours_compiled") / speed(*key, "reference"))
            entry["compiled_vs_eager_mode"] = significant(speed(*key, "ours_compiled") / r["ecgs_per_s"])
        speedups.append(entry)
    print(json.dumps({"benchmark": "speed", **machine_info(), "results": results, "speedups": speedups}))


if __name__ == "__main__":
    main()
