"""
What the ONNX Runtime backends change in the predictions, on the real challenge records: a PMA classifier whose gate
and head are trained on the records' labels (a probe on the frozen encoder: seeded random, or with `--pretrained DIR`
a pre-trained one from `ecg-pma pretrain`) predicts every record through PyTorch, ONNX Runtime fp32 (optimized, fused
attention) and ONNX Runtime int8, twice: complete 12-lead records with `predict_records` (the backend runs the
all-leads graph), and the same records with mixed lead sets (each record given one of the challenge lead sets 12, 6,
4, 3, 2 in turn, batches of 32 windows mixing them: the masked graph). Reports, per input, the largest |Δprobability|
against PyTorch over every record and label and the macro AUROC of each backend, against the targets (fp32: max |Δp|
<= 1e-4; int8: max |Δp| <= 0.02 and |Δ macro AUROC| <= 0.01); `passed` is false, and the failed targets are named,
when one is missed. Prints one JSON line.

    python benchmarks/deploy_accuracy.py [--preset vit-s-paper | --pretrained outputs/pretrained-vit-s]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ecg_pma import LEAD_SETS, EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification, EcgPmaModel
from ecg_pma.data import id2label, load_physionet2021
from ecg_pma.metrics import load_ecg_multilabel
from ecg_pma.serving.inference import average_windows, predict_records, score_windows, window_forward
from ecg_pma.serving.onnx_export import export_classifier_onnx
from ecg_pma.training.probe_layers import CachedProbe, LayerCache, fit_probe


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, challenge_windows, machine_info  # noqa: E402


TARGETS = {"fp32_max_abs_diff": 1e-4, "int8_max_abs_diff": 0.02, "int8_macro_auroc_diff": 0.01}


def probed_classifier(
    config: EcgPmaConfig, extractor, data: Path, epochs: int, pretrained: str | None = None
) -> EcgPmaForSequenceClassification:
    """
    The seeded (or `pretrained`) encoder with a PMA gate and linear head fitted on cached features of the challenge
    train split.
    """
    model = EcgPmaForSequenceClassification(config).eval()
    if pretrained:
        model.ecg_pma.load_state_dict(EcgPmaModel.from_pretrained(pretrained).state_dict())
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


def mixed_lead_masks(record_index: torch.Tensor, lead_names: list[str]) -> tuple[torch.Tensor, list[str]]:
    """Record `i` gets the challenge lead set `i mod 5` (12, 6, 4, 3, 2 leads): `(windows, leads)` mask, set names."""
    sets = list(LEAD_SETS)
    names = [sets[int(i) % len(sets)] for i in range(int(record_index.max()) + 1)]
    per_record = torch.tensor([[lead in LEAD_SETS[name] for lead in lead_names] for name in names])
    return per_record[record_index], names


def mixed_lead_probabilities(forwards: dict, features, config) -> dict[str, np.ndarray]:
    """Per-record probabilities of each backend on the windows with mixed lead sets, in batches of 32 windows."""
    lead_mask, _ = mixed_lead_masks(features["record_index"], list(config.lead_names))
    num_records = int(features["record_index"].max()) + 1
    probabilities = {}
    for name, forward in forwards.items():
        with torch.inference_mode():
            windows, _ = score_windows(forward, features["signals"], config, 32, lead_mask=lead_mask)
        probabilities[name] = average_windows(windows, features["record_index"], num_records).numpy()
    return probabilities


def compare(probabilities: dict[str, np.ndarray], references: np.ndarray) -> dict:
    """Macro AUROC of each backend and the largest |Δp| / |ΔAUROC| against PyTorch."""
    metric = load_ecg_multilabel()
    auroc = {
        name: metric.compute(predictions=scores, references=references)["macro_auroc"]
        for name, scores in probabilities.items()
    }
    reference = probabilities["pytorch_fp32"]
    return {
        "macro_auroc": {name: round(value, 4) for name, value in auroc.items()},
        "fp32_max_abs_diff": float(np.abs(probabilities["ort_fp32_optimized"] - reference).max()),
        "int8_max_abs_diff": float(np.abs(probabilities["ort_int8"] - reference).max()),
        "int8_macro_auroc_diff": abs(auroc["ort_int8"] - auroc["pytorch_fp32"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vit-s-paper", help="the seeded random encoder's size")
    parser.add_argument(
        "--pretrained", default=None, help="a folder from `ecg-pma pretrain`: its encoder (and size) is probed"
    )
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        raw = load_physionet2021(args.data, cache_dir=Path(scratch) / "cache")
        head = {"aggregation": "pma", "head_type": "linear", "id2label": id2label(raw)}
        # a pre-trained encoder brings its own architecture (any size `ecg-pma pretrain` was given)
        config = (
            EcgPmaConfig.from_pretrained(args.pretrained, **head)
            if args.pretrained
            else EcgPmaConfig.from_preset(args.preset, **head)
        )
        extractor = EcgPmaFeatureExtractor.from_model_config(config)
        model = probed_classifier(config, extractor, Path(args.data), args.epochs, args.pretrained)
        records = [row for split in raw.values() for row in split.select_columns(["record_id", "labels"])]
        paths = [str(Path(args.data) / row["record_id"]) for row in records]
        files = {"ort_fp32_optimized": Path(scratch) / "model.onnx", "ort_int8": Path(scratch) / "model-int8.onnx"}
        export_classifier_onnx(model, files["ort_fp32_optimized"], optimize=True)
        export_classifier_onnx(model, files["ort_int8"], optimize=True, quantize="int8")
        model.set_attn_implementation("sdpa")
        complete = {"pytorch_fp32": predict_records(model, extractor, paths)}
        for name, path in files.items():  # complete records: the all-leads graph
            complete[name] = predict_records(model, extractor, paths, backend="onnxruntime", onnx_path=path)
        complete = {
            name: np.asarray([list(p.probabilities.values()) for p in predictions])
            for name, predictions in complete.items()
        }
        forwards = {"pytorch_fp32": window_forward(model)}
        forwards.update({name: window_forward(model, "onnxruntime", path) for name, path in files.items()})
        features = extractor(paths, window_mode="sliding", return_tensors="pt")
        mixed = mixed_lead_probabilities(forwards, features, config)
        graphs_run = {name: sorted(forward.sessions) for name, forward in forwards.items() if name != "pytorch_fp32"}
    references = np.asarray([row["labels"] for row in records]).astype(int)
    measured = {"complete_12_lead": compare(complete, references), "mixed_lead_sets": compare(mixed, references)}
    failed = [
        f"{inputs}.{name}"
        for inputs, values in measured.items()
        for name, limit in TARGETS.items()
        if values[name] > limit
    ]
    _, lead_sets = mixed_lead_masks(features["record_index"], list(config.lead_names))
    print(
        json.dumps(
            {
                "benchmark": "deploy_accuracy",
                **machine_info(),
                "preset": None if args.pretrained else args.preset,
                "encoder_size": {
                    name: getattr(config, name)
                    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
                },
                "encoder": args.pretrained or "seeded random",
                "note": "PMA gate + linear head trained on the challenge train split; every record of the challenge "
                "set predicted by each backend, complete and with mixed lead sets",
                "records": len(paths),
                "labels": config.num_labels,
                "mixed_lead_sets_per_record": {name: lead_sets.count(name) for name in LEAD_SETS},
                "onnx_graphs_run": graphs_run,
                **{
                    inputs: {
                        name: value if name == "macro_auroc" else float(f"{value:.3g}")
                        for name, value in values.items()
                    }
                    for inputs, values in measured.items()
                },
                "targets": TARGETS,
                "passed": not failed,
                "failed_targets": failed,
            }
        )
    )


if __name__ == "__main__":
    main()
