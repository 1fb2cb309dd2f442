"""
What cutting batches to lead sets costs (`LeadSetSampler.cut`: a lead set drawn per sample among the challenge
sets, the other leads set to padding and, with per-window normalisation, the kept leads standardised again) beside
one pre-training step (forward + backward) on the same batch of real challenge windows, for per-lead and per-window
extractors. Prints one JSON line; the ratios are measured in this run, variants timed in interleaved rounds (median
of `--repeats`).

    python benchmarks/lead_set_cut.py --preset vit-s-st-mem --batch 64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.training import EcgDataCollator
from ecg_pma.training.collator import LeadSetSampler


sys.path.insert(0, str(Path(__file__).parent))
from common import challenge_windows, machine_info, median_seconds, significant  # noqa: E402


CHALLENGE_SETS = ["12", "6", "4", "3", "2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(args.preset)
    model = EcgPmaForPreTraining(config).train()
    variants, batches = {}, {}
    for normalization in ("per_lead", "per_window"):
        extractor = EcgPmaFeatureExtractor.from_model_config(config, normalization=normalization)
        rows = challenge_windows(extractor, ("train",))["train"].with_format("torch")
        collate = EcgDataCollator(config, with_labels=False)
        # the challenge windows again and again, up to a batch
        batch = collate([rows[index % len(rows)] for index in range(args.batch)])
        sampler = LeadSetSampler(config, CHALLENGE_SETS, extractor)
        batches[normalization] = batch
        variants[f"{normalization}_cut"] = lambda s=sampler, b=batch: s.cut(b, torch.Generator().manual_seed(0))
    noise = torch.rand(args.batch, config.num_leads, config.num_patches)

    def step():
        model.zero_grad()
        model(batches["per_window"]["signals"], noise=noise).loss.backward()

    variants["pretraining_step"] = step
    seconds = median_seconds(variants, args.repeats)
    milliseconds = {name: significant(1000 * value) for name, value in seconds.items()}
    for name, value in milliseconds.items():
        print(f"{name}: {value} ms per batch", file=sys.stderr)
    report = {
        "benchmark": "lead_set_cut",
        "preset": args.preset,
        "batch": args.batch,
        "repeats": args.repeats,
        "lead_sets": CHALLENGE_SETS,
        **machine_info(),
        "ms_per_batch": milliseconds,
        "per_lead_cut_vs_step": significant(milliseconds["per_lead_cut"] / milliseconds["pretraining_step"]),
        "per_window_cut_vs_step": significant(milliseconds["per_window_cut"] / milliseconds["pretraining_step"]),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
