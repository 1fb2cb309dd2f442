"""Model cards for saved ECG-PMA models, generated with `huggingface_hub.ModelCard` from the package's template."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index


TEMPLATE_PATH = Path(__file__).parent / "model_cards" / "ecg_pma_card_template.md"
CARD_METRICS = ("macro_auroc", "macro_average_precision", "macro_f1", "accuracy")
SPLITS = ("validation", "test")


def evaluation_results(evaluation: dict[str, dict], dataset: dict | None) -> list[EvalResult]:
    """One `EvalResult` per split and metric of `evaluation` (split -> scores), for the card's `model-index`."""
    dataset = dataset or {}
    dataset_type = dataset.get("id") or "ecg"
    return [
        EvalResult(
            task_type="ecg-classification",
            task_name="Multi-label ECG classification",
            dataset_type=dataset_type,
            dataset_name=dataset.get("name") or dataset_type,
            dataset_split=split,
            metric_type=name,
            metric_name=name.replace("_", " "),
            metric_value=round(float(scores[name]), 4),
        )
        for split, scores in evaluation.items()
        if scores
        for name in CARD_METRICS
        if name in scores
    ]


# `ecg-pma benchmark` suites as the Hub names their data sets.
BENCHMARK_DATASETS = {
    "ptbxl": ("ptb-xl", "PTB-XL"),
    "physionet2021": ("physionet-challenge-2021", "PhysioNet 2021"),
    "icbeb2018": ("cpsc2018", "CPSC 2018 (ICBEB 2018)"),
    "code-test": ("code-test", "CODE-test"),
}


def benchmark_eval_results(benchmark: dict) -> list[EvalResult]:
    """
    The card's `model-index` entries of an `ecg-pma benchmark` result: per task and head (probe, or the end-to-end
    `finetune` / `lora` protocol), the pre-trained encoder's test macro AUROC with all training labels (the largest
    label fraction), averaged over seeds; per lead set when the benchmark ran several (`, 6 leads`).
    """
    dataset_type, dataset_name = BENCHMARK_DATASETS.get(benchmark["suite"], (benchmark["suite"], benchmark["suite"]))
    percent = max(benchmark["settings"]["label_percents"])

    def leads(result: dict) -> str:  # a lead set other than 12 (`benchmark --lead-sets`)
        lead_set = result.get("lead_set", "12")
        return "" if lead_set == "12" else f", {lead_set} leads"

    def protocol(head: str) -> str:
        return f"{head} (end to end)" if head in ("finetune", "lora") else f"{head} probe"

    return [
        EvalResult(
            task_type="ecg-classification",
            task_name="Multi-label ECG classification (ecg-pma benchmark)",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_config=result["task"],
            dataset_split="test",
            metric_type="roc_auc",
            metric_name=f"macro AUROC, {protocol(row['head'])}{leads(result)}",
            metric_config=f"{protocol(row['head'])}, {percent:g} % labels{leads(result)}",
            metric_value=round(row["macro_auroc"]["mean"], 4),
        )
        for result in benchmark["results"]
        for row in result["over_seeds"]
        if row["encoder"] == "pretrained" and row["label_percent"] == percent
    ]


def add_benchmark_to_card(card_path: str | Path, benchmark: dict) -> ModelCard:
    """
    Merges an `ecg-pma benchmark` result's `model-index` entries (`benchmark_eval_results`) into the card at
    `card_path` (a model's README.md) and saves it: an entry of the same data set, task, metric and protocol is
    replaced (a rerun updates the card), every other entry is kept.
    """
    card = ModelCard.load(card_path)
    new = benchmark_eval_results(benchmark)

    def identity(result: EvalResult) -> tuple:
        return (
            result.dataset_type,
            result.dataset_config,
            result.dataset_split,
            result.metric_type,
            result.metric_config,
        )

    replaced = {identity(result) for result in new}
    kept = [result for result in card.data.eval_results or [] if identity(result) not in replaced]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or Path(benchmark["model"]).name or "ecg-pma-model"
    card.save(card_path)
    return card


def benchmark_model_index(benchmark: dict) -> list[dict]:
    """`model-index` metadata (as a card's YAML holds it) from an `ecg-pma benchmark` result."""
    return eval_results_to_model_index(
        Path(benchmark["model"]).name or "ecg-pma-model", benchmark_eval_results(benchmark)
    )


def preprocessing_table(feature_extractor) -> dict[str, str]:
    """What the saved feature extractor does to a record, as the card lists it."""
    per_window = feature_extractor.normalization == "per_window"
    preprocessing = {
        "leads": ", ".join(feature_extractor.lead_names),
        "sampling_rate": feature_extractor.sampling_rate,
        "resampling": feature_extractor.resample_method,
        "window": f"{feature_extractor.signal_length} samples ({feature_extractor.signal_length / feature_extractor.sampling_rate:g} s)",
        "filter": filter_description(feature_extractor),
        "normalisation": (
            (
                "z-score over every sample of the leads present, per window"
                if per_window
                else "per-lead z-score of each window"
            )
            if feature_extractor.do_normalize
            else "none"
        ),
        "evaluation windows": {
            "n_crop": f"{feature_extractor.num_crops} equally spaced crops, averaged",
            "center": "one centred window",
            "random": "one random window",
        }.get(feature_extractor.window_mode, "sliding windows, averaged"),
    }
    if feature_extractor.segment_seconds:
        preprocessing["segments"] = f"records cut into {feature_extractor.segment_seconds:g} s segments first"
    return preprocessing


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
    evaluation: dict[str, dict] | None = None,
    dataset: dict | None = None,
    base_model: str | None = None,
) -> ModelCard:
    """
    A card describing the model, its preprocessing, aggregation and (when given) training, data, results, ONNX export.

    Args:
        training: the protocol (mode, epochs, learning rate, batch size, seed, ...), listed under "Training".
        evaluation: split -> scores (as `results.json` holds them); every split's headline metrics go into the table
            and into the `model-index` metadata, each under its own split.
        results: scores of one split (`split`), for callers that have only one; `evaluation` supersedes it.
        dataset: what produced the numbers: `name`, `description` (e.g. "simulated ECGs"), optional Hub `id`.
        datasets / base_model: Hub ids for the metadata (`base_model` only when the pre-trained weights are on the Hub).
    The Hub has no ECG task, so `pipeline_tag` is left unset and the custom `ecg-classification` pipeline is named in
    the tags.
    """
    is_classifier = bool(config.architectures) and "Classification" in config.architectures[0]
    evaluation = {name: scores for name, scores in (evaluation or {split: results or {}}).items() if scores}
    dataset = dict(dataset or {})
    if datasets and not dataset.get("id"):
        dataset["id"] = datasets[0]
    model_id = repo_id or (Path(config._name_or_path).name if config._name_or_path else None) or "ecg-pma-model"
    eval_results = evaluation_results(evaluation, dataset)
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
        base_model=base_model,
        model_name=model_id,
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_id=model_id,
        # Where the card lives decides what `from_pretrained` is given: the repo id, or the folder the card is in.
        repo_id=repo_id or "path/to/this/folder",
        architecture=(config.architectures or ["EcgPmaModel"])[0],
        config=config,
        is_classifier=is_classifier,
        preprocessing=preprocessing_table(feature_extractor),
        training=training or {},
        dataset=dataset,
        evaluation={
            name: {key: round(float(scores[key]), 4) for key in CARD_METRICS if key in scores}
            | {"num_records": scores.get("num_records")}
            for name, scores in evaluation.items()
        },
        metrics=CARD_METRICS,
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
