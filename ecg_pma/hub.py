"""Publishing ECG-PMA models on the Hugging Face Hub (or any Hub-compatible endpoint, via `HF_ENDPOINT`)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForSequenceClassification

from .modelcard import write_model_card
from .pipeline_ecg_pma import EcgClassificationPipeline


# Files beside the weights that travel with them when present.
EXTRA_FILES = ("results.json", "results.md", "onnx_export.json", "layerwise_probe.md", "layerwise_probe.png")


def stage_model(
    model_dir: str | Path, staging_dir: str | Path, repo_id: str, datasets: list[str] | None = None
) -> Path:
    """
    Writes everything a Hub repository needs into `staging_dir`: safetensors weights, config (with `auto_map` and, for
    classifiers, `custom_pipelines`), the modeling / configuration / feature-extraction / pipeline code,
    `preprocessor_config.json`, a generated model card, and the results / ONNX files found in `model_dir`.
    """
    model_dir, staging_dir = Path(model_dir), Path(staging_dir)
    config = AutoConfig.from_pretrained(model_dir)
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    is_classifier = any("Classification" in name for name in (config.architectures or []))
    if is_classifier:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        EcgClassificationPipeline(model=model, feature_extractor=extractor).save_pretrained(staging_dir)
    else:
        model = AutoModel.from_pretrained(model_dir)
        model.save_pretrained(staging_dir)
        extractor.save_pretrained(staging_dir)
    for name in EXTRA_FILES:
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, staging_dir / name)
    for onnx_file in model_dir.glob("*.onnx"):
        shutil.copy(onnx_file, staging_dir / onnx_file.name)

    results = json.loads((model_dir / "results.json").read_text()) if (model_dir / "results.json").exists() else None
    onnx = (
        json.loads((model_dir / "onnx_export.json").read_text()) if (model_dir / "onnx_export.json").exists() else None
    )
    scores = (results or {}).get("test") or (results or {}).get("validation")
    write_model_card(
        staging_dir,
        model.config,
        extractor,
        results=scores,
        mean_layer_weights=(scores or {}).get("mean_layer_weights"),
        repo_id=repo_id,
        datasets=datasets,
        onnx=onnx,
        split="test" if (results or {}).get("test") else "validation",
    )
    return staging_dir


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    datasets: list[str] | None = None,
    endpoint: str | None = None,
) -> CommitInfo:
    """
    Uploads a saved model folder to `repo_id` (created if needed; `revision` names a branch, created from `main` if
    needed). The endpoint and token follow `huggingface_hub` (`HF_ENDPOINT`, `HF_TOKEN`, the stored login) unless
    given. Returns the commit.
    """
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a saved model folder (no config.json); nothing was pushed.")
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory() as staging:
        # staged (the model loaded and checked) before anything is created on the Hub
        stage_model(model_dir, staging, repo_id, datasets)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            folder_path=staging,
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or f"Upload ECG-PMA model from {Path(model_dir).name}",
        )
