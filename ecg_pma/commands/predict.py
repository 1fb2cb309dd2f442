"""`ecg-pma predict`: per-label probabilities for WFDB records and ECG files (DICOM, EDF, HL7 aECG, GE MUSE and Philips
XML, CSV / .npy / Parquet)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..constants import DTYPES
from .argument_types import non_negative_int, output_file, positive_int


def add_parser(commands) -> None:

    predict = commands.add_parser(
        "predict", help="per-label probabilities and layer weights for WFDB records and ECG files"
    )
    predict.add_argument("model")
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
    predict.set_defaults(handler=run)


def add_lead_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for records with fewer leads than the model (absent leads are masked out of the model)."""
    parser.add_argument(
        "--required-leads",
        default=None,
        help="leads every record must have: a lead set (12, 6, 4, 3, 2) or names joined by commas (I,II); the "
        "model's other leads may be missing. Default: all of them",
    )
    parser.add_argument("--allow-missing-leads", action="store_true", help="accept records with any of the leads")
    parser.add_argument(
        "--lead-alias",
        action="append",
        default=[],
        metavar="NAME=LEAD",
        help="read a non-standard lead name as one of the model's leads, e.g. MLII=II (repeatable)",
    )


def parse_lead_aliases(items: list[str]) -> dict[str, str]:
    """`--lead-alias NAME=LEAD` options -> `{NAME: LEAD}`."""
    aliases = {}
    for item in items:
        name, separator, lead = item.partition("=")
        if not separator or not name.strip() or not lead.strip():
            raise ValueError(f"--lead-alias {item!r}: expected NAME=LEAD, e.g. MLII=II.")
        aliases[name.strip()] = lead.strip()
    return aliases


def lead_options(args: argparse.Namespace) -> dict:
    """The feature-extractor settings given by `add_lead_arguments`' options (only those set)."""
    aliases = parse_lead_aliases(args.lead_alias)
    options = {"lead_aliases": aliases} if aliases else {}
    if args.required_leads is not None:
        options["required_leads"] = args.required_leads
    if args.allow_missing_leads:
        options["allow_missing_leads"] = True
    return options


def run(args: argparse.Namespace) -> int:
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ..serving.inference import predict_records
    from ..serving.loading import decision_thresholds, load_trained_classifier

    model = load_trained_classifier(
        args.model, AutoModelForSequenceClassification, trust_remote_code=args.trust_remote_code
    )
    extractor = AutoFeatureExtractor.from_pretrained(
        args.model, trust_remote_code=args.trust_remote_code, **lead_options(args)
    )
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
