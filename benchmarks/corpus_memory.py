"""
Private resident memory while loading and iterating a corpus, at two corpus sizes: a synthetic CODE-15%-layout corpus
(`exams.csv` + `exams_part*.hdf5`, 400 Hz, zero-padded to 4,096 samples) of a few thousand exams, read into the Arrow
cache (`load_code15`), resampled once to the model rate (`prepare_records`, memory-mapped) and iterated one random
crop per record through a DataLoader; then the same corpus streamed from the HDF5 files (`streaming=True`, shuffle
buffer). Bounded memory = the peak does not grow with the corpus. Prints one JSON line.

    python benchmarks/corpus_memory.py [--sizes 1000 3000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import datasets
import h5py
import numpy as np
import pandas as pd
import torch
from common import machine_info
from torch.utils.data import DataLoader

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.data import build_training_splits, load_code15, stream_training_records
from ecg_pma.data.code15 import CODE_LABELS
from ecg_pma.data.crops import fix_malloc_mmap_threshold
from ecg_pma.training import EcgDataCollator


EXAMS_PER_FILE = 1000


def resident_mb() -> float:
    """
    The process's private resident memory now (`RssAnon`), in MB: what it holds itself. Pages of the memory-mapped
    Arrow cache it has read count in `VmRSS` too, but they are the kernel's file cache, shared and reclaimable.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def write_corpus(root: Path, exams: int, seed: int = 0) -> None:
    """`exams` 10 s exams, written file by file in batches (never the corpus in memory)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for part, first in enumerate(range(0, exams, EXAMS_PER_FILE)):
        count = min(EXAMS_PER_FILE, exams - first)
        with h5py.File(root / f"exams_part{part}.hdf5", "w") as handle:
            tracings = handle.create_dataset("tracings", shape=(count, 4096, 12), dtype="float32")
            handle.create_dataset("exam_id", data=np.arange(first, first + count, dtype=np.int64))
            for start in range(0, count, 100):
                batch = rng.normal(0, 0.3, size=(min(100, count - start), 4000, 12)).astype(np.float32)
                padded = np.zeros((len(batch), 4096, 12), np.float32)
                padded[:, 48:4048] = batch
                tracings[start : start + len(batch)] = padded
        for exam_id in range(first, first + count):
            rows.append(
                {"exam_id": exam_id, "age": 50, "is_male": True, **dict.fromkeys(CODE_LABELS, False)}
                | {"patient_id": exam_id // 2, "trace_file": f"exams_part{part}.hdf5"}
            )
    pd.DataFrame(rows).to_csv(root / "exams.csv", index=False)


def iterate(dataset, config, peak: list[float]) -> int:
    """Every row through a DataLoader (batch 32), sampling resident memory after each batch; returns the rows."""
    loader = DataLoader(dataset, batch_size=32, collate_fn=EcgDataCollator(config=config, with_labels=False))
    rows = 0
    for batch in loader:
        rows += len(batch["signals"])
        peak.append(resident_mb())
    return rows


def measure(exams: int, config, extractor, workdir: Path) -> dict:
    root = workdir / f"corpus{exams}"
    write_corpus(root, exams)
    baseline = resident_mb()
    start = time.perf_counter()
    raw = load_code15(root, cache_dir=workdir / f"cache{exams}", validation_fraction=0, test_fraction=0)
    after_load = resident_mb()
    train = build_training_splits(raw, extractor)[0]["train"]
    after_prepare = resident_mb()
    peak: list[float] = []
    cached_rows = iterate(train, config, peak)
    cached = {
        "rows": cached_rows,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_growth_load_mb": round(after_load - baseline, 1),
        "rss_growth_prepare_mb": round(after_prepare - baseline, 1),
        "rss_growth_peak_iterating_mb": round(max(peak) - baseline, 1),
    }
    fix_malloc_mmap_threshold()  # as `pretrain --streaming` does
    baseline = resident_mb()
    streamed = load_code15(root, streaming=True, validation_fraction=0, test_fraction=0)["train"]
    peak = []
    stream = stream_training_records(streamed, extractor, shuffle_buffer=256).with_format("torch")
    streamed_rows = iterate(stream, config, peak)
    return {
        "cached": cached,
        "streamed": {"rows": streamed_rows, "rss_growth_peak_iterating_mb": round(max(peak) - baseline, 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    args = parser.parse_args()
    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    config = EcgPmaConfig.from_preset("vit-b-paper")
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    report = {"benchmark": "corpus_memory", **machine_info(), "corpora": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for exams in args.sizes:
            report["corpora"][str(exams)] = measure(exams, config, extractor, Path(workdir))
    small, large = (report["corpora"][str(size)] for size in (min(args.sizes), max(args.sizes)))
    report["peak_growth_ratio_large_vs_small"] = {
        mode: round(
            large[mode]["rss_growth_peak_iterating_mb"] / max(small[mode]["rss_growth_peak_iterating_mb"], 1.0), 2
        )
        for mode in ("cached", "streamed")
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
