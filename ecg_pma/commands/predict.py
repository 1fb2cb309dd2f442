"""`ecg-pma predict`: per-label probabilities for WFDB records."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(commands) -> None:
    predict = commands.add_parser("predict", help="per-label probabilities and layer weights for WFDB records")
    predict.add_argument("model")
    predict.add_argument(
        "records", nargs="+", help="WFDB record paths (with or without .hea), or folders of records (with --output)"
    )
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model first (tens of seconds; pays off on many records)",
    )
    predict.add_argument("--trust-remote-code", action="store_true", help="load the code saved with the model")
    predict.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="score windows with PyTorch or with ONNX Runtime (an ONNX file from `ecg-pma export-onnx`)",
    )
    predict.add_argument(
        "--onnx", default=None, help="the ONNX file for --backend onnxruntime (default: MODEL/model.onnx)"
    )
    predict.add_argument(
        "--output",
        default=None,
        help="screen every record (folders included) into this CSV, written as it goes; a rerun skips records in it",
    )
    predict.add_argument(
        "--errors", default=None, help="CSV of unreadable records and why (default: OUTPUT.errors.csv)"
    )
    predict.add_argument("--num-workers", type=int, default=2, help="processes reading records while screening")
    predict.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ..inference import decision_thresholds, predict_records

    model = AutoModelForSequenceClassification.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    extractor = AutoFeatureExtractor.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    if args.output is not None or any(os.path.isdir(record) for record in args.records):
        return run_screening(args, model, extractor)
    predictions = predict_records(
        model,
        extractor,
        args.records,
        dtype=args.dtype,
        batch_size=args.batch_size,
        compile=args.compile,
        backend=args.backend,
        onnx_path=args.onnx,
    )
    if args.json:
        print(json.dumps([prediction.__dict__ for prediction in predictions], indent=2))
        return 0
    names = list(predictions[0].probabilities)
    thresholds = decision_thresholds(model.config)
    width = max(len(name) for name in names)
    for prediction in predictions:
        print(f"{prediction.record} ({prediction.num_windows} window{'s' if prediction.num_windows > 1 else ''})")
        for name, threshold in zip(names, thresholds):
            marker = "  <- positive" if name in prediction.positive_labels else ""
            print(f"  {name:<{width}}  {prediction.probabilities[name]:.3f} (threshold {threshold:.3f}){marker}")
        print("  layer weights: " + " ".join(f"{w:.3f}" for w in prediction.layer_weights))
    return 0


def run_screening(args: argparse.Namespace, model, extractor) -> int:
    """Folders and records screened into `--output` (see `ecg_pma.screening`); exit status 1 if any record failed."""
    from ..screening import screen_records

    if args.output is None:
        raise SystemExit("ecg-pma predict: a folder of records is screened into a CSV: pass --output predictions.csv.")
    if args.compile or args.dtype != "fp32":
        raise SystemExit("ecg-pma predict: --output screening runs fp32 without --compile (or --backend onnxruntime).")
    summary = screen_records(
        model,
        extractor,
        args.records,
        args.output,
        errors_path=args.errors,
        backend=args.backend,
        onnx_path=args.onnx,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
    )
    print(
        f"Screened into {summary.output}: {summary.predicted} predicted now, {summary.skipped} already there, "
        f"{summary.failed} failed" + (f" (listed with reasons in {summary.errors})" if summary.failed else "")
    )
    if summary.failed:
        print(f"{summary.failed} record(s) could not be read: see {summary.errors}", file=sys.stderr)
    return 1 if summary.failed else 0
