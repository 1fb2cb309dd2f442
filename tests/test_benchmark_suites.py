"""
The `icbeb2018` and `code-test` suites of `ecg-pma benchmark` on fixtures in the data sets' published layouts, written
from the 40 real challenge records of ../shared/data (signals rewritten with wfdb / h5py, labels from the records' own
SNOMED-CT codes where the suite has the class), the stratified folds, the PhysioNet 2021 challenge metric against a
hand computation, and the patient-overlap guard.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.signal
import wfdb
from conftest import shared_data_dir
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

from ecg_pma.data.cpsc2018 import CPSC2018_CLASSES, load_cpsc2018
from ecg_pma.data.folds import stratified_folds
from ecg_pma.data.records import id2label
from ecg_pma.evaluation.benchmark import BenchmarkSettings, run_benchmark
from ecg_pma.evaluation.challenge_metric import challenge_metric, class_columns, load_challenge_weights
from ecg_pma.evaluation.leakage import PatientOverlapError, check_patient_overlap
from ecg_pma.evaluation.suites import Task, load_suite, ptbxl_tasks


# CPSC 2018's REFERENCE.csv codes (1 Normal ... 9 STE) of the SNOMED-CT codes the challenge headers use for them.
CPSC_OF_SNOMED = {"426783006": 1, "164889003": 2, "270492004": 3, "164909002": 4, "59118001": 5, "284470004": 6,
                  "427172004": 7, "429622005": 8, "164931005": 9}  # fmt: skip
ABSENT_CPSC_CLASSES = (2, 3, 4, 8, 9)  # no real record of the 40 has these codes
CODE_OF_SNOMED = {"270492004": "1dAVb", "59118001": "RBBB", "164909002": "LBBB", "426177001": "SB",
                  "164889003": "AF", "427084000": "ST"}  # fmt: skip
FAST = {"heads": ["last", "pma"], "label_percents": [100], "epochs": 2, "batch_size": 16, "num_resamples": 200}


def real_records():
    folder = shared_data_dir("physionet2021")
    return [str(path.with_suffix("")) for path in sorted(folder.glob("*.hea"))]


def dx_codes(record) -> list[str]:
    line = next(comment for comment in record.comments if comment.startswith("Dx"))
    return [code.strip() for code in line.split(":", 1)[1].split(",")]


def write_cpsc2018(root: Path) -> Path:
    """
    The PhysioNet 2021 copy of CPSC 2018 (`g1/A0001.hea` + `A0001.mat`, a MATLAB v4 `val` matrix at byte 24) plus
    the challenge's `REFERENCE.csv`: each real record renamed A0001..., its digital samples and header fields kept.
    Labels: the CPSC classes of its own SNOMED-CT codes; a record with none gets one of the classes no record has, in
    turn, so that all nine occur. One extra record `Q0001` is not in `REFERENCE.csv` (the challenges' extra records).
    """
    rows, spare = [], 0
    for number, path in enumerate(real_records()):
        record = wfdb.rdrecord(path, physical=False)
        name = f"A{number + 1:04d}" if number < 39 else "Q0001"
        folder = root / f"g{number // 20 + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(folder / f"{name}.mat", {"val": record.d_signal.T.astype(np.int16)}, format="4")
        record.record_name, record.file_name = name, [f"{name}.mat"] * record.n_sig
        record.wrheader(write_dir=str(folder))
        codes = sorted({CPSC_OF_SNOMED[code] for code in dx_codes(record) if code in CPSC_OF_SNOMED})
        if not codes:
            codes, spare = [ABSENT_CPSC_CLASSES[spare % len(ABSENT_CPSC_CLASSES)]], spare + 1
        if name.startswith("A"):
            rows.append({"Recording": name, **{column: (codes[i] if i < len(codes) else "") for i, column in
                                              enumerate(("First_label", "Second_label", "Third_label"))}})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "REFERENCE.csv", index=False)
    return root


def write_code_test(root: Path) -> Path:
    """
    CODE-test's layout: `ecg_tracings.hdf5` with `tracings (exams, 4096, 12)` at 400 Hz (each real 10 s record
    resampled to 4,000 samples, zero-padded 48 on each side, in the stored lead order), `attributes.csv` and
    `annotations/gold_standard.csv` (1dAVb, RBBB, LBBB, SB, AF, ST from each record's SNOMED-CT codes).
    """
    tracings, labels, attributes = [], [], []
    for path in real_records():
        record = wfdb.rdrecord(path)
        signal = scipy.signal.resample_poly(record.p_signal, 4, 5, axis=0)  # 500 -> 400 Hz
        tracings.append(np.pad(signal, ((48, 48), (0, 0))).astype(np.float32))
        codes = set(dx_codes(record))
        labels.append({name: int(code in codes) for code, name in CODE_OF_SNOMED.items()})
        attributes.append({"age": 60, "sex": "M"})
    (root / "annotations").mkdir(parents=True)
    with h5py.File(root / "ecg_tracings.hdf5", "w") as handle:
        handle.create_dataset("tracings", data=np.stack(tracings))
    pd.DataFrame(labels)[["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]].to_csv(
        root / "annotations" / "gold_standard.csv", index=False
    )
    pd.DataFrame(attributes).to_csv(root / "attributes.csv", index=False)
    return root


def save_tiny_model(path):
    from test_model_benchmark import save_tiny_model as save

    return save(path)


def test_stratified_folds_share_every_label_and_are_seeded():
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 5)) < [0.5, 0.2, 0.1, 0.04, 0.02]).astype(int)
    folds = stratified_folds(labels, 10, seed=3)
    assert set(folds) == set(range(1, 11)) and np.bincount(folds)[1:].min() >= 45
    for label in range(5):
        per_fold = np.bincount(folds[labels[:, label] == 1], minlength=11)[1:]
        assert per_fold.max() - per_fold.min() <= 1, (label, per_fold)  # each fold its tenth, give or take one
    assert np.array_equal(folds, stratified_folds(labels, 10, seed=3))
    # CODE-test's 827 exams: folds of 82 or 83 exams (the README's "about 660 / 83 / 83")
    code_test_like = (rng.random((827, 6)) < [0.03, 0.04, 0.04, 0.02, 0.02, 0.04]).astype(int)
    assert set(np.bincount(stratified_folds(code_test_like, 10, seed=0))[1:]) <= {82, 83}
    assert not np.array_equal(folds, stratified_folds(labels, 10, seed=4))


@pytest.fixture(scope="module")
def cpsc_folder(tmp_path_factory):
    return write_cpsc2018(tmp_path_factory.mktemp("cpsc2018"))


def test_cpsc2018_reads_the_published_layout(cpsc_folder, tmp_path):
    records = load_cpsc2018(cpsc_folder, cache_dir=tmp_path / "cache")
    reference = pd.read_csv(cpsc_folder / "REFERENCE.csv", dtype=str, keep_default_na=False).set_index("Recording")
    seen = {}
    for split, folds in (("train", set(range(1, 9))), ("validation", {9}), ("test", {10})):
        assert set(records[split]["strat_fold"]) <= folds
        for row in records[split]:
            codes = [int(value) for value in reference.loc[row["record_id"]] if value]
            assert row["label_ids"] == sorted(code - 1 for code in codes)
            seen[row["record_id"]] = row
    assert sorted(seen) == sorted(reference.index) and "Q0001" not in seen  # 39 listed; the unlisted one left out
    assert list(id2label(records).values()) == list(CPSC2018_CLASSES)
    original = wfdb.rdrecord(real_records()[0])  # A0001 is the first real record, samples unchanged
    np.testing.assert_allclose(np.asarray(seen["A0001"]["signal"]), original.p_signal, atol=1e-6)
    assert seen["A0001"]["sampling_rate"] == 500
    # the folds depend on REFERENCE.csv and the seed only
    again = load_cpsc2018(cpsc_folder, cache_dir=tmp_path / "cache")
    assert again["test"]["record_id"] == records["test"]["record_id"]


def test_cpsc2018_errors_name_the_file_row_and_record(cpsc_folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("g1", "g2"):
        shutil.copytree(cpsc_folder / name, bad / name)
    reference = pd.read_csv(cpsc_folder / "REFERENCE.csv", dtype=str, keep_default_na=False)
    reference.loc[3, "First_label"] = "10"
    reference.to_csv(bad / "REFERENCE.csv", index=False)
    with pytest.raises(ValueError, match=r"REFERENCE.csv, row 5 \(A0004\): First_label is '10'; expected 1-9"):
        load_cpsc2018(bad)
    reference.loc[3, "First_label"] = "2"
    reference.loc[len(reference)] = {"Recording": "A9999", "First_label": "1", "Second_label": "", "Third_label": ""}
    reference.to_csv(bad / "REFERENCE.csv", index=False)
    with pytest.raises(FileNotFoundError, match=r"1 record\(s\) listed but not on disk: A9999"):
        load_cpsc2018(bad)
    matlab = tmp_path / "TrainingSet1"
    matlab.mkdir()
    scipy.io.savemat(matlab / "A0001.mat", {"ECG": {"sex": "Male", "age": 60, "data": np.zeros((12, 5000))}})
    reference.to_csv(matlab / "REFERENCE.csv", index=False)
    with pytest.raises(ValueError, match="no WFDB header .* MATLAB structs"):
        load_cpsc2018(matlab)


def test_the_leakage_guard_refuses_cpsc2018_tests_for_a_model_pretrained_on_the_challenge(cpsc_folder, tmp_path):
    from ecg_pma.evaluation.leakage import LeakageError, check_leakage

    _, tasks = load_suite("icbeb2018", cpsc_folder, cache_dir=tmp_path / "cache")
    (tmp_path / "pretraining_data.json").write_text(json.dumps({"corpora": [{"format": "physionet2021"}]}))
    test_records = len(tasks[0].record_ids["test"])
    with pytest.raises(LeakageError, match=rf"{test_records} of the {test_records} test records of icbeb2018/all "
                       "come from cpsc2018"):  # fmt: skip
        check_leakage(tmp_path, tasks)


@pytest.fixture(scope="module")
def code_test_folder(tmp_path_factory):
    return write_code_test(tmp_path_factory.mktemp("code-test"))


def test_code_test_folds_and_code15_training(code_test_folder, tmp_path):
    _, (task,) = load_suite("code-test", code_test_folder, cache_dir=tmp_path / "cache")
    assert task.name == "folds" and task.label_names == ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
    sizes = {split: len(ids) for split, ids in task.record_ids.items()}
    assert sum(sizes.values()) == 40 and sizes["test"] == sizes["validation"] == 4
    gold = pd.read_csv(code_test_folder / "annotations" / "gold_standard.csv").to_numpy()
    for split in ("train", "validation", "test"):
        rows = [int(name.removeprefix("code-test-")) for name in task.record_ids[split]]
        assert np.array_equal(task.labels[split], gold[rows])
    assert task.patients is None and "827 patients" in task.patients_note

    # CODE-15% as the training corpus: its exams (same signals, other ids) train, all CODE-test exams test
    code15 = tmp_path / "code15"
    code15.mkdir()
    shutil.copy(code_test_folder / "ecg_tracings.hdf5", code15 / "exams_part0.hdf5")
    with h5py.File(code15 / "exams_part0.hdf5", "r+") as handle:
        handle.create_dataset("exam_id", data=np.arange(1000, 1040))
    table = pd.DataFrame({"exam_id": range(1000, 1040), "patient_id": [n // 2 for n in range(40)],
                          "trace_file": "exams_part0.hdf5", "age": 60, "is_male": True})  # fmt: skip
    for column in ("1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"):
        table[column] = gold[:, ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"].index(column)].astype(bool)
    table.to_csv(code15 / "exams.csv", index=False)
    _, (task,) = load_suite("code-test", code_test_folder, train_data=code15, validation_fraction=0.25,
                            cache_dir=tmp_path / "cache")  # fmt: skip
    assert task.name == "code15-to-code-test" and len(task.record_ids["test"]) == 40
    assert len(task.record_ids["train"]) + len(task.record_ids["validation"]) == 40
    assert set(task.sources["train"]) == {"code15"} and set(task.sources["test"]) == {"code-test"}


def test_the_patient_overlap_guard_counts_patients_in_two_splits(tmp_path):
    statements = pd.read_csv(shared_data_dir("ptbxl-mini") / "scp_statements.csv", index_col=0)
    statements.to_csv(tmp_path / "scp_statements.csv")
    rows = [{"ecg_id": n, "patient_id": [7, 7, 8, 9, 9, 10][n - 1], "strat_fold": [1, 10, 2, 9, 10, 10][n - 1],
             "scp_codes": "{'NORM': 100.0}"} for n in range(1, 7)]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "ptbxl_database.csv", index=False)
    tasks = ptbxl_tasks(tmp_path, {str(n) for n in range(1, 7)}, ["superdiagnostic"])
    with pytest.raises(PatientOverlapError, match=r"2 of the 4 patients of ptbxl/superdiagnostic have records in "
                       r"two splits \(4 records; patient 7: test, train; patient 9: test, validation\)"):  # fmt: skip
        check_patient_overlap(tasks)
    flagged = check_patient_overlap(tasks, allow=True)
    assert flagged["status"] == "flagged"
    assert flagged["tasks"]["ptbxl/superdiagnostic"]["patients_in_two_splits"] == 2
    clean = pd.DataFrame(rows).assign(patient_id=range(6))
    clean.to_csv(tmp_path / "ptbxl_database.csv", index=False)
    assert check_patient_overlap(ptbxl_tasks(tmp_path, {str(n) for n in range(1, 7)}))["status"] == "clean"
    no_field = Task("icbeb2018", "all", ["AF"], {}, {}, {}, None, "CPSC 2018 has no patient field")
    assert check_patient_overlap([no_field]) == {
        "status": "unchecked", "tasks": {}, "unchecked": {"icbeb2018/all": "CPSC 2018 has no patient field"}
    }  # fmt: skip


def test_challenge_metric_equals_a_hand_computation(tmp_path):
    """
    Three classes: AF, sinus rhythm (NSR), RBBB with its equivalent CRBBB; W = [[1, .5, 0], [.5, 1, .25], [0, .25, 1]].
    Record 1: label AF, output AF + NSR  -> |L or O| = 2: A[AF,AF] += 1/2, A[AF,NSR] += 1/2  -> 1/2 + .5/2  = 0.75
    Record 2: label NSR, output RBBB     -> |L or O| = 2: A[NSR,RBBB] += 1/2                 -> .25/2       = 0.125
    Record 3: label RBBB + AF, output -  -> |L or O| = 2: nothing                            -> 0
    observed = 0.875; correct (O = L): 1 + 1 + (1 + 0 + 0 + 1)/2 = 3;
    inactive (O = NSR): record 1: .5/2 = .25; record 2: 1; record 3: |L or O| = 3: (.5 + .25)/3 = .25 -> 1.5
    metric = (0.875 - 1.5) / (3 - 1.5) = -0.41666...
    """
    (tmp_path / "weights.csv").write_text(
        ",164889003,426783006,713427006|59118001\n164889003,1.0,0.5,0.0\n426783006,0.5,1.0,0.25\n"
        "713427006|59118001,0.0,0.25,1.0\n"
    )
    classes, weights = load_challenge_weights(tmp_path / "weights.csv")
    assert classes[2] == frozenset({"713427006", "59118001"})
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]], dtype=bool)
    outputs = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=bool)
    expected = (0.875 - 1.5) / (3 - 1.5)
    assert challenge_metric(labels, outputs, weights, classes)[0] == pytest.approx(expected, abs=1e-12)
    # a resample is the metric of the records drawn: record 1 twice, record 3 once
    drawn = challenge_metric(labels[[0, 0, 2]], outputs[[0, 0, 2]], weights, classes)[0]
    assert challenge_metric(labels, outputs, weights, classes, np.array([[2.0, 0.0, 1.0]]))[0] == pytest.approx(drawn)
    # task labels by abbreviation: RBBB and CRBBB both land on the merged class
    mapping = class_columns(["AF", "CRBBB", "NSR", "RBBB", "STach"], classes)
    assert mapping.astype(int).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    (tmp_path / "weights.csv").write_text(",164889003,426783006\n164889003,1.0\n")
    with pytest.raises(ValueError, match="not a square table"):
        load_challenge_weights(tmp_path / "weights.csv")


def scored_auroc(references, predictions, scored):
    return roc_auc_score(references[:, scored], predictions[:, scored], average="macro")


def loop_beta_scores(train_references, train_predictions, references, predictions, beta=2):
    """
    The ICBEB columns written out: per class the Youden point of the training ROC curve as threshold, a record above
    none taking its highest class, then per class TP / FP / FN with each record counting 1 / (its labels).
    """
    thresholds = []
    for label in range(references.shape[1]):
        false_positive_rate, true_positive_rate, cuts = roc_curve(
            train_references[:, label], train_predictions[:, label]
        )
        thresholds.append(cuts[np.argmax(true_positive_rate - false_positive_rate)])
    f_values, g_values = [], []
    decisions = []
    for scores in predictions:
        decided = [score > threshold for score, threshold in zip(scores, thresholds)]
        if not any(decided):
            decided[int(np.argmax(scores))] = True
        decisions.append(decided)
    for label in range(references.shape[1]):
        tp = fp = fn = 0.0
        for truth, decided in zip(references, decisions):
            share = 1 / max(1, truth.sum())
            tp += share * (truth[label] == 1 and decided[label])
            fp += share * (truth[label] == 0 and decided[label])
            fn += share * (truth[label] == 1 and not decided[label])
        if tp + fp + fn > 0:
            f_values.append((1 + beta**2) * tp / ((1 + beta**2) * tp + fp + beta**2 * fn))
            g_values.append(tp / (tp + fp + beta * fn))
    return np.mean(f_values), np.mean(g_values)


def benchmark_tiny_model(settings: BenchmarkSettings, tmp_path):
    """A random tiny model benchmarked by `settings` into `tmp_path/out`: the benchmark and its one task's result."""
    model = save_tiny_model(tmp_path / "model")
    benchmark = run_benchmark(str(model), settings, tmp_path / "out", cache_dir=tmp_path / "cache")
    (result,) = benchmark["results"]
    return benchmark, result


@pytest.mark.slow
def test_icbeb2018_benchmark_end_to_end(cpsc_folder, tmp_path):
    benchmark, result = benchmark_tiny_model(
        BenchmarkSettings(suite="icbeb2018", data=str(cpsc_folder), **FAST), tmp_path
    )
    assert result["task"] == "all" and result["label_names"] == list(CPSC2018_CLASSES)
    assert sum(result["records"].values()) == 39 and benchmark["patient_overlap"]["status"] == "unchecked"
    folder = tmp_path / "out" / "predictions" / "exp_ICBEB"
    references = np.load(folder / "data" / "y_test.npy")
    train_references = np.load(folder / "data" / "y_train.npy")
    for row in result["runs"]:
        name = f"{row['encoder']}_{row['head']}_100pct_seed0"
        predictions = np.load(folder / "models" / name / "y_test_pred.npy")
        assert abs(row["macro_auroc"]["value"] - scored_auroc(references, predictions, row["scored_classes"])) <= 1e-9
        f_beta, g_beta = loop_beta_scores(
            train_references, np.load(folder / "models" / name / "y_train_pred.npy"), references, predictions
        )
        assert row["macro_f_beta2"]["value"] == pytest.approx(f_beta, abs=1e-12)
        assert row["macro_g_beta2"]["value"] == pytest.approx(g_beta, abs=1e-12)
    markdown = (tmp_path / "out" / "benchmark.md").read_text()
    assert "| published: xresnet1d101 | end to end | 0.974(05) |" in markdown
    assert "| published: xresnet1d101 | end to end | 0.974(05) | 0.819(30) | 0.602(37) |" in markdown
    assert "Patient overlap between splits not checked: CPSC 2018 has no patient field." in markdown
    assert benchmark["protocol"]["splits"].startswith("seeded multi-label stratified folds")
    (entry,) = json.loads((tmp_path / "out" / "model_index.json").read_text())
    assert entry["results"][0]["dataset"]["type"] == "cpsc2018"


@pytest.mark.slow
def test_code_test_benchmark_reports_per_class_f1_as_the_paper(code_test_folder, tmp_path):
    benchmark, result = benchmark_tiny_model(
        BenchmarkSettings(suite="code-test", data=str(code_test_folder), **FAST), tmp_path
    )
    folder = tmp_path / "out" / "predictions" / "folds"
    references = np.load(folder / "data" / "y_test.npy")
    for row in result["runs"]:
        predictions = np.load(folder / "models" / f"{row['encoder']}_{row['head']}_100pct_seed0" / "y_test_pred.npy")
        decisions = predictions >= np.asarray(row["thresholds"])[None, :]
        for label, entry in enumerate(row["per_class_f1"]):
            if references[:, label].any():
                assert entry["value"] == pytest.approx(f1_score(references[:, label], decisions[:, label]), abs=1e-12)
            else:
                assert entry is None  # no positive test exam: not scored
    markdown = (tmp_path / "out" / "benchmark.md").read_text()
    assert "## folds: per-class test F1 [95 % CI] at validation-tuned thresholds" in markdown
    assert "| published: DNN | | 0.897 | 0.944 | 1.000 | 0.882 | 0.870 | 0.960 |" in markdown


@pytest.mark.slow
def test_the_cli_refuses_a_ptbxl_split_with_a_patient_in_two_splits(tmp_path):
    from test_model_benchmark import write_ptbxl_corpus

    corpus = write_ptbxl_corpus(tmp_path / "ptbxl")
    database = pd.read_csv(corpus / "ptbxl_database.csv")
    database.loc[database["strat_fold"] == 10, "patient_id"] = database["patient_id"].iloc[:12].to_numpy()
    database.to_csv(corpus / "ptbxl_database.csv", index=False)
    model = save_tiny_model(tmp_path / "model")
    process = subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", "benchmark", "--model", str(model), "--suite", "ptbxl", "--data",
         str(corpus), "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--tasks",
         "superdiagnostic"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert process.returncode != 0
    assert "12 of the 60 patients of ptbxl/superdiagnostic have records in two splits (24 records;" in process.stderr
    assert "--allow-patient-overlap" in process.stderr and not (tmp_path / "out" / "embeddings").exists()


def weights_table(path: Path) -> list[str]:
    """
    A reward table over the 26 classes the challenge scores (equivalent codes joined by `|`, as its weights.csv
    writes them): 1 on the diagonal, falling with the distance in this order, so that near misses earn part credit.
    """
    from ecg_pma.data.physionet2021 import EQUIVALENT_SNOMED, SCORED_SNOMED

    classes = [code if code not in EQUIVALENT_SNOMED.values() else
               f"{code}|{next(k for k, v in EQUIVALENT_SNOMED.items() if v == code)}"
               for code in SCORED_SNOMED if code not in EQUIVALENT_SNOMED]  # fmt: skip
    lines = ["," + ",".join(classes)]
    for j, row in enumerate(classes):
        lines.append(row + "," + ",".join(f"{max(0.0, 1 - abs(j - k) / 4):g}" for k in range(len(classes))))
    path.write_text("\n".join(lines) + "\n")
    return classes


def loop_challenge_metric(labels, outputs, weights, normal):
    """The challenge's definition written out record by record, class by class."""

    def score(predicted):
        total = 0.0
        for i in range(len(labels)):
            shared = max(1, sum(labels[i, j] or predicted[i, j] for j in range(labels.shape[1])))
            for j in range(labels.shape[1]):
                for k in range(labels.shape[1]):
                    if labels[i, j] and predicted[i, k]:
                        total += weights[j][k] / shared
        return total

    inactive = np.zeros_like(labels)
    inactive[:, normal] = True
    observed, correct, baseline = score(outputs), score(labels), score(inactive)
    return (observed - baseline) / (correct - baseline)


@pytest.mark.slow
def test_physionet2021_challenge_metric_from_the_saved_predictions(tmp_path):
    from ecg_pma.data.physionet2021 import SCORED_SNOMED

    classes = weights_table(tmp_path / "weights.csv")
    weights = [[float(value) for value in line.split(",")[1:]] for line in
               (tmp_path / "weights.csv").read_text().splitlines()[1:]]  # fmt: skip
    settings = BenchmarkSettings(
        suite="physionet2021", data=str(shared_data_dir("physionet2021")), tasks=["pooled"],
        validation_fraction=0.25, test_fraction=0.25, challenge_weights=str(tmp_path / "weights.csv"), **FAST,
    )  # fmt: skip
    benchmark, result = benchmark_tiny_model(settings, tmp_path)
    code_of = {name: code for code, name in SCORED_SNOMED.items()}
    column_of = [next(i for i, entry in enumerate(classes) if code_of[name] in entry.split("|"))
                 for name in result["label_names"]]  # fmt: skip
    folder = tmp_path / "out" / "predictions" / "pooled"
    references = np.load(folder / "data" / "y_test.npy")
    labels = np.zeros((len(references), len(classes)), dtype=bool)
    labels[:, column_of] = references > 0
    for row in result["runs"]:
        predictions = np.load(folder / "models" / f"{row['encoder']}_{row['head']}_100pct_seed0" / "y_test_pred.npy")
        outputs = np.zeros_like(labels)
        outputs[:, column_of] = predictions >= np.asarray(row["thresholds"])[None, :]
        expected = loop_challenge_metric(labels, outputs, weights, classes.index("426783006"))
        assert row["challenge_metric"]["value"] == pytest.approx(expected, abs=1e-12)
        low, high = row["challenge_metric"]["ci"]
        assert low <= high
    markdown = (tmp_path / "out" / "benchmark.md").read_text()
    assert f"## Challenge metric [95 % CI] at validation-tuned thresholds ({tmp_path / 'weights.csv'})" in markdown


def test_the_readme_describes_the_suites_and_the_patient_guard():
    from ecg_pma.constants import BENCHMARK_SUITES

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Where does my model stand?")[1].split("\n## ")[0]
    for suite in BENCHMARK_SUITES:
        assert f"`{suite}`: " in section, suite
    for option in ("--challenge-weights", "--fold-seed", "--train-data", "--allow-patient-overlap"):
        assert f"`{option}" in section, option
    # the message test_the_cli_refuses_a_ptbxl_split_with_a_patient_in_two_splits sees
    assert "`Refusing to benchmark: N of the M patients of\n  ptbxl/all have records in two splits (...)`" in section
    assert "task `folds`" in section and "task `code15-to-code-test`" in section
