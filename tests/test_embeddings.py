"""`ecg-pma embed`: each record's fixed windows averaged, saved in parts (a kill resumes), keyed to weights and rows."""

import pytest
import torch
from conftest import shared_data_dir
from test_probe_cache import killed_mid_write

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaModel
from ecg_pma.data import load_physionet2021
from ecg_pma.evaluation import embeddings as embeddings_module
from ecg_pma.evaluation.embeddings import RecordEmbeddings, embed_records, evaluation_windows
from ecg_pma.training.probe_layers import model_fingerprint


@pytest.fixture(scope="module")
def five_second_windows(tmp_path_factory):
    """Twelve of the challenge records (10 s) in 5 s sliding windows: three windows a record."""
    config = EcgPmaConfig.from_preset("tiny", signal_length=500)
    extractor = EcgPmaFeatureExtractor.from_model_config(config, window_mode="sliding")
    records = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=tmp_path_factory.mktemp("cache"))
    windows, splits, dropped = evaluation_windows(records, extractor)
    assert not dropped and len(windows) == 3 * 40
    return config, windows.select(range(36)), splits[:36]


def encoder(config, seed):
    torch.manual_seed(seed)
    return EcgPmaModel(config).eval()


def test_each_record_is_the_mean_of_its_windows_and_a_kill_resumes(tmp_path, five_second_windows, monkeypatch):
    config, windows, splits = five_second_windows
    model = encoder(config, 1)
    path = tmp_path / "embeddings.safetensors"
    first = embed_records(model, windows, path, model_fingerprint(model), splits=splits, part_rows=6)
    assert len(first.record_ids) == len(set(first.record_ids)) == 12
    assert first.layer_representations.shape == (12, config.num_hidden_layers, config.hidden_size)
    assert {first.splits[first.record_ids.index(name)] for name in windows["record_id"][:3]} == {splits[0]}
    assert first.mixture == "ppa" and not path.with_name(path.name + ".parts").exists()

    rows = windows.with_format("torch")[3:6]  # the second record's three windows
    with torch.no_grad():
        output = model(rows["signals"])
    record = first.record_ids.index(windows["record_id"][3])
    torch.testing.assert_close(first.layer_representations[record], output.layer_representations.mean(0))
    torch.testing.assert_close(first.pooled[record], output.pooler_output.mean(0))
    mixed = model.layernorm(output.layer_representations.mean(1)).mean(0)
    torch.testing.assert_close(first.mixed[record], mixed)

    # a kill after two of the six parts: the rerun encodes the other four only, with identical results
    path.unlink()
    real_encode_part, calls = embeddings_module.encode_part, []

    def dies_after_two_parts(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real_encode_part(*args, **kwargs)

    monkeypatch.setattr(embeddings_module, "encode_part", dies_after_two_parts)
    with pytest.raises(KeyboardInterrupt):
        embed_records(model, windows, path, model_fingerprint(model), splits=splits, part_rows=6)
    assert len(list(path.with_name(path.name + ".parts").glob("*.safetensors"))) == 2 and not path.exists()

    def counted(*args, **kwargs):
        calls.append(1)
        return real_encode_part(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(embeddings_module, "encode_part", counted)
    resumed = embed_records(model, windows, path, model_fingerprint(model), splits=splits, part_rows=6)
    assert len(calls) == 4
    for name in embeddings_module.TENSORS:
        assert torch.equal(getattr(resumed, name), getattr(first, name))
    assert resumed.record_ids == first.record_ids and resumed.key == first.key

    # the same file read back; another encoder's weights encode again
    calls.clear()
    assert torch.equal(embed_records(model, windows, path, model_fingerprint(model)).pooled, first.pooled)
    assert not calls
    other = encoder(config, 2)
    again = embed_records(other, windows, path, model_fingerprint(other), splits=splits)
    assert again.key["model"] != first.key["model"] and not torch.equal(again.pooled, first.pooled)
    assert RecordEmbeddings.load(path).key == again.key


def test_a_part_whose_write_was_killed_is_encoded_again_not_trusted(tmp_path, five_second_windows, monkeypatch):
    config, windows, splits = five_second_windows
    model = encoder(config, 1)
    whole = embed_records(model, windows, tmp_path / "whole.safetensors", model_fingerprint(model), splits=splits)
    path = tmp_path / "embeddings.safetensors"
    parts = path.with_name(path.name + ".parts")
    with monkeypatch.context() as patch:
        killed_mid_write(patch, after=2)  # killed while writing the third of six parts
        with pytest.raises(KeyboardInterrupt):
            embed_records(model, windows, path, model_fingerprint(model), splits=splits, part_rows=6)
    assert sorted(part.name for part in parts.iterdir()) == ["part-00000.safetensors", "part-00001.safetensors"]
    # and the first part cut short under its name, as a writer that was not atomic, or a full disk, leaves one
    first = parts / "part-00000.safetensors"
    first.write_bytes(first.read_bytes()[:100])

    real_encode_part, encoded = embeddings_module.encode_part, []

    def counted(*args, **kwargs):
        encoded.append(args[3][0])  # the part's first record id
        return real_encode_part(*args, **kwargs)

    monkeypatch.setattr(embeddings_module, "encode_part", counted)
    resumed = embed_records(model, windows, path, model_fingerprint(model), splits=splits, part_rows=6)
    assert len(encoded) == 5 and encoded[0] == windows["record_id"][0]  # the cut part and the four never written
    for name in embeddings_module.TENSORS:
        torch.testing.assert_close(getattr(resumed, name), getattr(whole, name), rtol=1e-5, atol=1e-6)
    assert resumed.record_ids == whole.record_ids and not parts.exists()

    path.write_bytes(path.read_bytes()[:-10])  # the merged file cut short: embedded again, not read
    encoded.clear()
    embed_records(model, windows, path, model_fingerprint(model), splits=splits, part_rows=6)
    assert len(encoded) == 6 and RecordEmbeddings.load(path).record_ids == whole.record_ids


@pytest.mark.slow
def test_embed_cli_writes_every_record(tmp_path):
    from test_model_benchmark import cli, save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    output = tmp_path / "embeddings.safetensors"
    process = cli(
        "embed", "--data", shared_data_dir("physionet2021"), "--data-format", "physionet2021", "--model", model,
        "--output", output, "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    embeddings = RecordEmbeddings.load(output)
    assert len(embeddings.record_ids) == 40 and set(embeddings.splits) == {"train", "validation", "test"}
    assert "40 records ->" in stdout
