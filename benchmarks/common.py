"""What the benchmarks share: the machine they report beside their numbers, and the real records they run on."""

from __future__ import annotations

import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import torch


# The 40 real PhysioNet/CinC 2021 challenge records in ../shared (beside the project root).
CHALLENGE_RECORDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2021"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def significant(value: float | None, digits: int = 4) -> float | None:
    """`value` to `digits` significant digits: small figures (a tiny model's TFLOP/s) never round to 0."""
    if value is None or value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def challenge_windows(
    extractor, splits: tuple[str, ...], data: str | Path = CHALLENGE_RECORDS
) -> dict[str, datasets.Dataset]:
    """Model-ready windows (`signals`, `labels`, `record_id`) of the challenge records, per split, read into memory."""
    from ecg_pma.data import extract_features, load_physionet2021

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache_dir:
        raw = load_physionet2021(data, cache_dir=cache_dir)
        # in memory, so nothing refers to the temporary cache once it is gone
        return {
            split: extract_features(raw[split], extractor).flatten_indices(keep_in_memory=True) for split in splits
        }


def median_seconds(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Each variant called once to warm up, then `repeats` interleaved rounds (so that a change in the machine's load
    reaches every variant alike); the median seconds of a call, per variant."""
    times = {name: [] for name in variants}
    for run in variants.values():
        run()
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
