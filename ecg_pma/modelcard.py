"""Model cards for saved ECG-PMA models, generated with `huggingface_hub.ModelCard` from the package's template."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).parent / "model_cards" / "ecg_pma_card_template.md"


def build_model_card(
    config,
    feature_extractor,
    training: dict | None = None,
    results: dict | None = None,
    mean_layer_weights: list[float] | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """A card describing the model, its preprocessing, aggregation and (when given) training and results."""
    is_classifier = bool(config.architectures) and "Classification" in config.architectures[0]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=None,
        license="mit",
        tags=["ecg", "electrocardiography", "time-series", "ecg-pma", config.aggregation if is_classifier else "pretraining"],
    )
    preprocessing = {
        "leads": ", ".join(feature_extractor.lead_names),
        "sampling_rate": feature_extractor.sampling_rate,
        "window": f"{feature_extractor.signal_length} samples ({feature_extractor.signal_length / feature_extractor.sampling_rate:g} s)",
        "filter": (
            f"zero-phase Butterworth band-pass {feature_extractor.low_cut_hz}-{feature_extractor.high_cut_hz} Hz "
            f"(order {feature_extractor.filter_order})"
            if feature_extractor.do_filter
            else "none"
        ),
        "normalisation": "per-lead z-score of each window" if feature_extractor.do_normalize else "none",
    }
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
        results=results or {},
        mean_layer_weights=mean_layer_weights,
    )


def write_model_card(output_dir: str | Path, config, feature_extractor, **kwargs) -> Path:
    path = Path(output_dir) / "README.md"
    build_model_card(config, feature_extractor, **kwargs).save(path)
    return path
