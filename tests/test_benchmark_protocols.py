"""
`ecg-pma benchmark`'s end-to-end protocols (`finetune`, `lora`) beside the probes, for the pre-trained and the
random-initialised encoder, with label fractions; the AUROC and PMA gate plots; resuming finished runs.
"""

import json

import numpy as np
import pytest
from test_model_benchmark import TRAIN, save_tiny_model, write_ptbxl_corpus

from ecg_pma.evaluation.benchmark import BenchmarkSettings, run_benchmark
from ecg_pma.evaluation.protocols import ProbeRun
from ecg_pma.evaluation.report import class_gate_weights


SETTINGS = {"tasks": ["superdiagnostic"], "seeds": [0], "label_percents": [10], "heads": ["last", "pma"],
            "epochs": 2, "batch_size": 16, "num_resamples": 200, "protocols": ["probe", "finetune", "lora"],
            "finetune_epochs": 1, "finetune_batch_size": 8, "lora_rank": 2}  # fmt: skip


@pytest.fixture(scope="module")
def protocols_benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    corpus = write_ptbxl_corpus(root / "ptbxl")
    model = save_tiny_model(root / "model")
    settings = BenchmarkSettings(suite="ptbxl", data=str(corpus), **SETTINGS)
    benchmark = run_benchmark(str(model), settings, root / "out", cache_dir=root / "cache")
    return benchmark, settings, model, root


@pytest.mark.slow
def test_finetune_and_lora_rows_for_both_encoders_on_the_label_fraction(protocols_benchmark):
    benchmark, *_ = protocols_benchmark
    (result,) = benchmark["results"]
    rows = {(row["encoder"], row["head"]): row for row in result["runs"]}
    assert set(rows) == {(encoder, head) for encoder in ("pretrained", "random")
                         for head in ("last", "pma", "finetune", "lora")}  # fmt: skip
    # the probes' stratified 10 % of the training records, the same records for every protocol
    counts = {row["train_records"] for row in rows.values()}
    assert len(counts) == 1 and counts.pop() < TRAIN
    comparisons = {row["comparison"] for row in result["paired_differences"]}
    assert {"finetune: pretrained - random encoder", "lora: pretrained - random encoder"} <= comparisons
    assert "LoRA rank 2" in benchmark["protocol"]["end_to_end"]


@pytest.mark.slow
def test_end_to_end_runs_keep_their_predictions_and_gate_weights(protocols_benchmark):
    benchmark, _, _, root = protocols_benchmark
    output = root / "out"
    folder = output / "runs" / "ptbxl" / "superdiagnostic"
    for encoder in ("pretrained", "random"):
        for protocol in ("finetune", "lora"):
            run = ProbeRun.load(folder / encoder / "10pct" / "seed0" / f"{protocol}.safetensors")
            assert run.probabilities["test"].shape == (12, 5) and run.probabilities["train"].shape == (TRAIN, 5)
            assert run.test_gate_weights.shape == (12, 4)
            np.testing.assert_allclose(run.test_gate_weights.sum(axis=1), 1, atol=1e-6)
            saved = np.load(output / "predictions" / "exp1.1.1" / "models" / f"{encoder}_{protocol}_10pct_seed0" /
                            "y_test_pred.npy")  # fmt: skip
            np.testing.assert_array_equal(saved, run.probabilities["test"])
    assert not list((output / "training").rglob("checkpoint-*"))  # the Trainer's folders go once a run is saved
    (result,) = benchmark["results"]
    finetuned = next(row for row in result["runs"] if (row["encoder"], row["head"]) == ("pretrained", "finetune"))
    assert 0 <= finetuned["macro_auroc"]["value"] <= 1


@pytest.mark.slow
def test_a_rerun_reads_the_finished_end_to_end_runs(protocols_benchmark):
    benchmark, settings, model, root = protocols_benchmark
    runs = sorted((root / "out" / "runs").rglob("*.safetensors"))
    modified = [path.stat().st_mtime_ns for path in runs]
    again = run_benchmark(str(model), settings, root / "out", cache_dir=root / "cache")
    assert again["results"] == benchmark["results"]
    assert [path.stat().st_mtime_ns for path in runs] == modified  # nothing trained again


@pytest.mark.slow
def test_auroc_and_gate_plots_are_written_and_listed(protocols_benchmark):
    from PIL import Image

    _, _, _, root = protocols_benchmark
    output = root / "out"
    expected = {"superdiagnostic_auroc.png", "superdiagnostic_gate_pma.png", "superdiagnostic_gate_finetune.png",
                "superdiagnostic_gate_lora.png"}  # fmt: skip
    assert {path.name for path in (output / "plots").iterdir()} == expected
    markdown = (output / "benchmark.md").read_text()
    for name in expected:
        assert f"- `plots/{name}`" in markdown
    with Image.open(output / "plots" / "superdiagnostic_gate_lora.png") as image:
        assert image.info["Title"].startswith("PMA gate weights (lora)")
    with Image.open(output / "plots" / "superdiagnostic_auroc.png") as image:
        assert "10 % of the training records" in image.info["Title"]


def test_gate_weights_per_class_are_the_mean_over_its_positive_records():
    weights = np.array([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]])
    references = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    per_class = class_gate_weights(weights, references)
    np.testing.assert_allclose(per_class[:2], [[0.4, 0.6], [0.3, 0.7]])
    assert np.isnan(per_class[2]).all()  # no positive test record: nothing to average


def test_the_protocols_option_takes_the_finetune_modes():
    from ecg_pma.cli import build_parser
    from ecg_pma.constants import FINETUNE_MODES

    benchmark = dict(next(a for a in build_parser()._actions if a.dest == "command").choices)["benchmark"]
    protocols = next(action for action in benchmark._actions if action.dest == "protocols")
    assert tuple(protocols.choices) == FINETUNE_MODES and protocols.default == ["probe"]
    args = build_parser().parse_args(
        ["benchmark", "--model", "m", "--suite", "ptbxl", "--data", "d", "--output-dir", "o", "--protocols", "lora",
         "--lora-rank", "4", "--finetune-epochs", "3"]
    )  # fmt: skip
    assert (args.protocols, args.lora_rank, args.finetune_epochs) == (["lora"], 4, 3)


LEAKAGE_SCRIPT = """
import json, sys
from ecg_pma.evaluation.leakage import pretraining_sources
for model in sys.argv[1:]:
    sources, origin = pretraining_sources(model)
    print(json.dumps({"sources": sorted(sources) if sources is not None else None, "origin": origin}))
"""


def test_the_leakage_guard_reads_a_hub_model_s_pretraining_data(tmp_path):
    """Downloaded from a Hub-compatible server on 127.0.0.1 (huggingface_hub reads HF_ENDPOINT when imported)."""
    import hashlib
    import os
    import subprocess
    import sys

    from hub_server import LocalHub, Repo

    corpora = {"corpora": [{"format": "physionet2021", "sources": ["georgia", "ptb-xl"]}]}
    files = {"pretraining_data.json": json.dumps(corpora).encode(), "config.json": b"{}"}
    with LocalHub("hf_test_token") as hub:
        for repo_id, content in (("lab/leaky", files), ("lab/silent", {"config.json": b"{}"})):
            sha = hashlib.sha1(repo_id.encode()).hexdigest()
            hub.state.repos[repo_id] = Repo(private=False, branches={"main": sha}, commits={sha: content})
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        process = subprocess.run([sys.executable, "-c", LEAKAGE_SCRIPT, "lab/leaky", "lab/silent"], env=env,
                                 capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
        answers = [json.loads(line) for line in process.stdout.splitlines()]
        requested = [path for _, path in hub.state.requests]
    assert answers[0] == {"sources": ["georgia", "ptb-xl"], "origin": "pretraining_data.json of lab/leaky on the Hub"}
    assert answers[1] == {"sources": None, "origin": "lab/silent on the Hub has no pretraining_data.json"}
    assert any("lab/leaky/resolve/main/pretraining_data.json" in path for path in requested)


@pytest.mark.slow
def test_push_staging_merges_the_benchmark_into_the_card_s_model_index(protocols_benchmark, tmp_path):
    from huggingface_hub import ModelCard

    from ecg_pma.sharing.hub import stage_model

    benchmark, _, model, root = protocols_benchmark
    staged = stage_model(model, tmp_path / "staged", "lab/ecg-pma-tiny", benchmarks=[root / "out"])
    card = ModelCard.load(staged / "README.md")  # parsed back from the YAML front matter
    entries = {(r.dataset_type, r.dataset_config, r.metric_config): r.metric_value for r in card.data.eval_results}
    (result,) = benchmark["results"]
    expected = {
        ("ptb-xl", "superdiagnostic", f"{protocol}, 10 % labels"): round(row["macro_auroc"]["mean"], 4)
        for row in result["over_seeds"]
        if row["encoder"] == "pretrained"
        for protocol in [
            f"{row['head']} (end to end)" if row["head"] in ("finetune", "lora") else f"{row['head']} probe"
        ]
    }
    assert entries == expected and len(expected) == 4
    assert card.data.to_dict()["model-index"][0]["name"] == "lab/ecg-pma-tiny"
    # merged again (a rerun of the benchmark): the entries are replaced, not repeated
    from ecg_pma.sharing.modelcard import add_benchmark_to_card

    again = add_benchmark_to_card(staged / "README.md", benchmark)
    assert len(again.data.eval_results) == len(card.data.eval_results)


def test_the_readme_names_the_protocols_plots_card_and_pipeline():
    from conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Where does my model stand?")[1].split("\n## ")[0]
    for claim in ("`--protocols probe finetune lora`", "`--lora-rank 8`", "`--finetune-epochs 100`",
                  "`plots/<task>_auroc.png`", "`plots/<task>_gate_<head>.png`", "--benchmark results/ptbxl`",
                  'pipeline("ecg-feature-extraction", model=M)', "For a Hub id, the file is read from the model's"):  # fmt: skip
        assert claim in section, claim
