"""
Feature extraction throughput (records/s): WFDB read + resample + band-pass + normalise, through
`load_wfdb_folder` + `extract_features` (`datasets.map`), single process vs `num_proc=2`. Prints one JSON line.

    python benchmarks/feature_extraction.py [--data ../shared/data/physionet2021] [--repeat 5]
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
from ecg_pma.data import extract_features, load_wfdb_folder


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, machine_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    parser.add_argument("--repeat", type=int, default=5, help="the folder's records are read this many times over")
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
            }
        )
    )


if __name__ == "__main__":
    main()
