"""
`ecg-pma demo`: the whole method end to end, offline, in a few minutes on two CPU cores — simulate (or read) labelled
12-lead WFDB records, pre-train a tiny encoder by masked modeling with IPA, probe it with last-layer, PPA and PMA
heads, compare them, save the PMA classifier, reload it with the Auto classes and predict on a WFDB record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import datasets
import transformers
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, set_seed

from .configuration_ecg_pma import EcgPmaConfig
from .data import extract_features, id2label, load_physionet2021, load_wfdb_folder
from .data.simulate import write_simulated_dataset
from .feature_extraction_ecg_pma import EcgPmaFeatureExtractor
from .modeling_ecg_pma import EcgPmaForPreTraining
from .serving.inference import predict_records
from .serving.loading import decision_thresholds
from .training.finetune import finetune, load_classifier, reference_training_arguments
from .training.pretrain import PretrainingArguments, pretrain


@contextlib.contextmanager
def new_heads_unannounced():
    """
    Within it, loading a probe onto the pre-trained encoder does not warn that its gate and head are new: the demo
    creates them on purpose and trains them at once, and the warning would break up its five printed steps.
    """
    modeling_logger = logging.getLogger(EcgPmaForPreTraining.__module__)
    level = modeling_logger.level
    modeling_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        modeling_logger.setLevel(level)


def run_demo(
    output_dir: str | Path = "outputs/demo",
    data: str | Path | None = None,
    num_records: int = 320,
    pretrain_steps: int = 800,
    probe_epochs: int = 20,
    seed: int = 0,
) -> dict:
    """Runs the demo and returns its summary (also written to `output_dir/demo_summary.json`)."""
    # Over 80 lines on purpose: the demo is read as a script, its five printed steps in order, each a few calls.
    started = time.time()
    # The demo prints its own five steps; library progress bars and load reports would drown them.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    output_dir = Path(output_dir)
    if data is None:
        data_dir = write_simulated_dataset(output_dir / "data", num_records=num_records, seed=seed)
        raw = load_wfdb_folder(data_dir, labels_csv=data_dir / "labels.csv", cache_dir=output_dir / "cache")
        source = f"{num_records} simulated records in {data_dir}"
        dataset = {
            "name": "ecg-pma demo simulator",
            "description": f"{num_records} simulated 12-lead ECGs (ecg_pma.data.simulate, seed {seed}), not real "
            "recordings: the scores say the pipeline works, nothing about clinical performance",
        }
    else:
        raw = load_physionet2021(data, cache_dir=output_dir / "cache")
        source = f"real records in {data}"
        dataset = {"name": f"PhysioNet 2021-style records in {data}", "description": "real WFDB records"}
    labels = id2label(raw)
    print(
        f"[1/5] data: {source}; labels {list(labels.values())}; " + ", ".join(f"{k} {len(v)}" for k, v in raw.items())
    )

    set_seed(seed)  # the encoder's initial weights too: one seed, one result on a given machine
    config = EcgPmaConfig.from_preset("tiny", pretraining_aggregation="ipa")
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    windows = extract_features(raw, extractor, window_mode="sliding")
    # batches of 32, or the whole training set where it is smaller (`--data` on the 40-record challenge sample: 29)
    batch_size = min(32, len(windows["train"]))

    pretrained_dir = output_dir / "pretrained"
    result = pretrain(
        EcgPmaForPreTraining(config),
        windows["train"],
        PretrainingArguments(
            output_dir=str(pretrained_dir),
            per_device_batch_size=batch_size,
            max_steps=pretrain_steps,
            warmup_steps=pretrain_steps // 10,
            base_learning_rate=1e-2,  # a short run: lr 1.25e-3 at batch 32
            save_steps=None,
            seed=seed,
            report_to=[],
            disable_tqdm=True,
        ),
        extractor,
    )
    first, last = result.losses[0]["loss"], sum(r["loss"] for r in result.losses[-20:]) / min(20, len(result.losses))
    print(
        f"[2/5] pre-trained a tiny encoder with IPA for {result.global_step} steps: masked loss {first:.3f} -> {last:.3f}"
    )

    comparison = {}
    for aggregation in ("last", "ppa", "pma"):
        set_seed(seed)
        with new_heads_unannounced():
            model = load_classifier(pretrained_dir, labels, aggregation=aggregation, head_type="linear")
        args = reference_training_arguments(
            "probe",
            str(output_dir / f"probe-{aggregation}"),
            num_train_epochs=probe_epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=3e-3,
            seed=seed,
        )
        outcome = finetune(
            model,
            windows["train"],
            windows["validation"],
            args,
            "probe",
            windows["test"],
            extractor,
            quiet=True,
            data_info=dataset,
        )
        comparison[aggregation] = {
            split: round(getattr(outcome, split)["macro_auroc"], 4) for split in ("validation", "test")
        }
    print("[3/5] linear probing of the frozen encoder (macro AUROC):")
    print("      head   validation   test")
    for aggregation, scores in comparison.items():
        print(f"      {aggregation:<6} {scores['validation']:>10.4f} {scores['test']:>6.4f}")

    model_dir = output_dir / "probe-pma"
    reloaded = AutoModelForSequenceClassification.from_pretrained(model_dir)
    reloaded_extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    print(f"[4/5] saved the PMA classifier to {model_dir} and reloaded it with AutoModelForSequenceClassification")

    test_record = raw["test"][0]["record_id"]
    record_path = str((Path(data) if data is not None else output_dir / "data") / test_record)
    truth = [labels[i] for i in raw["test"][0]["label_ids"]]
    prediction = predict_records(reloaded, reloaded_extractor, [record_path])[0]
    print(f"[5/5] prediction for WFDB record {record_path} (true labels: {truth or ['none']}):")
    thresholds = decision_thresholds(reloaded.config)
    for (name, probability), threshold in zip(prediction.probabilities.items(), thresholds):
        marker = "  <- positive" if name in prediction.positive_labels else ""
        print(f"      {name:<22} {probability:.3f} (threshold {threshold:.3f}){marker}")
    print("      layer weights: " + ", ".join(f"{w:.2f}" for w in prediction.layer_weights))

    summary = {
        "data": source,
        "pretraining_steps": result.global_step,
        "masked_loss": {"first": first, "last_20_mean": last},
        "probe_macro_auroc": comparison,
        "prediction": {"record": record_path, "true_labels": truth, **prediction.__dict__},
        "seconds": round(time.time() - started, 1),
    }
    (output_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done in {summary['seconds']:.0f} s; summary in {output_dir / 'demo_summary.json'}")
    return summary
