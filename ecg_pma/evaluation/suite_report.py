"""
The parts of `benchmark.md` particular to some suites: published reference rows (ICBEB 2018 from the PTB-XL
benchmark's leaderboard, CODE-test from its paper's Table 2), the per-class F1 table, the challenge metric table, and
the patient-overlap line.
"""

from __future__ import annotations

from ..data.code15 import CODE_LABELS
from .suites import lead_set_label


def table_header(columns: list[str]) -> list[str]:
    """A markdown table's header and rule lines for `columns` (the reports' tables: fixed columns, then one per task
    or class)."""
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


# The PTB-XL benchmark's leaderboard, "7. ICBEB: All statements" (test macro AUROC with its bootstrap deviation),
# README of github.com/helme/ecg_ptbxl_benchmarking at commit cdbf4e66d7e57d9b6a2657b6024716212b8d0afa.
ICBEB_REFERENCE_SOURCE = (
    "github.com/helme/ecg_ptbxl_benchmarking README (section 7, ICBEB), commit "
    "cdbf4e66d7e57d9b6a2657b6024716212b8d0afa (Strodthoff et al. 2021); trained end to end, not probes, on folds its "
    "convert_ICBEB.py drew on the authors' machine (unpublished), so not the folds here"
)
ICBEB_REFERENCE_ROWS = {"xresnet1d101": "0.974(05)", "resnet1d_wang": "0.969(06)", "inception1d": "0.963(09)"}
# Its F_beta=2 and G_beta=2 columns, same rows.
ICBEB_REFERENCE_BETA = {"xresnet1d101": ("0.819(30)", "0.602(37)"), "resnet1d_wang": ("0.803(31)", "0.586(37)"),
                        "inception1d": ("0.807(30)", "0.594(41)")}  # fmt: skip
# Table 2 of Ribeiro et al. 2020 (Nat Commun 11:1760), per-class F1 on all 827 CODE-test exams, from
# outputs/tables/scores.csv of github.com/antonior92/automatic-ecg-diagnosis at commit 4039348.
CODE_TEST_REFERENCE_SOURCE = (
    "Ribeiro et al. 2020, Table 2 (outputs/tables/scores.csv of github.com/antonior92/automatic-ecg-diagnosis, "
    "commit 4039348); the DNN was trained on more than 2 million CODE exams and tested on all 827, thresholds maximising F1 "
    "on its validation set"
)
CODE_TEST_REFERENCE_F1 = {
    "DNN": (0.897, 0.944, 1.000, 0.882, 0.870, 0.960),
    "cardiology residents": (0.776, 0.917, 0.947, 0.882, 0.769, 0.882),
    "emergency residents": (0.719, 0.852, 0.912, 0.848, 0.696, 0.946),
    "medical students": (0.732, 0.928, 0.915, 0.750, 0.706, 0.873),
}


def reference_rows(benchmark: dict, tasks: list[str]) -> list[str]:
    """The published rows under the 100 % table of `icbeb2018`."""
    if benchmark["suite"] != "icbeb2018" or tasks != ["all"]:
        return []
    rows = [f"| published: {name} | end to end | {value} |" for name, value in ICBEB_REFERENCE_ROWS.items()]
    return [*rows, "", f"Published rows: {ICBEB_REFERENCE_SOURCE}."]


def result_label(result: dict) -> str:
    """A result's task with its lead set unless 12 (`pooled-6leads`), as `Task.label` names it."""
    return lead_set_label(result["task"], result.get("lead_set", "12"))


def cell(entry) -> str:
    return "n/a" if entry is None else f"{entry['value']:.3f} [{entry['ci'][0]:.3f}, {entry['ci'][1]:.3f}]"


def largest_fraction_rows(result: dict, settings: dict) -> list[dict]:
    percent, seed = max(settings["label_percents"]), settings["seeds"][0]
    return [row for row in result["runs"] if (row["label_percent"], row["seed"]) == (percent, seed)]


def per_class_f1_section(benchmark: dict) -> list[str]:
    """Per-class F1 at the validation-tuned thresholds (code-test: beside the paper's Table 2)."""
    if benchmark["suite"] != "code-test":
        return []
    settings, lines = benchmark["settings"], []
    for result in benchmark["results"]:
        names = result["label_names"]
        lines += [
            f"## {result_label(result)}: per-class test F1 [95 % CI] at validation-tuned thresholds, "
            f"{max(settings['label_percents']):g} % of the training records, seed {settings['seeds'][0]}",
            "",
            *table_header(["encoder", "head", *names]),
        ]
        for row in largest_fraction_rows(result, settings):
            lines.append(f"| {row['encoder']} | {row['head']} | " + " | ".join(map(cell, row["per_class_f1"])) + " |")
        if list(names) == list(CODE_LABELS):
            for name, values in CODE_TEST_REFERENCE_F1.items():
                lines.append(f"| published: {name} | | " + " | ".join(f"{value:.3f}" for value in values) + " |")
            lines += ["", f"Published rows: {CODE_TEST_REFERENCE_SOURCE}."]
        lines.append("")
    return lines


def beta_section(benchmark: dict) -> list[str]:
    """icbeb2018: the benchmark's ICBEB columns (macro AUROC, F-beta and G-beta, beta 2) beside its leaderboard."""
    if benchmark["suite"] != "icbeb2018":
        return []
    settings, lines = benchmark["settings"], []
    for result in benchmark["results"]:
        lines += [
            f"## {result_label(result)}: the PTB-XL benchmark's ICBEB columns [95 % CI], "
            f"{max(settings['label_percents']):g} % of the training records, seed {settings['seeds'][0]}",
            "",
            "F-beta and G-beta (beta 2) at the benchmark's thresholds (Youden on the training predictions; a record "
            "above none takes its highest class).",
            "",
            "| encoder | head | macro AUROC | F_beta=2 | G_beta=2 |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in largest_fraction_rows(result, settings):
            cells = [cell(row["macro_auroc"]), cell(row.get("macro_f_beta2")), cell(row.get("macro_g_beta2"))]
            lines.append(f"| {row['encoder']} | {row['head']} | " + " | ".join(cells) + " |")
        if result["task"] == "all" and result.get("lead_set", "12") == "12":
            for name, value in ICBEB_REFERENCE_ROWS.items():
                lines.append(
                    f"| published: {name} | end to end | {value} | " + " | ".join(ICBEB_REFERENCE_BETA[name]) + " |"
                )
            lines += ["", f"Published rows: {ICBEB_REFERENCE_SOURCE}."]
        lines.append("")
    return lines


def challenge_section(benchmark: dict) -> list[str]:
    """The PhysioNet 2021 challenge metric [95 % CI] beside macro AUROC, when its weights file was given."""
    if not benchmark.get("challenge_weights"):
        return []
    settings = benchmark["settings"]
    tasks = [result_label(result) for result in benchmark["results"]]
    lines = [
        f"## Challenge metric [95 % CI] at validation-tuned thresholds ({benchmark['challenge_weights']}), "
        f"{max(settings['label_percents']):g} % of the training records, seed {settings['seeds'][0]}",
        "",
        *table_header(["encoder", "head", *tasks]),
    ]
    rows = {result_label(result): largest_fraction_rows(result, settings) for result in benchmark["results"]}
    for position, first in enumerate(rows[tasks[0]]):
        cells = [cell(rows[task][position].get("challenge_metric")) for task in tasks]
        lines.append(f"| {first['encoder']} | {first['head']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def patient_overlap_lines(benchmark: dict) -> list[str]:
    overlap = benchmark.get("patient_overlap")
    if not overlap:
        return []
    if overlap["status"] == "flagged":
        return [
            "**Patient overlap flagged** (--allow-patient-overlap): "
            + "; ".join(
                f"{task}: {entry['patients_in_two_splits']} of {entry['patients']} patients in two splits "
                f"({entry['their_records']} records)"
                for task, entry in overlap["tasks"].items()
            ),
            "",
        ]
    if overlap["unchecked"]:
        reasons = sorted(set(overlap["unchecked"].values()))
        return [f"Patient overlap between splits not checked: {'; '.join(reasons)}.", ""]
    return []
