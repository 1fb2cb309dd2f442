"""
Private resident memory while loading and iterating a corpus, at several corpus sizes: a synthetic CODE-15%-layout
corpus (`exams.csv` + `exams_part*.hdf5`, 400 Hz, zero-padded to 4,096 samples) written as two halves, read straight
into model-rate Arrow shards (`prepare_streamed_records`, what `pretrain` does) and iterated one random crop per record
through a DataLoader, memory-mapped; then the same two halves streamed from the HDF5 files as a mixture of two corpora
through the command's own pipeline (`load_streaming_training_data`: record-id prefixes, interleaving, shuffle buffer,
crops; what `pretrain --streaming --data code15:A --data code15:B` does) at each `--shuffle-buffers` size. Each
measurement in a fresh process. Bounded memory = the peak does not grow with the corpus, and the streamed one follows
the shuffle buffer. Prints one JSON line.

    python benchmarks/corpus_memory.py [--sizes 2000 10000 40000] [--shuffle-buffers 50 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
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
from ecg_pma.cli import build_parser
from ecg_pma.commands.data_arguments import load_streaming_training_data
from ecg_pma.data import EcgTrainingDataset, load_code15
from ecg_pma.data.code15 import CODE_LABELS
from ecg_pma.data.crops import fix_malloc_mmap_threshold, prepare_streamed_records
from ecg_pma.training import EcgDataCollator


# Exams per HDF5 file. Streaming reads up to ten files (shards) at once to fill its shuffle buffer (`datasets`'
# `max_buffer_input_shards`), each holding one read batch: a real corpus (CODE-15%: 18 files cut into 345 shards of
# 1,000 exams) is always past ten shards, so the synthetic one is written in small files to be there too.
EXAMS_PER_FILE = 100


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


def measure(mode: str, root: Path, cache: Path, shuffle_buffer: int) -> dict:
    """
    One mode on one corpus (its halves `root/a`, `root/b`), in this (fresh) process: `cached` reads the HDF5 files
    straight into model-rate Arrow shards (`prepare_streamed_records`, as `pretrain` does) and iterates one random crop
    per record, memory-mapped; `streamed` crops the records as they are read, through `pretrain --streaming`'s own
    pipeline (`load_streaming_training_data`, the two halves a mixture of two corpora, `shuffle_buffer` records).
    """
    config = EcgPmaConfig.from_preset("vit-b-paper")
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    if mode == "streamed":
        fix_malloc_mmap_threshold()  # as `pretrain --streaming` does
    baseline = resident_mb()
    peak: list[float] = []
    start = time.perf_counter()
    if mode == "cached":
        parts = []
        for half in ("a", "b"):
            stream = load_code15(root / half, streaming=True, validation_fraction=0, test_fraction=0)["train"]
            rows, crop_extractor, _ = prepare_streamed_records(stream, extractor, cache_dir=cache)
            parts.append(rows)
        prepared = resident_mb()
        count = iterate(EcgTrainingDataset(datasets.concatenate_datasets(parts), crop_extractor), config, peak)
        return {
            "rows": count,
            "seconds": round(time.perf_counter() - start, 1),
            "rss_growth_prepare_mb": round(prepared - baseline, 1),
            "rss_growth_peak_iterating_mb": round(max(peak) - baseline, 1),
        }
    arguments = ["pretrain", "--data", f"code15:{root / 'a'}", "--data", f"code15:{root / 'b'}", "--streaming"]
    arguments += ["--all-splits", "--shuffle-buffer", str(shuffle_buffer), "--output-dir", str(cache / "out")]
    args = build_parser().parse_args(arguments + ["--max-steps", "1"])
    stream, _ = load_streaming_training_data(args, extractor, all_splits=True)
    # the corpus's listing (exams.csv read, each exam's metadata) before any record is streamed: it grows with the
    # corpus (~1 KB an exam), where what streaming holds does not
    setup = resident_mb()
    count = iterate(stream.with_format("torch"), config, peak)
    return {
        "rows": count,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_growth_setup_mb": round(setup - baseline, 1),
        "rss_growth_peak_iterating_mb": round(max(peak) - baseline, 1),
        "rss_growth_peak_over_setup_mb": round(max(peak) - setup, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--shuffle-buffers", type=int, nargs="+", default=[50, 1000])
    parser.add_argument("--measure", nargs=4, metavar=("MODE", "CORPUS", "CACHE", "BUFFER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    if args.measure:  # one measurement, in a fresh process started by the loop below
        mode, root, cache, buffer = args.measure
        print(json.dumps(measure(mode, Path(root), Path(cache), int(buffer))))
        return
    report = {"benchmark": "corpus_memory", **machine_info(), "corpora": {}}
    modes = ["cached", *(f"streamed_buffer_{size}" for size in args.shuffle_buffers)]
    with tempfile.TemporaryDirectory() as workdir:
        for exams in args.sizes:
            root = Path(workdir) / f"corpus{exams}"
            write_corpus(root / "a", exams // 2)
            write_corpus(root / "b", exams - exams // 2, seed=1)
            report["corpora"][str(exams)] = {}
            for mode in modes:
                kind, buffer = ("cached", 0) if mode == "cached" else ("streamed", mode.rsplit("_", 1)[1])
                # each in a fresh process: what one measurement allocated cannot shift the next one's baseline
                command = [
                    sys.executable,
                    __file__,
                    "--measure",
                    kind,
                    str(root),
                    f"{workdir}/cache{exams}",
                    str(buffer),
                ]
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                report["corpora"][str(exams)][mode] = json.loads(result.stdout.strip().splitlines()[-1])
            print(json.dumps({"corpus": exams, **report["corpora"][str(exams)]}), file=sys.stderr, flush=True)
            shutil.rmtree(root)  # the largest corpora take gigabytes
    small, large = (report["corpora"][str(size)] for size in (min(args.sizes), max(args.sizes)))
    report["peak_growth_ratio_large_vs_small"] = {
        mode: round(
            large[mode]["rss_growth_peak_iterating_mb"] / max(small[mode]["rss_growth_peak_iterating_mb"], 1.0), 2
        )
        for mode in modes
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
