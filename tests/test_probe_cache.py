"""The layer-wise study's cache is keyed to what produced it: another model or other rows are encoded again."""

import pytest
import torch
from conftest import shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaModel
from ecg_pma.data import extract_features, load_physionet2021
from ecg_pma.training.probe_layers import LayerCache, probe_layers


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
