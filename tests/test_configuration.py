import json

import pytest

from ecg_pma import PRESETS, STANDARD_LEAD_NAMES, EcgPmaConfig


def test_defaults_are_the_paper_vit_b():
    config = EcgPmaConfig()
    assert config.lead_names == list(STANDARD_LEAD_NAMES)
    assert (config.sampling_rate, config.signal_length, config.patch_size) == (100, 1000, 50)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert config.num_patches == 20


@pytest.mark.parametrize(
    "name, expected",
    [
        ("vit-b-paper", (100, 1000, 50, 768, 12)),
        ("vit-s-paper", (100, 1000, 50, 384, 6)),
        ("vit-b-st-mem", (250, 2250, 75, 768, 12)),
        ("vit-s-st-mem", (250, 2250, 75, 384, 6)),
    ],
)
def test_named_presets(name, expected):
    config = EcgPmaConfig.from_preset(name)
    assert (
        config.sampling_rate,
        config.signal_length,
        config.patch_size,
        config.hidden_size,
        config.num_attention_heads,
    ) == expected


def test_preset_overrides_and_unknown_preset():
    assert EcgPmaConfig.from_preset("tiny", aggregation="ppa").aggregation == "ppa"
    with pytest.raises(ValueError, match="Unknown preset 'vit-h'"):
        EcgPmaConfig.from_preset("vit-h")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"signal_length": 1010}, "must be divisible by `patch_size`"),
        ({"aggregation": "attention"}, "Unknown `aggregation` 'attention'"),
        ({"pretraining_aggregation": "mean"}, "Unknown `pretraining_aggregation`"),
        ({"aggregation": "layer"}, "needs `aggregation_layer`"),
        ({"aggregation": "layer", "aggregation_layer": 4}, "out of range for 4 layers"),
        ({"aggregation": "layer", "aggregation_layer": -5}, "out of range for 4 layers"),
        ({"head_type": "transformer"}, "Unknown `head_type`"),
        ({"hidden_size": 30}, "multiple of `num_attention_heads`"),
        ({"decoder_hidden_size": 15}, "multiple of `decoder_num_attention_heads`"),
        ({"num_leads": 8, "lead_names": list(STANDARD_LEAD_NAMES)}, "`lead_names` has 12 names"),
        ({"lead_names": ["I"] * 12}, "must be unique"),
        ({"mask_ratio": 1.0}, r"`mask_ratio` must be in \[0, 1\)"),
        ({"mask_ratio": 0.99}, "keeps no patch"),
    ],
)
def test_invalid_configs_raise_clear_value_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        EcgPmaConfig.from_preset("tiny", **overrides)


def test_lead_subset_config():
    assert EcgPmaConfig.from_preset("tiny", num_leads=2, lead_names=["I", "II"]).lead_names == ["I", "II"]
    # without names, a smaller lead count takes the first leads of the standard order
    assert EcgPmaConfig.from_preset("tiny", num_leads=3).lead_names == ["I", "II", "III"]


def test_negative_aggregation_layer_resolves_from_the_end():
    config = EcgPmaConfig.from_preset("tiny", aggregation="layer", aggregation_layer=-1)
    assert config.resolved_aggregation_layer == 3


def test_round_trip_through_json(tmp_path):
    config = EcgPmaConfig.from_preset("tiny", aggregation="layer", aggregation_layer=2, num_labels=5)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "ecg_pma"
    loaded = EcgPmaConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.num_labels == 5


def test_every_preset_name_is_listed():
    assert set(PRESETS) == {"vit-s-paper", "vit-b-paper", "vit-s-st-mem", "vit-b-st-mem", "tiny"}
