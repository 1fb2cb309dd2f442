"""
What `ecg-pma benchmark` writes: `benchmark.json` (every number), `benchmark.md` (the tables with their intervals,
the plots listed), `plots/` (per task: AUROC with its interval per encoder and head, the layer-wise curve, PMA gate
weights per class),
`predictions/` (each task's labels and each run's probabilities in the PTB-XL benchmark repository's layout:
`<experiment>/data/y_{train,val,test}.npy` and `<experiment>/models/<run>/y_{train,val,test}_pred.npy`, plain
float arrays that its `SCP_Experiment.evaluate` loads) and `model_index.json` (the card's `model-index` entries).
With lead sets other than 12, each gets its own tables (titles starting `6 leads (I, II, ...)`), plots
(`<task>-6leads_...`) and run folders (`<run>_6leads`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .suite_report import (
    beta_section,
    challenge_section,
    patient_overlap_lines,
    per_class_f1_section,
    reference_rows,
    result_label,
    table_header,
)
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


def run_name(encoder: str, head: str, percent: float, seed: int, lead_set: str = "12") -> str:
    """A run's model folder in the PTB-XL layout: `pretrained_pma_100pct_seed0`; with a lead set other than 12,
    `pretrained_pma_100pct_seed0_6leads` (the task's labels, `data/`, are the same for every lead set)."""
    return f"{encoder}_{head}_{percent:g}pct_seed{seed}" + ("" if lead_set == "12" else f"_{lead_set}leads")


def write_predictions(tasks, runs: dict, output_dir: Path) -> None:
    for task in tasks:
        folder = output_dir / "predictions" / task.experiment
        (folder / "data").mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            np.save(folder / "data" / f"y_{LAYOUT_SPLITS[split]}.npy", task.labels[split])
        (folder / "data" / "record_ids.json").write_text(json.dumps(task.record_ids))
        (folder / "data" / "label_names.json").write_text(json.dumps(task.label_names))
        for (encoder, percent, seed, head), run in runs[task.label].items():
            model_dir = folder / "models" / run_name(encoder, head, percent, seed, task.lead_set)
            model_dir.mkdir(parents=True, exist_ok=True)
            for split in SPLITS:
                np.save(model_dir / f"y_{LAYOUT_SPLITS[split]}_pred.npy", run.probabilities[split])


def format_interval(entry: dict, signed: bool = False) -> str:
    value, (low, high) = entry["value"] if "value" in entry else entry["difference"], entry["ci"]
    sign = "+" if signed else ""
    return f"{value:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def lead_set_groups(results: list[dict]) -> dict[str, list[dict]]:
    """The results of each lead set, in the order run."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        groups.setdefault(result.get("lead_set", "12"), []).append(result)
    return groups


def markdown(benchmark: dict) -> str:
    groups = lead_set_groups(benchmark["results"])
    results = next(iter(groups.values()))  # the records of a task are the same in every lead set
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
    for lead_set, group in groups.items():
        heading = ""  # 12 leads only: the tables as they always were
        if list(groups) != ["12"]:
            leads = benchmark.get("lead_sets", {}).get(lead_set, [])
            heading = f"{lead_set} leads ({', '.join(leads)}): " if lead_set != "12" else "12 leads: "
        lines += result_tables(benchmark, group, lead_set, heading)
    lines += per_class_f1_section(benchmark) + beta_section(benchmark) + challenge_section(benchmark)
    return "\n".join(lines)


def result_tables(benchmark: dict, results: list[dict], lead_set: str, heading: str) -> list[str]:
    """The test macro AUROC tables of one lead set's results (per label fraction, paired differences, over seeds),
    each title starting with `heading`; the published reference rows under the 12-lead 100 % table."""
    settings, tasks, lines = benchmark["settings"], [result["task"] for result in results], []
    by_task = {result["task"]: {(r["encoder"], r["label_percent"], r["seed"], r["head"]): r for r in result["runs"]}
               for result in results}  # fmt: skip
    first_seed = settings["seeds"][0]
    keys = [key for key in by_task[tasks[0]] if key[2] == first_seed]
    for percent in settings["label_percents"]:
        lines += [
            f"## {heading}{percent:g} % of the training records, seed {first_seed}: test macro AUROC [95 % CI]",
            "",
            *table_header(["encoder", "head", *tasks]),
        ]
        for encoder, row_percent, seed, head in keys:
            if row_percent != percent:
                continue
            cells = [format_interval(by_task[task][(encoder, percent, seed, head)]["macro_auroc"]) for task in tasks]
            lines.append(f"| {encoder} | {head} | " + " | ".join(cells) + " |")
        if lead_set != "12":
            pass  # the published rows are 12-lead models
        elif benchmark["suite"] == "ptbxl" and percent == 100:
            for name, row in PTBXL_REFERENCE_ROWS.items():
                lines.append(f"| published: {name} | end to end | " + " | ".join(row[task] for task in tasks) + " |")
            lines += ["", f"Published rows: {PTBXL_REFERENCE_SOURCE}."]
        elif percent == 100:
            lines += reference_rows(benchmark, tasks)
        lines.append("")
    lines += [
        f"## {heading}Paired differences of test macro AUROC [95 % CI of the difference, same resamples]",
        "",
        *table_header(["comparison", "label %", "seed", *tasks]),
    ]
    paired = {result["task"]: {(p["comparison"], p["label_percent"], p["seed"]): p for p in result["paired_differences"]}
              for result in results}  # fmt: skip
    for comparison, percent, seed in paired[tasks[0]]:
        cells = [format_interval(paired[task][(comparison, percent, seed)], signed=True) for task in tasks]
        lines.append(f"| {comparison} | {percent:g} | {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    if len(settings["seeds"]) > 1:
        lines += [
            f"## {heading}Over seeds {settings['seeds']}: test macro AUROC mean ± sd",
            "",
            *table_header(["encoder", "label %", "head", *tasks]),
        ]
        over = {result["task"]: {(r["encoder"], r["label_percent"], r["head"]): r for r in result["over_seeds"]}
                for result in results}  # fmt: skip
        for encoder, percent, head in over[tasks[0]]:
            cells = [
                "{mean:.3f} ± {sd:.3f}".format(**over[task][(encoder, percent, head)]["macro_auroc"]) for task in tasks
            ]
            lines.append(f"| {encoder} | {percent:g} | {head} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


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
            output_dir / "plots" / f"{result_label(result)}_layers.png",
            head_type=benchmark["settings"]["head_type"],
            num_records=result["records"],
        )


def headline_rows(result: dict, settings: dict) -> list[dict]:
    """The runs a task's plots show: every encoder, head and protocol at the largest label fraction, first seed."""
    percent, seed = max(settings["label_percents"]), settings["seeds"][0]
    return [row for row in result["runs"] if (row["label_percent"], row["seed"]) == (percent, seed)]


def save_plot(figure, path: Path, title: str) -> None:
    """A benchmark plot: laid out, at 120 dpi, its title in the file's metadata."""
    from ..visualization.plotting import save_figure

    figure.tight_layout()
    figure.set_dpi(120)
    save_figure(figure, path, title)


def write_auroc_plots(benchmark: dict, output_dir: Path) -> list[Path]:
    """
    Per task, `plots/<task>_auroc.png`: test macro AUROC with its 95 % bootstrap interval for each encoder and head
    (or end-to-end protocol), at the largest label fraction and the first seed; chance (0.5) dotted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for result in benchmark["results"]:
        rows = headline_rows(result, benchmark["settings"])
        values = np.array([row["macro_auroc"]["value"] for row in rows])
        intervals = np.array([row["macro_auroc"]["ci"] for row in rows])
        figure, axes = plt.subplots(figsize=(7, 1.2 + 0.3 * len(rows)))
        positions = np.arange(len(rows))
        colours = ["C0" if row["encoder"] == "pretrained" else "C7" for row in rows]
        for position, value, (low, high), colour in zip(positions, values, intervals, colours):
            axes.errorbar(value, position, xerr=[[value - low], [high - value]], fmt="o", color=colour, capsize=3)
        axes.axvline(0.5, linestyle=":", color="grey")
        axes.set_yticks(positions, [f"{row['encoder']} · {row['head']}" for row in rows])
        axes.invert_yaxis()
        axes.set_xlabel("test macro AUROC [95 % bootstrap CI]")
        title = (f"{benchmark['suite']} / {result_label(result)}: {max(benchmark['settings']['label_percents']):g} % "
                 f"of the training records, seed {benchmark['settings']['seeds'][0]}")  # fmt: skip
        axes.set_title(title)
        paths.append(output_dir / "plots" / f"{result_label(result)}_auroc.png")
        save_plot(figure, paths[-1], title)
        plt.close(figure)
    return paths


def class_gate_weights(weights: np.ndarray, references: np.ndarray) -> np.ndarray:
    """`(classes, depth)`: per class, the mean PMA layer weights `weights (records, depth)` of its positive test
    records (`references (records, classes)`); NaN for a class without one."""
    positives = references.astype(bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positives.T.astype(float) @ weights) / positives.sum(axis=0)[:, None]


def write_gate_plots(benchmark: dict, tasks, runs: dict, output_dir: Path) -> list[Path]:
    """
    Per task and PMA run of the pre-trained encoder (the `pma` probe, `finetune`, `lora`) at the largest label
    fraction and first seed, `plots/<task>_gate_<head>.png`: the gate's weight of each layer, averaged over the test
    records of each class (rows: classes with a positive test record).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    percent, seed = max(benchmark["settings"]["label_percents"]), benchmark["settings"]["seeds"][0]
    paths = []
    for task in tasks:
        for (encoder, run_percent, run_seed, head), run in runs[task.label].items():
            if (encoder, run_percent, run_seed) != ("pretrained", percent, seed) or run.test_gate_weights is None:
                continue
            if head == "pma-frozen":
                continue  # uniform by construction
            per_class = class_gate_weights(run.test_gate_weights, task.labels["test"])
            shown = np.flatnonzero(task.labels["test"].sum(axis=0) > 0)
            figure, axes = plt.subplots(figsize=(max(4.5, 2 + 0.5 * per_class.shape[1]), 1.6 + 0.25 * len(shown)))
            image = axes.imshow(per_class[shown], aspect="auto", cmap="viridis")
            axes.set_xticks(range(per_class.shape[1]), [str(layer + 1) for layer in range(per_class.shape[1])])
            axes.set_yticks(range(len(shown)), [task.label_names[index] for index in shown])
            axes.set_xlabel("encoder layer")
            figure.colorbar(image, ax=axes, label="mean gate weight")
            title = f"PMA gate weights ({head})\n{task.label}: mean over each class's test records"
            axes.set_title(title)
            paths.append(output_dir / "plots" / f"{task.label}_gate_{head}.png")
            save_plot(figure, paths[-1], title.replace("\n", "; "))
            plt.close(figure)
    return paths


def write_reports(benchmark: dict, tasks, runs: dict, output_dir: Path) -> None:
    from ..sharing.modelcard import benchmark_model_index

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "benchmark.json").write_text(json.dumps(benchmark, indent=2))
    write_predictions(tasks, runs, output_dir)
    write_layer_plots(benchmark, output_dir)
    write_auroc_plots(benchmark, output_dir)
    write_gate_plots(benchmark, tasks, runs, output_dir)
    listed = "\n".join(f"- `{path.relative_to(output_dir)}`" for path in sorted((output_dir / "plots").glob("*.png")))
    (output_dir / "benchmark.md").write_text(markdown(benchmark) + f"\n## Plots\n\n{listed}\n")
    (output_dir / "model_index.json").write_text(json.dumps(benchmark_model_index(benchmark), indent=2))
