"""
The layer-wise study's cache is keyed to what produced it: another model or other rows are encoded again; a cache whose
write was killed is encoded again, never trusted.
"""

import logging
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaModel
from ecg_pma.data import extract_features, load_physionet2021
from ecg_pma.training.probe_layers import LayerCache, load_or_encode, model_fingerprint, probe_layers


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path_factory.mktemp("cache"))
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    return extract_features(raw, extractor, window_mode="sliding")


def encoder(seed):
    torch.manual_seed(seed)
    return EcgPmaModel(EcgPmaConfig.from_preset("tiny")).eval()


def splits_of(windows):
    return {split: windows[split] for split in ("train", "validation", "test")}


@pytest.mark.slow
def test_a_second_model_into_the_same_folder_gives_its_own_numbers(tmp_path, windows):
    model_a, model_b = encoder(1), encoder(2)
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    rows_a = probe_layers(model_a, splits_of(windows), shared, epochs=2)
    rows_b = probe_layers(model_b, splits_of(windows), shared, epochs=2)
    assert rows_b == probe_layers(model_b, splits_of(windows), fresh, epochs=2)
    assert rows_b != rows_a  # the two encoders do differ, so reusing A's cache would have shown
    cache = LayerCache.load(shared / "layer_cache" / "train.safetensors")
    with torch.no_grad():
        expected = model_b(windows["train"].with_format("torch")[:2]["signals"]).layer_representations
    torch.testing.assert_close(cache.layer_representations[:2], expected)


@pytest.mark.slow
def test_the_same_model_reuses_the_cache_and_other_rows_do_not(tmp_path, windows):
    from PIL import Image

    model = encoder(1)
    probe_layers(model, splits_of(windows), tmp_path, epochs=1, head_type="mlp")
    title = Image.open(tmp_path / "layerwise_probe.png").text["Title"]
    records = {split: len(set(windows[split]["record_id"])) for split in ("train", "validation", "test")}
    assert title.startswith("MLP probe per layer")
    assert f"train: {records['train']} records" in title and f"test: {records['test']} records" in title

    path = tmp_path / "layer_cache" / "validation.safetensors"
    stamp = path.stat().st_mtime_ns
    probe_layers(encoder(1), splits_of(windows), tmp_path, epochs=1)  # equal weights, a new object
    assert path.stat().st_mtime_ns == stamp

    fewer = {**splits_of(windows), "validation": windows["validation"].select(range(len(windows["validation"]) - 1))}
    probe_layers(model, fewer, tmp_path, epochs=1)
    assert len(LayerCache.load(path).record_ids) == len(windows["validation"]) - 1


def killed_mid_write(monkeypatch, after: int = 0):
    """Makes the safetensors writes after the first `after` die half-written, as a kill would leave them: the file
    cut to half its bytes, then `KeyboardInterrupt`."""
    real, writes = safetensors.torch.serialize_file, []

    def serialize_file(tensors, filename, metadata=None):
        writes.append(filename)
        real(tensors, filename, metadata=metadata)
        if len(writes) > after:
            data = Path(filename).read_bytes()
            Path(filename).write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "serialize_file", serialize_file)
    return writes


def test_a_cache_whose_write_was_killed_is_encoded_again_not_trusted(tmp_path, windows, monkeypatch, caplog):
    model, rows = encoder(1), windows["validation"]
    whole = load_or_encode(model, rows, tmp_path / "whole.safetensors", "validation", model_fingerprint(model))
    path = tmp_path / "cache" / "validation.safetensors"

    with monkeypatch.context() as patch:
        killed_mid_write(patch)
        with pytest.raises(KeyboardInterrupt):
            load_or_encode(model, rows, path, "validation", model_fingerprint(model))
    assert list(path.parent.iterdir()) == []  # no half cache under the final name, no temporary left behind

    def same(cache):
        assert cache.key == whole.key and cache.record_ids == whole.record_ids
        assert torch.equal(cache.layer_representations, whole.layer_representations)

    same(load_or_encode(model, rows, path, "validation", model_fingerprint(model)))
    # a cache cut short under its final name (a full disk, or one written before writes were atomic): read as
    # unreadable, encoded again and rewritten whole
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="ecg_pma.training.checkpoint"):
        same(load_or_encode(model, rows, path, "validation", model_fingerprint(model)))
    assert f"{path} cannot be read" in caplog.text
    same(LayerCache.load(path))


def test_a_study_without_a_validation_split_is_refused_by_name(tmp_path, windows):
    with pytest.raises(ValueError, match=r"no validation records \(splits: train \d+\)"):
        probe_layers(encoder(1), {"train": windows["train"]}, tmp_path, epochs=1)
    assert not (tmp_path / "layer_cache").exists()  # refused before any record is encoded
