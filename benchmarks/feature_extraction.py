"""
Feature extraction throughput (records/s): WFDB read + resample + band-pass + normalise, through
`load_wfdb_folder` + `extract_features` (`datasets.map`), single process vs `num_proc=2`. Corpus scale: a synthetic
CODE-15%-layout corpus of `--corpus-records` exams through what `ecg-pma pretrain` runs (`load_code15(streaming=True)`
+ `prepare_streamed_records`: HDF5 read, padding stripped, checked, resampled 400->100 Hz into model-rate Arrow shards),
single process vs `num_proc=2`, against the limit: the raw `h5py` read + strip + `resample_poly` of the same exams in a
plain loop, one core (and the same loop in two processes, which says what scaling this machine allows). Prints one
JSON line.

    python benchmarks/feature_extraction.py [--data ../shared/data/physionet2021] [--repeat 5] [--corpus-records 2000]
        [--corpus-repeats 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import datasets
import h5py
from scipy import signal as scipy_signal

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.data import extract_features, load_code15, load_wfdb_folder, prepare_records
from ecg_pma.data.code15 import CODE_SAMPLING_RATE, READ_BATCH, strip_padding
from ecg_pma.data.crops import prepare_streamed_records
from ecg_pma.feature_extraction_ecg_pma import polyphase_filter


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, machine_info  # noqa: E402
from corpus_memory import write_corpus  # noqa: E402


CODE15_EXAMS = 345_779  # exams in the real CODE-15% (exams.csv of Zenodo 4916206)


def raw_limit(files: list[Path], model_rate: float, design_once: bool) -> tuple[int, float]:
    """
    What one core can do at best: the exams of `files` read from HDF5 in batches, the padding stripped and each
    resampled with `scipy.signal.resample_poly` in float64, in a plain loop; no checks, no Arrow. `design_once`: the
    FIR filter designed once (as the extractor now does) rather than by every call (as a plain script does).
    """
    ratio = Fraction(int(model_rate)) / Fraction(int(CODE_SAMPLING_RATE))
    up, down = ratio.numerator, ratio.denominator
    window = polyphase_filter(up, down) if design_once else ("kaiser", 5.0)
    count, start = 0, time.perf_counter()
    for path in files:
        with h5py.File(path, "r") as handle:
            tracings = handle["tracings"]
            for first in range(0, tracings.shape[0], READ_BATCH):
                for tracing in tracings[first : first + READ_BATCH]:
                    signal = strip_padding(tracing, str(path)).T.astype("float64")
                    scipy_signal.resample_poly(signal, up, down, axis=-1, window=window)
                    count += 1
    return count, time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU time of this process and of its ended children (`datasets`' `num_proc` workers, the pool below)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def corpus_row(records: int, repeats: int) -> dict:
    """
    What `ecg-pma pretrain` does with a corpus, on a synthetic CODE-15% one: `load_code15(streaming=True)` +
    `prepare_streamed_records` (HDF5 -> model-rate Arrow shards), `num_proc` 1 and 2; the earlier two-step path (raw
    Arrow cache, then `prepare_records`) for comparison; and `raw_limit`, in one process and in two at once. Each
    measured `repeats` times, interleaved, the best run of each kept: records per second of wall time, and per
    second of CPU time (all processes together), which a busy machine disturbs less.
    """
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("vit-b-paper"))
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    processes = multiprocessing.get_context("fork")  # as `datasets` starts its `num_proc` workers

    def timed(name: str, run) -> None:
        start, start_cpu = time.perf_counter(), cpu_seconds()
        count = run()
        wall[name] = max(wall.get(name, 0.0), count / (time.perf_counter() - start))
        cpu[name] = max(cpu.get(name, 0.0), count / (cpu_seconds() - start_cpu))

    def limit_in_two_processes(files: list[Path]) -> int:
        with processes.Pool(2) as pool:  # half the files each
            halves = [(files[half::2], extractor.sampling_rate, False) for half in (0, 1)]
            return sum(count for count, _ in pool.starmap(raw_limit, halves))

    def direct(num_proc: int, cache: str) -> int:
        stream = load_code15(root, streaming=True, validation_fraction=0, test_fraction=0)["train"]
        return len(prepare_streamed_records(stream, extractor, num_proc=num_proc, cache_dir=cache)[0])

    def two_step(cache: str) -> int:
        raw = load_code15(root, cache_dir=cache, validation_fraction=0, test_fraction=0)
        return len(prepare_records(raw["train"], extractor))

    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir) / "corpus"
        write_corpus(root, records)
        files = sorted(root.glob("exams_part*.hdf5"))
        for repeat in range(repeats):
            timed("limit", lambda: raw_limit(files, extractor.sampling_rate, design_once=False)[0])
            timed("limit_designed_once", lambda: raw_limit(files, extractor.sampling_rate, design_once=True)[0])
            timed("limit_two_processes", lambda: limit_in_two_processes(files))
            for num_proc in (1, 2):
                cache = f"{workdir}/direct{repeat}-{num_proc}"
                timed(f"num_proc_{num_proc}", lambda num_proc=num_proc, cache=cache: direct(num_proc, cache))
            timed("two_step", lambda cache=f"{workdir}/raw{repeat}": two_step(cache))
    return {
        "steps": "CODE-15% HDF5 read + padding strip + checks + resample 400->100 Hz -> model-rate Arrow shards",
        "records": records,
        "repeats": repeats,
        "records_per_s_single": round(wall["num_proc_1"], 1),
        "records_per_s_num_proc_2": round(wall["num_proc_2"], 1),
        "records_per_s_per_process_num_proc_2": round(wall["num_proc_2"] / 2, 1),
        "speedup_num_proc_2": round(wall["num_proc_2"] / wall["num_proc_1"], 2),
        # the real CODE-15% at these rates (wall clock, this machine; more processes scale as the limit row allows)
        "projected_hours_code15": {
            "exams": CODE15_EXAMS,
            **{f"num_proc_{n}": round(CODE15_EXAMS / wall[f"num_proc_{n}"] / 3600, 2) for n in (1, 2)},
        },
        "limit_records_per_s_one_core": round(wall["limit"], 1),
        "limit_records_per_s_two_processes": round(wall["limit_two_processes"], 1),
        "limit_speedup_two_processes": round(wall["limit_two_processes"] / wall["limit"], 2),
        "single_vs_limit": round(wall["num_proc_1"] / wall["limit"], 2),
        "num_proc_2_per_process_vs_limit": round(wall["num_proc_2"] / 2 / wall["limit"], 2),
        "records_per_s_two_step_raw_cache": round(wall["two_step"], 1),
        "records_per_cpu_s": {name: round(value, 1) for name, value in cpu.items()},
        "cpu_single_vs_limit": round(cpu["num_proc_1"] / cpu["limit"], 2),
        "cpu_single_vs_limit_filter_designed_once": round(cpu["num_proc_1"] / cpu["limit_designed_once"], 2),
        "cpu_num_proc_2_vs_limit": round(cpu["num_proc_2"] / cpu["limit"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    parser.add_argument("--repeat", type=int, default=5, help="the folder's records are read this many times over")
    parser.add_argument("--corpus-records", type=int, default=2000, help="exams of the synthetic corpus row")
    parser.add_argument("--corpus-repeats", type=int, default=5, help="interleaved runs of the corpus row; best kept")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("vit-s-st-mem"), do_filter=True)
    timings = {}
    for num_proc in (1, 2):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            records = datasets.concatenate_datasets(
                [
                    split
                    for _ in range(args.repeat)
                    for split in load_wfdb_folder(args.data, cache_dir=f"{cache}/{_}", num_proc=num_proc).values()
                ]
            )
            windows = extract_features(records, extractor, num_proc=num_proc if num_proc > 1 else None)
            timings[num_proc] = (len(records), time.perf_counter() - start, len(windows))
    print(
        json.dumps(
            {
                "benchmark": "feature_extraction",
                **machine_info(),
                "steps": "WFDB read (Arrow cache) + resample 500->250 Hz + 0.67-40 Hz band-pass + z-score",
                "records": timings[1][0],
                "records_per_s_single": round(timings[1][0] / timings[1][1], 1),
                "records_per_s_num_proc_2": round(timings[2][0] / timings[2][1], 1),
                "speedup_num_proc_2": round(timings[1][1] / timings[2][1], 2),
                "corpus": corpus_row(args.corpus_records, args.corpus_repeats),
            }
        )
    )


if __name__ == "__main__":
    main()
