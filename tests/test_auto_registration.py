"""
`import ecg_pma` registers the package with the `transformers` Auto classes and the `ecg-classification` pipeline:
in a fresh process, a saved ecg_pma folder (which also carries its own copy of the code and an `auto_map`) loads
through `AutoConfig`, `AutoModel`, `AutoModelForSequenceClassification`, `AutoFeatureExtractor` and `pipeline` with
`trust_remote_code` unset, and the installed package's classes are the ones used, never the folder's copy.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.sharing.hub import save_shareable


LABELS = ["NSR", "AF", "STach"]


@pytest.fixture(scope="module", params=["save_pretrained", "save_shareable"])
def saved_classifier(request, tmp_path_factory):
    """
    A tiny PMA classifier and its extractor saved with `save_pretrained`, as the README's quick start does, or as
    `finetune` saves and `push` uploads them (`save_shareable`: the config also lists the folder's own pipelines in
    `custom_pipelines`, for which transformers would ask for `trust_remote_code`).
    """
    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset("tiny", aggregation="pma", id2label=dict(enumerate(LABELS)))
    folder = tmp_path_factory.mktemp("my-model")
    model, extractor = EcgPmaForSequenceClassification(config), EcgPmaFeatureExtractor.from_model_config(config)
    if request.param == "save_shareable":
        save_shareable(model, extractor, folder)
        assert "ecg-classification" in json.loads((folder / "config.json").read_text())["custom_pipelines"]
    else:
        model.save_pretrained(folder)
        extractor.save_pretrained(folder)
    return folder


def run_fresh(tmp_path, script: str, *args: str) -> dict:
    """Runs `script` in a new interpreter (this checkout first on the path, offline, an empty remote-code cache) and
    returns the JSON object it prints last."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
    }
    env.pop("TRUST_REMOTE_CODE", None)
    result = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


LOAD_EVERY_WAY = """
import json, sys
import ecg_pma
from transformers import (
    AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForSequenceClassification, pipeline,
)

folder, record = sys.argv[1], sys.argv[2]
classify = pipeline("ecg-classification", model=folder)
loaded = {
    "AutoConfig": AutoConfig.from_pretrained(folder),
    "AutoModel": AutoModel.from_pretrained(folder),
    "AutoModelForSequenceClassification": AutoModelForSequenceClassification.from_pretrained(folder),
    "AutoFeatureExtractor": AutoFeatureExtractor.from_pretrained(folder),
    "pipeline": classify,
    "pipeline.model": classify.model,
    "pipeline.feature_extractor": classify.feature_extractor,
}
scores = classify(record, top_k=3)
print(json.dumps({
    "classes": {name: f"{type(value).__module__}.{type(value).__qualname__}" for name, value in loaded.items()},
    "package_file": ecg_pma.__file__,
    "remote_modules": sorted(name for name in sys.modules if name.startswith("transformers_modules")),
    "labels": sorted(score["label"] for score in scores),
}))
"""


@pytest.mark.slow
def test_a_saved_folder_loads_with_the_package_classes_without_remote_code(saved_classifier, tmp_path):
    assert json.loads((saved_classifier / "config.json").read_text())["auto_map"]  # the folder offers its own code
    assert (saved_classifier / "modeling_ecg_pma.py").exists()
    record = shared_data_dir("physionet2021") / "HR06002"
    shown = run_fresh(tmp_path, LOAD_EVERY_WAY, str(saved_classifier), str(record))
    assert shown["classes"] == {
        "AutoConfig": "ecg_pma.configuration_ecg_pma.EcgPmaConfig",
        "AutoModel": "ecg_pma.modeling_ecg_pma.EcgPmaModel",
        "AutoModelForSequenceClassification": "ecg_pma.modeling_ecg_pma.EcgPmaForSequenceClassification",
        "AutoFeatureExtractor": "ecg_pma.feature_extraction_ecg_pma.EcgPmaFeatureExtractor",
        "pipeline": "ecg_pma.pipeline_ecg_pma.EcgClassificationPipeline",
        "pipeline.model": "ecg_pma.modeling_ecg_pma.EcgPmaForSequenceClassification",
        "pipeline.feature_extractor": "ecg_pma.feature_extraction_ecg_pma.EcgPmaFeatureExtractor",
    }
    # the package of this checkout, not the folder's copy imported as remote code
    assert shown["package_file"] == str(REPO_ROOT / "ecg_pma" / "__init__.py")
    assert shown["remote_modules"] == [] and not (tmp_path / "modules" / "transformers_modules").exists()
    assert shown["labels"] == sorted(LABELS)


REGISTERED_BY_IMPORT = """
import json, sys
import ecg_pma  # nothing else of the package is touched below
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_PRETRAINING_MAPPING, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, MODEL_MAPPING,
)
from transformers.pipelines import PIPELINE_REGISTRY

config = CONFIG_MAPPING["ecg_pma"]
print(json.dumps({
    "AutoConfig": config.__qualname__,
    "AutoModel": MODEL_MAPPING[config].__qualname__,
    "AutoModelForPreTraining": MODEL_FOR_PRETRAINING_MAPPING[config].__qualname__,
    "AutoModelForSequenceClassification": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[config].__qualname__,
    "AutoFeatureExtractor": FEATURE_EXTRACTOR_MAPPING[config].__qualname__,
    "pipeline": PIPELINE_REGISTRY.check_task("ecg-classification")[1]["impl"].__qualname__,
}))
"""


def test_the_readme_claim_that_importing_the_package_registers_it(tmp_path):
    readme = (REPO_ROOT / "README.md").read_text()
    assert "Importing `ecg_pma` registers all of them with the Auto classes" in readme
    assert run_fresh(tmp_path, REGISTERED_BY_IMPORT) == {
        "AutoConfig": "EcgPmaConfig",
        "AutoModel": "EcgPmaModel",
        "AutoModelForPreTraining": "EcgPmaForPreTraining",
        "AutoModelForSequenceClassification": "EcgPmaForSequenceClassification",
        "AutoFeatureExtractor": "EcgPmaFeatureExtractor",
        "pipeline": "EcgClassificationPipeline",
    }
