"""
What the ONNX Runtime backends change in the predictions, on the real challenge records: a PMA classifier whose gate
and head are trained on the records' labels (a probe on the frozen, seeded encoder) predicts every record with
`predict_records` through PyTorch, ONNX Runtime fp32 (optimized) and ONNX Runtime int8. Reports the largest
|Δprobability| against PyTorch over every record and label, and the macro AUROC of each backend, against the targets
(fp32: max |Δp| <= 1e-4; int8: max |Δp| <= 0.02 and |Δ macro AUROC| <= 0.01); `passed` is false, and the failed
targets are named, when one is missed. Prints one JSON line.

    python benchmarks/deploy_accuracy.py [--preset vit-s-paper]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.data import id2label, load_physionet2021
from ecg_pma.metrics import load_ecg_multilabel
from ecg_pma.serving.inference import predict_records
from ecg_pma.serving.onnx_export import export_classifier_onnx
from ecg_pma.training.probe_layers import CachedProbe, LayerCache, fit_probe


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, challenge_windows, machine_info  # noqa: E402


TARGETS = {"fp32_max_abs_diff": 1e-4, "int8_max_abs_diff": 0.02, "int8_macro_auroc_diff": 0.01}


def probed_classifier(config: EcgPmaConfig, extractor, data: Path, epochs: int) -> EcgPmaForSequenceClassification:
    """The seeded encoder with a PMA gate and linear head fitted on cached features of the challenge train split."""
    model = EcgPmaForSequenceClassification(config).eval()
    rows = challenge_windows(extractor, ("train",), data)["train"]
    with torch.inference_mode():
        out = model.ecg_pma(rows.with_format("torch")[:]["signals"])
    labels = torch.as_tensor(np.asarray(rows.with_format("numpy")["labels"][:]), dtype=torch.float32)
    cache = LayerCache(
        out.layer_representations.clone(), out.input_representation.clone(), labels, list(rows["record_id"])
    )
    probe, _ = fit_probe(CachedProbe(model.ecg_pma, "pma", None, config.num_labels, "linear"), cache, cache, epochs)
    model.aggregator.load_state_dict(probe.aggregator.state_dict())
    model.classifier.load_state_dict(probe.classifier.state_dict())
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        raw = load_physionet2021(args.data, cache_dir=Path(scratch) / "cache")
        config = EcgPmaConfig.from_preset(args.preset, aggregation="pma", head_type="linear", id2label=id2label(raw))
        extractor = EcgPmaFeatureExtractor.from_model_config(config)
        model = probed_classifier(config, extractor, Path(args.data), args.epochs)
        records = [row for split in raw.values() for row in split.select_columns(["record_id", "labels"])]
        paths = [str(Path(args.data) / row["record_id"]) for row in records]
        files = {"ort_fp32_optimized": Path(scratch) / "model.onnx", "ort_int8": Path(scratch) / "model-int8.onnx"}
        export_classifier_onnx(model, files["ort_fp32_optimized"], optimize=True)
        export_classifier_onnx(model, files["ort_int8"], optimize=True, quantize="int8")
        model.set_attn_implementation("sdpa")
        probabilities = {"pytorch_fp32": predict_records(model, extractor, paths)}
        for name, path in files.items():
            probabilities[name] = predict_records(model, extractor, paths, backend="onnxruntime", onnx_path=path)
    probabilities = {
        name: np.asarray([list(p.probabilities.values()) for p in predictions])
        for name, predictions in probabilities.items()
    }
    references = np.asarray([row["labels"] for row in records]).astype(int)
    metric = load_ecg_multilabel()
    auroc = {
        name: metric.compute(predictions=scores, references=references)["macro_auroc"]
        for name, scores in probabilities.items()
    }
    measured = {
        "fp32_max_abs_diff": float(np.abs(probabilities["ort_fp32_optimized"] - probabilities["pytorch_fp32"]).max()),
        "int8_max_abs_diff": float(np.abs(probabilities["ort_int8"] - probabilities["pytorch_fp32"]).max()),
        "int8_macro_auroc_diff": abs(auroc["ort_int8"] - auroc["pytorch_fp32"]),
    }
    failed = [name for name, limit in TARGETS.items() if measured[name] > limit]
    print(
        json.dumps(
            {
                "benchmark": "deploy_accuracy",
                **machine_info(),
                "preset": args.preset,
                "note": "seeded random encoder; PMA gate + linear head trained on the challenge train split; "
                "every record of the challenge set predicted by each backend",
                "records": len(paths),
                "labels": config.num_labels,
                "macro_auroc": {name: round(value, 4) for name, value in auroc.items()},
                **{name: float(f"{value:.3g}") for name, value in measured.items()},
                "targets": TARGETS,
                "passed": not failed,
                "failed_targets": failed,
            }
        )
    )


if __name__ == "__main__":
    main()
