"""
Probing from cached layer features vs re-encoding every epoch (`ecg-pma probe-layers` caches; a naive probe re-runs
the frozen encoder each epoch). Prints one JSON line with both per-epoch times and their ratio, measured in one run.

    python benchmarks/probe_cache.py [--preset vit-s-paper] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaModel
from ecg_pma.training.probe_layers import CachedProbe, encode_layers


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, challenge_windows, machine_info  # noqa: E402


def train_epoch(probe, optimizer, batches) -> None:
    for layer_representations, input_representation, labels in batches():
        logits = probe(layer_representations, input_representation)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    args = parser.parse_args()

    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(args.preset)
    encoder = EcgPmaModel(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    windows = challenge_windows(extractor, ("train",), args.data)["train"]
    signals = windows.with_format("torch")[:]["signals"]
    labels = windows.with_format("torch")[:]["labels"]

    start = time.perf_counter()
    cache = encode_layers(encoder, windows, batch_size=args.batch_size)
    encode_seconds = time.perf_counter() - start

    def cached_batches():
        for i in range(0, len(labels), args.batch_size):
            yield (
                cache.layer_representations[i : i + args.batch_size],
                cache.input_representation[i : i + args.batch_size],
                labels[i : i + args.batch_size],
            )

    def reencoded_batches():
        for i in range(0, len(labels), args.batch_size):
            with torch.no_grad():
                out = encoder(signals[i : i + args.batch_size])
            yield out.layer_representations, out.input_representation, labels[i : i + args.batch_size]

    timings = {}
    for name, batches in (("cached", cached_batches), ("reencoded", reencoded_batches)):
        probe = CachedProbe(encoder, "pma", None, labels.shape[1], "linear")
        optimizer = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-3)
        train_epoch(probe, optimizer, batches)  # warm-up
        start = time.perf_counter()
        for _ in range(args.epochs):
            train_epoch(probe, optimizer, batches)
        timings[name] = (time.perf_counter() - start) / args.epochs

    paper_epochs = 100
    print(
        json.dumps(
            {
                "benchmark": "probe_cache",
                "preset": args.preset,
                "windows": len(labels),
                **machine_info(),
                "encode_once_s": round(encode_seconds, 4),
                "epoch_cached_s": round(timings["cached"], 5),
                "epoch_reencoded_s": round(timings["reencoded"], 4),
                "per_epoch_speedup": round(timings["reencoded"] / timings["cached"], 1),
                f"speedup_{paper_epochs}_epochs_including_encoding": round(
                    paper_epochs * timings["reencoded"] / (encode_seconds + paper_epochs * timings["cached"]), 1
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
