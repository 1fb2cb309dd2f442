"""
`ecg-pma benchmark` cost: the embedding rate (records/s through `ecg-pma embed`'s engine), the whole physionet2021 suite
on the 40 challenge records, and a projection for the full PTB-XL suite (21,837 records, 6 tasks, both encoders,
1 / 10 / 100 % labels, every head) from a probe training step, a validation pass and a bootstrap scoring measured here.
Prints one JSON line. Random weights of `--preset` (speed does not depend on the weights).

    python benchmarks/benchmark_suite.py [--preset vit-s-paper] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, machine_info, significant  # noqa: E402

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining  # noqa: E402
from ecg_pma.constants import LABEL_FRACTIONS  # noqa: E402
from ecg_pma.evaluation.benchmark import BenchmarkSettings, run_benchmark  # noqa: E402
from ecg_pma.evaluation.protocols import one_thread  # noqa: E402
from ecg_pma.evaluation.statistics import bootstrap_indices, score_with_intervals  # noqa: E402
from ecg_pma.training.probe_layers import CachedProbe, LayerCache, validation_macro_auroc  # noqa: E402


PTBXL_RECORDS = 21_837
PTBXL_TASK_LABELS = (71, 44, 23, 5, 19, 12)


def probe_costs(encoder, num_labels: int = 71, batch: int = 64, records: int = 2_184) -> dict:
    """Seconds per PMA probe training step (batch 64) and per validation pass over `records` cached records."""
    config = encoder.config
    depth, hidden = config.num_hidden_layers, config.hidden_size
    layers, inputs = torch.randn(records, depth, hidden), torch.randn(records, hidden)
    labels = (torch.rand(records, num_labels) < 0.1).float()
    cache = LayerCache(layers, inputs, labels, [str(i) for i in range(records)])
    probe = CachedProbe(encoder, "pma", None, num_labels, "linear")
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3)
    with one_thread():
        start = time.perf_counter()
        for _ in range(20):
            index = torch.randint(0, records, (batch,))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                probe(layers[index], inputs[index]), labels[index]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        step_seconds = (time.perf_counter() - start) / 20
        start = time.perf_counter()
        validation_macro_auroc(probe, cache)
        validation_seconds = time.perf_counter() - start
    return {"step": step_seconds, "validation_pass": validation_seconds}


def bootstrap_seconds(records: int = 2_198, num_labels: int = 71, resamples: int = 1000) -> float:
    rng = np.random.default_rng(0)
    references = (rng.random((records, num_labels)) < 0.1).astype(int)
    probabilities = rng.random((records, num_labels))
    start = time.perf_counter()
    indices = bootstrap_indices(references, resamples, 0)
    score_with_intervals(references, probabilities, np.full(num_labels, 0.5), indices)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--epochs", type=int, default=20, help="probe epochs of the measured suite run")
    parser.add_argument("--projected-epochs", type=int, default=100)
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        torch.manual_seed(0)
        config = EcgPmaConfig.from_preset(args.preset)
        EcgPmaForPreTraining(config).save_pretrained(scratch / "model")
        EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(scratch / "model")
        settings = BenchmarkSettings(
            suite="physionet2021",
            data=args.data,
            epochs=args.epochs,
            label_percents=[100],
            validation_fraction=0.25,
            test_fraction=0.25,
        )
        start = time.perf_counter()
        benchmark = run_benchmark(str(scratch / "model"), settings, scratch / "out", cache_dir=scratch / "cache")
        suite_seconds = time.perf_counter() - start
        resumed_start = time.perf_counter()
        run_benchmark(str(scratch / "model"), settings, scratch / "out", cache_dir=scratch / "cache")
        resumed_seconds = time.perf_counter() - resumed_start

    timing = benchmark["timing"]
    records = timing["records_embedded"]
    embedding_rate = records / timing["embedding_pretrained_seconds"]
    from ecg_pma.modeling_ecg_pma import EcgPmaModel

    costs = probe_costs(EcgPmaModel(config))
    depth = config.num_hidden_layers
    heads = 4 + depth  # last, PPA, PMA, PMA frozen, each layer
    train, validation = round(0.8 * PTBXL_RECORDS), round(0.1 * PTBXL_RECORDS)
    probe_seconds = sum(
        len(PTBXL_TASK_LABELS) * 2 * heads * args.projected_epochs
        * (math.ceil(train * percent / 100 / 64) * costs["step"] + costs["validation_pass"] * validation / 2_184)
        for percent in LABEL_FRACTIONS
    )  # fmt: skip
    runs = len(PTBXL_TASK_LABELS) * 2 * heads * len(LABEL_FRACTIONS)
    statistics_seconds = runs * bootstrap_seconds()
    projected_embedding = 2 * PTBXL_RECORDS / embedding_rate
    print(
        json.dumps(
            {
                "benchmark": "benchmark_suite",
                "preset": args.preset,
                **machine_info(),
                "sample": {
                    "records": records,
                    "tasks": [result["task"] for result in benchmark["results"]],
                    "probe_runs": sum(len(result["runs"]) for result in benchmark["results"]),
                    "probe_epochs": args.epochs,
                    "label_percents": [100],
                    "embedding_records_per_s": significant(embedding_rate),
                    "suite_seconds": significant(suite_seconds),
                    "probing_seconds": significant(timing["probing_seconds"]),
                    "rerun_of_a_finished_suite_seconds": significant(resumed_seconds),
                },
                "ptbxl_projection": {
                    "records": PTBXL_RECORDS,
                    "probe_runs": runs,
                    "probe_epochs": args.projected_epochs,
                    "probe_step_seconds": significant(costs["step"]),
                    "validation_pass_seconds": significant(costs["validation_pass"]),
                    "embedding_hours": significant(projected_embedding / 3600),
                    "probing_hours": significant(probe_seconds / 3600),
                    "statistics_hours": significant(statistics_seconds / 3600),
                    "total_hours": significant((projected_embedding + probe_seconds + statistics_seconds) / 3600),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
