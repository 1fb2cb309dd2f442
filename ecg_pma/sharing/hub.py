"""Publishing ECG-PMA models on the Hugging Face Hub (or any Hub-compatible endpoint, via `HF_ENDPOINT`)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForSequenceClassification
from transformers.dynamic_module_utils import custom_object_save

from ..pipeline_ecg_pma import EcgClassificationPipeline, EcgFeatureExtractionPipeline
from .modelcard import add_benchmark_to_card, write_model_card


# Files beside the weights that travel with them when present.
EXTRA_FILES = ("results.json", "results.md", "onnx_export.json", "layerwise_probe.md", "layerwise_probe.png")


def save_shareable(model, feature_extractor, output_dir: str | Path) -> None:
    """
    Saves a model and its feature extractor as a folder that loads without this package: safetensors weights, the
    configuration / modeling / feature-extraction / pipeline code with `auto_map`, and `custom_pipelines` in the config
    (`ecg-feature-extraction`, and `ecg-classification` for classifiers), so that `pipeline("ecg-classification",
    model=output_dir, trust_remote_code=True)` and `pipeline("ecg-feature-extraction", ...)` work on the folder
    exactly as on a pushed repository.
    """
    if model.config.architectures is None:
        model.config.architectures = [type(model).__name__]
    pipelines = [EcgFeatureExtractionPipeline]
    if "Classification" in model.config.architectures[0]:
        pipelines.insert(0, EcgClassificationPipeline)
    # what `Pipeline.save_pretrained` does for one pipeline class (it writes only its own task), for both
    model.config.custom_pipelines = custom_pipeline_entries(pipelines)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    custom_object_save(pipelines[0], output_dir)  # pipeline_ecg_pma.py, which holds both classes
    model.save_pretrained(output_dir)
    feature_extractor.save_pretrained(output_dir)


def custom_pipeline_entries(pipeline_classes: list[type]) -> dict:
    """
    The config's `custom_pipelines` entries of `pipeline_classes` (registered by `ecg_pma.register_auto_classes`), as
    `Pipeline.save_pretrained` writes them: the class as `module.Class` of the code file saved beside the weights and
    its model classes by name (`transformers` classes, resolved when the pipeline is loaded).
    """
    entries = {}
    for pipeline_class in pipeline_classes:
        for task, info in pipeline_class._registered_impl.items():
            module = pipeline_class.__module__.split(".")[-1]
            entries[task] = {
                **info,
                "impl": f"{module}.{pipeline_class.__name__}",
                "pt": [model_class.__name__ for model_class in info["pt"]],
            }
    return entries


def stage_model(
    model_dir: str | Path,
    staging_dir: str | Path,
    repo_id: str,
    datasets: list[str] | None = None,
    benchmarks: list[str | Path] | None = None,
) -> Path:
    """
    Writes everything a Hub repository needs into `staging_dir`: safetensors weights, config (with `auto_map` and
    `custom_pipelines`), the modeling / configuration / feature-extraction / pipeline code,
    `preprocessor_config.json`, a generated model card, and the results / ONNX files found in `model_dir`.
    `benchmarks`: `ecg-pma benchmark` output folders whose `benchmark.json` results go into the card's `model-index`.
    """
    model_dir, staging_dir = Path(model_dir), Path(staging_dir)
    config = AutoConfig.from_pretrained(model_dir)
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    is_classifier = any("Classification" in name for name in (config.architectures or []))
    model_class = AutoModelForSequenceClassification if is_classifier else AutoModel
    model = model_class.from_pretrained(model_dir)
    save_shareable(model, extractor, staging_dir)
    for name in EXTRA_FILES:
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, staging_dir / name)
    for onnx_file in model_dir.glob("*.onnx"):
        shutil.copy(onnx_file, staging_dir / onnx_file.name)

    results = json.loads((model_dir / "results.json").read_text()) if (model_dir / "results.json").exists() else {}
    onnx = (
        json.loads((model_dir / "onnx_export.json").read_text()) if (model_dir / "onnx_export.json").exists() else None
    )
    scores = results.get("test") or results.get("validation") or {}
    # The same card as the local one (training, data, every split's results), plus the repo id, datasets and ONNX.
    write_model_card(
        staging_dir,
        model.config,
        extractor,
        training=results.get("training"),
        evaluation={split: results.get(split) for split in ("validation", "test")},
        dataset=results.get("dataset"),
        base_model=results.get("base_model"),
        mean_layer_weights=scores.get("mean_layer_weights"),
        repo_id=repo_id,
        datasets=datasets,
        onnx=onnx,
    )
    for folder in benchmarks or []:
        add_benchmark_to_card(staging_dir / "README.md", json.loads((Path(folder) / "benchmark.json").read_text()))
    for text_file in [*staging_dir.glob("*.md"), *staging_dir.glob("*.json")]:
        text_file.write_text(without_local_paths(text_file.read_text()))
    return staging_dir


# An absolute path of this machine (POSIX `/a/b/...` or Windows `C:\a\...`) inside a text, not part of a URL.
LOCAL_PATH = re.compile(
    r"(?<![\w:/.~-])(?:/|[A-Za-z]:[\\/])(?:[^\s/\\'\"`,;()\[\]{}<>|]+[/\\])+([^\s/\\'\"`,;()\[\]{}<>|]+)"
)


def without_local_paths(text: str) -> str:
    """`text` with every absolute local path reduced to its last part (the folder or file name), which is what means
    something to others: the user's folders and account name never leave the machine."""
    return LOCAL_PATH.sub(lambda match: match.group(1), text)


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    datasets: list[str] | None = None,
    endpoint: str | None = None,
    benchmarks: list[str | Path] | None = None,
) -> CommitInfo:
    """
    Uploads a saved model folder to `repo_id` (created if needed; `revision` names a branch, created from `main` if
    needed). The endpoint and token follow `huggingface_hub` (`HF_ENDPOINT`, `HF_TOKEN`, the stored login) unless
    given. `benchmarks`: `ecg-pma benchmark` output folders merged into the card's `model-index`. Returns the commit.
    """
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a saved model folder (no config.json); nothing was pushed.")
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory() as staging:
        # staged (the model loaded and checked) before anything is created on the Hub
        stage_model(model_dir, staging, repo_id, datasets, benchmarks)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            folder_path=staging,
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or f"Upload ECG-PMA model from {Path(model_dir).name}",
        )
