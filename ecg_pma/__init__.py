"""ecg-pma: an ECG foundation model with a mixture of layers, as a Hugging Face model package.

Importing one of the package's classes registers the configuration and models with the `transformers` Auto classes
and the `ecg-classification` pipeline, and marks them so that `save_pretrained` writes the modeling code and an
`auto_map` (loadable with `trust_remote_code=True`). The classes are imported on first use, so that `import ecg_pma`
(and `ecg-pma --help`) does not wait for torch and transformers.
"""

from __future__ import annotations

import functools
import importlib


__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY_EXPORTS = {
    "LEAD_SETS": "configuration_ecg_pma",
    "PRESETS": "configuration_ecg_pma",
    "resolve_lead_set": "configuration_ecg_pma",
    "STANDARD_LEAD_NAMES": "configuration_ecg_pma",
    "EcgPmaConfig": "configuration_ecg_pma",
    "EcgPmaFeatureExtractor": "feature_extraction_ecg_pma",
    "EcgPmaForPreTraining": "modeling_ecg_pma",
    "EcgPmaForSequenceClassification": "modeling_ecg_pma",
    "EcgPmaModel": "modeling_ecg_pma",
    "EcgPmaPreTrainedModel": "modeling_ecg_pma",
    "EcgClassificationPipeline": "pipeline_ecg_pma",
}


@functools.cache
def register_auto_classes() -> None:
    """Registers the package with `AutoConfig`, `AutoModel*`, `AutoFeatureExtractor` and the pipeline registry."""
    from transformers import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
    )
    from transformers.pipelines import PIPELINE_REGISTRY

    from .configuration_ecg_pma import EcgPmaConfig
    from .feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from .modeling_ecg_pma import EcgPmaForPreTraining, EcgPmaForSequenceClassification, EcgPmaModel
    from .pipeline_ecg_pma import EcgClassificationPipeline

    AutoConfig.register(EcgPmaConfig.model_type, EcgPmaConfig, exist_ok=True)
    for auto_class, model_class in (
        (AutoModel, EcgPmaModel),
        (AutoModelForPreTraining, EcgPmaForPreTraining),
        (AutoModelForSequenceClassification, EcgPmaForSequenceClassification),
    ):
        auto_class.register(EcgPmaConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    EcgPmaConfig.register_for_auto_class()
    AutoFeatureExtractor.register(EcgPmaConfig, EcgPmaFeatureExtractor, exist_ok=True)
    EcgPmaFeatureExtractor.register_for_auto_class()
    PIPELINE_REGISTRY.register_pipeline(
        "ecg-classification", pipeline_class=EcgClassificationPipeline, pt_model=AutoModelForSequenceClassification
    )


def __getattr__(name: str):
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    register_auto_classes()
    value = getattr(importlib.import_module(f".{_LAZY_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY_EXPORTS])


__all__ = [*_LAZY_EXPORTS, "register_auto_classes"]
