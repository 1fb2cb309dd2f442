"""The `ecg-pma` command: demo, pretrain, finetune, probe-layers, predict, evaluate, push, export-onnx, convert-st-mem,
download."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from .data import FORMATS

    parser.add_argument("--data", required=True, help="root folder of the records")
    parser.add_argument("--data-format", choices=FORMATS, default="ptbxl", help="layout of --data (default: ptbxl)")
    parser.add_argument("--label-set", default=None, help="PTB-XL: all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm; PhysioNet 2021: scored, all")
    parser.add_argument("--sampling-rate", type=int, default=100, help="PTB-XL records to read: 100 or 500 Hz")
    parser.add_argument("--labels-csv", default=None, help="wfdb format: CSV with record, labels (';'-separated), split")
    parser.add_argument("--skip-missing", action="store_true", help="leave out listed records whose files are absent")
    parser.add_argument("--cache-dir", default=None, help="Arrow cache folder of the datasets")
    parser.add_argument("--num-proc", type=int, default=None, help="processes for reading and feature extraction")


def _load_windows(args: argparse.Namespace, extractor, window_mode: str = "sliding"):
    from .data import extract_features, load_records

    raw = load_records(
        args.data_format,
        args.data,
        label_set=args.label_set,
        sampling_rate=args.sampling_rate,
        labels_csv=args.labels_csv,
        missing="skip" if args.skip_missing else "raise",
        cache_dir=args.cache_dir,
        num_proc=args.num_proc,
    )
    return raw, extract_features(raw, extractor, window_mode=window_mode, num_proc=args.num_proc)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output_dir, data=args.data, num_records=args.num_records, pretrain_steps=args.pretrain_steps, probe_epochs=args.probe_epochs)
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from .configuration_ecg_pma import EcgPmaConfig
    from .feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from .modeling_ecg_pma import EcgPmaForPreTraining
    from .training.pretrain import PretrainingArguments, pretrain

    from transformers import set_seed

    set_seed(args.seed)  # before the model exists: its initial weights follow the seed too
    overrides = {"pretraining_aggregation": args.pretraining_aggregation}
    if args.config:
        config = EcgPmaConfig.from_pretrained(args.config, **overrides)
    else:
        config = EcgPmaConfig.from_preset(args.preset, **overrides)
    extractor = EcgPmaFeatureExtractor.from_model_config(config, do_filter=args.band_pass)
    _, windows = _load_windows(args, extractor)
    train = windows["train"] if not args.all_splits else _concatenate(windows)
    result = pretrain(
        EcgPmaForPreTraining(config),
        train,
        PretrainingArguments(
            output_dir=args.output_dir,
            per_device_batch_size=args.batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            base_learning_rate=args.base_learning_rate,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps,
            warmup_epochs=args.warmup_epochs,
            warmup_steps=args.warmup_steps,
            mixed_precision=args.mixed_precision,
            torch_compile=args.torch_compile,
            save_steps=args.save_steps,
            resume_from_checkpoint=args.resume,
            seed=args.seed,
        ),
        extractor,
    )
    print(f"Pre-trained for {result.global_step} steps; model saved to {result.output_dir}")
    return 0


def _concatenate(windows):
    from datasets import concatenate_datasets

    return concatenate_datasets([split for split in windows.values() if len(split)])


def _finetune(args: argparse.Namespace) -> int:
    from .data import id2label
    from .feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from .training.finetune import finetune, load_classifier, reference_training_arguments

    extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
    raw, windows = _load_windows(args, extractor)
    model = load_classifier(args.model, id2label(raw), args.aggregation, args.aggregation_layer, args.head_type)
    overrides = {
        key: value
        for key, value in {
            "num_train_epochs": args.epochs,
            "per_device_train_batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    training_args = reference_training_arguments(args.mode, args.output_dir, **overrides)
    result = finetune(model, windows["train"], windows["validation"], training_args, args.mode, windows["test"], extractor)
    print((Path(result.output_dir) / "results.md").read_text())
    return 0


def _probe_layers(args: argparse.Namespace) -> int:
    from .feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from .modeling_ecg_pma import EcgPmaModel
    from .training.probe_layers import probe_layers

    extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
    _, windows = _load_windows(args, extractor)
    encoder = EcgPmaModel.from_pretrained(args.model)
    splits = {split: windows[split] for split in ("train", "validation", "test") if len(windows[split])}
    probe_layers(encoder, splits, args.output_dir, epochs=args.epochs, head_type=args.head_type, batch_size=args.batch_size)
    output = Path(args.output_dir)
    print((output / "layerwise_probe.md").read_text())
    print(f"Plot: {output / 'layerwise_probe.png'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from .inference import decision_thresholds, predict_records

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


def _evaluate(args: argparse.Namespace) -> int:
    import tempfile

    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, Trainer, TrainingArguments

    from .data import id2label
    from .training.collator import EcgDataCollator
    from .training.finetune import RecordMetrics

    model = AutoModelForSequenceClassification.from_pretrained(args.model)
    extractor = AutoFeatureExtractor.from_pretrained(args.model)
    raw, windows = _load_windows(args, extractor)
    labels = id2label(raw)
    if [labels[i] for i in range(len(labels))] != [model.config.id2label[i] for i in range(model.config.num_labels)]:
        raise ValueError(
            f"The dataset's labels {list(labels.values())} are not the model's {list(model.config.id2label.values())}."
        )
    split = windows[args.split]
    metrics = RecordMetrics(split["record_id"], thresholds=model.config.decision_thresholds)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(output_dir=scratch, per_device_eval_batch_size=args.batch_size, report_to="none"),
            data_collator=EcgDataCollator(config=model.config),
            compute_metrics=metrics,
        )
        trainer.predict(split)
    result = {"model": args.model, "split": args.split, **metrics.last}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


def _push(args: argparse.Namespace) -> int:
    from .hub import push_to_hub

    commit = push_to_hub(
        args.model_dir,
        args.repo_id,
        token=args.token,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        datasets=args.dataset,
    )
    print(f"Pushed {args.model_dir} to {args.repo_id}: {commit.commit_url}")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx

    spec = export_onnx(args.model_dir, args.output, opset=args.opset)
    print(f"Exported {args.model_dir} to {args.output}: {json.dumps(spec)}")
    return 0


def _convert_st_mem(args: argparse.Namespace) -> int:
    from .convert_st_mem import convert_st_mem

    model = convert_st_mem(args.checkpoint, args.output_dir, full=args.full, sampling_rate=args.sampling_rate, band_pass=not args.no_band_pass)
    config = model.config
    print(
        f"Converted {args.checkpoint} to {type(model).__name__} in {args.output_dir}: {config.num_hidden_layers} blocks of "
        f"{config.hidden_size}, {config.num_leads} leads, {config.signal_length} samples at {config.sampling_rate} Hz, "
        f"patch {config.patch_size}"
    )
    return 0


def _download(args: argparse.Namespace) -> int:
    from .data import download_database

    folder = download_database(
        args.database,
        args.output_dir,
        index_url=args.index_url,
        subset=args.subset,
        overwrite=args.overwrite,
    )
    print(f"Downloaded {args.database} to {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .configuration_ecg_pma import PRESETS
    from .data import DATABASES

    parser = argparse.ArgumentParser(
        prog="ecg-pma", description="ECG foundation model with a mixture of layers (PPA / PMA / IPA)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="offline end-to-end demo: simulate, pre-train, probe last/PPA/PMA, predict")
    demo.add_argument("--output-dir", default="outputs/demo")
    demo.add_argument("--data", default=None, help="use the PhysioNet 2021-style records (# Dx: headers) in this folder")
    demo.add_argument("--num-records", type=int, default=320)
    demo.add_argument("--pretrain-steps", type=int, default=800)
    demo.add_argument("--probe-epochs", type=int, default=20)
    demo.set_defaults(handler=_demo)

    pre = commands.add_parser("pretrain", help="masked-modeling pre-training with Accelerate (last or IPA)")
    _add_data_arguments(pre)
    pre.add_argument("--output-dir", required=True)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="vit-b-paper")
    pre.add_argument("--config", default=None, help="a config.json folder instead of --preset")
    pre.add_argument("--pretraining-aggregation", choices=("last", "ipa"), default="ipa")
    pre.add_argument("--band-pass", action="store_true", help="0.67-40 Hz band-pass in the feature extractor (ST-MEM)")
    pre.add_argument("--all-splits", action="store_true", help="pre-train on train + validation + test (no labels used)")
    pre.add_argument("--batch-size", type=int, default=64, help="per device")
    pre.add_argument("--gradient-accumulation-steps", type=int, default=1)
    pre.add_argument("--base-learning-rate", type=float, default=1.2e-3, help="x effective batch / 256")
    pre.add_argument("--epochs", type=float, default=800)
    pre.add_argument("--max-steps", type=int, default=None)
    pre.add_argument("--warmup-epochs", type=float, default=40)
    pre.add_argument("--warmup-steps", type=int, default=None)
    pre.add_argument("--mixed-precision", choices=("auto", "no", "bf16", "fp16"), default="auto")
    pre.add_argument("--torch-compile", action="store_true", help="compile the Transformer blocks with torch.compile")
    pre.add_argument("--save-steps", type=int, default=1000)
    pre.add_argument("--resume", default=None, help="a checkpoint folder, or 'latest'")
    pre.add_argument("--seed", type=int, default=0)
    pre.set_defaults(handler=_pretrain)

    fine = commands.add_parser("finetune", help="linear probing or finetuning with the Trainer")
    _add_data_arguments(fine)
    fine.add_argument("--model", required=True, help="a pre-trained (or, for --mode finetune, a probed) model folder")
    fine.add_argument("--output-dir", required=True)
    fine.add_argument("--mode", choices=("probe", "finetune"), default="probe")
    fine.add_argument("--aggregation", choices=("last", "ppa", "pma", "layer"), default=None)
    fine.add_argument("--aggregation-layer", type=int, default=None)
    fine.add_argument("--head-type", choices=("linear", "mlp"), default=None)
    fine.add_argument("--epochs", type=float, default=None, help="default: the paper's 100")
    fine.add_argument("--batch-size", type=int, default=None)
    fine.add_argument("--learning-rate", type=float, default=None)
    fine.add_argument("--seed", type=int, default=None)
    fine.set_defaults(handler=_finetune)

    probe = commands.add_parser("probe-layers", help="the layer-wise probing study: a probe per layer plus PPA and PMA")
    _add_data_arguments(probe)
    probe.add_argument("--model", required=True)
    probe.add_argument("--output-dir", required=True)
    probe.add_argument("--epochs", type=int, default=100)
    probe.add_argument("--head-type", choices=("linear", "mlp"), default="linear")
    probe.add_argument("--batch-size", type=int, default=64)
    probe.set_defaults(handler=_probe_layers)

    predict = commands.add_parser("predict", help="per-label probabilities and layer weights for WFDB records")
    predict.add_argument("model")
    predict.add_argument("records", nargs="+", help="WFDB record paths (with or without .hea)")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument(
        "--compile", action="store_true", help="torch.compile the model first (tens of seconds; pays off on many records)"
    )
    predict.add_argument("--trust-remote-code", action="store_true", help="load the code saved with the model")
    predict.set_defaults(handler=_predict)

    evaluate = commands.add_parser("evaluate", help="score a saved classifier on a dataset split")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--split", choices=("train", "validation", "test"), default="test")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", default=None, help="write the JSON result here too")
    evaluate.set_defaults(handler=_evaluate)

    push = commands.add_parser("push", help="upload a saved model (weights, code, extractor, card) to the Hub")
    push.add_argument("model_dir")
    push.add_argument("repo_id")
    push.add_argument("--token", default=None, help="default: HF_TOKEN or the stored login")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None, help="a branch (created from main if needed)")
    push.add_argument("--commit-message", default=None)
    push.add_argument("--dataset", action="append", default=None, help="dataset id for the card metadata (repeatable)")
    push.set_defaults(handler=_push)

    export = commands.add_parser("export-onnx", help="export a saved classifier to ONNX (dynamic batch)")
    export.add_argument("model_dir")
    export.add_argument("output")
    export.add_argument("--opset", type=int, default=17)
    export.set_defaults(handler=_export_onnx)

    convert = commands.add_parser("convert-st-mem", help="convert an ST-MEM checkpoint (.pth) into an ecg-pma model")
    convert.add_argument("checkpoint")
    convert.add_argument("output_dir")
    convert.add_argument("--full", action="store_true", help="the encoder + decoder file -> EcgPmaForPreTraining")
    convert.add_argument("--sampling-rate", type=int, default=250, help="the rate the weights were trained at (ST-MEM: 250)")
    convert.add_argument("--no-band-pass", action="store_true", help="save the extractor without ST-MEM's 0.67-40 Hz band-pass")
    convert.set_defaults(handler=_convert_st_mem)

    download = commands.add_parser(
        "download", help="download a PhysioNet database (WFDB records and metadata) with wfdb"
    )
    download.add_argument("database", help=f"a PhysioNet database slug, e.g. {', '.join(sorted(DATABASES))}")
    download.add_argument("output_dir")
    download.add_argument(
        "--index-url",
        default=None,
        help="a PhysioNet-like server to download from (a mirror or local copy); default PhysioNet's file index",
    )
    download.add_argument("--subset", default=None, help="only records whose name starts with this (e.g. records100)")
    download.add_argument("--overwrite", action="store_true", help="download files that are already present again")
    download.set_defaults(handler=_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as error:  # ConversionError is a ValueError
        print(f"ecg-pma {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
