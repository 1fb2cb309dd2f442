"""`ecg-pma predict`: per-label probabilities for WFDB records and ECG files (DICOM, EDF, HL7 aECG, GE MUSE and Philips
XML, CSV / .npy / Parquet)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..constants import DTYPES
from .argument_types import non_negative_int, output_file, positive_int, require_model_source
from .data_arguments import add_lead_arguments, lead_options


def add_parser(commands) -> None:

    predict = commands.add_parser(
        "predict", help="per-label probabilities and layer weights for WFDB records and ECG files"
    )
    predict.add_argument("model", help="a saved classifier folder or Hub id")
    predict.add_argument(
        "records",
        nargs="+",
        help="WFDB record paths (with or without .hea), ECG files (DICOM, EDF/BDF, HL7 aECG, GE MUSE or Philips XML, "
        "CSV/.npy/Parquet with a sidecar .json), or folders of them, formats mixed (with --output)",
    )
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--dtype", choices=DTYPES, default="fp32")
    predict.add_argument("--batch-size", type=positive_int, default=32)
    predict.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model first (tens of seconds; pays off on many records)",
    )
    predict.add_argument("--trust-remote-code", action="store_true", help="load the code saved with the model")
    add_lead_arguments(predict)
    predict.add_argument(
        "--plot",
        default=None,
        metavar="OUT.png",
        help="also write the 12-lead plot with the predictions, the explanation of the top label and the layer "
        "weights (.png/.svg/.pdf; with several records, one file each: OUT_<record>.png)",
    )
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
        type=output_file,
        default=None,
        help="screen every record (folders included) into this CSV, written as it goes; a rerun skips records in it",
    )
    predict.add_argument(
        "--errors",
        type=output_file,
        default=None,
        help="CSV of unreadable records and why (default: OUTPUT.errors.csv)",
    )
    predict.add_argument(
        "--num-workers", type=non_negative_int, default=2, help="processes reading records while screening"
    )
    predict.set_defaults(handler=run, usage_error=predict.error)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ..serving.inference import predict_records
    from ..serving.loading import decision_thresholds, load_trained_classifier

    require_model_source(args.model, "model")
    screening = args.output is not None or any(os.path.isdir(record) for record in args.records)
    # usage errors (exit status 2, as argparse's), before the model is loaded
    if screening and args.output is None:
        args.usage_error("a folder of records is screened into a CSV: pass --output predictions.csv.")
    if screening and (args.compile or args.dtype != "fp32"):
        args.usage_error("--output screening runs fp32 without --compile (or --backend onnxruntime).")
    model = load_trained_classifier(
        args.model, AutoModelForSequenceClassification, trust_remote_code=args.trust_remote_code
    )
    extractor = AutoFeatureExtractor.from_pretrained(
        args.model, trust_remote_code=args.trust_remote_code, **lead_options(args)
    )
    if screening:
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
    if args.plot:
        from ..visualization.explain import write_prediction_plots

        for path in write_prediction_plots(model, extractor, args.records, predictions, args.plot):
            print(f"plot written to {path}", file=sys.stderr)
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
    """Folders and records screened into `--output` (see `ecg_pma.serving.screening`); exit status 1 if any record failed."""
    from ..serving.screening import screen_records

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
