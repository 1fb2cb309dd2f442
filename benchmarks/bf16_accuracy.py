"""
The accuracy cost of bf16 autocast on the CPU: relative error of the layer representations against fp32, and macro
AUROC of a probe on the real challenge records scored with fp32 and with bf16 inference. Prints one JSON line.

    python benchmarks/bf16_accuracy.py [--preset vit-s-paper]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaModel
from ecg_pma.metrics import load_ecg_multilabel
from ecg_pma.training.probe_layers import CachedProbe, LayerCache, fit_probe


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, challenge_windows, machine_info  # noqa: E402


@torch.inference_mode()
def encode(encoder, rows, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    signals = rows.with_format("torch")[:]["signals"]
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with context:
        out = encoder(signals)
    return out.layer_representations.float().clone(), out.input_representation.float().clone()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    args = parser.parse_args()
    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(args.preset)
    encoder = EcgPmaModel(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    windows = challenge_windows(extractor, ("train", "test"), args.data)
    caches = {}
    for split, rows in windows.items():
        labels = torch.as_tensor(np.asarray(rows.with_format("numpy")["labels"][:]), dtype=torch.float32)
        for precision in ("fp32", "bf16"):
            layers, inputs = encode(encoder, rows, precision == "bf16")
            caches[split, precision] = LayerCache(layers, inputs, labels, list(rows["record_id"]))
    fp32, bf16 = caches["test", "fp32"].layer_representations, caches["test", "bf16"].layer_representations
    relative_error = ((bf16 - fp32).norm(dim=-1) / fp32.norm(dim=-1)).mean(dim=0)

    torch.manual_seed(0)
    probe, _ = fit_probe(CachedProbe(encoder, "ppa", None, caches["train", "fp32"].labels.shape[1], "linear"),
                         caches["train", "fp32"], caches["train", "fp32"], epochs=50)  # fmt: skip
    metric = load_ecg_multilabel()
    scores = {}
    for precision in ("fp32", "bf16"):
        cache = caches["test", precision]
        with torch.no_grad():
            probabilities = probe.eval()(cache.layer_representations, cache.input_representation).sigmoid().numpy()
        scores[precision] = metric.compute(
            predictions=probabilities, references=cache.labels.numpy().astype(int), record_ids=cache.record_ids
        )["macro_auroc"]
    print(
        json.dumps(
            {
                "benchmark": "bf16_accuracy",
                **machine_info(),
                "preset": args.preset,
                "note": "random-initialised encoder; a PPA probe trained on fp32 features of the challenge train split",
                "relative_error_per_layer": [round(float(e), 5) for e in relative_error],
                "test_macro_auroc_fp32": round(scores["fp32"], 4),
                "test_macro_auroc_bf16": round(scores["bf16"], 4),
                "test_records": len(caches["test", "fp32"].record_ids),
            }
        )
    )


if __name__ == "__main__":
    main()
