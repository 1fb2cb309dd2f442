"""
The benchmark suites: each reads its data set in the published layout through the package's loader and gives the
records to embed (once, every split) and its tasks (the record ids and multi-hot labels of each split).

- `ptbxl`: the PTB-XL benchmark (Strodthoff et al. 2021): folds 1-8 train, 9 validation, 10 test; tasks all (71
  statements), diagnostic (44), subdiagnostic (23), superdiagnostic (5), form (19), rhythm (12), labels as
  `ecg_pma.data.ptbxl` builds them; records without a label in a task left out of it (the benchmark's rule) or kept
  as all-negative rows (`keep_unlabeled`, the PMA authors' choice).
- `physionet2021`: the challenge's scored classes, the records split by a hash of their name (the loader's split,
  fractions as given); one task on every source pooled and one per source database (told by record-name prefix).
- `icbeb2018`: CPSC 2018's nine classes (`ecg_pma.data.cpsc2018`: WFDB records and `REFERENCE.csv`), seeded
  stratified folds 1-8 / 9 / 10 (the PTB-XL benchmark publishes no folds for it); one task, `all`.
- `code-test`: the 827 cardiologist-annotated exams of CODE-test (Ribeiro et al. 2020), six labels. A test set only:
  with `train_data` (a CODE-15% folder, the same six labels) the probes train on CODE-15% (its patient-wise hash
  split gives train and validation) and test on all 827 exams (task `code15-to-code-test`); without it, the 827 exams
  are cut into seeded stratified folds 1-8 / 9 / 10 (task `folds`).

Each task carries the patient of each record where the data has a patient field (PTB-XL, CODE-15%), for the
patient-overlap guard (`ecg_pma.evaluation.leakage.check_patient_overlap`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import DatasetDict

from ..constants import PTBXL_LABEL_SETS
from ..data.code15 import load_code15, load_code_test
from ..data.cpsc2018 import FOLD_SEED, load_cpsc2018
from ..data.folds import stratified_folds
from ..data.physionet2021 import load_physionet2021, record_source
from ..data.ptbxl import FOLD_TO_SPLIT, load_ptbxl, ptbxl_label_names, ptbxl_record_labels
from ..data.records import id2label


SPLITS = ("train", "validation", "test")
# The PTB-XL benchmark repository's experiment folder of each task (its code/reproduce_results.py).
PTBXL_EXPERIMENTS = {
    "all": "exp0",
    "diagnostic": "exp1",
    "subdiagnostic": "exp1.1",
    "superdiagnostic": "exp1.1.1",
    "form": "exp2",
    "rhythm": "exp3",
}
# The folder of the PTB-XL benchmark repository's layout for the other suites' tasks.
EXPERIMENTS = {("icbeb2018", "all"): "exp_ICBEB"}
# Split of the folds of the suites that are cut into ten stratified folds (PTB-XL's rule).
FOLD_SPLITS = {**dict.fromkeys(range(1, 9), "train"), 9: "validation", 10: "test"}


@dataclass
class Task:
    """
    One task of a suite: per split, the record ids, their labels `(records, len(label_names))` and sources; the
    patient of each record where the data has a patient field (None otherwise, with the reason in `patients_note`);
    the lead set its records are read with (a name of `ecg_pma.LEAD_SETS`; `"12"`: every lead the records have).
    """

    suite: str
    name: str
    label_names: list[str]
    record_ids: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    sources: dict[str, list[str]]
    patients: dict[str, list[str]] | None = None
    patients_note: str = ""
    lead_set: str = "12"

    @property
    def label(self) -> str:
        """The task's name in runs, plots and tables: its name, with the lead set unless 12 (`pooled-6leads`)."""
        return lead_set_label(self.name, self.lead_set)

    def with_lead_set(self, lead_set: str) -> Task:
        return replace(self, lead_set=lead_set)

    @property
    def experiment(self) -> str:
        """The folder of the PTB-XL benchmark repository's layout (`exp0`..., `exp_ICBEB`; else the task name)."""
        if self.suite == "ptbxl":
            return PTBXL_EXPERIMENTS.get(self.name, self.name)
        return EXPERIMENTS.get((self.suite, self.name), self.name)

    def without(self, dropped: set[str]) -> Task:
        """The task without the records of `dropped` (records too short to embed)."""
        keep = {split: [i for i, name in enumerate(self.record_ids[split]) if name not in dropped] for split in SPLITS}
        return Task(
            self.suite,
            self.name,
            self.label_names,
            {split: [self.record_ids[split][i] for i in keep[split]] for split in SPLITS},
            {split: self.labels[split][keep[split]] for split in SPLITS},
            {split: [self.sources[split][i] for i in keep[split]] for split in SPLITS},
            None
            if self.patients is None
            else {split: [self.patients[split][i] for i in keep[split]] for split in SPLITS},
            self.patients_note,
            self.lead_set,
        )


def lead_set_label(name: str, lead_set: str) -> str:
    return name if lead_set == "12" else f"{name}-{lead_set}leads"


def ptbxl_tasks(root: str | Path, present: set[str], label_sets=PTBXL_LABEL_SETS, keep_unlabeled: bool = False):
    """The PTB-XL tasks from `ptbxl_database.csv` and `scp_statements.csv`, over the records `present` (ecg ids)."""
    root = Path(root)
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    database = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    database = database[database.index.astype(str).isin(present)]
    codes = [ast.literal_eval(text) for text in database["scp_codes"]]
    folds = database["strat_fold"].astype(int).tolist()
    patient_of = database["patient_id"].astype(str).tolist() if "patient_id" in database else None
    tasks = []
    for label_set in label_sets:
        names = ptbxl_label_names(statements, label_set)
        index = {name: i for i, name in enumerate(names)}
        record_ids = {split: [] for split in SPLITS}
        labels = {split: [] for split in SPLITS}
        patients = {split: [] for split in SPLITS}
        for position, (ecg_id, record_codes, fold) in enumerate(zip(database.index, codes, folds)):
            record_labels = ptbxl_record_labels(record_codes, statements, label_set)
            if not record_labels and not keep_unlabeled:
                continue
            split = FOLD_TO_SPLIT[fold]
            row = np.zeros(len(names), dtype=np.int64)
            row[[index[label] for label in record_labels]] = 1
            record_ids[split].append(str(ecg_id))
            labels[split].append(row)
            if patient_of is not None:
                patients[split].append(patient_of[position])
        tasks.append(
            Task(
                "ptbxl",
                label_set,
                names,
                record_ids,
                {split: np.asarray(rows, dtype=np.int64).reshape(-1, len(names)) for split, rows in labels.items()},
                {split: ["ptb-xl"] * len(ids) for split, ids in record_ids.items()},
                patients if patient_of is not None else None,
                "" if patient_of is not None else "ptbxl_database.csv has no patient_id column",
            )
        )
    return tasks


def physionet2021_tasks(records: DatasetDict) -> list[Task]:
    """`pooled` (every record) and one task per source database with records in every split."""
    names = list(id2label(records).values())
    ids = {split: list(records[split]["record_id"]) for split in SPLITS}
    labels = {split: np.asarray(records[split]["labels"], dtype=np.int64).reshape(-1, len(names)) for split in SPLITS}
    sources = {split: [record_source(name) or "unknown" for name in ids[split]] for split in SPLITS}
    note = "the challenge's WFDB headers have no patient field"
    tasks = [Task("physionet2021", "pooled", names, ids, labels, sources, None, note)]
    for source in sorted({source for split in SPLITS for source in sources[split]}):
        keep = {split: [i for i, name in enumerate(sources[split]) if name == source] for split in SPLITS}
        if not all(keep.values()):
            continue  # a source without records in a split cannot be probed on its own; it stays in `pooled`
        tasks.append(
            Task(
                "physionet2021",
                source,
                names,
                {split: [ids[split][i] for i in keep[split]] for split in SPLITS},
                {split: labels[split][keep[split]] for split in SPLITS},
                {split: [source] * len(keep[split]) for split in SPLITS},
                None,
                note,
            )
        )
    return tasks


def split_task(records: DatasetDict, suite: str, name: str, source: str | dict, patients_note: str) -> Task:
    """One task over every record of `records`, each in the split it is in; `source` the same or per split."""
    source = source if isinstance(source, dict) else dict.fromkeys(SPLITS, source)
    names = list(id2label(records).values())
    ids = {split: list(records[split]["record_id"]) for split in SPLITS}
    labels = {split: np.asarray(records[split]["labels"], dtype=np.int64).reshape(-1, len(names)) for split in SPLITS}
    patients = (
        {split: [str(patient) for patient in records[split]["patient_id"]] for split in SPLITS}
        if not patients_note
        else None
    )
    sources = {split: [source[split]] * len(ids[split]) for split in SPLITS}
    return Task(suite, name, names, ids, labels, sources, patients, patients_note)


def fold_task(task: Task, fold_seed: int) -> Task:
    """`task` (every record in `test`) re-split into seeded stratified folds 1-8 train, 9 validation, 10 test."""
    folds = stratified_folds(task.labels["test"], 10, fold_seed)
    keep = {split: [i for i, fold in enumerate(folds) if FOLD_SPLITS[int(fold)] == split] for split in SPLITS}
    return Task(
        task.suite,
        "folds",
        task.label_names,
        {split: [task.record_ids["test"][i] for i in rows] for split, rows in keep.items()},
        {split: task.labels["test"][rows] for split, rows in keep.items()},
        {split: [task.sources["test"][i] for i in rows] for split, rows in keep.items()},
        None,
        task.patients_note,
    )


def code_test_records(root, train_data, validation_fraction: float, cache_dir=None, num_proc=None) -> DatasetDict:
    """CODE-test's 827 exams as `test`; with `train_data`, CODE-15%'s patient-wise train and validation splits."""
    test = load_code_test(root, split="test", cache_dir=cache_dir, num_proc=num_proc)
    if train_data is None:
        return test
    train = load_code15(train_data, validation_fraction, 0.0, cache_dir=cache_dir, num_proc=num_proc)
    return DatasetDict({"train": train["train"], "validation": train["validation"], "test": test["test"]})


CODE_TEST_PATIENTS = (
    "CODE-test has no patient ids (827 exams of 827 patients, per its README), which CODE-15%'s cannot be matched "
    "against"
)


def load_suite(
    suite: str,
    root: str | Path,
    tasks: list[str] | None = None,
    sampling_rate: int = 100,
    keep_unlabeled: bool = False,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    cache_dir=None,
    num_proc: int | None = None,
    fold_seed: int = FOLD_SEED,
    train_data: str | Path | None = None,
) -> tuple[DatasetDict, list[Task]]:
    """
    The records to embed (every record of the data set, by split, as the loader reads them) and the suite's tasks
    (those named in `tasks`, all by default). `fold_seed` seeds the stratified folds of `icbeb2018` and `code-test`;
    `train_data` is the CODE-15% folder `code-test` probes train on.
    """
    if suite == "ptbxl":
        records = load_ptbxl(
            root, sampling_rate=sampling_rate, drop_unlabeled=False, cache_dir=cache_dir, num_proc=num_proc
        )
        present = {name for split in SPLITS for name in records[split]["record_id"]}
        unknown = sorted(set(tasks or ()) - set(PTBXL_LABEL_SETS))
        if unknown:
            raise ValueError(f"Unknown PTB-XL task(s) {unknown}; expected some of {list(PTBXL_LABEL_SETS)}.")
        return records, ptbxl_tasks(root, present, tasks or PTBXL_LABEL_SETS, keep_unlabeled)
    if suite == "physionet2021":
        records = load_physionet2021(
            root,
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
            cache_dir=cache_dir,
            num_proc=num_proc,
        )
        all_tasks = physionet2021_tasks(records)
        if tasks:
            unknown = sorted(set(tasks) - {task.name for task in all_tasks})
            if unknown:
                raise ValueError(
                    f"Unknown PhysioNet 2021 task(s) {unknown}; this data has {[task.name for task in all_tasks]}."
                )
            all_tasks = [task for task in all_tasks if task.name in tasks]
        return records, all_tasks
    if suite == "icbeb2018":
        check_task_names(tasks, ["all"], "ICBEB 2018")
        records = load_cpsc2018(root, fold_seed, cache_dir=cache_dir, num_proc=num_proc)
        return records, [split_task(records, "icbeb2018", "all", "cpsc2018", "CPSC 2018 has no patient field")]
    if suite == "code-test":
        records = code_test_records(root, train_data, validation_fraction, cache_dir, num_proc)
        if train_data is None:
            check_task_names(tasks, ["folds"], "CODE-test")
            task = split_task(records, "code-test", "all", "code-test", CODE_TEST_PATIENTS)
            return records, [fold_task(task, fold_seed)]
        check_task_names(tasks, ["code15-to-code-test"], "CODE-test")
        sources = {"train": "code15", "validation": "code15", "test": "code-test"}
        task = split_task(records, "code-test", "code15-to-code-test", sources, CODE_TEST_PATIENTS)
        return records, [task]
    raise ValueError(f"Unknown benchmark suite {suite!r}; expected one of ptbxl, physionet2021, icbeb2018, code-test.")


def check_task_names(asked: list[str] | None, known: list[str], data: str) -> None:
    unknown = sorted(set(asked or ()) - set(known))
    if unknown:
        raise ValueError(f"Unknown {data} task(s) {unknown}; this suite has {known}.")
