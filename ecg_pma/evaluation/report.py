"""
What `ecg-pma benchmark` writes: `benchmark.json` (every number), `benchmark.md` (the tables with their intervals),
`predictions/` (each task's labels and each run's probabilities in the PTB-XL benchmark repository's layout:
`<experiment>/data/y_{train,val,test}.npy` and `<experiment>/models/<run>/y_{train,val,test}_pred.npy`, plain
float arrays that its `SCP_Experiment.evaluate` loads) and `model_index.json` (the card's `model-index` entries).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .suite_report import beta_section, challenge_section, patient_overlap_lines, per_class_f1_section, reference_rows
from .suites import SPLITS


# Published rows of the PTB-XL benchmark's leaderboard (supervised models trained end to end, test macro AUROC with
# the leaderboard's bootstrap deviation), from the README of github.com/helme/ecg_ptbxl_benchmarking at commit
# cdbf4e66d7e57d9b6a2657b6024716212b8d0afa (Strodthoff et al., IEEE JBHI 2021, doi:10.1109/jbhi.2020.3022989).
PTBXL_REFERENCE_SOURCE = (
    "github.com/helme/ecg_ptbxl_benchmarking README, commit cdbf4e66d7e57d9b6a2657b6024716212b8d0afa "
    "(Strodthoff et al. 2021); 0.925(07) = 0.925 with a bootstrap deviation of 0.007; trained end to end, not probes"
)
PTBXL_REFERENCE_ROWS = {
    "xresnet1d101": {"all": "0.925(07)", "diagnostic": "0.937(08)", "subdiagnostic": "0.929(14)",
                     "superdiagnostic": "0.928(05)", "form": "0.896(12)", "rhythm": "0.957(19)"},
    "inception1d": {"all": "0.925(08)", "diagnostic": "0.931(09)", "subdiagnostic": "0.930(10)",
                    "superdiagnostic": "0.921(06)", "form": "0.899(22)", "rhythm": "0.953(13)"},
    "resnet1d_wang": {"all": "0.919(08)", "diagnostic": "0.936(08)", "subdiagnostic": "0.928(10)",
                      "superdiagnostic": "0.930(05)", "form": "0.880(15)", "rhythm": "0.946(10)"},
}  # fmt: skip
# The benchmark repository's file names per split.
LAYOUT_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def run_name(encoder: str, head: str, percent: float, seed: int) -> str:
    """A run's model folder in the PTB-XL layout: `pretrained_pma_100pct_seed0`."""
    return f"{encoder}_{head}_{percent:g}pct_seed{seed}"


def write_predictions(tasks, runs: dict, output_dir: Path) -> None:
    for task in tasks:
        folder = output_dir / "predictions" / task.experiment
        (folder / "data").mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            np.save(folder / "data" / f"y_{LAYOUT_SPLITS[split]}.npy", task.labels[split])
        (folder / "data" / "record_ids.json").write_text(json.dumps(task.record_ids))
        (folder / "data" / "label_names.json").write_text(json.dumps(task.label_names))
        for (encoder, percent, seed, head), run in runs[task.name].items():
            model_dir = folder / "models" / run_name(encoder, head, percent, seed)
            model_dir.mkdir(parents=True, exist_ok=True)
            for split in SPLITS:
                np.save(model_dir / f"y_{LAYOUT_SPLITS[split]}_pred.npy", run.probabilities[split])


def format_interval(entry: dict, signed: bool = False) -> str:
    value, (low, high) = entry["value"] if "value" in entry else entry["difference"], entry["ci"]
    sign = "+" if signed else ""
    return f"{value:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def markdown(benchmark: dict) -> str:
    results = benchmark["results"]
    tasks = [result["task"] for result in results]
    settings = benchmark["settings"]
    lines = [
        f"# Benchmark of `{benchmark['model']}` on {benchmark['suite']}",
        "",
        f"Model hash `{benchmark['model_hash'][:16]}`; {benchmark['data']['records_embedded']} records embedded; "
        "test macro AUROC with its 95 % bootstrap interval "
        f"({settings['num_resamples']} resamples of the test records, seed {settings['bootstrap_seed']}). "
        "`random` is a randomly initialised encoder of the same architecture, probed the same way.",
        "",
        "Records per task (train / validation / test): "
        + ", ".join(
            f"{r['task']} {r['records']['train']} / {r['records']['validation']} / {r['records']['test']}"
            for r in results
        ),  # fmt: skip
        "",
    ]
    if benchmark["leakage"]["status"] == "flagged":
        lines += [
            "**Leakage flagged** (--allow-leakage): "
            + "; ".join(
                f"{task}: {entry['test_records_from_pretraining_sources']} of {entry['test_records']} test records "
                f"from {', '.join(entry['sources'])}"
                for task, entry in benchmark["leakage"]["tasks"].items()
            ),
            "",
        ]
    elif benchmark["leakage"]["status"] == "unchecked":
        lines += [f"Leakage not checked: {benchmark['leakage']['reason']}.", ""]
    lines += patient_overlap_lines(benchmark)
    by_task = {result["task"]: {(r["encoder"], r["label_percent"], r["seed"], r["head"]): r for r in result["runs"]}
               for result in results}  # fmt: skip
    first_seed = settings["seeds"][0]
    keys = [key for key in by_task[tasks[0]] if key[2] == first_seed]
    for percent in settings["label_percents"]:
        lines += [
            f"## {percent:g} % of the training records, seed {first_seed}: test macro AUROC [95 % CI]",
            "",
            "| encoder | head | " + " | ".join(tasks) + " |",
            "| --- | --- | " + " | ".join("---" for _ in tasks) + " |",
        ]
        for encoder, row_percent, seed, head in keys:
            if row_percent != percent:
                continue
            cells = [format_interval(by_task[task][(encoder, percent, seed, head)]["macro_auroc"]) for task in tasks]
            lines.append(f"| {encoder} | {head} | " + " | ".join(cells) + " |")
        if benchmark["suite"] == "ptbxl" and percent == 100:
            for name, row in PTBXL_REFERENCE_ROWS.items():
                lines.append(f"| published: {name} | end to end | " + " | ".join(row[task] for task in tasks) + " |")
            lines += ["", f"Published rows: {PTBXL_REFERENCE_SOURCE}."]
        elif percent == 100:
            lines += reference_rows(benchmark, tasks)
        lines.append("")
    lines += [
        "## Paired differences of test macro AUROC [95 % CI of the difference, same resamples]",
        "",
        "| comparison | label % | seed | " + " | ".join(tasks) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in tasks) + " |",
    ]
    paired = {result["task"]: {(p["comparison"], p["label_percent"], p["seed"]): p for p in result["paired_differences"]}
              for result in results}  # fmt: skip
    for comparison, percent, seed in paired[tasks[0]]:
        cells = [format_interval(paired[task][(comparison, percent, seed)], signed=True) for task in tasks]
        lines.append(f"| {comparison} | {percent:g} | {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    if len(settings["seeds"]) > 1:
        lines += [
            f"## Over seeds {settings['seeds']}: test macro AUROC mean ± sd",
            "",
            "| encoder | label % | head | " + " | ".join(tasks) + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in tasks) + " |",
        ]
        over = {result["task"]: {(r["encoder"], r["label_percent"], r["head"]): r for r in result["over_seeds"]}
                for result in results}  # fmt: skip
        for encoder, percent, head in over[tasks[0]]:
            cells = [
                "{mean:.3f} ± {sd:.3f}".format(**over[task][(encoder, percent, head)]["macro_auroc"]) for task in tasks
            ]
            lines.append(f"| {encoder} | {percent:g} | {head} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += per_class_f1_section(benchmark) + beta_section(benchmark) + challenge_section(benchmark)
    return "\n".join(lines)


def write_layer_plots(benchmark: dict, output_dir: Path) -> None:
    """
    The layer-wise curve of each task (`plots/<task>_layers.png`): the pre-trained encoder's single-layer probes,
    PPA and PMA, test macro AUROC at the largest label fraction, first seed; drawn by the layer-wise study's
    `plot_layers`. Only when the `layers` heads were run.
    """
    from ..training.probe_layers import plot_layers

    percent, seed = max(benchmark["settings"]["label_percents"]), benchmark["settings"]["seeds"][0]
    for result in benchmark["results"]:
        rows = {row["head"]: row for row in result["runs"] if (row["encoder"], row["label_percent"], row["seed"]) ==
                ("pretrained", percent, seed)}  # fmt: skip
        layers = sorted(
            (int(head.removeprefix("layer")), row) for head, row in rows.items() if head.startswith("layer")
        )
        if not layers:
            return
        points = [{"probe": f"layer {layer}", "layer": layer, "test_macro_auroc": row["macro_auroc"]["value"]}
                  for layer, row in layers]  # fmt: skip
        points += [{"probe": name.upper(), "layer": None, "test_macro_auroc": rows[name]["macro_auroc"]["value"]}
                   for name in ("ppa", "pma") if name in rows]  # fmt: skip
        (output_dir / "plots").mkdir(parents=True, exist_ok=True)
        plot_layers(
            points,
            output_dir / "plots" / f"{result['task']}_layers.png",
            head_type=benchmark["settings"]["head_type"],
            num_records=result["records"],
        )


def write_reports(benchmark: dict, tasks, runs: dict, output_dir: Path) -> None:
    from ..sharing.modelcard import benchmark_model_index

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "benchmark.json").write_text(json.dumps(benchmark, indent=2))
    (output_dir / "benchmark.md").write_text(markdown(benchmark))
    write_predictions(tasks, runs, output_dir)
    write_layer_plots(benchmark, output_dir)
    (output_dir / "model_index.json").write_text(json.dumps(benchmark_model_index(benchmark), indent=2))
