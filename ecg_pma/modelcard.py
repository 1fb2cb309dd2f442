"""Model cards for saved ECG-PMA models, generated with `huggingface_hub.ModelCard` from the package's template."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData


TEMPLATE_PATH = Path(__file__).parent / "model_cards" / "ecg_pma_card_template.md"


def build_model_card(
    config,
    feature_extractor,
    training: dict | None = None,
    results: dict | None = None,
    mean_layer_weights: list[float] | None = None,
    repo_id: str | None = None,
    datasets: list[str] | None = None,
    onnx: dict | None = None,
    split: str = "test",
) -> ModelCard:
    """
    A card describing the model, its preprocessing, aggregation and (when given) training, results (also as
    `model-index` metadata), datasets and ONNX export. The Hub has no ECG task, so `pipeline_tag` is left unset and
    the custom `ecg-classification` pipeline is named in the tags.
    """
    is_classifier = bool(config.architectures) and "Classification" in config.architectures[0]
    results = results or {}
    metrics = {
        key: value
        for key, value in results.items()
        if key in ("macro_auroc", "macro_average_precision", "macro_f1", "accuracy")
    }
    dataset_name = (datasets or ["ecg"])[0]
    eval_results = [
        EvalResult(
            task_type="ecg-classification",
            task_name="Multi-label ECG classification",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=name,
            metric_name=name.replace("_", " "),
            metric_value=round(float(value), 4),
        )
        for name, value in metrics.items()
    ]
    card_data = ModelCardData(
        library_name="transformers",
        license="mit",
        tags=["ecg", "electrocardiography", "time-series", "ecg-pma", "custom_code"]
        + (
            ["ecg-classification", config.aggregation]
            if is_classifier
            else ["masked-modeling", config.pretraining_aggregation]
        ),
        datasets=datasets,
        model_name=repo_id or "ecg-pma model",
        eval_results=eval_results or None,
    )
    per_window = getattr(feature_extractor, "normalization", "per_lead") == "per_window"
    preprocessing = {
        "leads": ", ".join(feature_extractor.lead_names),
        "sampling_rate": feature_extractor.sampling_rate,
        "resampling": getattr(feature_extractor, "resample_method", "polyphase"),
        "window": f"{feature_extractor.signal_length} samples ({feature_extractor.signal_length / feature_extractor.sampling_rate:g} s)",
        "filter": filter_description(feature_extractor),
        "normalisation": (
            ("z-score over all leads and samples of each window" if per_window else "per-lead z-score of each window")
            if feature_extractor.do_normalize
            else "none"
        ),
        "evaluation windows": {
            "n_crop": f"{getattr(feature_extractor, 'num_crops', 3)} equally spaced crops, averaged",
            "center": "one centred window",
            "random": "one random window",
        }.get(feature_extractor.window_mode, "sliding windows, averaged"),
    }
    if getattr(feature_extractor, "segment_seconds", None):
        preprocessing["segments"] = f"records cut into {feature_extractor.segment_seconds:g} s segments first"
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_id=repo_id or "ecg-pma model",
        repo_id=repo_id or "path/to/model",
        architecture=(config.architectures or ["EcgPmaModel"])[0],
        config=config,
        is_classifier=is_classifier,
        preprocessing=preprocessing,
        training=training or {},
        results={key: round(float(value), 4) for key, value in metrics.items()}
        or {key: value for key, value in results.items() if isinstance(value, (int, float, str))},
        split=split,
        mean_layer_weights=mean_layer_weights,
        onnx=onnx,
    )


def filter_description(feature_extractor) -> str:
    if not feature_extractor.do_filter:
        return "none"
    low, high, order = feature_extractor.low_cut_hz, feature_extractor.high_cut_hz, feature_extractor.filter_order
    if getattr(feature_extractor, "filter_type", "bandpass") == "highpass_lowpass":
        text = f"zero-phase Butterworth high-pass {low} Hz then low-pass {high} Hz (order {order} each)"
    else:
        text = f"zero-phase Butterworth band-pass {low}-{high} Hz (order {order})"
    return text + (", on each crop" if getattr(feature_extractor, "crop_before_filter", False) else "")


def card_protocol(protocol: dict | None) -> dict:
    """
    Protocol choices as the card lists them: a `{split: [record ids]}` value (dropped short records) becomes its
    count per split; the names stay in the run's results file.
    """
    summary = {}
    for key, value in (protocol or {}).items():
        if isinstance(value, dict) and all(isinstance(names, list) for names in value.values()):
            value = ", ".join(f"{split}: {len(names)}" for split, names in value.items()) or "none"
        summary[key] = value
    return summary


def write_model_card(output_dir: str | Path, config, feature_extractor, **kwargs) -> Path:
    path = Path(output_dir) / "README.md"
    build_model_card(config, feature_extractor, **kwargs).save(path)
    return path
