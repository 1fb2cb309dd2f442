"""ecg-pma: an ECG foundation model with a mixture of layers, as a Hugging Face model package.

Importing the package registers the configuration and models with the `transformers` Auto classes, and marks them so
that `save_pretrained` writes the modeling code and an `auto_map` (loadable with `trust_remote_code=True`).
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_ecg_pma import LEAD_SETS, PRESETS, STANDARD_LEAD_NAMES, EcgPmaConfig, resolve_lead_set
from .feature_extraction_ecg_pma import EcgPmaFeatureExtractor
from .modeling_ecg_pma import (
    EcgPmaForPreTraining,
    EcgPmaForSequenceClassification,
    EcgPmaModel,
    EcgPmaPreTrainedModel,
)
from .pipeline_ecg_pma import EcgClassificationPipeline


__version__ = "0.1.0"

AutoConfig.register(EcgPmaConfig.model_type, EcgPmaConfig, exist_ok=True)
for _auto_class, _model_class in (
    (AutoModel, EcgPmaModel),
    (AutoModelForPreTraining, EcgPmaForPreTraining),
    (AutoModelForSequenceClassification, EcgPmaForSequenceClassification),
):
    _auto_class.register(EcgPmaConfig, _model_class, exist_ok=True)
    _model_class.register_for_auto_class(_auto_class.__name__)
EcgPmaConfig.register_for_auto_class()
AutoFeatureExtractor.register(EcgPmaConfig, EcgPmaFeatureExtractor, exist_ok=True)
EcgPmaFeatureExtractor.register_for_auto_class()
PIPELINE_REGISTRY.register_pipeline(
    "ecg-classification", pipeline_class=EcgClassificationPipeline, pt_model=AutoModelForSequenceClassification
)

__all__ = [
    "LEAD_SETS",
    "PRESETS",
    "STANDARD_LEAD_NAMES",
    "EcgClassificationPipeline",
    "EcgPmaConfig",
    "EcgPmaFeatureExtractor",
    "EcgPmaForPreTraining",
    "EcgPmaForSequenceClassification",
    "EcgPmaModel",
    "EcgPmaPreTrainedModel",
    "resolve_lead_set",
]
