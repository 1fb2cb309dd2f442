"""
The pre-training leakage guard: test records from a source database the model was pre-trained on (its
`pretraining_data.json`, written by `ecg-pma pretrain`) would flatter it. PhysioNet 2021 contains PTB-XL (`HR`
records), Georgia, CPSC and others, so a model pre-trained on the challenge data has seen PTB-XL.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.physionet2021 import SOURCE_PREFIXES


# The source databases each data format of `--data` holds (PhysioNet 2021: all, unless `sources` were chosen).
FORMAT_SOURCES = {
    "ptbxl": {"ptb-xl"},
    "physionet2021": set(SOURCE_PREFIXES),
    "code15": {"code15"},
    "code-test": {"code-test"},
    "mimic-iv-ecg": {"mimic-iv-ecg"},
}


class LeakageError(ValueError):
    """Test records come from a source the model was pre-trained on."""


def pretraining_sources(model_dir: str | Path) -> tuple[set[str] | None, str]:
    """
    The source databases a model's `pretraining_data.json` lists (from its folder, or its Hub repository when
    `model_dir` is a Hub id), and where that was read; None when the file is absent or does not name its corpora (then
    nothing can be checked).
    """
    from transformers.utils import cached_file

    path = Path(model_dir) / "pretraining_data.json"
    if not Path(model_dir).is_dir():  # a Hub id: the file downloaded (and cached) beside the weights
        found = cached_file(str(model_dir), "pretraining_data.json", _raise_exceptions_for_missing_entries=False)
        if found is None:
            return None, f"{model_dir} on the Hub has no pretraining_data.json"
        path = Path(found)
    elif not path.is_file():
        return None, f"{path} not found"
    protocol = json.loads(path.read_text())
    corpora = protocol.get("corpora")
    if not corpora:
        return None, f"{path} names no corpora"
    sources = set()
    for corpus in corpora:
        listed = corpus.get("sources")
        sources |= set(listed) if listed else FORMAT_SOURCES.get(corpus.get("format"), {str(corpus.get("format"))})
    return sources, str(path) if Path(model_dir).is_dir() else f"pretraining_data.json of {model_dir} on the Hub"


def check_leakage(model_dir: str | Path, tasks, allow: bool = False) -> dict:
    """
    Counts, per task, the test records whose source the model was pre-trained on. Raises `LeakageError` naming the
    count and the sources unless `allow` (then the counts are returned, to be flagged in the report).
    """
    sources, origin = pretraining_sources(model_dir)
    if sources is None:
        return {"status": "unchecked", "reason": origin}
    overlap = {}
    for task in tasks:
        seen = [name for name in task.sources["test"] if name in sources]
        if seen:
            overlap[f"{task.suite}/{task.name}"] = {
                "test_records_from_pretraining_sources": len(seen),
                "test_records": len(task.sources["test"]),
                "sources": sorted(set(seen)),
            }
    if overlap and not allow:
        first_task, first = next(iter(overlap.items()))
        raise LeakageError(
            f"Refusing to benchmark: {first['test_records_from_pretraining_sources']} of the {first['test_records']} "
            f"test records of {first_task} come from {', '.join(first['sources'])}, which the model was pre-trained "
            f"on ({origin}){f' ({len(overlap)} tasks affected)' if len(overlap) > 1 else ''}. Benchmark on another "
            "suite, or pass --allow-leakage to run anyway with these records flagged in the report."
        )
    return {"status": "flagged" if overlap else "clean", "pretraining_sources": sorted(sources), "tasks": overlap}


class PatientOverlapError(ValueError):
    """A patient has records in two of a task's train / validation / test splits."""


def check_patient_overlap(tasks, allow: bool = False) -> dict:
    """
    Counts, per task, the patients with records in more than one split (and those records), from the patient field
    of the data (`Task.patients`; tasks whose data has none are listed as unchecked, with the reason). Raises
    `PatientOverlapError` naming the count and a few patients unless `allow` (then the counts are returned, to be
    flagged in the report).
    """
    overlap, unchecked = {}, {}
    for task in tasks:
        name = f"{task.suite}/{task.name}"
        if task.patients is None:
            unchecked[name] = task.patients_note or "no patient field"
            continue
        splits_of: dict[str, set[str]] = {}
        for split, patients in task.patients.items():
            for patient in patients:
                splits_of.setdefault(patient, set()).add(split)
        shared = sorted(patient for patient, splits in splits_of.items() if len(splits) > 1)
        if shared:
            shared_set = set(shared)
            overlap[name] = {
                "patients_in_two_splits": len(shared),
                "their_records": sum(
                    patient in shared_set for patients in task.patients.values() for patient in patients
                ),
                "patients": len(splits_of),
                "examples": {patient: sorted(splits_of[patient]) for patient in shared[:5]},
            }
    if overlap and not allow:
        first_task, first = next(iter(overlap.items()))
        examples = "; ".join(
            f"patient {patient}: {', '.join(splits)}" for patient, splits in first["examples"].items()
        )
        raise PatientOverlapError(
            f"Refusing to benchmark: {first['patients_in_two_splits']} of the {first['patients']} patients of "
            f"{first_task} have records in two splits ({first['their_records']} records; {examples})"
            f"{f' ({len(overlap)} tasks affected)' if len(overlap) > 1 else ''}. Fix the split, or pass "
            "--allow-patient-overlap to run anyway with the counts flagged in the report."
        )
    checked = len(tasks) - len(unchecked)
    status = "flagged" if overlap else "clean" if checked else "unchecked"
    return {"status": status, "tasks": overlap, "unchecked": unchecked}
