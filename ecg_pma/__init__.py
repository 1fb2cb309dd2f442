"""ecg-pma: an ECG foundation model with a mixture of layers, as a Hugging Face model package.

`import ecg_pma` registers the configuration, the models and the feature extractor with the `transformers` Auto
classes and the `ecg-classification` pipeline, so that saved ecg_pma folders and Hub repositories load with the
installed package's classes, without `trust_remote_code`. It also marks the classes so that `save_pretrained` writes
the modeling code and an `auto_map`, for those who load the model without this package (`trust_remote_code=True`).

The package's parts, each a subpackage: `data` (corpora as `datasets`), `formats` (DICOM, HL7 aECG, GE MUSE and
Philips XML, EDF, array files: `read_ecg`), `training` (pre-training, probing, finetuning), `serving` (prediction,
ONNX, folder screening), `visualization` (ECG plots, explanations, the web demo), `sharing` (Hub, model cards,
Spaces), `conversion` (ST-MEM checkpoints), `metrics` and `commands` (the `ecg-pma` command). The files saved with a
model (configuration, modeling, feature extraction, pipeline) stay at the top, as in `transformers`.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys


__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use.
_LAZY_EXPORTS = {
    "LEAD_SETS": "configuration_ecg_pma",
    "PRESETS": "configuration_ecg_pma",
    "resolve_lead_set": "configuration_ecg_pma",
    "STANDARD_LEAD_NAMES": "configuration_ecg_pma",
    "EcgPmaConfig": "configuration_ecg_pma",
    "EcgPmaFeatureExtractor": "feature_extraction_ecg_pma",
    "read_ecg": "formats",
    "write_ecg": "formats",
    "CheckpointMismatchError": "modeling_ecg_pma",
    "EcgPmaForPreTraining": "modeling_ecg_pma",
    "EcgPmaForSequenceClassification": "modeling_ecg_pma",
    "EcgPmaModel": "modeling_ecg_pma",
    "EcgPmaPreTrainedModel": "modeling_ecg_pma",
    "EcgClassificationPipeline": "pipeline_ecg_pma",
    "EcgFeatureExtractionPipeline": "pipeline_ecg_pma",
    "predict_records": "serving.inference",
    "load_trained_classifier": "serving.loading",
    "export_onnx": "serving.onnx_export",
    "screen_records": "serving.screening",
    "plot_ecg": "visualization.plotting",
    "explain_record": "visualization.explain",
    "push_to_hub": "sharing.hub",
    "convert_st_mem": "conversion.st_mem",
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
    from .pipeline_ecg_pma import EcgClassificationPipeline, EcgFeatureExtractionPipeline

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
    # Not transformers' own "feature-extraction" task, which text models use and a registration would replace. A
    # classifier keeps its trained PMA gate; pre-trained weights load into the encoder (AutoModel).
    PIPELINE_REGISTRY.register_pipeline(
        "ecg-feature-extraction",
        pipeline_class=EcgFeatureExtractionPipeline,
        pt_model=(AutoModelForSequenceClassification, AutoModel),
    )
    # The extractor file stays self-contained (it is saved beside the weights); the package plugs in its readers of
    # DICOM, EDF, XML and array files, so that every path the extractor, pipeline and commands take may be one.
    from . import feature_extraction_ecg_pma
    from .formats import read_ecg

    feature_extraction_ecg_pma.FILE_READER = read_ecg


COMMAND_NAME = "ecg-pma"


def started_as_the_command() -> bool:
    """
    True in the `ecg-pma` console script's process. Registering imports torch and transformers (seconds), which
    `ecg-pma --help` must not wait for; the command registers when a subcommand runs (`ecg_pma.cli.main`).
    """
    script = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    if os.path.basename(script).removesuffix("-script.py") == COMMAND_NAME:
        return True
    # `python -m ecg_pma.cli` (what `accelerate launch -m` and `torchrun -m` run): this package is imported before
    # the module, so `__main__` is not it yet; importing transformers here would also come before `main` turns the
    # progress bars off for a log (tqdm reads TQDM_DISABLE when imported)
    argv = getattr(sys, "orig_argv", [])
    return any(flag == "-m" and module == "ecg_pma.cli" for flag, module in zip(argv, argv[1:]))


def __getattr__(name: str):
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY_EXPORTS])


__all__ = [*_LAZY_EXPORTS, "register_auto_classes"]

if not started_as_the_command():
    register_auto_classes()
