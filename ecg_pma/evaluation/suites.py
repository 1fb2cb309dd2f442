"""
The benchmark suites: each reads its data set in the published layout through the package's loader and gives the
records to embed (once, every split) and its tasks (the record ids and multi-hot labels of each split).

- `ptbxl`: the PTB-XL benchmark (Strodthoff et al. 2021): folds 1-8 train, 9 validation, 10 test; tasks all (71
  statements), diagnostic (44), subdiagnostic (23), superdiagnostic (5), form (19), rhythm (12), labels as
  `ecg_pma.data.ptbxl` builds them; records without a label in a task left out of it (the benchmark's rule) or kept
  as all-negative rows (`keep_unlabeled`, the PMA authors' choice).
- `physionet2021`: the challenge's scored classes, the records split by a hash of their name (the loader's split,
  fractions as given); one task on every source pooled and one per source database (told by record-name prefix).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import DatasetDict

from ..constants import PTBXL_LABEL_SETS
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


@dataclass
class Task:
    """One task of a suite: per split, the record ids, their labels `(records, len(label_names))` and sources."""

    suite: str
    name: str
    label_names: list[str]
    record_ids: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    sources: dict[str, list[str]]

    @property
    def experiment(self) -> str:
        """The folder of the PTB-XL benchmark repository's layout (`exp0`...; the task name for other suites)."""
        return PTBXL_EXPERIMENTS.get(self.name, self.name) if self.suite == "ptbxl" else self.name

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
        )


def ptbxl_tasks(root: str | Path, present: set[str], label_sets=PTBXL_LABEL_SETS, keep_unlabeled: bool = False):
    """The PTB-XL tasks from `ptbxl_database.csv` and `scp_statements.csv`, over the records `present` (ecg ids)."""
    root = Path(root)
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    database = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    database = database[database.index.astype(str).isin(present)]
    codes = [ast.literal_eval(text) for text in database["scp_codes"]]
    folds = database["strat_fold"].astype(int).tolist()
    tasks = []
    for label_set in label_sets:
        names = ptbxl_label_names(statements, label_set)
        index = {name: i for i, name in enumerate(names)}
        record_ids = {split: [] for split in SPLITS}
        labels = {split: [] for split in SPLITS}
        for ecg_id, record_codes, fold in zip(database.index, codes, folds):
            record_labels = ptbxl_record_labels(record_codes, statements, label_set)
            if not record_labels and not keep_unlabeled:
                continue
            split = FOLD_TO_SPLIT[fold]
            row = np.zeros(len(names), dtype=np.int64)
            row[[index[label] for label in record_labels]] = 1
            record_ids[split].append(str(ecg_id))
            labels[split].append(row)
        tasks.append(
            Task(
                "ptbxl",
                label_set,
                names,
                record_ids,
                {split: np.asarray(rows, dtype=np.int64).reshape(-1, len(names)) for split, rows in labels.items()},
                {split: ["ptb-xl"] * len(ids) for split, ids in record_ids.items()},
            )
        )
    return tasks


def physionet2021_tasks(records: DatasetDict) -> list[Task]:
    """`pooled` (every record) and one task per source database with records in every split."""
    names = list(id2label(records).values())
    ids = {split: list(records[split]["record_id"]) for split in SPLITS}
    labels = {split: np.asarray(records[split]["labels"], dtype=np.int64).reshape(-1, len(names)) for split in SPLITS}
    sources = {split: [record_source(name) or "unknown" for name in ids[split]] for split in SPLITS}
    tasks = [Task("physionet2021", "pooled", names, ids, labels, sources)]
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
            )
        )
    return tasks


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
) -> tuple[DatasetDict, list[Task]]:
    """
    The records to embed (every record of the data set, by split, as the loader reads them) and the suite's tasks
    (those named in `tasks`, all by default).
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
    raise ValueError(f"Unknown benchmark suite {suite!r}; expected ptbxl or physionet2021.")
