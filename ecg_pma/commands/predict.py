"""`ecg-pma predict`: per-label probabilities for WFDB records."""

from __future__ import annotations

import argparse
import json


def add_parser(commands) -> None:
    from ..inference import DTYPES

    predict = commands.add_parser("predict", help="per-label probabilities and layer weights for WFDB records")
    predict.add_argument("model")
    predict.add_argument("records", nargs="+", help="WFDB record paths (with or without .hea)")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--dtype", choices=DTYPES, default="fp32")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model first (tens of seconds; pays off on many records)",
    )
    predict.add_argument("--trust-remote-code", action="store_true", help="load the code saved with the model")
    predict.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ..inference import decision_thresholds, predict_records

    model = AutoModelForSequenceClassification.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    extractor = AutoFeatureExtractor.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    predictions = predict_records(
        model, extractor, args.records, dtype=args.dtype, batch_size=args.batch_size, compile=args.compile
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
