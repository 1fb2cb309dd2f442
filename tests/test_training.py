"""Pre-training (Accelerate), probing / finetuning (Trainer), metrics and the layer-wise study on real records."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import run_two_processes, shared_data_dir
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification
from ecg_pma.data import id2label
from ecg_pma.metrics import load_ecg_multilabel
from ecg_pma.serving.inference import average_windows, predict_records
from ecg_pma.training import EcgDataCollator, PretrainingArguments, pretrain
from ecg_pma.training.finetune import finetune, load_classifier, reference_training_arguments
from ecg_pma.training.probe_layers import LayerCache, probe_layers


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory, challenge):
    _, windows, extractor = challenge
    output = tmp_path_factory.mktemp("pretrained")
    pretrain(
        EcgPmaForPreTraining(EcgPmaConfig.from_preset("tiny", pretraining_aggregation="ipa")),
        windows["train"],
        PretrainingArguments(
            output_dir=str(output), per_device_batch_size=8, max_steps=4, save_steps=None, report_to=[]
        ),
        extractor,
    )
    return output


def same_initial_weights(config):
    """A builder of `EcgPmaForPreTraining(config)` models that all start from one seeded set of weights, and those."""
    torch.manual_seed(0)
    initial = EcgPmaForPreTraining(config).state_dict()

    def fresh():
        model = EcgPmaForPreTraining(config)
        model.load_state_dict(initial)
        return model

    return fresh, initial


def _args(output_dir, **overrides):
    settings = {"per_device_batch_size": 8, "warmup_steps": 2, "report_to": [], "seed": 3, **overrides}
    return PretrainingArguments(output_dir=str(output_dir), **settings)


# ------------------------------------------------------------------------------------------------------------ pretrain


def test_pretraining_lowers_the_masked_loss_on_a_fixed_batch(tmp_path, challenge):
    _, windows, extractor = challenge
    config = EcgPmaConfig.from_preset("tiny")
    model = EcgPmaForPreTraining(config)
    fixed = torch.stack([windows["train"][i]["signals"] for i in range(8)])
    noise = torch.rand(8, 12, config.num_patches, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.eval()(fixed, noise=noise).loss.item()
    result = pretrain(
        model, windows["train"], _args(tmp_path, max_steps=30, base_learning_rate=2e-2, save_steps=None), extractor
    )
    with torch.no_grad():
        after = model.eval()(fixed, noise=noise).loss.item()
    assert after < before * 0.9, (before, after)
    assert len(result.losses) == 30
    saved = EcgPmaForPreTraining.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert saved(fixed, noise=noise).loss.item() == pytest.approx(after, rel=1e-5)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "train_log.jsonl"} <= files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 30


def test_resuming_continues_the_same_loss_curve(tmp_path, challenge):
    _, windows, extractor = challenge
    config = EcgPmaConfig.from_preset(
        "tiny", hidden_dropout_prob=0.1
    )  # dropout: the random state must be restored too
    fresh, _ = same_initial_weights(config)

    # 29 training windows, batch 8: 3 batches an epoch, so 8 steps cross two epoch boundaries
    straight = pretrain(fresh(), windows["train"], _args(tmp_path / "straight", max_steps=8, save_steps=4), extractor)
    checkpoint = tmp_path / "straight" / "checkpoints" / "step-4"
    assert json.loads((checkpoint / "progress.json").read_text())["global_step"] == 4
    assert not [p.name for p in checkpoint.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]

    resumed = pretrain(
        fresh(),
        windows["train"],
        _args(tmp_path / "resumed", max_steps=8, save_steps=None, resume_from_checkpoint=str(checkpoint)),
        extractor,
    )
    assert [r["step"] for r in resumed.losses] == [5, 6, 7, 8]
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in straight.losses[4:]]
    assert [r["learning_rate"] for r in resumed.losses] == [r["learning_rate"] for r in straight.losses[4:]]

    latest = pretrain(
        fresh(),
        windows["train"],
        _args(tmp_path / "straight", max_steps=8, resume_from_checkpoint="latest"),
        extractor,
    )
    assert latest.losses == []  # step-8 is the latest: nothing left to do


@pytest.mark.slow
def test_compiled_pretraining_follows_the_eager_run_and_saves_plain_names(tmp_path, challenge):
    _, windows, extractor = challenge
    config = EcgPmaConfig.from_preset("tiny", pretraining_aggregation="ipa")
    fresh, initial = same_initial_weights(config)

    eager = pretrain(fresh(), windows["train"], _args(tmp_path / "eager", max_steps=4, save_steps=None), extractor)
    compiled = pretrain(
        fresh(),
        windows["train"],
        _args(tmp_path / "compiled", max_steps=4, save_steps=2, torch_compile=True),
        extractor,
    )
    np.testing.assert_allclose([r["loss"] for r in compiled.losses], [r["loss"] for r in eager.losses], rtol=1e-4)
    saved = EcgPmaForPreTraining.from_pretrained(tmp_path / "compiled").state_dict()
    assert saved.keys() == initial.keys()
    final = EcgPmaForPreTraining.from_pretrained(tmp_path / "eager").state_dict()
    for name in initial:
        torch.testing.assert_close(saved[name], final[name], atol=1e-4, rtol=1e-3)
    # the compiled run's checkpoint resumes in an eager run under the model's own names
    checkpoint = tmp_path / "compiled" / "checkpoints" / "step-2"
    resumed = pretrain(
        fresh(),
        windows["train"],
        _args(tmp_path / "resumed", max_steps=4, save_steps=None, resume_from_checkpoint=str(checkpoint)),
        extractor,
    )
    np.testing.assert_allclose(
        [r["loss"] for r in resumed.losses], [r["loss"] for r in compiled.losses[2:]], rtol=1e-4
    )


def test_too_small_a_dataset_is_refused(tmp_path, challenge):
    _, windows, extractor = challenge
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        pretrain(
            EcgPmaForPreTraining(EcgPmaConfig.from_preset("tiny")),
            windows["test"],
            _args(tmp_path, per_device_batch_size=64, max_steps=2),
        )


@pytest.mark.slow
def test_two_process_cpu_run_writes_one_model(tmp_path):
    output = tmp_path / "two-process"
    result = run_two_processes([
        "pretrain", "--data", str(shared_data_dir("physionet2021")), "--data-format", "physionet2021",
        "--cache-dir", str(tmp_path / "cache"), "--preset", "tiny", "--output-dir", str(output),
        "--per-device-train-batch-size", "4", "--max-steps", "3", "--save-steps", "2", "--warmup-steps", "1",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    log = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3]  # written once, by the main process
    assert sorted(p.name for p in (output / "checkpoints" / "step-2").glob("random_state_*.safetensors")) == [
        "random_state_0.safetensors",
        "random_state_1.safetensors",
    ]
    assert (output / "model.safetensors").exists()
    args = json.loads((output / "pretraining_args.json").read_text())
    assert args["per_device_batch_size"] == 4
    EcgPmaForPreTraining.from_pretrained(output)


@pytest.mark.slow
def test_two_process_streaming_run_reads_a_share_each_and_resumes(tmp_path):
    """
    `--streaming` under torchrun: each process reads its own share of the records (split by node, not dispatched from
    the main process), gradients stay in step although the shares end their passes apart, and each process's place in
    its share is checkpointed and resumed: the resumed run's losses are the uninterrupted run's.
    """

    def run(output, max_steps, *extra):
        result = run_two_processes([
            "pretrain", "--streaming", "--shuffle-buffer", "8",
            "--data", str(shared_data_dir("physionet2021")), "--data-format", "physionet2021",
            "--preset", "tiny", "--output-dir", str(output), "--per-device-train-batch-size", "3", "--save-steps", "5",
            "--warmup-steps", "1", "--max-steps", str(max_steps), *extra,
        ])  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
        return [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]

    uninterrupted = run(tmp_path / "uninterrupted", 9)
    assert [entry["step"] for entry in uninterrupted] == list(range(1, 10))
    # 29 training records, one shard each: 15 and 14 per process, 5 and 4 full batches of 3 per pass; at step 5 the
    # first process has taken its first pass's last batch, the second is one batch into its second pass
    checkpoint = tmp_path / "uninterrupted" / "checkpoints" / "step-5"
    positions = [json.loads((checkpoint / f"data_position_{rank}.json").read_text()) for rank in (0, 1)]
    assert positions == [{"epoch": 0, "batches_in_epoch": 5}, {"epoch": 1, "batches_in_epoch": 1}]
    resumed = run(tmp_path / "resumed", 9, "--resume", str(checkpoint))
    assert [entry["step"] for entry in resumed] == [6, 7, 8, 9]
    np.testing.assert_allclose(
        [entry["loss"] for entry in resumed], [entry["loss"] for entry in uninterrupted[5:]], rtol=1e-5
    )


# --------------------------------------------------------------------------------------------------- probe / finetune


def test_probing_trains_only_head_and_gate_then_finetuning_trains_the_encoder(tmp_path, challenge, pretrained_dir):
    raw, windows, extractor = challenge
    model = load_classifier(pretrained_dir, id2label(raw), aggregation="pma", head_type="mlp")
    encoder_before = {k: v.clone() for k, v in model.ecg_pma.state_dict().items()}
    head_before = {
        k: v.clone() for k, v in [*model.aggregator.state_dict().items(), *model.classifier.state_dict().items()]
    }
    args = reference_training_arguments(
        "probe", str(tmp_path / "probe"), num_train_epochs=2, per_device_train_batch_size=8
    )
    result = finetune(
        model, windows["train"], windows["validation"], args, "probe", windows["test"], extractor, quiet=True
    )

    for key, value in model.ecg_pma.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    after = {**model.aggregator.state_dict(), **model.classifier.state_dict()}
    assert any(not torch.equal(after[k], v) for k, v in head_before.items() if k.startswith("gate"))
    assert any(not torch.equal(after[k], v) for k, v in head_before.items() if k.startswith("head"))

    probed = tmp_path / "probe"
    saved = json.loads((probed / "results.json").read_text())
    assert saved["validation"]["macro_auroc"] == result.validation["macro_auroc"]
    assert len(saved["validation"]["thresholds"]) == len(id2label(raw))
    assert "| test |" in (probed / "results.md").read_text()
    assert (
        EcgPmaForSequenceClassification.from_pretrained(probed).config.decision_thresholds
        == result.validation["thresholds"]
    )
    for checkpoint in probed.glob("checkpoint-*"):
        assert not [p.name for p in checkpoint.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
        assert (checkpoint / "training_args.json").exists()

    # finetuning starts from the probed checkpoint, head included, and moves the encoder
    tuned = EcgPmaForSequenceClassification.from_pretrained(probed)
    torch.testing.assert_close(
        tuned.classifier.state_dict()["head.2.weight"], model.classifier.state_dict()["head.2.weight"]
    )
    args = reference_training_arguments(
        "finetune", str(tmp_path / "finetune"), num_train_epochs=1, per_device_train_batch_size=8
    )
    finetune(tuned, windows["train"], windows["validation"], args, "finetune", None, extractor, quiet=True)
    assert any(not torch.equal(v, encoder_before[k]) for k, v in tuned.ecg_pma.state_dict().items())


def test_collator_rejects_rows_that_do_not_fit_the_model(challenge):
    _, windows, _ = challenge
    rows = [windows["train"][i] for i in range(2)]
    collator = EcgDataCollator(config=EcgPmaConfig.from_preset("tiny", num_labels=3))
    with pytest.raises(ValueError, match=r"labels of shape \(26,\); the model has 3 labels"):
        collator(rows)
    with pytest.raises(ValueError, match=r"signals of shape \(12, 1000\); the model expects .* \(12, 2250\)"):
        EcgDataCollator(config=EcgPmaConfig.from_preset("vit-s-st-mem", num_labels=26))(rows)


# ------------------------------------------------------------------------------------------------------------ metrics


def test_metric_module_matches_scikit_learn():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 2, size=(60, 4))
    references[:, 3] = 0  # a label never present: left out of AUROC / AP
    predictions = np.clip(references * 0.3 + rng.random((60, 4)) * 0.7, 0, 1)
    thresholds = [0.4, 0.5, 0.6, 0.5]
    result = load_ecg_multilabel().compute(predictions=predictions, references=references, thresholds=thresholds)
    scored = [0, 1, 2]
    assert result["macro_auroc"] == pytest.approx(
        np.mean([roc_auc_score(references[:, i], predictions[:, i]) for i in scored])
    )
    assert result["macro_average_precision"] == pytest.approx(
        average_precision_score(references[:, scored], predictions[:, scored], average="macro")
    )
    decisions = predictions >= np.asarray(thresholds)
    assert result["macro_f1"] == pytest.approx(f1_score(references, decisions, average="macro", zero_division=0))
    assert result["accuracy"] == pytest.approx(accuracy_score(references, decisions))
    assert result["num_scored_labels"] == 3 and result["per_label_auroc"][3] is None


def test_windows_are_averaged_per_record_before_scoring():
    # record a: windows 0.2 and 0.6 -> 0.4; record b: 0.9; record c: 0.1 and 0.3 -> 0.2 (one label)
    predictions = np.array([[0.2], [0.6], [0.9], [0.1], [0.3]])
    references = np.array([[1], [1], [1], [0], [0]])
    record_ids = ["a", "a", "b", "c", "c"]
    per_window = load_ecg_multilabel().compute(predictions=predictions, references=references)
    per_record = load_ecg_multilabel().compute(predictions=predictions, references=references, record_ids=record_ids)
    assert per_record["num_records"] == 3 and per_window["num_records"] == 5
    assert per_record["macro_auroc"] == pytest.approx(roc_auc_score([1, 1, 0], [0.4, 0.9, 0.2]))
    assert per_window["macro_auroc"] == pytest.approx(roc_auc_score([1, 1, 1, 0, 0], [0.2, 0.6, 0.9, 0.1, 0.3]))
    with pytest.raises(ValueError, match="different labels"):
        load_ecg_multilabel().compute(
            predictions=predictions, references=[[1], [0], [1], [0], [0]], record_ids=record_ids
        )

    averaged = average_windows(torch.tensor(predictions), torch.tensor([0, 0, 1, 2, 2]), 3)
    torch.testing.assert_close(averaged, torch.tensor([[0.4], [0.9], [0.2]], dtype=torch.float64))


def test_tuned_thresholds_maximise_f1_on_validation():
    predictions = np.array([[0.1], [0.35], [0.4], [0.8]])
    references = np.array([[0], [1], [1], [1]])
    result = load_ecg_multilabel().compute(predictions=predictions, references=references, tune_thresholds=True)
    assert result["thresholds"] == [0.35] and result["macro_f1"] == 1.0


# --------------------------------------------------------------------------------------------------- study, predict


def test_layerwise_probe_writes_table_plot_and_reuses_its_cache(tmp_path, challenge, pretrained_dir):
    _, windows, _ = challenge
    from ecg_pma import EcgPmaModel

    encoder = EcgPmaModel.from_pretrained(pretrained_dir)
    splits = {split: windows[split] for split in ("train", "validation", "test")}
    rows = probe_layers(encoder, splits, tmp_path, epochs=3)
    assert [row["probe"] for row in rows] == ["layer 1", "layer 2", "layer 3", "layer 4", "PPA", "PMA"]
    assert all(0 <= row["test_macro_auroc"] <= 1 for row in rows)
    assert (tmp_path / "layerwise_probe.png").stat().st_size > 1000
    assert "| PMA |" in (tmp_path / "layerwise_probe.md").read_text()

    cache = LayerCache.load(tmp_path / "layer_cache" / "validation.safetensors")
    assert cache.layer_representations.shape == (len(windows["validation"]), 4, 32)
    assert cache.record_ids == list(windows["validation"]["record_id"])
    with torch.no_grad():
        expected = encoder(torch.stack([windows["validation"][0]["signals"]])).layer_representations[0]
    torch.testing.assert_close(cache.layer_representations[0], expected)
    stamp = (tmp_path / "layer_cache" / "train.safetensors").stat().st_mtime_ns
    probe_layers(encoder, splits, tmp_path, epochs=1)
    assert (tmp_path / "layer_cache" / "train.safetensors").stat().st_mtime_ns == stamp


def test_predict_averages_windows_per_record(challenge):
    raw, _, _ = challenge
    config = EcgPmaConfig.from_preset("tiny", signal_length=500, id2label=id2label(raw))
    model = EcgPmaForSequenceClassification(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    record = str(shared_data_dir("physionet2021") / "E07501")
    prediction = predict_records(model, extractor, [record, record])
    # a 10 s record in 5 s windows at half-window stride: 3 windows, averaged
    windows = extractor(record, window_mode="sliding", return_tensors="pt")["signals"]
    with torch.no_grad():
        expected = model(windows).logits.sigmoid().mean(dim=0)
    assert prediction[0].num_windows == 3 and prediction[0].record == record
    np.testing.assert_allclose(list(prediction[0].probabilities.values()), expected.numpy(), rtol=1e-5)
    assert sum(prediction[0].layer_weights) == pytest.approx(1.0, abs=1e-5)
    bf16 = predict_records(model, extractor, [record], dtype="bf16")[0]
    np.testing.assert_allclose(list(bf16.probabilities.values()), expected.numpy(), atol=0.05)


@pytest.mark.slow
def test_compiled_prediction_matches_eager_with_a_padded_last_batch(challenge):
    raw, _, _ = challenge
    config = EcgPmaConfig.from_preset("tiny", signal_length=500, aggregation="pma", id2label=id2label(raw))
    model = EcgPmaForSequenceClassification(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    records = [str(shared_data_dir("physionet2021") / name) for name in ("E07501", "E07500")]
    # 3 + 3 windows in batches of 4: the second batch is padded with 2 zero windows, whose outputs must not leak
    eager = predict_records(model, extractor, records, batch_size=4)
    compiled = predict_records(model, extractor, records, batch_size=4, compile=True)
    for expected, actual in zip(eager, compiled, strict=True):
        assert actual.num_windows == expected.num_windows == 3
        np.testing.assert_allclose(
            list(actual.probabilities.values()), list(expected.probabilities.values()), atol=1e-5
        )
        np.testing.assert_allclose(actual.layer_weights, expected.layer_weights, atol=1e-5)


def test_the_peak_learning_rate_is_the_mae_rule_unless_given():
    from datasets import Dataset

    from ecg_pma.training.pretrain import pretraining_schedule

    rows = Dataset.from_dict({"signals": [[0.0]] * 64})
    rule = PretrainingArguments(output_dir="o", per_device_batch_size=16, gradient_accumulation_steps=2)
    assert pretraining_schedule(rows, rule, num_processes=2).learning_rate == pytest.approx(1.2e-3 * 64 / 256)
    given = PretrainingArguments(output_dir="o", per_device_batch_size=16, learning_rate=3e-4)
    assert pretraining_schedule(rows, given, num_processes=2).learning_rate == 3e-4
    with pytest.raises(ValueError, match="`learning_rate` must be positive or None"):
        PretrainingArguments(output_dir="o", learning_rate=0.0)
