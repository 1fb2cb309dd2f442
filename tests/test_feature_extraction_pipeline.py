"""
The `ecg-feature-extraction` pipeline: the embeddings `ecg-pma embed` writes, for one record, from pre-trained weights
(PPA mixture) and from a PMA classifier (its trained gate).
"""

import json
from pathlib import Path

import pytest
import torch
from conftest import run_without_package, shared_data_dir
from safetensors.torch import load_file
from transformers import pipeline

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.cli import main
from ecg_pma.evaluation.embeddings import RecordEmbeddings
from ecg_pma.sharing import save_shareable


def save_tiny(kind, path):
    torch.manual_seed(3)
    config = EcgPmaConfig.from_preset("tiny")
    if kind == "classifier":
        config.update({"num_labels": 2, "id2label": {0: "AF", 1: "NSR"}, "label2id": {"AF": 0, "NSR": 1},
                       "problem_type": "multi_label_classification", "aggregation": "pma"})  # fmt: skip
        model = EcgPmaForSequenceClassification(config)
        with torch.no_grad():  # a gate that is not uniform, as a trained one
            model.aggregator.gate.gate[-1].weight.normal_(0, 0.5)
    else:
        model = EcgPmaForPreTraining(config)
    model.save_pretrained(path)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind,mixture", [("pretrained", "ppa"), ("classifier", "pma")])
def test_the_pipeline_returns_the_embeddings_ecg_pma_embed_writes(tmp_path, kind, mixture):
    model = save_tiny(kind, tmp_path / "model")
    data = shared_data_dir("physionet2021")
    output = tmp_path / "embeddings.safetensors"
    assert main(["embed", "--data", str(data), "--data-format", "physionet2021", "--model", str(model), "--output",
                 str(output), "--cache-dir", str(tmp_path / "cache")]) == 0  # fmt: skip
    embedded = RecordEmbeddings.load(output)
    assert embedded.mixture == mixture
    extract = pipeline("ecg-feature-extraction", model=str(model))
    for name in ("JS20002", "E07500"):
        record = next(path for path in data.rglob(f"{name}.hea")).with_suffix("")
        result = extract(str(record), return_tensors=True)
        assert result["mixture"] == mixture
        row = embedded.record_ids.index(next(i for i in embedded.record_ids if i.endswith(name)))
        for tensor in ("layer_representations", "input_representation", "pooled", "mixed"):
            torch.testing.assert_close(result[tensor], getattr(embedded, tensor)[row], rtol=1e-4, atol=1e-5)
    listed = extract(str(record))
    assert len(listed["layer_representations"]) == model_depth(model) and isinstance(listed["pooled"][0], float)


def model_depth(model_dir):
    return EcgPmaConfig.from_pretrained(model_dir).num_hidden_layers


FRESH_PROCESS = """
import sys
from safetensors.torch import save_file
from transformers import pipeline

record, output = sys.argv[1:3]
tensors = {}
for folder in sys.argv[3:]:
    extract = pipeline("ecg-feature-extraction", model=folder, trust_remote_code=True)
    print(folder, type(extract).__module__, extract(record)["mixture"])
    for name, value in extract(record, return_tensors=True).items():
        if name != "mixture":
            tensors[f"{folder}/{name}"] = value
    if folder.endswith("classifier"):  # both pipelines of one folder
        print("labels", [entry["label"] for entry in pipeline("ecg-classification", model=folder,
              trust_remote_code=True)(record, top_k=2)])
save_file(tensors, output)
"""


def test_a_saved_folder_runs_the_pipeline_with_trust_remote_code_without_the_package(tmp_path):
    """`save_shareable` (finetune's output folder, what `push` uploads) lists `ecg-feature-extraction` in the config's
    `custom_pipelines` beside `ecg-classification`, and the pipeline code saved with the weights gives, in a process
    that cannot import `ecg_pma`, what the package's pipeline gives (the embeddings of `ecg-pma embed`, test above)."""
    record = str(next(shared_data_dir("physionet2021").rglob("JS20002.hea")).with_suffix(""))
    folders = {}
    for kind in ("pretrained", "classifier"):
        model = save_tiny(kind, tmp_path / f"{kind}-source")
        loaded = (EcgPmaForSequenceClassification if kind == "classifier" else EcgPmaForPreTraining).from_pretrained(
            model
        )
        folders[kind] = tmp_path / kind
        save_shareable(loaded, EcgPmaFeatureExtractor.from_pretrained(model), folders[kind])
        assert (folders[kind] / "pipeline_ecg_pma.py").is_file()
    pipelines = {kind: json.loads((folder / "config.json").read_text())["custom_pipelines"] for kind, folder in
                 folders.items()}  # fmt: skip
    assert set(pipelines["classifier"]) == {"ecg-classification", "ecg-feature-extraction"}
    assert set(pipelines["pretrained"]) == {"ecg-feature-extraction"}
    assert pipelines["classifier"]["ecg-feature-extraction"] == {
        "impl": "pipeline_ecg_pma.EcgFeatureExtractionPipeline",
        "pt": ["AutoModelForSequenceClassification", "AutoModel"],
    }

    output = tmp_path / "remote.safetensors"
    result = run_without_package(tmp_path, FRESH_PROCESS, record, str(output), *map(str, folders.values()))
    lines = result.stdout.strip().splitlines()
    for kind, mixture in (("pretrained", "ppa"), ("classifier", "pma")):
        line = next(line for line in lines if line.startswith(str(folders[kind]) + " "))
        assert "transformers_modules" in line and line.endswith(mixture), line  # the folder's copy of the code
    remote = load_file(output)
    for kind, folder in folders.items():  # the package's pipeline on the same weights, saved without pipeline code
        local = pipeline("ecg-feature-extraction", model=str(tmp_path / f"{kind}-source"))(record, return_tensors=True)
        for name in ("layer_representations", "input_representation", "pooled", "mixed"):
            torch.testing.assert_close(remote[f"{folder}/{name}"], local[name], rtol=1e-6, atol=1e-6)
    classify = pipeline("ecg-classification", model=str(tmp_path / "classifier-source"))
    local_labels = [entry["label"] for entry in classify(record, top_k=2)]
    assert f"labels {local_labels}" in lines
    # where the package is imported, its own classes serve a folder that lists them, without remote code (README)
    for kind, folder in folders.items():
        served = pipeline("ecg-feature-extraction", model=str(folder))
        assert type(served).__module__ == "ecg_pma.pipeline_ecg_pma", kind
        for name in ("layer_representations", "input_representation", "pooled", "mixed"):
            torch.testing.assert_close(served(record, return_tensors=True)[name], remote[f"{folder}/{name}"])
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    paragraph = readme.split("- **Embeddings alone**")[1].split("\n\n")[0].replace("\n  ", " ")
    for claim in ("list `ecg-feature-extraction` in the config's `custom_pipelines` (beside `ecg-classification` for "
                  "classifiers)", '`pipeline("ecg-feature-extraction", model=M, trust_remote_code=True)` works without '
                  "the package", "Where the package is imported, both run its own classes with `trust_remote_code` unset"):  # fmt: skip
        assert claim in paragraph, claim
