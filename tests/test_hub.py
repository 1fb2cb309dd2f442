"""
Publishing and loading through a Hub-compatible server on 127.0.0.1 (tests/hub_server.py), the `ecg-classification`
pipeline, and ONNX export parity with onnxruntime.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_without_package, shared_data_dir
from hub_server import LocalHub, validate_card
from huggingface_hub import ModelCard
from safetensors.torch import load as load_safetensors_bytes
from transformers import pipeline

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.data import extract_features, id2label, load_physionet2021
from ecg_pma.training import PretrainingArguments, pretrain
from ecg_pma.training.finetune import finetune, load_classifier, reference_training_arguments


TOKEN = "hf_test_token"
REPO_ID = "cardio-lab/ecg-pma-tiny"


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A tiny pre-trained and probed PMA classifier with results and an ONNX export beside it."""
    root = tmp_path_factory.mktemp("hub-model")
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=root / "cache")
    config = EcgPmaConfig.from_preset("tiny", pretraining_aggregation="ipa")
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    windows = extract_features(raw, extractor, window_mode="sliding")
    torch.manual_seed(0)
    pretrain(
        EcgPmaForPreTraining(config),
        windows["train"],
        PretrainingArguments(
            output_dir=str(root / "pretrained"), per_device_batch_size=8, max_steps=3, save_steps=None, report_to=[]
        ),
        extractor,
    )
    model = load_classifier(root / "pretrained", id2label(raw), aggregation="pma")
    args = reference_training_arguments(
        "probe", str(root / "model"), num_train_epochs=2, per_device_train_batch_size=8
    )
    data_info = {"name": "PhysioNet/CinC Challenge 2021 sample", "description": "40 real WFDB records"}
    finetune(
        model,
        windows["train"],
        windows["validation"],
        args,
        "probe",
        windows["test"],
        extractor,
        True,
        data_info=data_info,
    )
    export = cli("export-onnx", root / "model", root / "model" / "model.onnx")
    assert export.returncode == 0, export.stderr[-3000:]
    return root / "model"


def cli(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def local_logits(model_dir, record):
    model = EcgPmaForSequenceClassification.from_pretrained(model_dir).eval()
    extractor = EcgPmaFeatureExtractor.from_pretrained(model_dir)
    with torch.no_grad():
        return model(extractor(record, return_tensors="pt")["signals"]).logits.numpy()


# ------------------------------------------------------------------------------------------------------------ ONNX


@pytest.mark.slow
def test_onnx_export_matches_pytorch(trained_model):
    import onnxruntime

    spec = json.loads((trained_model / "onnx_export.json").read_text())
    assert spec["opset"] == 17 and spec["inputs"]["signals"] == ["batch", 12, 1000]
    session = onnxruntime.InferenceSession(str(trained_model / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["signals", "lead_mask"]
    assert [o.name for o in session.get_outputs()] == ["logits", "layer_weights"]
    complete = onnxruntime.InferenceSession(str(trained_model / "model.all-leads.onnx"))
    assert [i.name for i in complete.get_inputs()] == ["signals"]
    model = EcgPmaForSequenceClassification.from_pretrained(trained_model).eval()
    for batch in (1, 3, 7):  # the batch dimension is dynamic
        signals = torch.randn(batch, 12, 1000, generator=torch.Generator().manual_seed(batch))
        lead_mask = np.ones((batch, 12), dtype=bool)
        logits, layer_weights = session.run(None, {"signals": signals.numpy(), "lead_mask": lead_mask})
        with torch.no_grad():
            expected = model(signals)
        assert np.abs(logits - expected.logits.numpy()).max() < 1e-4
        assert np.abs(layer_weights - expected.layer_weights.numpy()).max() < 1e-4
        # the all-leads graph beside it: the same outputs from `signals` alone
        complete_logits, _ = complete.run(None, {"signals": signals.numpy()})
        assert np.abs(complete_logits - expected.logits.numpy()).max() < 1e-4


# ------------------------------------------------------------------------------------------------------- pipeline


def test_pipeline_is_registered_and_averages_windows(tmp_path):
    config = EcgPmaConfig.from_preset("tiny", signal_length=500, id2label={0: "NSR", 1: "AF", 2: "STach"})
    config.decision_thresholds = [0.0, 1.1, 0.0]  # NSR and STach always positive, AF never
    model = EcgPmaForSequenceClassification(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    classify = pipeline("ecg-classification", model=model, feature_extractor=extractor)
    record = str(shared_data_dir("physionet2021") / "E07502")
    out = classify(record)
    windows = extractor(record, window_mode="sliding", return_tensors="pt")["signals"]
    assert len(windows) == 3
    with torch.no_grad():
        expected = model(windows).logits.sigmoid().mean(dim=0)
    assert sorted(entry["label"] for entry in out) == ["NSR", "STach"]
    for entry in out:
        index = {name: i for i, name in config.id2label.items()}[entry["label"]]
        assert entry["score"] == pytest.approx(float(expected[index]), rel=1e-5)
    top = classify(record, top_k=3)
    assert [entry["score"] for entry in top] == sorted((entry["score"] for entry in top), reverse=True)
    assert len(top) == 3
    array = classify(windows[0].numpy()[:, :500], sampling_rate=50, top_k=1)
    assert len(array) == 1
    with pytest.raises(ValueError, match="unknown lead names"):
        classify(np.zeros((12, 1000)), sampling_rate=100, lead_names=[f"X{i}" for i in range(12)])


# ------------------------------------------------------------------------------------------------------------ Hub


FRESH_LOAD = """
import json, sys
import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline

repo_id, record, output = sys.argv[1:]
extractor = AutoFeatureExtractor.from_pretrained(repo_id, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(repo_id, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(extractor(record, return_tensors="pt")["signals"]).logits.numpy()
classify = pipeline("ecg-classification", model=repo_id, trust_remote_code=True)
np.save(output, logits)
print(json.dumps({"pipeline": classify(record, top_k=3), "module": type(model).__module__}))
"""


@pytest.mark.slow
def test_push_then_load_by_repo_id_in_a_fresh_process(tmp_path, trained_model):
    record = str(shared_data_dir("physionet2021") / "JS20002")
    with LocalHub(TOKEN) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}
        pushed = cli(
            "push", trained_model, REPO_ID, "--private", "--commit-message", "Tiny PMA probe",
            "--dataset", "physionet-challenge-2021", env=env,
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        repo = hub.state.repos[REPO_ID]
        assert repo.private
        files = repo.commits[repo.branches["main"]]
        assert repo.messages[repo.branches["main"]] == "Tiny PMA probe"
        assert set(files) == {
            "README.md", "config.json", "model.safetensors", "preprocessor_config.json", "configuration_ecg_pma.py",
            "modeling_ecg_pma.py", "feature_extraction_ecg_pma.py", "pipeline_ecg_pma.py", "results.json", "results.md",
            "model.onnx", "model.all-leads.onnx", "onnx_export.json",
        }  # fmt: skip
        assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
        local_root = str(Path(trained_model).resolve().parent)
        assert local_root in (Path(trained_model) / "results.json").read_text()  # the local starting weights
        for name in ("README.md", "results.json", "results.md"):
            assert local_root not in files[name].decode(), name  # local paths never leave the machine
        uploaded = load_safetensors_bytes(files["model.safetensors"])
        local = EcgPmaForSequenceClassification.from_pretrained(trained_model).state_dict()
        assert set(uploaded) == set(local) and all(torch.equal(uploaded[k], local[k]) for k in local)
        config = json.loads(files["config.json"])
        assert (
            config["auto_map"]["AutoModelForSequenceClassification"]
            == "modeling_ecg_pma.EcgPmaForSequenceClassification"
        )
        assert config["custom_pipelines"]["ecg-classification"]["impl"] == "pipeline_ecg_pma.EcgClassificationPipeline"
        assert json.loads(files["preprocessor_config.json"])["auto_map"]["AutoFeatureExtractor"].startswith(
            "feature_extraction_ecg_pma."
        )

        (tmp_path / "README.md").write_bytes(files["README.md"])
        card = ModelCard.load(tmp_path / "README.md")
        assert card.data.library_name == "transformers"
        assert card.data.datasets == ["physionet-challenge-2021"]
        assert {"ecg", "ecg-classification", "pma"} <= set(card.data.tags)
        validate_card(hub.endpoint, card)  # the server's metadata check (tests/hub_server.py), model-index included
        check_card_matches_results(card, trained_model)
        assert card.data.eval_results[0].dataset_type == "physionet-challenge-2021"
        for text in (
            "| sampling_rate | 100 |",
            "per-lead z-score",
            "Not a medical device",
            "opset 17",
            "Mean learned layer weights",
            f'from_pretrained("{REPO_ID}", trust_remote_code=True)',
        ):
            assert text in card.text, text

        # a branch: created from main, main untouched
        branch = cli("push", trained_model, REPO_ID, "--revision", "experiment", env=env)
        assert branch.returncode == 0, branch.stderr[-3000:]
        assert set(repo.branches) == {"main", "experiment"} and repo.branches["main"] != repo.branches["experiment"]

        # a wrong token is refused, and said so
        refused = cli("push", trained_model, "cardio-lab/other", env={**env, "HF_TOKEN": "hf_wrong"})
        assert refused.returncode != 0 and "401" in refused.stderr
        assert "cardio-lab/other" not in hub.state.repos

        cache = {
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_ENDPOINT": hub.endpoint,
            "HF_TOKEN": TOKEN,
            "HF_HUB_OFFLINE": "0",
        }
        online = run_with_env(tmp_path, cache, REPO_ID, record, tmp_path / "online.npy")
        assert any(
            f"/{REPO_ID}/resolve/" in path and path.endswith("/modeling_ecg_pma.py") for _, path in hub.state.requests
        )

    # the server is gone: HF_HUB_OFFLINE=1 loads everything from the populated cache
    offline = run_with_env(tmp_path, {**cache, "HF_HUB_OFFLINE": "1"}, REPO_ID, record, tmp_path / "offline.npy")
    expected = local_logits(trained_model, record)
    for run, logits_file in ((online, "online.npy"), (offline, "offline.npy")):
        np.testing.assert_allclose(np.load(tmp_path / logits_file), expected, rtol=1e-6, atol=1e-6)
        assert run["module"].startswith("transformers_modules")
        assert [entry["label"] for entry in run["pipeline"]] == [entry["label"] for entry in online["pipeline"]]


def check_card_matches_results(card, model_dir):
    """The card's model-index holds every split's headline metrics, equal to results.json, and names the data."""
    results = json.loads((model_dir / "results.json").read_text())
    reported = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert {split for split, _ in reported} == {"validation", "test"}
    for split in ("validation", "test"):
        for metric in ("macro_auroc", "macro_average_precision", "macro_f1", "accuracy"):
            assert reported[(split, metric)] == pytest.approx(results[split][metric], abs=1e-4), (split, metric)
    assert all(r.dataset_name == "PhysioNet/CinC Challenge 2021 sample" for r in card.data.eval_results)
    for text in (
        "## Training data and protocol",
        "Data: **PhysioNet/CinC Challenge 2021 sample**: 40 real WFDB records.",
        f"- seed: {results['training']['seed']}",
        "- decision thresholds: per label, maximising F1 on validation",
        f"| validation | {results['validation']['num_records']} | {round(results['validation']['macro_auroc'], 4)} |",
        f"| test | {results['test']['num_records']} | {round(results['test']['macro_auroc'], 4)} |",
    ):
        assert text in card.text, text


@pytest.mark.slow
def test_a_locally_saved_classifier_works_as_its_card_says_in_a_fresh_process(tmp_path, trained_model):
    config = json.loads((trained_model / "config.json").read_text())
    assert config["custom_pipelines"]["ecg-classification"]["impl"] == "pipeline_ecg_pma.EcgClassificationPipeline"
    assert (trained_model / "pipeline_ecg_pma.py").exists()
    card = ModelCard.load(trained_model / "README.md")
    # the card's pipeline snippet, pointed at this folder and a real record, run where ecg_pma cannot be imported
    snippet = next(block for block in card.text.split("```python")[1:] if "pipeline(" in block).split("```")[0]
    assert 'pipeline("ecg-classification", model="path/to/this/folder", trust_remote_code=True)' in snippet
    record = str(shared_data_dir("physionet2021") / "JS20002")
    script = snippet.replace("path/to/this/folder", str(trained_model)).replace("path/to/wfdb_record", record)
    script = script.replace('classify("', 'print(json.dumps(classify("').replace('")  #', '", top_k=3)))  #')
    result = run_without_package(tmp_path, "import json\n" + script)
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = torch.sigmoid(torch.as_tensor(local_logits(trained_model, record))).mean(dim=0)
    labels = EcgPmaForSequenceClassification.from_pretrained(trained_model).config.id2label
    top = sorted(range(len(expected)), key=lambda index: -float(expected[index]))[:3]
    assert [entry["label"] for entry in scores] == [labels[index] for index in top]
    assert scores[0]["score"] == pytest.approx(float(expected[top[0]]), abs=1e-5)


@pytest.mark.slow
def test_the_local_card_validates_and_carries_model_index(trained_model):
    card = ModelCard.load(trained_model / "README.md")
    with LocalHub(TOKEN) as hub:
        validate_card(hub.endpoint, card)
        assert ("POST", "/api/validate-yaml") in hub.state.requests
    check_card_matches_results(card, trained_model)
    assert card.data.base_model is None and card.data.license == "mit"


def test_the_server_refuses_a_malformed_model_index(tmp_path):
    from hub_server import _model_index_errors

    text = "---\nlicense: mit\nmodel-index:\n- name: x\n  results:\n  - task: {}\n---\n# x\n"
    with pytest.raises(ValueError, match="model_index"):  # huggingface_hub refuses to read it, and so does the server
        ModelCard(text)
    assert "model-index[].results[].task.type must be a string" in _model_index_errors(
        {"model-index": [{"name": "x", "results": [{"task": {}}]}]}
    )
    assert _model_index_errors({"base_model": "../local/folder"}) == ["base_model '../local/folder' is not a repo id"]


def run_with_env(tmp_path, env, *args):
    result = run_without_package(tmp_path, FRESH_LOAD, *map(str, args), env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_local_paths_are_reduced_to_their_last_part():
    from ecg_pma.sharing.hub import without_local_paths

    assert without_local_paths("starting weights: /home/alice/runs/pretrained.") == "starting weights: pretrained."
    assert without_local_paths('{"base_model": "/home/alice/runs/pre-trained"}') == '{"base_model": "pre-trained"}'
    assert without_local_paths(r"read from C:\Users\bob\ecg\data") == "read from data"
    kept = "https://huggingface.co/org/model, http://127.0.0.1:9/a/b, outputs/model, macro AUROC / F1, 1/2"
    assert without_local_paths(kept) == kept
