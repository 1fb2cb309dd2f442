"""
Encoder inference and pre-training-step throughput: ecg_pma against the straightforward reference implementation
(`reference_impl.py`: per-lead loops, manual attention) at the same precision, plus SDPA vs eager attention, fp32 vs
bf16 autocast, and torch.compile. Prints one JSON line: every measurement and the speed-ups measured in this run.

    python benchmarks/speed.py                                   # a grid sized for a 2-core CPU
    python benchmarks/speed.py --presets vit-s-paper vit-b-paper vit-s-st-mem vit-b-st-mem --batches 1 8 32 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_info  # noqa: E402
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
        self.megabytes = round((self.peak - self.start) / 2**20, 1)


def timed(step, repeats: int, warmup: int = 1) -> tuple[float, float]:
    for _ in range(warmup):
        step()
    with PeakMemory() as memory:
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        seconds = (time.perf_counter() - start) / repeats
    return seconds, memory.megabytes


def record(results: list, measurement: dict) -> None:
    """Keeps a measurement, and shows it on stderr at once: a long grid cut short still leaves its numbers."""
    results.append(measurement)
    print(json.dumps(measurement), file=sys.stderr, flush=True)


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["vit-s-paper", "vit-b-paper"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    parser.add_argument("--skip-pretraining", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)

    results = []
    for preset in args.presets:
        config = EcgPmaConfig.from_preset(preset)
        model = EcgPmaForPreTraining(config)
        encoder = model.ecg_pma.eval()
        for batch in args.batches:
            signals = torch.randn(batch, config.num_leads, config.signal_length)
            for dtype in args.dtypes:
                variants = {
                    "ours_sdpa": lambda: encoder(signals),
                    "ours_eager": lambda: encoder.set_attn_implementation("eager") or encoder(signals),
                    "reference": lambda: reference_encoder(encoder, signals),
                }
                if args.compile:
                    compiled = torch.compile(encoder)
                    variants["ours_sdpa_compiled"] = lambda: compiled(signals)
                for name, forward in variants.items():
                    encoder.set_attn_implementation("sdpa")
                    with torch.inference_mode(), autocast(dtype):
                        seconds, megabytes = timed(forward, args.repeats)
                    record(results,
                        {"task": "encoder_inference", "preset": preset, "batch": batch, "dtype": dtype, "variant": name,
                         "ecgs_per_s": round(batch / seconds, 2), "peak_rss_mb": megabytes}
                    )  # fmt: skip
            if args.skip_pretraining:
                continue
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            noise = torch.rand(batch, config.num_leads, config.num_patches)
            for dtype in args.dtypes:
                for name, loss_fn in (
                    ("ours_sdpa", lambda: model(signals, noise=noise).loss),
                    ("reference", lambda: reference_pretraining_loss(model, signals, noise)),
                ):

                    def step():
                        with autocast(dtype):
                            loss = loss_fn()
                        loss.backward()
                        optimizer.step()
                        optimizer.zero_grad()

                    model.train()
                    seconds, megabytes = timed(step, args.repeats)
                    record(results,
                        {"task": "pretraining_step", "preset": preset, "batch": batch, "dtype": dtype, "variant": name,
                         "ecgs_per_s": round(batch / seconds, 2), "peak_rss_mb": megabytes}
                    )  # fmt: skip

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
                 "vs_reference": round(r["ecgs_per_s"] / speed(*key, "reference"), 2)}  # fmt: skip
        if r["dtype"] == "bf16" and speed(key[0], key[1], key[2], "fp32", "ours_sdpa"):
            entry["bf16_vs_fp32"] = round(r["ecgs_per_s"] / speed(key[0], key[1], key[2], "fp32", "ours_sdpa"), 2)
        if speed(*key, "ours_eager"):
            entry["sdpa_vs_eager"] = round(r["ecgs_per_s"] / speed(*key, "ours_eager"), 2)
        if speed(*key, "ours_sdpa_compiled"):
            entry["compiled_vs_eager_mode"] = round(speed(*key, "ours_sdpa_compiled") / r["ecgs_per_s"], 2)
        speedups.append(entry)
    print(json.dumps({"benchmark": "speed", **machine_info(), "results": results, "speedups": speedups}))


if __name__ == "__main__":
    main()
