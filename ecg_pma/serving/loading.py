"""Loading a trained classifier for prediction, export or the web demo, and its decision thresholds."""

from __future__ import annotations

from transformers import AutoConfig

from ..modeling_ecg_pma import EcgPmaForSequenceClassification


def load_trained_classifier(model_dir, loader=None, **kwargs) -> EcgPmaForSequenceClassification:
    """
    A classifier for prediction or export: `loader.from_pretrained(model_dir)` (default
    `EcgPmaForSequenceClassification`), refusing a checkpoint without a trained gate and head (a pre-training or encoder
    checkpoint), which would otherwise predict with random ones.
    """
    loader = loader or EcgPmaForSequenceClassification
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=kwargs.get("trust_remote_code"))
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ValueError(
            f"{model_dir} is not a classifier ({', '.join(architectures) or 'no architecture in its config'}): it is a "
            f"pre-trained model without a trained head. Train one first: ecg-pma finetune --model {model_dir} ..."
        )
    model, info = loader.from_pretrained(model_dir, output_loading_info=True, **kwargs)
    if info["missing_keys"]:
        architectures = ", ".join(getattr(model.config, "architectures", None) or ["unknown"])
        raise ValueError(
            f"{model_dir} has no trained classifier ({architectures} checkpoint; missing "
            f"{sorted({key.rsplit('.', 1)[0] for key in info['missing_keys']})}): train one with `ecg-pma finetune`."
        )
    return model


def decision_thresholds(config) -> list[float]:
    """The per-label thresholds tuned on validation and stored in the config, or 0.5 for every label where none were."""
    return list(config.decision_thresholds or [0.5] * config.num_labels)


def label_names(config) -> list[str]:
    """The label names in output order, from `id2label` (a config saved without `label2id` has only that)."""
    return [config.id2label[index] for index in range(config.num_labels)]
