"""Checkpoint integrity: atomic files, a manifest written last, verification on resume, fallback, log truncation."""

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, shared_data_dir
from safetensors.torch import load_file, save_file

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.data import extract_features, load_physionet2021
from ecg_pma.training import PretrainingArguments, pretrain
from ecg_pma.training.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_training_state,
    resumable_checkpoint,
    save_training_state,
    truncate_train_log,
    verify_checkpoint,
    write_manifest,
    write_text_atomically,
)


CHECKPOINT_LOGGER = "ecg_pma.training.checkpoint"


def _parts():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def _save(directory: Path, step: int, finish: bool = True) -> Path:
    model, optimizer, scheduler = _parts()
    folder = directory / f"step-{step}"
    save_training_state(folder, model.state_dict(), optimizer, scheduler, {"global_step": step}, 0, True)
    if finish:
        write_manifest(folder)
    return folder


DAMAGE = {
    "truncated weights": (
        lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:40]),
        r"model.safetensors has 40 bytes, not \d+ \(truncated\?\)",
    ),
    "empty progress": (lambda f: (f / "progress.json").write_text(""), r"progress.json has 0 bytes"),
    "flipped bytes": (
        lambda f: _flip_tail(f / "optimizer.safetensors", 8),
        "optimizer.safetensors does not match its checksum",
    ),
    "missing random state": (
        lambda f: (f / "random_state_0.safetensors").unlink(),
        "random_state_0.safetensors is missing",
    ),
    "garbage manifest": (lambda f: (f / "manifest.json").write_text("{"), "manifest.json is unreadable"),
}


def _flip_tail(path: Path, count: int) -> None:
    data = bytearray(path.read_bytes())
    for index in range(len(data) - count, len(data)):  # tensor data: the header is at the front
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_with_a_warning_naming_the_problem(tmp_path, caplog, kind):
    damage, problem = DAMAGE[kind]
    _save(tmp_path, 2)
    newest = _save(tmp_path, 4)
    assert verify_checkpoint(newest) == []
    damage(newest)
    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        assert resumable_checkpoint(tmp_path) == tmp_path / "step-2"
    assert any("step-4" in r.message and __import__("re").search(problem, r.message) for r in caplog.records), [
        r.message for r in caplog.records
    ]
    model, optimizer, scheduler = _parts()
    with pytest.raises(CheckpointError, match=rf"Checkpoint .*step-4 is not intact: .*{problem}"):
        load_training_state(newest, model, optimizer, scheduler, 0)


def test_resuming_from_a_folder_that_is_not_there_says_so(tmp_path):
    model, optimizer, scheduler = _parts()
    with pytest.raises(FileNotFoundError, match="No checkpoint folder .*step-9"):
        load_training_state(tmp_path / "step-9", model, optimizer, scheduler, 0)


def test_unfinished_checkpoints_are_never_picked_up(tmp_path, caplog):
    _save(tmp_path, 2)
    _save(tmp_path, 4, finish=False)  # killed before the manifest: files may be from any moment
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2"]
    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        assert resumable_checkpoint(tmp_path).name == "step-2"
    assert "no manifest.json (the save did not finish)" in caplog.text


def test_no_intact_checkpoint_raises_listing_every_problem(tmp_path):
    (_save(tmp_path, 2) / "scheduler.json").write_text("{}")
    _save(tmp_path, 4, finish=False)
    with pytest.raises(FileNotFoundError, match=r"step-4: no manifest.json .* \| step-2: scheduler.json has 2 bytes"):
        resumable_checkpoint(tmp_path)


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temporary(tmp_path):
    target = tmp_path / "progress.json"
    write_text_atomically(target, '{"global_step": 2}')

    class Killed(Exception):
        pass

    def fails_midway(path):
        Path(path).write_text('{"global_st')
        raise Killed

    from ecg_pma.training.checkpoint import _atomic_path

    with pytest.raises(Killed):
        _atomic_path(target, fails_midway)
    assert json.loads(target.read_text()) == {"global_step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_the_train_log_is_cut_back_to_the_resumed_step(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": step, "loss": 1.0}) + "\n" for step in range(1, 8)) + '{"step": 8, "lo')
    truncate_train_log(log, 4)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------- kill -9, corrupt, resume

KILLED_RUN = """
import importlib, os, signal, sys
import datasets, torch
from safetensors.torch import load_file
from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining
from ecg_pma.training import PretrainingArguments, pretrain
pretraining = importlib.import_module("ecg_pma.training.pretrain")  # the module, not the function of that name

windows, initial, output, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
draw = pretraining.mask_noise


def mask_noise(shape, seed, micro_step, process_index):
    if micro_step == kill_at:  # SIGKILL: no handler, no cleanup, exactly as `kill -9`
        os.kill(os.getpid(), signal.SIGKILL)
    return draw(shape, seed, micro_step, process_index)


pretraining.mask_noise = mask_noise
model = EcgPmaForPreTraining(EcgPmaConfig.from_preset("tiny", hidden_dropout_prob=0.1))
model.load_state_dict(load_file(initial))
arguments = PretrainingArguments(
    output_dir=output, per_device_batch_size=8, warmup_steps=2, report_to=[], seed=3, max_steps=8, save_steps=2,
    disable_tqdm=True,
)
pretrain(model, datasets.load_from_disk(windows), arguments)
"""


@pytest.mark.slow
def test_a_killed_run_resumes_past_a_corrupted_newest_checkpoint_to_identical_weights(tmp_path, caplog):
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path / "cache")
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    train = extract_features(raw["train"], extractor, window_mode="sliding")
    train.save_to_disk(tmp_path / "windows")
    config = EcgPmaConfig.from_preset("tiny", hidden_dropout_prob=0.1)  # dropout: the random state matters too
    torch.manual_seed(0)
    save_file(EcgPmaForPreTraining(config).state_dict(), tmp_path / "initial.safetensors")

    def fresh():
        model = EcgPmaForPreTraining(config)
        model.load_state_dict(load_file(tmp_path / "initial.safetensors"))
        return model

    def arguments(output, **overrides):
        settings = {"per_device_batch_size": 8, "warmup_steps": 2, "report_to": [], "seed": 3, "max_steps": 8}
        return PretrainingArguments(output_dir=str(output), disable_tqdm=True, **{**settings, **overrides})

    straight = pretrain(fresh(), train, arguments(tmp_path / "straight", save_steps=None))

    killed = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    run = [sys.executable, str(script), str(tmp_path / "windows"), str(tmp_path / "initial.safetensors"), str(killed)]
    result = subprocess.run([*run, "7"], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["step-2", "step-4", "step-6"]
    assert len((killed / "train_log.jsonl").read_text().splitlines()) == 7  # steps 1-7 logged before the kill

    _flip_tail(killed / "checkpoints" / "step-6" / "model.safetensors", 64)
    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        resumed = pretrain(fresh(), train, arguments(killed, save_steps=2, resume_from_checkpoint="latest"))
    assert "step-6 is not used: model.safetensors does not match its checksum" in caplog.text
    assert [r["step"] for r in resumed.losses] == [5, 6, 7, 8]

    final, expected = load_file(killed / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert final.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(final[name], tensor), name
    # every step logged once, with the same losses as the uninterrupted run
    assert (killed / "train_log.jsonl").read_text() == (tmp_path / "straight" / "train_log.jsonl").read_text()
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in straight.losses[4:]]
