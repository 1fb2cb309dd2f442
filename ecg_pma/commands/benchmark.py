"""`ecg-pma benchmark`: where a model stands on a suite, with confidence intervals and a random-encoder baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..constants import (
    BENCHMARK_HEADS,
    BENCHMARK_SUITES,
    CHALLENGE_LEAD_SETS,
    FINETUNE_MODES,
    HEAD_TYPES,
    LABEL_FRACTIONS,
)
from .argument_types import float_in_range, non_negative_int, output_directory, positive_float, positive_int


def add_parser(commands) -> None:
    benchmark = commands.add_parser(
        "benchmark",
        help="linear probes of every head on a suite's tasks, against a random encoder, with bootstrap CIs",
    )
    benchmark.add_argument("--model", required=True, help="pre-trained model or classifier (folder or Hub id)")
    benchmark.add_argument("--suite", choices=BENCHMARK_SUITES, required=True)
    benchmark.add_argument("--data", required=True, help="the suite's data set in its published layout")
    benchmark.add_argument("--output-dir", type=output_directory, required=True)
    benchmark.add_argument(
        "--tasks", nargs="+", default=None, help="ptbxl: all diagnostic subdiagnostic superdiagnostic form rhythm; "
        "physionet2021: pooled and the source names; icbeb2018: all; code-test: folds, or code15-to-code-test with "
        "--train-data (default: every task)"
    )  # fmt: skip
    benchmark.add_argument("--seeds", nargs="+", type=int, default=[0], help="probe seeds (default: 0)")
    benchmark.add_argument(
        "--label-fractions",
        nargs="+",
        type=float_in_range(0, 100, exclusive_minimum=True),
        default=list(LABEL_FRACTIONS),
        metavar="PERCENT",
        help="percent of the training records each probe sees, stratified and seeded (default: 1 10 100)",
    )
    benchmark.add_argument(
        "--heads",
        nargs="+",
        choices=BENCHMARK_HEADS,
        default=list(BENCHMARK_HEADS),
        help="probe heads (default: all; `layers` is one probe per encoder layer)",
    )
    benchmark.add_argument(
        "--protocols",
        nargs="+",
        choices=FINETUNE_MODES,
        default=["probe"],
        help="probe: linear probes of --heads on cached embeddings (default); finetune / lora: a PMA classifier "
        "trained end to end (every weight / LoRA adapters), the random encoder alike",
    )
    benchmark.add_argument(
        "--lead-sets",
        nargs="+",
        choices=[*CHALLENGE_LEAD_SETS, "all"],
        default=["12"],
        help="the PhysioNet/CinC Challenge 2021 lead sets to probe (12; 6 = I II III aVR aVL aVF; 4 = I II III V2; "
        "3 = I II V2; 2 = I II; all = the five): each embeds the records cut to its leads and gets its own rows "
        "(default: 12; finetune / lora train and test on the cut records too)",
    )
    benchmark.add_argument("--finetune-epochs", type=positive_int, default=100, help="finetune / lora epochs")
    benchmark.add_argument("--finetune-batch-size", type=positive_int, default=16)
    benchmark.add_argument("--lora-rank", type=positive_int, default=8)
    benchmark.add_argument("--epochs", type=positive_int, default=100, help="probe epochs")
    benchmark.add_argument("--batch-size", type=positive_int, default=64)
    benchmark.add_argument("--learning-rate", type=positive_float, default=1e-3)
    benchmark.add_argument("--head-type", choices=HEAD_TYPES, default="linear")
    benchmark.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    benchmark.add_argument("--bootstrap-seed", type=non_negative_int, default=0)
    benchmark.add_argument("--sampling-rate", type=positive_int, default=100, help="PTB-XL records: 100 or 500 Hz")
    benchmark.add_argument(
        "--keep-unlabeled",
        action="store_true",
        help="PTB-XL: keep records without a label in a task as all-negative rows (default: left out, the "
        "benchmark's rule)",
    )
    fraction = float_in_range(0, 1, exclusive_minimum=True)
    benchmark.add_argument(
        "--validation-fraction", type=fraction, default=0.1, help="physionet2021: hash split (default 0.1)"
    )
    benchmark.add_argument(
        "--test-fraction", type=fraction, default=0.1, help="physionet2021: hash split (default 0.1)"
    )
    benchmark.add_argument(
        "--allow-leakage",
        action="store_true",
        help="run even when test records come from a source the model was pre-trained on (flagged in the report)",
    )
    benchmark.add_argument(
        "--allow-patient-overlap",
        action="store_true",
        help="run even when a patient has records in two splits (flagged in the report)",
    )
    benchmark.add_argument(
        "--fold-seed", type=non_negative_int, default=0, help="icbeb2018, code-test: seed of the stratified folds"
    )
    benchmark.add_argument(
        "--train-data",
        default=None,
        help="code-test: a CODE-15%% folder (exams.csv + exams_part*.hdf5) the probes train on; without it the 827 "
        "exams are cut into stratified folds",
    )
    benchmark.add_argument(
        "--challenge-weights",
        default=None,
        help="physionet2021: the challenge's weights.csv, for the challenge metric (default: --data/weights.csv "
        "when present)",
    )
    benchmark.add_argument("--cache-dir", default=None, help="Arrow cache folder of the datasets")
    benchmark.add_argument("--num-proc", type=positive_int, default=None)
    benchmark.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.benchmark import BenchmarkSettings, run_benchmark

    settings = BenchmarkSettings(
        suite=args.suite,
        data=str(args.data),
        tasks=args.tasks,
        seeds=args.seeds,
        label_percents=args.label_fractions,
        heads=args.heads,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        head_type=args.head_type,
        num_resamples=args.bootstrap,
        bootstrap_seed=args.bootstrap_seed,
        sampling_rate=args.sampling_rate,
        keep_unlabeled=args.keep_unlabeled,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        allow_leakage=args.allow_leakage,
        fold_seed=args.fold_seed,
        train_data=args.train_data,
        challenge_weights=args.challenge_weights,
        allow_patient_overlap=args.allow_patient_overlap,
        protocols=args.protocols,
        finetune_epochs=args.finetune_epochs,
        finetune_batch_size=args.finetune_batch_size,
        lora_rank=args.lora_rank,
        lead_sets=args.lead_sets,
    )
    run_benchmark(args.model, settings, args.output_dir, num_proc=args.num_proc, cache_dir=args.cache_dir)
    output = Path(args.output_dir)
    print((output / "benchmark.md").read_text())
    print(f"Every number: {output / 'benchmark.json'}; predictions: {output / 'predictions'}")
    return 0
