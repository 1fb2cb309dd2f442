"""
The `ecg-feature-extraction` pipeline: the embeddings `ecg-pma embed` writes, for one record, from pre-trained weights
(PPA mixture) and from a PMA classifier (its trained gate).
"""

import pytest
import torch
from conftest import shared_data_dir
from transformers import pipeline

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.cli import main
from ecg_pma.evaluation.embeddings import RecordEmbeddings


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
