"""
ST-MEM conversion: state dicts with exactly ST-MEM's key layout and random values, converted, and checked against an
independent re-computation of ST-MEM's maths written here in plain torch from the raw tensors.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import wfdb
from conftest import shared_data_dir
from scipy import signal as scipy_signal

from ecg_pma import EcgPmaFeatureExtractor, EcgPmaForPreTraining, EcgPmaForSequenceClassification, EcgPmaModel
from ecg_pma.conversion.st_mem import ConversionError, convert_st_mem


LEADS, PATCH, PATCHES, WIDTH, DEPTH, MLP = 12, 75, 30, 128, 2, 256
DEC_WIDTH, DEC_DEPTH, DEC_MLP = 64, 1, 128


def _block(prefix, width, mlp, generator):
    def rand(*shape, scale=0.05):
        return torch.randn(*shape, generator=generator) * scale

    return {
        f"{prefix}attn.norm.weight": 1 + rand(width), f"{prefix}attn.norm.bias": rand(width),
        f"{prefix}attn.fn.to_qkv.weight": rand(3 * width, width), f"{prefix}attn.fn.to_qkv.bias": rand(3 * width),
        f"{prefix}attn.fn.to_out.0.weight": rand(width, width), f"{prefix}attn.fn.to_out.0.bias": rand(width),
        f"{prefix}ff.norm.weight": 1 + rand(width), f"{prefix}ff.norm.bias": rand(width),
        f"{prefix}ff.fn.net.0.weight": rand(mlp, width), f"{prefix}ff.fn.net.0.bias": rand(mlp),
        f"{prefix}ff.fn.net.3.weight": rand(width, mlp), f"{prefix}ff.fn.net.3.bias": rand(width),
    }  # fmt: skip


def st_mem_state_dict(full=False, head_classes=None, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.05):
        return torch.randn(*shape, generator=generator) * scale

    pos = torch.zeros(1, PATCHES + 2, WIDTH)
    pos[0, 1:-1] = rand(PATCHES, WIDTH, scale=1.0)  # any fixed table: zeros at the SEP positions, as ST-MEM's
    encoder = {
        "pos_embedding": pos,
        "sep_embedding": rand(WIDTH, scale=1.0),
        **{f"lead_embeddings.{i}": rand(WIDTH, scale=1.0) for i in range(LEADS)},
        "to_patch_embedding.1.weight": 1 + rand(PATCH), "to_patch_embedding.1.bias": rand(PATCH),
        "to_patch_embedding.2.weight": rand(WIDTH, PATCH, scale=0.1), "to_patch_embedding.2.bias": rand(WIDTH),
        "to_patch_embedding.3.weight": 1 + rand(WIDTH), "to_patch_embedding.3.bias": rand(WIDTH),
        "norm.weight": 1 + rand(WIDTH), "norm.bias": rand(WIDTH),
    }  # fmt: skip
    for index in range(DEPTH):
        encoder |= _block(f"block{index}.", WIDTH, MLP, generator)
    if head_classes:
        encoder |= {"head.weight": rand(head_classes, WIDTH), "head.bias": rand(head_classes)}
    if not full:
        return encoder
    decoder_pos = torch.zeros(1, PATCHES + 2, DEC_WIDTH)
    decoder_pos[0, 1:-1] = rand(PATCHES, DEC_WIDTH, scale=1.0)
    decoder = {
        "mask_embedding": rand(1, 1, DEC_WIDTH, scale=1.0),
        "decoder_pos_embed": decoder_pos,
        "to_decoder_embedding.weight": rand(DEC_WIDTH, WIDTH), "to_decoder_embedding.bias": rand(DEC_WIDTH),
        "decoder_norm.weight": 1 + rand(DEC_WIDTH), "decoder_norm.bias": rand(DEC_WIDTH),
        "decoder_head.weight": rand(PATCH, DEC_WIDTH), "decoder_head.bias": rand(PATCH),
    }  # fmt: skip
    for index in range(DEC_DEPTH):
        decoder |= _block(f"decoder_blocks.{index}.", DEC_WIDTH, DEC_MLP, generator)
    return {**{f"encoder.{k}": v for k, v in encoder.items()}, **decoder}


def st_mem_pretrain_checkpoint(sd):
    """
    What ST-MEM's `main_pretrain.py` writes (`misc.save_model`): `{"epoch", "model", "optimizer", "scaler",
    "config"}`, where "model" is `ST_MEM.state_dict()`: its own parameters first, then the encoder's, then the six
    `to_patch_embedding.*` tensors again at the top level (`self.to_patch_embedding = self.encoder.to_patch_embedding`,
    the same storage), then the decoder's modules.
    """
    encoder = {key: value for key, value in sd.items() if key.startswith("encoder.")}
    decoder = {key: value for key, value in sd.items() if not key.startswith("encoder.")}
    model = {"mask_embedding": decoder.pop("mask_embedding"), "decoder_pos_embed": decoder.pop("decoder_pos_embed")}
    model |= encoder
    model |= {key[len("encoder.") :]: value for key, value in encoder.items() if key.startswith("encoder.to_patch")}
    model |= decoder
    parameters = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
    sum(p.sum() for p in parameters).backward()
    optimizer.step()
    scaler = {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 7,
    }
    config = {"seed": 0, "model_name": "st_mem_vit_base_dec256d4b", "model": {"seq_len": 2250, "patch_size": 75}}
    return {"epoch": 799, "model": model, "optimizer": optimizer.state_dict(), "scaler": scaler, "config": config}


# ---------------------------------------------------------------------------------- ST-MEM's maths, from the raw dict


def reference_block(x, sd, prefix, heads, eps=1e-5):
    width = x.shape[-1]
    h = F.layer_norm(x, (width,), sd[f"{prefix}attn.norm.weight"], sd[f"{prefix}attn.norm.bias"], eps)
    q, k, v = F.linear(h, sd[f"{prefix}attn.fn.to_qkv.weight"], sd[f"{prefix}attn.fn.to_qkv.bias"]).chunk(3, dim=-1)
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    attention = torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5), dim=-1)
    out = (attention @ v).transpose(1, 2).reshape(x.shape)
    x = x + F.linear(out, sd[f"{prefix}attn.fn.to_out.0.weight"], sd[f"{prefix}attn.fn.to_out.0.bias"])
    h = F.layer_norm(x, (width,), sd[f"{prefix}ff.norm.weight"], sd[f"{prefix}ff.norm.bias"], eps)
    h = F.linear(
        F.gelu(F.linear(h, sd[f"{prefix}ff.fn.net.0.weight"], sd[f"{prefix}ff.fn.net.0.bias"])),
        sd[f"{prefix}ff.fn.net.3.weight"],
        sd[f"{prefix}ff.fn.net.3.bias"],
    )
    return x + h


def reference_encode(sd, signals, keep=None):
    """ST-MEM's encoder lead by lead; `keep[b][lead]` lists the kept patch indices (all when None)."""
    batch = signals.shape[0]
    patches = signals.reshape(batch, LEADS, PATCHES, PATCH)
    x = F.layer_norm(patches, (PATCH,), sd["to_patch_embedding.1.weight"], sd["to_patch_embedding.1.bias"])
    x = F.linear(x, sd["to_patch_embedding.2.weight"], sd["to_patch_embedding.2.bias"])
    x = F.layer_norm(x, (WIDTH,), sd["to_patch_embedding.3.weight"], sd["to_patch_embedding.3.bias"])
    x = x + sd["pos_embedding"][:, 1:-1]
    sequences = []
    for b in range(batch):
        leads = []
        for lead in range(LEADS):
            kept = x[b, lead] if keep is None else x[b, lead, keep[b][lead]]
            left = sd["sep_embedding"] + sd["pos_embedding"][0, 0]
            right = sd["sep_embedding"] + sd["pos_embedding"][0, -1]
            tokens = torch.cat([left[None], kept, right[None]]) + sd[f"lead_embeddings.{lead}"]
            leads.append(tokens)
        sequences.append(torch.cat(leads))
    x = torch.stack(sequences)
    outputs = []
    for index in range(DEPTH):
        x = reference_block(x, sd, f"block{index}.", WIDTH // 64)
        outputs.append(x)
    return outputs


def reference_representation(sd, signals):
    """ST-MEM's downstream vector: mean over non-SEP tokens of the last block, then the final LayerNorm."""
    last = reference_encode(sd, signals)[-1].reshape(signals.shape[0], LEADS, PATCHES + 2, WIDTH)[:, :, 1:-1]
    return F.layer_norm(last.mean(dim=(1, 2)), (WIDTH,), sd["norm.weight"], sd["norm.bias"], 1e-5)


# -------------------------------------------------------------------------------------------------------------- tests


def test_encoder_conversion_is_exact(tmp_path):
    sd = st_mem_state_dict()
    path = tmp_path / "st_mem_encoder.pth"
    torch.save({"model": sd}, path)  # the wrapped form some releases use
    model = convert_st_mem(path, tmp_path / "converted")
    assert type(model) is EcgPmaModel
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (WIDTH, DEPTH, WIDTH // 64)
    assert (config.signal_length, config.patch_size, config.num_leads, config.sampling_rate) == (
        PATCHES * PATCH,
        PATCH,
        LEADS,
        250,
    )

    signals = torch.randn(3, LEADS, PATCHES * PATCH, generator=torch.Generator().manual_seed(1))
    reloaded = EcgPmaModel.from_pretrained(tmp_path / "converted").eval()
    with torch.no_grad():
        ours = reloaded(signals, output_hidden_states=True)
        reference = reference_encode(sd, signals)
        torch.testing.assert_close(ours.pooler_output, reference_representation(sd, signals), atol=1e-5, rtol=1e-5)
        for layer, block_output in enumerate(reference):
            torch.testing.assert_close(ours.hidden_states[layer + 1], block_output, atol=1e-5, rtol=1e-5)
    saved = set((tmp_path / "converted").iterdir())
    assert {p.name for p in saved} >= {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"}
    assert not [p for p in saved if p.suffix in (".bin", ".pt", ".pth")]
    extractor = (tmp_path / "converted" / "preprocessor_config.json").read_text()
    assert '"do_filter": true' in extractor and '"sampling_rate": 250' in extractor
    assert '"normalization": "per_window"' in extractor and '"filter_type": "highpass_lowpass"' in extractor


def test_checkpoint_with_a_head_becomes_a_last_layer_classifier(tmp_path):
    sd = st_mem_state_dict(head_classes=5)
    model = convert_st_mem(sd)
    assert type(model) is EcgPmaForSequenceClassification
    assert model.config.aggregation == "last" and model.config.head_type == "linear" and model.config.num_labels == 5
    signals = torch.randn(2, LEADS, PATCHES * PATCH)
    with torch.no_grad():
        expected = F.linear(reference_representation(sd, signals), sd["head.weight"], sd["head.bias"])
        torch.testing.assert_close(model(signals).logits, expected, atol=1e-5, rtol=1e-5)


def test_full_conversion_reconstructs_like_st_mem(tmp_path):
    sd = st_mem_state_dict(full=True)
    path = tmp_path / "st_mem_full.pth"
    checkpoint = st_mem_pretrain_checkpoint(sd)
    assert sum(key.startswith("to_patch_embedding.") for key in checkpoint["model"]) == 6
    torch.save(checkpoint, path)
    model = convert_st_mem(path, full=True)
    assert type(model) is EcgPmaForPreTraining
    assert (model.config.decoder_hidden_size, model.config.decoder_num_hidden_layers) == (DEC_WIDTH, DEC_DEPTH)

    signals = torch.randn(2, LEADS, PATCHES * PATCH, generator=torch.Generator().manual_seed(2))
    noise = torch.rand(2, LEADS, PATCHES, generator=torch.Generator().manual_seed(3))
    kept_count = int(PATCHES * (1 - model.config.mask_ratio))
    keep = noise.argsort(dim=-1)[..., :kept_count]
    with torch.no_grad():
        ours = model(signals, noise=noise)
        encoder = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
        hidden = F.layer_norm(
            reference_encode(encoder, signals, keep)[-1], (WIDTH,), encoder["norm.weight"], encoder["norm.bias"], 1e-5
        )
        # the decoder, lead by lead: kept tokens back in place, mask tokens elsewhere, SEPs at both ends
        tokens = F.linear(hidden, sd["to_decoder_embedding.weight"], sd["to_decoder_embedding.bias"]).reshape(
            2, LEADS, kept_count + 2, DEC_WIDTH
        )
        reconstruction = torch.zeros(2, LEADS, PATCHES, PATCH)
        for b in range(2):
            for lead in range(LEADS):
                sequence = sd["mask_embedding"][0].repeat(PATCHES, 1).clone()
                sequence[keep[b, lead]] = tokens[b, lead, 1:-1]
                sequence = (
                    torch.cat([tokens[b, lead, :1], sequence, tokens[b, lead, -1:]]) + sd["decoder_pos_embed"][0]
                )
                x = sequence[None]
                for index in range(DEC_DEPTH):
                    x = reference_block(x, sd, f"decoder_blocks.{index}.", DEC_WIDTH // 64)
                x = F.layer_norm(x, (DEC_WIDTH,), sd["decoder_norm.weight"], sd["decoder_norm.bias"], 1e-6)
                reconstruction[b, lead] = F.linear(x, sd["decoder_head.weight"], sd["decoder_head.bias"])[0, 1:-1]
        torch.testing.assert_close(ours.reconstruction, reconstruction, atol=1e-5, rtol=1e-5)


def test_a_differing_duplicate_patch_embedding_fails_loudly(tmp_path):
    checkpoint = st_mem_pretrain_checkpoint(st_mem_state_dict(full=True))
    checkpoint["model"]["to_patch_embedding.2.weight"] = checkpoint["model"]["to_patch_embedding.2.weight"] + 1e-3
    torch.save(checkpoint, tmp_path / "edited.pth")
    with pytest.raises(ConversionError, match=r"to_patch_embedding.2.weight.*differ"):
        convert_st_mem(tmp_path / "edited.pth", full=True)
    orphan = st_mem_pretrain_checkpoint(st_mem_state_dict(full=True))["model"]
    orphan.pop("encoder.to_patch_embedding.1.bias")
    with pytest.raises(ConversionError, match=r"no `encoder.` twin"):
        convert_st_mem(orphan, full=True)


def st_mem_model_input(record_path, num_crops=3):
    """
    ST-MEM's evaluation input from its published definition, in plain numpy / scipy: 10 s segments at the record's
    rate stored as float32 (`process_ecg.py`), FFT-resampled to 250 Hz (`Resample`), `NCrop(2250, 3)`, an order-5
    Butterworth high-pass at 0.67 Hz then low-pass at 40 Hz (`sosfiltfilt`), one z-score over leads and samples.
    """
    signal, fields = wfdb.rdsamp(str(record_path))
    fs = fields["fs"]
    high = scipy_signal.butter(5, 0.67, btype="highpass", fs=250, output="sos")
    low = scipy_signal.butter(5, 40, btype="lowpass", fs=250, output="sos")
    crops = []
    for start in range(0, signal.shape[0] - 10 * fs + 1, 10 * fs):
        segment = signal[start : start + 10 * fs].T.astype(np.float32)
        segment = scipy_signal.resample(segment, int(segment.shape[1] * 250 / fs), axis=1)
        step = (segment.shape[1] - 2250) // (num_crops - 1)
        for crop_start in range(0, segment.shape[1] - 2250 + 1, step):
            crop = segment[:, crop_start : crop_start + 2250]
            crop = scipy_signal.sosfiltfilt(low, scipy_signal.sosfiltfilt(high, crop))
            crops.append((crop - crop.mean()) / crop.std())
    return np.stack(crops)


def test_converted_extractor_gives_st_mem_model_input_on_a_real_record(tmp_path):
    convert_st_mem(st_mem_state_dict(), tmp_path / "converted")
    extractor = EcgPmaFeatureExtractor.from_pretrained(tmp_path / "converted")
    record = shared_data_dir("physionet2021") / "E07500"
    features = extractor(str(record), return_tensors="np")
    expected = st_mem_model_input(record)
    assert features["signals"].shape == expected.shape == (3, 12, 2250)  # 3 crops at 0, 125, 250
    np.testing.assert_allclose(features["signals"], expected, atol=1e-5, rtol=0)
    assert features["record_index"].tolist() == [0, 0, 0]
    # the paper-style extractor of old (order-2 band-pass on the record, per-lead z-score) is far from it
    before = EcgPmaFeatureExtractor(sampling_rate=250, signal_length=2250, do_filter=True, window_mode="sliding")
    old = before(str(record), stride=125, return_tensors="np")["signals"]
    assert np.linalg.norm(old - expected) / np.linalg.norm(expected) > 0.1

    # training: one random crop, filtered and standardised the same way
    (crop,) = extractor(str(record), window_mode="random", seed=3)["signals"]
    start = int(np.random.default_rng(3).integers(0, 251))
    signal, _ = wfdb.rdsamp(str(record))
    segment = scipy_signal.resample(signal.T.astype(np.float32), 2500, axis=1)[:, start : start + 2250]
    for btype, cutoff in (("highpass", 0.67), ("lowpass", 40)):
        segment = scipy_signal.sosfiltfilt(scipy_signal.butter(5, cutoff, btype=btype, fs=250, output="sos"), segment)
    np.testing.assert_allclose(crop, (segment - segment.mean()) / segment.std(), atol=1e-5, rtol=0)


def test_st_mem_extractor_cuts_long_records_into_10_s_segments(tmp_path):
    """A 25 s record (three real 10 s records end to end, 500 Hz): two 10 s segments, 3 crops each, 5 s dropped."""
    paths = [shared_data_dir("physionet2021") / name for name in ("E07500", "E07501", "E07502")]
    signal = np.concatenate([wfdb.rdsamp(str(path))[0] for path in paths])[:12500]
    wfdb.wrsamp("long", fs=500, units=["mV"] * 12, sig_name=wfdb.rdheader(str(paths[0])).sig_name,
                p_signal=signal, fmt=["32"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(tmp_path))  # fmt: skip
    convert_st_mem(st_mem_state_dict(), tmp_path / "converted")
    extractor = EcgPmaFeatureExtractor.from_pretrained(tmp_path / "converted")
    features = extractor(str(tmp_path / "long"), return_tensors="np")
    expected = st_mem_model_input(tmp_path / "long")
    assert features["signals"].shape == expected.shape == (6, 12, 2250)
    np.testing.assert_allclose(features["signals"], expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="shorter than one 10 s segment"):
        extractor(signal[:4800].T, sampling_rate=500)


@pytest.mark.parametrize(
    "mutate, full, message",
    [
        (
            lambda sd: sd.update({"block0.attn.fn.extra.weight": torch.zeros(1)}),
            False,
            r"no counterpart: \['block0.attn.fn.extra.weight'\]",
        ),
        (lambda sd: sd.pop("block1.ff.norm.bias"), False, r"lacks: \['encoder.layers.1.layernorm_after.bias'\]"),
        (
            lambda sd: sd.update({"norm.weight": torch.ones(WIDTH + 1)}),
            False,
            r"shape mismatches: \['layernorm.weight: checkpoint \(129,\) vs model \(128,\)'\]",
        ),
        (lambda sd: sd.update({"something_else": torch.zeros(2)}), False, r"no counterpart: \['something_else'\]"),
        (lambda sd: sd.pop("sep_embedding"), False, "tensor 'sep_embedding' is missing"),
        (lambda sd: sd.update({"mask_embedding": torch.zeros(1, 1, 8)}), False, "convert it with --full"),
        (lambda sd: None, True, "--full expects the encoder \\+ decoder file"),
    ],
)
def test_checkpoints_that_do_not_fit_fail_loudly(mutate, full, message):
    sd = st_mem_state_dict()
    mutate(sd)
    with pytest.raises(ConversionError, match=message):
        convert_st_mem(sd, full=full)


def test_convert_command(tmp_path):
    path = tmp_path / "encoder.pth"
    torch.save(st_mem_state_dict(), path)
    result = subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", "convert-st-mem", str(path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EcgPmaModel" in result.stdout and "2250 samples at 250 Hz" in result.stdout
    torch.save({"not": "tensors", "x": 1}, tmp_path / "bad.pth")
    bad = subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", "convert-st-mem", str(tmp_path / "bad.pth"), str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "not a state dict of tensors" in bad.stderr
