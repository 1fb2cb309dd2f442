"""
What drawing one random crop per record per epoch costs at read time, against reading precomputed windows: rows per
second through a DataLoader (batch 32, main process) for the paper preset (crop + per-lead z-score of each read) and
for ST-MEM's preprocessing (crop, order-5 high-pass + low-pass on each crop, one z-score), on the 40 real challenge
records. Prints one JSON line.

    python benchmarks/training_crops.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import datasets
import torch
from common import CHALLENGE_RECORDS, machine_info
from torch.utils.data import DataLoader

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.data import build_training_splits, extract_features, load_physionet2021
from ecg_pma.feature_extraction_ecg_pma import ST_MEM_PREPROCESSING
from ecg_pma.training import EcgDataCollator


def rows_per_second(dataset, config, repeat: int) -> float:
    loader = DataLoader(dataset, batch_size=32, collate_fn=EcgDataCollator(config=config, with_labels=False))
    best = float("inf")
    for epoch in range(repeat):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        start = time.perf_counter()
        for _ in loader:
            pass
        best = min(best, time.perf_counter() - start)
    return len(dataset) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    report = {"benchmark": "training_crops", **machine_info(), "rows": {}}
    with tempfile.TemporaryDirectory() as cache_dir:
        raw = load_physionet2021(CHALLENGE_RECORDS, cache_dir=cache_dir)
        settings = {
            "paper": (EcgPmaConfig.from_preset("vit-b-paper"), {}),
            "st_mem": (EcgPmaConfig.from_preset("vit-b-st-mem"), ST_MEM_PREPROCESSING),
        }
        for name, (config, preprocessing) in settings.items():
            extractor = EcgPmaFeatureExtractor.from_model_config(config, **preprocessing)
            crops = build_training_splits(raw, extractor)[0]["train"]
            windows = extract_features(raw["train"], extractor, window_mode="center").with_format("torch")
            report["rows"][name] = {
                "random_crop_rows_per_s": rows_per_second(crops, config, args.repeat),
                "precomputed_window_rows_per_s": rows_per_second(windows, config, args.repeat),
            }
            report[f"{name}_crop_vs_precomputed"] = (
                report["rows"][name]["random_crop_rows_per_s"] / report["rows"][name]["precomputed_window_rows_per_s"]
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
