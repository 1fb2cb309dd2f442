"""Training and studying on lead subsets: the collator's seeded lead-set draws, pre-training and finetuning with
`lead_sets`, and the layer-wise probe on one lead set, on the real challenge records."""

import json
import signal
import subprocess
import sys

import pytest
import torch
from conftest import shared_data_dir
from safetensors.torch import load_file, save_file

from ecg_pma import LEAD_SETS, EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaModel
from ecg_pma.data import extract_features, id2label, load_physionet2021
from ecg_pma.training import EcgDataCollator, PretrainingArguments, pretrain
from ecg_pma.training.finetune import EcgTrainer, finetune, load_classifier, reference_training_arguments
from ecg_pma.training.probe_layers import LayerCache, probe_layers


CONFIG = EcgPmaConfig.from_preset("tiny")
CHALLENGE_SETS = ["12", "6", "4", "3", "2"]


def set_mask(lead_set) -> torch.Tensor:
    leads = LEAD_SETS[lead_set] if isinstance(lead_set, str) else lead_set
    return torch.tensor([name in leads for name in CONFIG.lead_names])


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path_factory.mktemp("cache"))
    extractor = EcgPmaFeatureExtractor.from_model_config(CONFIG)
    return raw, extract_features(raw, extractor, window_mode="sliding"), extractor


def test_extracted_rows_carry_the_lead_mask(windows):
    _, rows, _ = windows
    assert rows["train"][0]["lead_mask"].dtype == torch.bool and rows["train"][0]["lead_mask"].all()


def test_collator_draws_one_lead_set_per_sample_seeded(windows):
    _, rows, extractor = windows
    batch_rows = [rows["train"][i] for i in range(8)]
    masks = {name: set_mask(name) for name in CHALLENGE_SETS}

    def draws(seed, batches=12):
        collator = EcgDataCollator(CONFIG, False, lead_sets=CHALLENGE_SETS, seed=seed, feature_extractor=extractor)
        return torch.cat([collator(batch_rows)["lead_mask"] for _ in range(batches)])

    drawn = draws(5)
    names = [next(name for name, mask in masks.items() if torch.equal(row, mask)) for row in drawn]  # each is a set
    assert set(names) == set(CHALLENGE_SETS)  # 96 draws cover all five
    assert torch.equal(draws(5), drawn)
    assert not torch.equal(draws(6), drawn)
    # per-lead z-scores: the kept leads are as extracted, the others padding (as in a record cut to the lead set)
    cut = EcgDataCollator(CONFIG, False, lead_sets=["2"], feature_extractor=extractor)(batch_rows)["signals"]
    plain = EcgDataCollator(CONFIG, with_labels=False)(batch_rows)["signals"]
    assert torch.equal(cut[:, :2], plain[:, :2]) and not cut[:, 2:].any()
    with pytest.raises(ValueError, match="feature extractor that made the rows"):
        EcgDataCollator(CONFIG, lead_sets=["2"])


def test_collator_draws_within_the_leads_a_record_has(windows):
    _, rows, extractor = windows
    record = dict(rows["train"][0])
    record["lead_mask"] = set_mask(["I", "V1", "V2"])  # e.g. a record that lacks the other leads
    collator = EcgDataCollator(CONFIG, False, lead_sets=["3", "2", ["II"]], seed=0, feature_extractor=extractor)
    drawn = collator([record] * 64)["lead_mask"]
    assert not (drawn & ~record["lead_mask"]).any()
    # "3" gives I + V2, "2" gives I; ["II"] shares no lead with the record and is never drawn
    assert {tuple(row.nonzero()[:, 0].tolist()) for row in drawn} == {(0, 7), (0,)}
    only_v1 = dict(record, lead_mask=set_mask(["V1"]))
    assert torch.equal(collator([only_v1])["lead_mask"][0], set_mask(["V1"]))  # no set fits: it keeps its leads
    with pytest.raises(ValueError, match=r"\['X'\]"):
        EcgDataCollator(CONFIG, lead_sets=["X"])


def test_pretraining_with_lead_sets_masks_leads_and_says_so(tmp_path, windows):
    _, rows, extractor = windows

    def run(output, lead_sets):
        torch.manual_seed(0)
        args = PretrainingArguments(
            output_dir=str(output),
            per_device_batch_size=8,
            max_steps=3,
            save_steps=None,
            report_to=[],
            seed=1,
            lead_sets=lead_sets,
        )
        return pretrain(EcgPmaForPreTraining(CONFIG), rows["train"], args, extractor)

    plain = run(tmp_path / "plain", None)
    subsets = run(tmp_path / "subsets", ["2", "3"])
    # same initial weights, data order and masking noise: only the lead sets differ, and they reach the loss
    assert plain.losses[0]["loss"] != pytest.approx(subsets.losses[0]["loss"], rel=1e-4)
    assert "lead sets (one drawn per sample): 2, 3" in (tmp_path / "subsets" / "README.md").read_text()


def test_finetuning_draws_lead_sets_for_training_batches_only(tmp_path, windows):
    raw, rows, extractor = windows
    EcgPmaModel(CONFIG).save_pretrained(tmp_path / "encoder")
    model = load_classifier(tmp_path / "encoder", id2label(raw))
    args = reference_training_arguments(
        "probe", str(tmp_path / "probe"), num_train_epochs=1, per_device_train_batch_size=8
    )
    trainer = EcgTrainer(
        model=model,
        args=args,
        train_dataset=rows["train"],
        eval_dataset=rows["validation"],
        data_collator=EcgDataCollator(config=model.config),
        train_data_collator=EcgDataCollator(config=model.config, lead_sets=["2"], feature_extractor=extractor),
    )
    train_batch = next(iter(trainer.get_train_dataloader()))
    assert torch.equal(train_batch["lead_mask"], set_mask("2").expand(8, -1))
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    assert eval_batch["lead_mask"].all()

    result = finetune(
        model,
        rows["train"],
        rows["validation"],
        args,
        "probe",
        rows["test"],
        extractor,
        quiet=True,
        lead_sets=["12", "2"],
    )
    # the test split is scored per lead set too; its 12-lead row is the plain test evaluation
    by_lead_set = json.loads((tmp_path / "probe" / "results.json").read_text())["test_by_lead_set"]
    assert by_lead_set["12"]["macro_auroc"] == pytest.approx(result.test["macro_auroc"], abs=1e-12)
    assert by_lead_set["2"]["per_label_auroc"] != by_lead_set["12"]["per_label_auroc"]
    assert "| 2 | I, II |" in (tmp_path / "probe" / "results.md").read_text()
    card = (tmp_path / "probe" / "README.md").read_text()
    assert "lead_sets (one drawn per training sample): 12, 2" in card
    # the per-lead-set test scores are rows of the results table and entries of the model-index
    assert "| test, leads 2 |" in card and "dataset:" in card and "split: test, leads 2" in card


def test_layerwise_probe_on_a_lead_set(tmp_path, windows):
    _, rows, _ = windows
    encoder = EcgPmaModel(CONFIG).eval()
    splits = {split: rows[split] for split in ("train", "validation")}
    probe_layers(encoder, splits, tmp_path, epochs=1, lead_set="2")
    cache = LayerCache.load(tmp_path / "layer_cache" / "leads-I-II" / "validation.safetensors")
    signals = torch.stack([rows["validation"][i]["signals"] for i in range(3)])
    with torch.no_grad():
        two_leads = encoder(signals, lead_mask=set_mask("2").expand(3, -1)).layer_representations
        all_leads = encoder(signals).layer_representations
    torch.testing.assert_close(cache.layer_representations[:3], two_leads)
    assert not torch.allclose(cache.layer_representations[:3], all_leads, atol=1e-4)


KILLED_RUN = """
import importlib, os, signal, sys
import datasets
from safetensors.torch import load_file
from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining
from ecg_pma.training import PretrainingArguments, pretrain
pretraining = importlib.import_module("ecg_pma.training.pretrain")  # the module, not the function of that name

windows, initial, output, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
draw = pretraining.lead_set_generator


def lead_set_generator(seed, micro_step, process_index):
    if micro_step == kill_at:  # SIGKILL: no handler, no cleanup, exactly as `kill -9`
        os.kill(os.getpid(), signal.SIGKILL)
    return draw(seed, micro_step, process_index)


pretraining.lead_set_generator = lead_set_generator
model = EcgPmaForPreTraining(EcgPmaConfig.from_preset("tiny", hidden_dropout_prob=0.1))
model.load_state_dict(load_file(initial))
arguments = PretrainingArguments(
    output_dir=output, per_device_batch_size=8, warmup_steps=2, report_to=[], seed=3, max_steps=6, save_steps=2,
    disable_tqdm=True, lead_sets=["12", "6", "3", "2"],
)
pretrain(model, datasets.load_from_disk(windows), arguments)
"""


@pytest.mark.slow
def test_killed_pretraining_with_lead_sets_resumes_the_same_draws(tmp_path, windows):
    """Killed (SIGKILL) after the step-4 checkpoint and resumed: the lead sets drawn for steps 5 and 6 are the
    uninterrupted run's, and so are the losses and the final weights (29 windows, batch 8: the resumed steps are in
    the next epoch, past a skipped batch)."""
    _, rows, _ = windows
    rows["train"].save_to_disk(tmp_path / "windows")
    config = EcgPmaConfig.from_preset("tiny", hidden_dropout_prob=0.1)
    torch.manual_seed(0)
    save_file(EcgPmaForPreTraining(config).state_dict(), tmp_path / "initial.safetensors")

    def run(output, **overrides):
        model = EcgPmaForPreTraining(config)
        model.load_state_dict(load_file(tmp_path / "initial.safetensors"))
        settings = {"per_device_batch_size": 8, "warmup_steps": 2, "report_to": [], "seed": 3, "max_steps": 6}
        arguments = PretrainingArguments(
            output_dir=str(output), disable_tqdm=True, lead_sets=["12", "6", "3", "2"], **{**settings, **overrides}
        )
        return pretrain(model, rows["train"], arguments)

    straight = run(tmp_path / "straight", save_steps=None)
    killed = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    command = [sys.executable, str(script), str(tmp_path / "windows"), str(tmp_path / "initial.safetensors")]
    result = subprocess.run([*command, str(killed), "5"], capture_output=True, text=True, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert len((killed / "train_log.jsonl").read_text().splitlines()) == 5  # steps 1-5 done before the kill

    resumed = run(killed, save_steps=2, resume_from_checkpoint="latest")
    assert [r["step"] for r in resumed.losses] == [5, 6]
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in straight.losses[4:]]
    final, expected = load_file(killed / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert final.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(final[name], tensor), name
    assert (killed / "train_log.jsonl").read_text() == (tmp_path / "straight" / "train_log.jsonl").read_text()
