"""
`ecg-pma benchmark`: a model against a suite, reproducibly. The records are embedded once per encoder (the model and a
randomly initialised encoder of the same architecture, the floor a pre-trained model must beat), a linear probe is
trained per task x encoder x label fraction x seed x head on the cached embeddings, each run saved when done (a kill
loses at most the run in progress), and the test statistics are computed from the saved probabilities. With lead sets
(`lead_sets`, the PhysioNet/CinC Challenge 2021's 12 / 6 / 4 / 3 / 2 leads), every record is embedded once per lead
set and encoder, cut to those leads as evaluate and probe-layers cut records, and every task is probed per lead set.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..configuration_ecg_pma import resolve_lead_set
from ..constants import BENCHMARK_HEADS, CHALLENGE_LEAD_SETS, LABEL_FRACTIONS
from ..metrics.ecg_multilabel.ecg_multilabel import tune_f1_thresholds
from ..training.collator import LeadSetSampler
from ..training.probe_layers import model_fingerprint
from .embeddings import RecordEmbeddings, embed_records, evaluation_window_mode, evaluation_windows
from .finetuning import END_TO_END_PROTOCOLS, run_end_to_end
from .leakage import check_leakage, check_patient_overlap
from .protocols import Head, expand_heads, one_thread, run_probe
from .statistics import bootstrap_indices, mean_and_sd, paired_difference, score_with_intervals, scored_classes
from .suite_metrics import ChallengeScorer, suite_scores
from .suites import SPLITS, Task, load_suite


logger = logging.getLogger(__name__)
RANDOM_ENCODER_SEED = 0
ENCODERS = ("pretrained", "random")
METRICS = ("macro_auroc", "macro_auprc", "macro_f1")


@dataclass
class BenchmarkSettings:
    """Everything that decides the numbers (saved in `benchmark.json`)."""

    suite: str
    data: str
    tasks: list[str] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    label_percents: list[float] = field(default_factory=lambda: list(LABEL_FRACTIONS))
    heads: list[str] = field(default_factory=lambda: list(BENCHMARK_HEADS))
    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    head_type: str = "linear"
    num_resamples: int = 1000
    bootstrap_seed: int = 0
    sampling_rate: int = 100
    keep_unlabeled: bool = False
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    allow_leakage: bool = False
    embedding_batch_size: int = 64
    fold_seed: int = 0  # icbeb2018, code-test: the seed of their stratified folds
    train_data: str | None = None  # code-test: the CODE-15% folder the probes train on
    challenge_weights: str | None = None  # physionet2021: weights.csv (default: the data folder's, when present)
    allow_patient_overlap: bool = False
    protocols: list[str] = field(default_factory=lambda: ["probe"])  # and/or the end-to-end `finetune`, `lora`
    finetune_epochs: int = 100
    finetune_batch_size: int = 16
    lora_rank: int = 8
    # names of the challenge lead sets (`all`: the five); "12" reads every lead the records have, uncut
    lead_sets: list[str] = field(default_factory=lambda: ["12"])

    def __post_init__(self):
        self.lead_sets = benchmark_lead_sets(self.lead_sets)


def benchmark_lead_sets(names: list[str]) -> list[str]:
    """`["all"]` -> the five challenge lead sets; other names kept in order, once each; an unknown name raises."""
    expanded = [lead_set for name in names for lead_set in (CHALLENGE_LEAD_SETS if name == "all" else [name])]
    unknown = sorted(set(expanded) - set(CHALLENGE_LEAD_SETS))
    if unknown or not expanded:
        raise ValueError(
            f"Unknown lead set(s) {unknown or names}; expected some of {list(CHALLENGE_LEAD_SETS)} or `all`."
        )
    return list(dict.fromkeys(expanded))


def load_benchmark_model(model: str):
    """The encoder of `model` (a pre-trained or a classifier folder / Hub id), its trained PMA gate when it is a PMA
    classifier (None otherwise), the loaded module (whose fingerprint keys the caches) and its feature extractor."""
    from transformers import AutoConfig

    from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from ..modeling_ecg_pma import EcgPmaForSequenceClassification, EcgPmaModel

    config = AutoConfig.from_pretrained(model)
    extractor = EcgPmaFeatureExtractor.from_pretrained(model)
    architectures = config.architectures or []
    if any(name.endswith("ForSequenceClassification") for name in architectures) and config.aggregation == "pma":
        classifier = EcgPmaForSequenceClassification.from_pretrained(model).eval()
        return classifier.ecg_pma, classifier.aggregator, classifier, extractor
    encoder = EcgPmaModel.from_pretrained(model).eval()
    return encoder, None, encoder, extractor


def random_encoder(config):
    """An encoder of the same architecture with the package's initialisation, seeded (`RANDOM_ENCODER_SEED`)."""
    from ..modeling_ecg_pma import EcgPmaModel

    torch.manual_seed(RANDOM_ENCODER_SEED)
    return EcgPmaModel(config).eval()


def scorable_tasks(tasks: list[Task]) -> tuple[list[Task], dict[str, str]]:
    """The tasks a probe can be trained and scored on, and why each other one was skipped (logged)."""
    kept, skipped = [], {}
    for task in tasks:
        if not scored_classes(task.labels["test"]):
            skipped[task.name] = "no class has both a positive and a negative test record"
        elif not task.labels["train"].any():
            skipped[task.name] = "no positive training label"
        else:
            kept.append(task)
            continue
        logger.warning(f"{task.suite} task {task.name!r} skipped: {skipped[task.name]}.")
    if not kept:
        raise ValueError(f"No task of the suite can be scored: {skipped}.")
    return kept, skipped


def digest(values) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def run_key(embeddings: RecordEmbeddings, task: Task, head: Head, percent: float, seed: int, settings) -> dict:
    """What one probe run's probabilities depend on."""
    return {
        "embeddings": embeddings.key,
        "task": f"{task.suite}/{task.name}",
        "labels": digest([task.label_names, {split: task.labels[split].tolist() for split in SPLITS}]),
        "records": digest(task.record_ids),
        "head": asdict(head),
        "label_percent": percent,
        "seed": seed,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "head_type": settings.head_type,
    }


def run_path(output_dir: Path, task: Task, encoder: str, percent: float, seed: int, head: Head) -> Path:
    return (
        output_dir
        / "runs"
        / task.suite
        / task.label
        / encoder
        / f"{percent:g}pct"
        / f"seed{seed}"
        / f"{head.name}.safetensors"
    )


def summarise_task(task: Task, runs: dict, settings: BenchmarkSettings, challenge_weights: str | None = None) -> dict:
    """Test statistics of every run of `task` on one set of bootstrap resamples, paired differences, seed means."""
    challenge = ChallengeScorer(challenge_weights, task.label_names) if challenge_weights else None
    references = task.labels["test"]
    indices = bootstrap_indices(references, settings.num_resamples, settings.bootstrap_seed)
    rows, resampled = [], {}
    for (encoder, percent, seed, head), run in runs.items():
        thresholds = tune_f1_thresholds(run.probabilities["validation"], task.labels["validation"])
        summary, values = score_with_intervals(references, run.probabilities["test"], thresholds, indices)
        resampled[(encoder, percent, seed, head)] = (summary, values)
        rows.append(
            {
                "encoder": encoder,
                "label_percent": percent,
                "seed": seed,
                "head": head,
                "train_records": run.train_records,
                "validation_macro_auroc": run.validation_macro_auroc,
                **summary,
                **suite_scores(
                    references,
                    run.probabilities["test"],
                    thresholds,
                    indices,
                    challenge,
                    (task.labels["train"], run.probabilities["train"]) if task.suite == "icbeb2018" else None,
                ),  # fmt: skip
                "thresholds": thresholds.tolist(),
            }
        )
    return {
        "task": task.name,
        "lead_set": task.lead_set,
        "label": task.label,
        "label_names": task.label_names,
        "records": {split: len(task.record_ids[split]) for split in SPLITS},
        "bootstrap": {"resamples": settings.num_resamples, "seed": settings.bootstrap_seed},
        "runs": rows,
        "paired_differences": paired_rows(resampled),
        "over_seeds": seed_rows(rows),
    }


def paired_rows(resampled: dict) -> list[dict]:
    """PMA - last (each encoder) and pre-trained - random encoder (each head), per fraction and seed, macro AUROC."""
    rows = []
    for (encoder, percent, seed, head), (summary, values) in resampled.items():
        comparisons = []
        if head == "pma" and (encoder, percent, seed, "last") in resampled:
            comparisons.append((f"{encoder}: pma - last", (encoder, percent, seed, "last")))
        if encoder == "pretrained" and ("random", percent, seed, head) in resampled:
            comparisons.append((f"{head}: pretrained - random encoder", ("random", percent, seed, head)))
        for name, other in comparisons:
            other_summary, other_values = resampled[other]
            rows.append(
                {
                    "comparison": name,
                    "label_percent": percent,
                    "seed": seed,
                    "metric": "macro_auroc",
                    **paired_difference(
                        summary, other_summary, values["macro_auroc"], other_values["macro_auroc"], "macro_auroc"
                    ),
                }
            )
    return rows


def seed_rows(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["encoder"], row["label_percent"], row["head"]), []).append(row)
    return [
        {
            "encoder": encoder,
            "label_percent": percent,
            "head": head,
            **{metric: mean_and_sd([row[metric]["value"] for row in group]) for metric in METRICS},
        }
        for (encoder, percent, head), group in groups.items()
    ]


def versions() -> dict[str, str]:
    names = ("ecg-pma", "torch", "transformers", "datasets", "numpy", "scikit-learn", "safetensors")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def data_files_digest(suite: str, root: str) -> dict[str, str]:
    """SHA-256 of the suite's label tables (PTB-XL's two CSV files), which fix its tasks and folds."""
    names = {
        "ptbxl": ("ptbxl_database.csv", "scp_statements.csv"),
        "icbeb2018": tuple(str(path.relative_to(root)) for path in Path(root).rglob("REFERENCE.csv")),
        "code-test": ("annotations/gold_standard.csv",),
    }.get(suite, ())
    return {name: hashlib.sha256((Path(root) / name).read_bytes()).hexdigest() for name in names}


def challenge_weights_file(settings: BenchmarkSettings) -> str | None:
    """physionet2021: `--challenge-weights`, else the data folder's `weights.csv` when present; None otherwise."""
    if settings.challenge_weights:
        if not Path(settings.challenge_weights).is_file():
            raise FileNotFoundError(f"Challenge weights file {settings.challenge_weights} not found.")
        return settings.challenge_weights
    found = Path(settings.data) / "weights.csv"
    return str(found) if settings.suite == "physionet2021" and found.is_file() else None


def run_benchmark(model: str, settings: BenchmarkSettings, output_dir: str | Path, num_proc: int | None = None,
                  cache_dir=None) -> dict:  # fmt: skip
    """
    Runs (or resumes) the benchmark of `model` on `settings.suite` into `output_dir`, writes `benchmark.json`,
    `benchmark.md`, the per-task predictions in the PTB-XL benchmark repository's layout (`predictions/`) and
    `model_index.json`; returns what `benchmark.json` holds. Each task is probed once per `settings.lead_sets`.
    """
    from .report import write_reports

    started = time.perf_counter()
    output_dir = Path(output_dir)
    encoder, aggregator, loaded, extractor = load_benchmark_model(model)
    records, tasks = load_suite(
        settings.suite, settings.data, settings.tasks, settings.sampling_rate, settings.keep_unlabeled,
        settings.validation_fraction, settings.test_fraction, cache_dir=cache_dir, num_proc=num_proc,
        fold_seed=settings.fold_seed, train_data=settings.train_data,
    )  # fmt: skip
    leakage = check_leakage(model, tasks, settings.allow_leakage)  # before any encoding
    patient_overlap = check_patient_overlap(tasks, settings.allow_patient_overlap)
    challenge_weights = challenge_weights_file(settings)
    windows, row_splits, dropped = evaluation_windows(records, extractor, num_proc)
    tasks, skipped = scorable_tasks([task.without(set(dropped)) for task in tasks])
    tasks = [task.with_lead_set(lead_set) for lead_set in settings.lead_sets for task in tasks]
    for lead_set in settings.lead_sets:  # before any encoding
        check_lead_set_coverage(windows, lead_set, encoder.config.lead_names)

    # name -> (encoder, trained PMA gate or None, the module whose fingerprint keys its cache or None for the encoder)
    encoders = {"pretrained": (encoder, aggregator, loaded), "random": (random_encoder(encoder.config), None, None)}
    embeddings, timing = {}, {}  # embeddings: (lead set, encoder name) -> RecordEmbeddings
    for lead_set in settings.lead_sets:
        for name, (module, gate, fingerprinted) in encoders.items():
            start = time.perf_counter()
            embeddings[lead_set, name] = embed_lead_set(
                module, windows, embeddings_path(output_dir, module, lead_set, name),
                model_fingerprint(fingerprinted or module), lead_set, extractor, aggregator=gate, splits=row_splits,
                batch_size=settings.embedding_batch_size, desc=f"Embedding ({name} encoder, {lead_set} leads)",
            )  # fmt: skip
            timing[f"embedding_{name}_seconds"] = timing.get(f"embedding_{name}_seconds", 0) + (
                time.perf_counter() - start
            )

    heads = expand_heads(settings.heads, encoder.config.num_hidden_layers)
    jobs = [
        (task, name, percent, seed, head)
        for task in (tasks if "probe" in settings.protocols else [])
        for name in ENCODERS
        for percent in settings.label_percents
        for seed in settings.seeds
        for head in heads
    ]
    runs: dict[str, dict] = {task.label: {} for task in tasks}
    probe_start = time.perf_counter()
    with one_thread():
        for task, name, percent, seed, head in tqdm(jobs, desc="Probing"):
            task_embeddings = embeddings[task.lead_set, name]
            runs[task.label][(name, percent, seed, head.name)] = run_probe(
                run_path(output_dir, task, name, percent, seed, head),
                run_key(task_embeddings, task, head, percent, seed, settings),
                encoders[name][0], task_embeddings, task, head, percent, seed,
                settings.epochs, settings.batch_size, settings.learning_rate, settings.head_type,
            )  # fmt: skip
    timing["probing_seconds"] = time.perf_counter() - probe_start
    end_to_end_start = time.perf_counter()
    cut_windows = {}  # lead set -> the evaluation windows cut to it, made when an end-to-end run needs them
    for task, name, percent, seed, protocol in tqdm(end_to_end_jobs(tasks, settings), desc="Finetuning"):
        if task.lead_set not in cut_windows:
            cut_windows[task.lead_set] = lead_set_windows(windows, task.lead_set, encoder.config, extractor)
        head = Head(protocol, "pma")
        runs[task.label][(name, percent, seed, protocol)] = run_end_to_end(
            run_path(output_dir, task, name, percent, seed, head),
            {**run_key(embeddings[task.lead_set, name], task, head, percent, seed, settings), **end_to_end_settings(settings)},
            encoders[name][0], cut_windows[task.lead_set], task, protocol, percent, seed, settings,
            output_dir / "training" / task.suite / task.label / name / f"{percent:g}pct" / f"seed{seed}" / protocol,
        )  # fmt: skip
    timing["end_to_end_seconds"] = time.perf_counter() - end_to_end_start
    results = [summarise_task(task, runs[task.label], settings, challenge_weights) for task in tasks]
    timing["total_seconds"] = time.perf_counter() - started
    pretrained = embeddings[settings.lead_sets[0], "pretrained"]
    timing["records_embedded"] = len(pretrained.record_ids)
    benchmark = {
        "model": str(model),
        "model_hash": pretrained.key["model"],
        "random_encoder": {
            "seed": RANDOM_ENCODER_SEED,
            "hash": embeddings[settings.lead_sets[0], "random"].key["model"],
        },
        "suite": settings.suite,
        "settings": asdict(settings),
        "protocol": protocol_description(settings, extractor, pretrained.mixture),
        "lead_sets": {
            lead_set: lead_set_leads(lead_set, encoder.config.lead_names) for lead_set in settings.lead_sets
        },
        "data": {
            "path": str(settings.data),
            "fingerprint": pretrained.key["dataset"],
            "files_sha256": data_files_digest(settings.suite, settings.data),
            "records_embedded": len(pretrained.record_ids),
            "short_records_dropped": dropped,
        },
        "versions": versions(),
        "machine": {"platform": platform.platform(), "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "leakage": leakage,
        "patient_overlap": patient_overlap,
        "challenge_weights": challenge_weights,
        "tasks_skipped": skipped,
        "results": results,
        "timing": timing,
    }
    write_reports(benchmark, tasks, runs, output_dir)
    return benchmark


def embeddings_path(output_dir: Path, encoder, lead_set: str, name: str) -> Path:
    """`embeddings/<encoder>.safetensors`; a lead set other than 12 in its own folder, named by its leads as
    probe-layers names its caches (`embeddings/leads-I-II/pretrained.safetensors`)."""
    folder = output_dir / "embeddings"
    if lead_set != "12":
        folder = folder / ("leads-" + "-".join(resolve_lead_set(lead_set, encoder.config.lead_names)))
    return folder / f"{name}.safetensors"


def embed_lead_set(encoder, windows, output, model_hash: str, lead_set: str, extractor, **kwargs) -> RecordEmbeddings:
    """
    `embed_records` of one challenge lead set (`CHALLENGE_LEAD_SETS`), as the benchmark and `ecg-pma embed
    --lead-set` embed: 12 reads every lead the records have (uncut, keyed without a lead set, so the caches made
    before lead sets stay valid); any other set reads the rows cut to its leads (`EcgPmaFeatureExtractor.cut_to_leads`
    of `extractor`, the one that made the rows), its leads in the key. `kwargs`: `embed_records`'s.
    """
    return embed_records(
        encoder, windows, output, model_hash, lead_set=None if lead_set == "12" else lead_set,
        feature_extractor=extractor, **kwargs,
    )  # fmt: skip


def lead_set_leads(lead_set: str, lead_names: list[str]) -> list[str]:
    """The leads a lead set reads: "12" every lead of the model (uncut), else the set's leads."""
    return list(lead_names) if lead_set == "12" else resolve_lead_set(lead_set, lead_names)


def check_lead_set_coverage(windows, lead_set: str, lead_names: list[str]) -> None:
    """
    Raises when a record has none of `lead_set`'s leads (all of them dead or absent): cut to the lead set it would
    read no lead (`LeadSetSampler` would then keep the leads it has, leads outside the set). Records lacking only
    some of the set's leads read the others, as a record written with those leads would be read.
    """
    if lead_set == "12" or "lead_mask" not in windows.column_names:
        return
    wanted = np.asarray([name in resolve_lead_set(lead_set, lead_names) for name in lead_names])
    covered = (np.asarray(windows.with_format("numpy")["lead_mask"][:], dtype=bool) & wanted).any(axis=1)
    lacking = sorted({record_id for record_id, ok in zip(windows["record_id"], covered) if not ok})
    if lacking:
        raise ValueError(
            f"{len(lacking)} record(s) have none of the leads of lead set {lead_set} "
            f"({', '.join(resolve_lead_set(lead_set, lead_names))}) (dead or absent), e.g. {lacking[:5]}; leave the "
            "lead set out (--lead-sets, --lead-set) or the records out of the data."
        )


def lead_set_windows(windows, lead_set: str, config, extractor):
    """
    The evaluation windows with every row cut to `lead_set` (unchanged for 12) as the lead-set embeddings read them
    (`LeadSetSampler`, i.e. `EcgPmaFeatureExtractor.cut_to_leads`): what an end-to-end run trains and is tested on.
    """
    if lead_set == "12":
        return windows
    sampler = LeadSetSampler(config, [lead_set], extractor)

    def cut(batch: dict) -> dict:
        rows = {"signals": torch.as_tensor(np.asarray(batch["signals"], dtype=np.float32))}
        if "lead_mask" in batch:
            rows["lead_mask"] = torch.as_tensor(np.asarray(batch["lead_mask"], dtype=bool))
        cut_rows = sampler.cut(rows, torch.Generator().manual_seed(0))  # one lead set: the same cut for any generator
        return {"signals": cut_rows["signals"].numpy(), "lead_mask": cut_rows["lead_mask"].numpy()}

    return windows.map(cut, batched=True, batch_size=256, desc=f"Cutting windows to {lead_set} leads")


def end_to_end_jobs(tasks: list[Task], settings: BenchmarkSettings) -> list[tuple]:
    """(task, encoder, label percent, seed, protocol) of every `finetune` / `lora` run the settings ask for."""
    protocols = [protocol for protocol in settings.protocols if protocol in END_TO_END_PROTOCOLS]
    return [
        (task, name, percent, seed, protocol)
        for task in tasks
        for name in ENCODERS
        for percent in settings.label_percents
        for seed in settings.seeds
        for protocol in protocols
    ]


def end_to_end_settings(settings: BenchmarkSettings) -> dict:
    """What an end-to-end run depends on beyond a probe's key."""
    return {"finetune_epochs": settings.finetune_epochs, "finetune_batch_size": settings.finetune_batch_size,
            "lora_rank": settings.lora_rank}  # fmt: skip


def protocol_description(settings: BenchmarkSettings, extractor, mixture: str) -> dict:
    return {
        "embeddings": f"frozen encoder, no masking, {evaluation_window_mode(extractor)} windows averaged per record",
        "probe": f"{settings.head_type} head on the cached embeddings (ecg_pma.training.probe_layers.CachedProbe): "
        f"AdamW, learning rate {settings.learning_rate}, weight decay 0.05, batch {settings.batch_size}, "
        f"{settings.epochs} epochs, the epoch with the best validation macro AUROC kept",
        "heads": "last layer, PPA (uniform mixture), PMA (gate trained; and frozen at uniform), each single layer",
        "end_to_end": f"{', '.join(settings.protocols)}: finetune / lora rows are PMA classifiers trained by "
        "ecg_pma.training.finetune.finetune (reference_training_settings: AdamW, cosine, 5 % warm-up, weight decay "
        f"0.05; {settings.finetune_epochs} epochs, batch {settings.finetune_batch_size}, LoRA rank "
        f"{settings.lora_rank}) on the evaluation windows of the fraction's training records, the epoch with the "
        "best validation macro AUROC kept, windows' probabilities averaged per record",
        "baseline": f"a randomly initialised encoder of the same architecture (seed {RANDOM_ENCODER_SEED}), probed alike",
        "label_fractions": "stratified per label (iterative stratification), seeded by the run's seed",
        "thresholds": "F1-optimal per class on the validation records, applied to the test records",
        "statistics": f"95 % percentile bootstrap over test records ({settings.num_resamples} resamples, seed "
        f"{settings.bootstrap_seed}); resamples without a positive and a negative of every scored class redrawn (the "
        "PTB-XL benchmark's rule, for positives); classes without both among the test records unscored; paired "
        "differences on the same resamples",
        "embedded_mixture": mixture,
        "lead_sets": f"{', '.join(settings.lead_sets)}: 12 reads every lead the records have; each other set embeds "
        "the records cut to its leads (EcgPmaFeatureExtractor.cut_to_leads: other leads at the padding value and "
        "masked, the kept leads standardised again over themselves) and probes them alike; finetune / lora runs "
        "train, validate and test on the evaluation windows cut the same way",
        **({"splits": split_description(settings)} if settings.suite in ("icbeb2018", "code-test") else {}),
    }


def split_description(settings: BenchmarkSettings) -> str:
    if settings.suite == "code-test" and settings.train_data:
        return (f"probes trained on CODE-15% ({settings.train_data}; patient-wise hash split, validation fraction "
                f"{settings.validation_fraction}), tested on all CODE-test exams")  # fmt: skip
    return (f"seeded multi-label stratified folds (ecg_pma.data.folds, seed {settings.fold_seed}): 1-8 train, 9 "
            "validation, 10 test")  # fmt: skip
