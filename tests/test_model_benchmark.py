"""
`ecg-pma benchmark` on a PTB-XL-layout corpus built here (the real `scp_statements.csv`, generated database rows and
WFDB signals) and on the 40 real challenge records: tasks, folds, the random-encoder baseline, the bootstrap intervals
recomputed with plain numpy from the saved predictions, kill + rerun, the leakage guard.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb
from conftest import shared_data_dir
from sklearn.metrics import roc_auc_score

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.evaluation.benchmark import BenchmarkSettings, run_benchmark
from ecg_pma.evaluation.protocols import stratified_subset


TASK_SIZES = {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
EXPERIMENTS = {"all": "exp0", "diagnostic": "exp1", "subdiagnostic": "exp1.1", "superdiagnostic": "exp1.1.1",
               "form": "exp2", "rhythm": "exp3"}  # fmt: skip
TRAIN, VALIDATION, TEST = 48, 12, 12  # records in folds 1-8, 9 and 10
SETTINGS = {"seeds": [0], "label_percents": [10, 100], "heads": ["last", "ppa", "pma", "layers"], "epochs": 2,
            "batch_size": 16, "num_resamples": 1000, "bootstrap_seed": 7}  # fmt: skip


def write_ptbxl_corpus(root):
    """
    A PTB-XL tree: the real statements table; 72 records (100 Hz, 10 s) with one diagnostic, one form and one rhythm
    statement each. The training folds cycle through every statement (so each task has its full label set); the
    validation and test folds through four of each (diagnostic ones of four superclasses), three records apiece.
    """
    statements = pd.read_csv(shared_data_dir("ptbxl-mini") / "scp_statements.csv", index_col=0)
    (root / "records100" / "00000").mkdir(parents=True)
    statements.to_csv(root / "scp_statements.csv")
    groups = [list(statements.index[statements[column] == 1]) for column in ("diagnostic", "form", "rhythm")]
    diagnostic = statements[statements["diagnostic"] == 1]
    # held out: four diagnostic statements of four superclasses, so that every diagnostic task has both values
    held_out_groups = [list(diagnostic.groupby("diagnostic_class").head(1).index[:4]), groups[1][:4], groups[2][:4]]
    rng = np.random.default_rng(0)
    time_axis = np.arange(1000) / 100
    rows = []
    for number in range(TRAIN + VALIDATION + TEST):
        held_out = number >= TRAIN
        position = (number - TRAIN) % 4 if held_out else number
        codes = [group[position % len(group)] for group in (held_out_groups if held_out else groups)]
        fold = 1 + number % 8 if not held_out else (9 if number < TRAIN + VALIDATION else 10)
        ecg_id = number + 1
        name = f"records100/00000/{ecg_id:05d}_lr"
        frequency = 1 + groups[2].index(codes[2]) % 4  # something for a probe to find
        signal_ = 0.5 * np.sin(2 * np.pi * frequency * time_axis)[:, None] + 0.1 * rng.standard_normal((1000, 12))
        wfdb.wrsamp(
            f"{ecg_id:05d}_lr", fs=100, units=["mV"] * 12, p_signal=signal_, fmt=["16"] * 12,
            sig_name=["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"],
            write_dir=str(root / "records100" / "00000"),
        )  # fmt: skip
        rows.append(
            {
                "ecg_id": ecg_id, "patient_id": 1000 + number, "age": 60.0, "sex": number % 2,
                "scp_codes": str(dict.fromkeys(codes, 100.0)), "strat_fold": fold,
                "filename_lr": name, "filename_hr": name.replace("records100", "records500").replace("_lr", "_hr"),
            }
        )  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return root


def save_tiny_model(path, seed=5):
    torch.manual_seed(seed)
    config = EcgPmaConfig.from_preset("tiny")
    EcgPmaForPreTraining(config).save_pretrained(path)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ptbxl_benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark")
    corpus = write_ptbxl_corpus(root / "ptbxl")
    model = save_tiny_model(root / "model")
    output = root / "out"
    settings = BenchmarkSettings(suite="ptbxl", data=str(corpus), **SETTINGS)
    benchmark = run_benchmark(str(model), settings, output, cache_dir=root / "cache")
    return benchmark, output, corpus, model, root


def result_of(benchmark, task):
    return next(result for result in benchmark["results"] if result["task"] == task)


def run_of(result, encoder, head, percent=100, seed=0):
    return next(
        row
        for row in result["runs"]
        if (row["encoder"], row["head"], row["label_percent"], row["seed"]) == (encoder, head, percent, seed)
    )


@pytest.mark.slow
def test_ptbxl_tasks_have_the_benchmark_label_sets_and_folds(ptbxl_benchmark):
    benchmark, output, corpus, _, _ = ptbxl_benchmark
    assert {result["task"]: len(result["label_names"]) for result in benchmark["results"]} == TASK_SIZES
    folds = pd.read_csv(corpus / "ptbxl_database.csv", index_col="ecg_id")["strat_fold"]
    for result in benchmark["results"]:
        assert result["records"] == {"train": TRAIN, "validation": VALIDATION, "test": TEST}
        ids = json.loads(
            (output / "predictions" / EXPERIMENTS[result["task"]] / "data" / "record_ids.json").read_text()
        )
        assert {folds[int(name)] for name in ids["train"]} == set(range(1, 9))
        assert {folds[int(name)] for name in ids["validation"]} == {9}
        assert {folds[int(name)] for name in ids["test"]} == {10}
    md = (output / "benchmark.md").read_text()
    assert "| random | pma |" in md and "pretrained: pma - last" in md and "pma: pretrained - random encoder" in md
    assert "| published: xresnet1d101 | end to end | 0.925(07) | 0.937(08) |" in md


@pytest.mark.slow
def test_every_task_has_random_encoder_rows_and_every_head(ptbxl_benchmark):
    benchmark, *_ = ptbxl_benchmark
    assert benchmark["random_encoder"]["hash"] != benchmark["model_hash"]
    expected_heads = {"last", "ppa", "pma", "layer1", "layer2", "layer3", "layer4"}
    for result in benchmark["results"]:
        for encoder in ("pretrained", "random"):
            heads = {row["head"] for row in result["runs"] if row["encoder"] == encoder}
            assert heads == expected_heads
        few, every = run_of(result, "pretrained", "pma", 10), run_of(result, "pretrained", "pma", 100)
        assert few["train_records"] < every["train_records"] == TRAIN


def test_benchmark_choices_are_the_package_constants():
    from ecg_pma.cli import build_parser
    from ecg_pma.constants import BENCHMARK_HEADS, BENCHMARK_SUITES, PTBXL_LABEL_SETS
    from ecg_pma.data.ptbxl import LABEL_SETS
    from ecg_pma.evaluation.suites import PTBXL_EXPERIMENTS

    benchmark = dict(next(a for a in build_parser()._actions if a.dest == "command").choices)["benchmark"]
    choices = {action.dest: tuple(action.choices) for action in benchmark._actions if action.choices is not None}
    assert choices["suite"] == BENCHMARK_SUITES and choices["heads"] == BENCHMARK_HEADS
    assert LABEL_SETS == PTBXL_LABEL_SETS == tuple(PTBXL_EXPERIMENTS) == tuple(TASK_SIZES)


def test_stratified_label_fraction_keeps_every_label_and_is_seeded():
    labels = np.zeros((200, 4), dtype=int)
    labels[:100, 0], labels[100:190, 1], labels[190:198, 2], labels[198:, 3] = 1, 1, 1, 1
    subset = stratified_subset(labels, 10, seed=3)
    # each label's 10 % share (rounded), the rarest (2 records) keeping one: 10 + 9 + 1 + 1
    assert [labels[subset, label].sum() for label in range(4)] == [10, 9, 1, 1] and len(subset) == 21
    assert np.array_equal(subset, stratified_subset(labels, 10, seed=3))
    assert not np.array_equal(subset, stratified_subset(labels, 10, seed=4))


def numpy_auroc(truth, scores):
    """AUROC as the fraction of (positive, negative) pairs ranked right, ties counting one half."""
    positives, negatives = scores[truth == 1], scores[truth == 0]
    comparisons = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    return comparisons.mean()


def numpy_resamples(references, count, seed):
    """The documented rule: rng.integers(0, N, N), redrawn until every class with both values keeps both."""
    classes = [c for c in range(references.shape[1]) if 0 < references[:, c].sum() < len(references)]
    rng, resamples = np.random.default_rng(seed), []
    while len(resamples) < count:
        index = rng.integers(0, len(references), len(references))
        positives = references[index][:, classes].sum(axis=0)
        if (positives > 0).all() and (positives < len(references)).all():
            resamples.append(index)
    return resamples, classes


@pytest.mark.slow
def test_bootstrap_intervals_equal_a_numpy_recomputation_from_the_saved_predictions(ptbxl_benchmark):
    benchmark, output, *_ = ptbxl_benchmark
    folder = output / "predictions" / EXPERIMENTS["superdiagnostic"]
    references = np.load(folder / "data" / "y_test.npy")
    predictions = {
        head: np.load(folder / "models" / f"pretrained_{head}_100pct_seed0" / "y_test_pred.npy")
        for head in ("pma", "last")
    }
    resamples, classes = numpy_resamples(references, SETTINGS["num_resamples"], SETTINGS["bootstrap_seed"])
    macro = {
        head: np.array([np.mean([numpy_auroc(references[i, c], values[i, c]) for c in classes]) for i in resamples])
        for head, values in predictions.items()
    }
    result = result_of(benchmark, "superdiagnostic")
    for head in ("pma", "last"):
        saved = run_of(result, "pretrained", head)["macro_auroc"]["ci"]
        np.testing.assert_allclose(saved, np.percentile(macro[head], [2.5, 97.5]), rtol=0, atol=1e-12)
    paired = next(
        row for row in result["paired_differences"] if row["comparison"] == "pretrained: pma - last" and
        row["label_percent"] == 100
    )  # fmt: skip
    np.testing.assert_allclose(paired["ci"], np.percentile(macro["pma"] - macro["last"], [2.5, 97.5]), atol=1e-12)


@pytest.mark.slow
def test_saved_predictions_give_the_same_macro_auroc_through_scikit_learn(ptbxl_benchmark):
    benchmark, output, *_ = ptbxl_benchmark
    for task, experiment in EXPERIMENTS.items():
        references = np.load(output / "predictions" / experiment / "data" / "y_test.npy")
        result = result_of(benchmark, task)
        for row in result["runs"]:
            name = f"{row['encoder']}_{row['head']}_{row['label_percent']:g}pct_seed{row['seed']}"
            predictions = np.load(output / "predictions" / experiment / "models" / name / "y_test_pred.npy")
            scored = row["scored_classes"]
            expected = roc_auc_score(references[:, scored], predictions[:, scored], average="macro")
            assert abs(row["macro_auroc"]["value"] - expected) <= 1e-9


@pytest.mark.slow
def test_model_index_entries_for_the_card(ptbxl_benchmark):
    _, output, *_ = ptbxl_benchmark
    (entry,) = json.loads((output / "model_index.json").read_text())
    configs = {result["dataset"]["config"] for result in entry["results"]}
    assert configs == set(TASK_SIZES) and entry["results"][0]["dataset"]["type"] == "ptb-xl"


def test_the_leakage_guard_counts_test_records_per_source(tmp_path):
    from ecg_pma.evaluation.leakage import LeakageError, check_leakage
    from ecg_pma.evaluation.suites import Task

    names = {"train": ["E00001"], "validation": ["HR00002"], "test": ["HR00003", "HR00004", "E00005", "JS20001"]}
    sources = {split: ["georgia" if n[0] == "E" else "ptb-xl" if n[0] == "H" else "ningbo" for n in ids]
               for split, ids in names.items()}  # fmt: skip
    labels = {split: np.zeros((len(ids), 1), dtype=int) for split, ids in names.items()}
    task = Task("physionet2021", "pooled", ["AF"], names, labels, sources)
    assert check_leakage(tmp_path, [task]) == {
        "status": "unchecked",
        "reason": f"{tmp_path / 'pretraining_data.json'} not found",
    }
    corpora = [{"format": "ptbxl", "path": "/ptb-xl"}, {"format": "physionet2021", "sources": ["georgia"]}]
    (tmp_path / "pretraining_data.json").write_text(json.dumps({"corpora": corpora}))
    with pytest.raises(
        LeakageError, match=r"3 of the 4 test records of physionet2021/pooled come from georgia, ptb-xl"
    ):
        check_leakage(tmp_path, [task])
    flagged = check_leakage(tmp_path, [task], allow=True)
    assert flagged["status"] == "flagged"
    assert flagged["tasks"]["physionet2021/pooled"]["test_records_from_pretraining_sources"] == 3
    (tmp_path / "pretraining_data.json").write_text(json.dumps({"corpora": [{"format": "code15"}]}))
    assert check_leakage(tmp_path, [task])["status"] == "clean"


@pytest.mark.slow
def test_the_outputs_the_readme_names_are_written(ptbxl_benchmark):
    from pathlib import Path

    _, output, *_ = ptbxl_benchmark
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Where does my model stand?")[1].split("\n## ")[0]
    for name in ("benchmark.json", "benchmark.md", "model_index.json", "runs/", "embeddings/"):
        assert f"`{name}" in section and (output / name).exists(), name
    assert (output / "predictions" / "exp0" / "data" / "y_val.npy").is_file()
    assert (output / "predictions" / "exp3" / "models" / "random_layer1_100pct_seed0" / "y_test_pred.npy").is_file()
    plots = {f"{task}_{kind}.png" for task in TASK_SIZES for kind in ("layers", "auroc", "gate_pma")}
    assert {path.name for path in (output / "plots").iterdir()} == plots
    assert "`plots/<task>_layers.png`" in section
    assert "`exp0` = all ... `exp3` = rhythm" in section and "40 records, so the intervals are wide" in section


def cli(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "ecg_pma.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        **kwargs,
    )


def settings_arguments():
    return [
        "--seeds", *SETTINGS["seeds"], "--label-fractions", *SETTINGS["label_percents"], "--heads", *SETTINGS["heads"],
        "--epochs", SETTINGS["epochs"], "--batch-size", SETTINGS["batch_size"], "--bootstrap",
        SETTINGS["num_resamples"], "--bootstrap-seed", SETTINGS["bootstrap_seed"],
    ]  # fmt: skip


@pytest.mark.slow
def test_the_leakage_guard_refuses_a_model_pretrained_on_the_test_source(ptbxl_benchmark, tmp_path):
    _, _, corpus, model, root = ptbxl_benchmark
    leaky = tmp_path / "leaky"
    shutil.copytree(model, leaky)
    corpora = [{"format": "physionet2021", "path": "/data/challenge", "records": {"train": 88253}}]
    (leaky / "pretraining_data.json").write_text(json.dumps({"corpora": corpora}))
    process = cli(
        "benchmark", "--model", leaky, "--suite", "ptbxl", "--data", corpus, "--output-dir", tmp_path / "out",
        "--cache-dir", root / "cache",
    )  # fmt: skip
    _, stderr = process.communicate(timeout=600)
    assert process.returncode != 0
    assert f"{TEST} of the {TEST} test records of ptbxl/all come from ptb-xl" in stderr
    assert "--allow-leakage" in stderr and not (tmp_path / "out" / "embeddings").exists()  # refused before encoding


@pytest.mark.slow
def test_kill_mid_run_and_rerun_gives_identical_results(ptbxl_benchmark, tmp_path):
    benchmark, _, corpus, model, root = ptbxl_benchmark
    tasks = ["superdiagnostic", "rhythm"]
    arguments = [
        "benchmark", "--model", model, "--suite", "ptbxl", "--data", corpus, "--output-dir", tmp_path / "out",
        "--cache-dir", root / "cache", "--tasks", *tasks, *settings_arguments(),
    ]  # fmt: skip
    process = cli(*arguments)
    runs = tmp_path / "out" / "runs"
    deadline = time.monotonic() + 600
    while len(list(runs.rglob("*.safetensors"))) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(runs.rglob("*.safetensors")))
    assert 5 <= finished < 2 * 2 * 2 * 7 and not (tmp_path / "out" / "benchmark.json").exists()

    rerun = cli(*arguments)
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr[-3000:]
    resumed = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    for task in tasks:
        assert result_of(resumed, task) == result_of(benchmark, task)


@pytest.mark.slow
def test_benchmark_cli_on_the_real_challenge_records(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    process = cli(
        "benchmark", "--model", model, "--suite", "physionet2021", "--data", shared_data_dir("physionet2021"),
        "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--validation-fraction", "0.25",
        "--test-fraction", "0.25", "--heads", "last", "pma", "--label-fractions", "100", "--epochs", "2",
        "--bootstrap", "200",
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    benchmark = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert benchmark["data"]["records_embedded"] == 40
    tasks = {result["task"]: result["records"] for result in benchmark["results"]}
    assert set(tasks) == {"pooled", "georgia", "ningbo", "ptb-xl"}
    assert sum(tasks["pooled"].values()) == 40
    assert sum(records["test"] for name, records in tasks.items() if name != "pooled") == tasks["pooled"]["test"]
    assert "| random | pma |" in stdout and benchmark["leakage"]["status"] == "unchecked"
