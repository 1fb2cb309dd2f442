"""
Feature extraction throughput (records/s): WFDB read + resample + band-pass + normalise, through
`load_wfdb_folder` + `extract_features` (`datasets.map`), single process vs `num_proc=2`. Corpus scale: a synthetic
CODE-15%-layout corpus of `--corpus-records` exams through `load_code15` + `prepare_records` (HDF5 read, padding
stripped, Arrow cache, resample 400->100 Hz into model-rate shards), single process vs `num_proc=2`, against the limit:
the raw `h5py` read + strip + resample of the same exams in a plain loop, one core. Prints one JSON line.

    python benchmarks/feature_extraction.py [--data ../shared/data/physionet2021] [--repeat 5] [--corpus-records 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import datasets

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.data import extract_features, load_code15, load_wfdb_folder, prepare_records
from ecg_pma.data.code15 import READ_BATCH, open_tracings, strip_padding
from ecg_pma.feature_extraction_ecg_pma import EcgRecord


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, machine_info  # noqa: E402
from corpus_memory import write_corpus  # noqa: E402


def raw_limit(root: Path, extractor) -> tuple[int, float]:
    """The same exams read, stripped and resampled in a plain loop: what one core can do at best."""
    count, start = 0, time.perf_counter()
    for path in sorted(root.glob("exams_part*.hdf5")):
        handle, tracings, _ = open_tracings(str(path), need_exam_ids=False)
        with handle:
            for first in range(0, tracings.shape[0], READ_BATCH):
                for signal in tracings[first : first + READ_BATCH]:
                    signal = strip_padding(signal, str(path)).astype("float64")
                    record = EcgRecord(
                        name="exam", signal=signal.T, fs=400.0, leads=list(extractor.lead_names), units="mV"
                    )
                    extractor.preprocess_segments(record)
                    count += 1
    return count, time.perf_counter() - start


def corpus_row(records: int) -> dict:
    """load_code15 + prepare_records on a synthetic corpus, num_proc 1 vs 2, against `raw_limit`."""
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("vit-b-paper"))
    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir) / "corpus"
        write_corpus(root, records)
        limit_records, limit_seconds = raw_limit(root, extractor)
        timings = {}
        for num_proc in (1, 2):
            start = time.perf_counter()
            raw = load_code15(root, cache_dir=f"{workdir}/cache{num_proc}", validation_fraction=0, test_fraction=0)
            rows = prepare_records(raw["train"], extractor, num_proc=num_proc if num_proc > 1 else None)
            timings[num_proc] = (len(rows), time.perf_counter() - start)
    limit = limit_records / limit_seconds
    single = timings[1][0] / timings[1][1]
    double = timings[2][0] / timings[2][1]
    return {
        "steps": "CODE-15% HDF5 read + padding strip (Arrow cache) + resample 400->100 Hz into model-rate shards",
        "records": records,
        "records_per_s_single": round(single, 1),
        "records_per_s_num_proc_2": round(double, 1),
        "speedup_num_proc_2": round(double / single, 2),
        "limit_records_per_s_one_core": round(limit, 1),
        "single_vs_limit": round(single / limit, 2),
        "num_proc_2_per_process_vs_limit": round(double / 2 / limit, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    parser.add_argument("--repeat", type=int, default=5, help="the folder's records are read this many times over")
    parser.add_argument("--corpus-records", type=int, default=2000, help="exams of the synthetic corpus row")
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
                "corpus": corpus_row(args.corpus_records),
            }
        )
    )


if __name__ == "__main__":
    main()
