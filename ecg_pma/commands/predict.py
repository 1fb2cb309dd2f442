"""`ecg-pma predict`: per-label probabilities for WFDB records."""

from __future__ import annotations

import argparse
import json
import sys

from ..constants import DTYPES
from .argument_types import positive_int


def add_parser(commands) -> None:

    predict = commands.add_parser("predict", help="per-label probabilities and layer weights for WFDB records")
    predict.add_argument("model")
    predict.add_argument("records", nargs="+", help="WFDB record paths (with or without .hea)")
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


def lead_options(args: argparse.Namespace) -> dict:
    """The feature-extractor settings given by `add_lead_arguments`' options (only those set)."""
    aliases = {}
    for item in args.lead_alias:
        name, separator, lead = item.partition("=")
        if not separator or not name.strip() or not lead.strip():
            raise ValueError(f"--lead-alias {item!r}: expected NAME=LEAD, e.g. MLII=II.")
        aliases[name.strip()] = lead.strip()
    options = {"lead_aliases": aliases} if aliases else {}
    if args.required_leads is not None:
        options["required_leads"] = args.required_leads
    if args.allow_missing_leads:
        options["allow_missing_leads"] = True
    return options


def run(args: argparse.Namespace) -> int:
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ..inference import decision_thresholds, load_trained_classifier, predict_records

    model = load_trained_classifier(
        args.model, AutoModelForSequenceClassification, trust_remote_code=args.trust_remote_code
    )
    extractor = AutoFeatureExtractor.from_pretrained(
        args.model, trust_remote_code=args.trust_remote_code, **lead_options(args)
    )
    predictions = predict_records(
        model, extractor, args.records, dtype=args.dtype, batch_size=args.batch_size, compile=args.compile
    )
    if args.plot:
        from ..explain import write_prediction_plots

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
