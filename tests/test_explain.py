"""Integrated gradients: completeness on a real record, the one lead a label depends on gets the attribution, and which
label is explained by default."""

import numpy as np
import pytest
import torch
from conftest import shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.serving.inference import RecordPrediction
from ecg_pma.visualization.explain import (
    default_explained_label,
    explain_window,
    integrated_gradients,
    resolve_label,
)


@pytest.fixture(autouse=True)
def one_thread():
    # Many small forward/backward passes: one thread avoids oversubscribing a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_attributions_add_up_to_the_change_in_logit_on_a_real_record(tiny_config):
    model = EcgPmaForSequenceClassification(tiny_config).eval()
    window = EcgPmaFeatureExtractor()(shared_data_dir("physionet2021") / "E07500", return_tensors="pt")["signals"][0]
    target = 1
    attributions, logit, baseline_logit = integrated_gradients(model, window, target)
    with torch.no_grad():
        expected = model(torch.stack([window, torch.zeros_like(window)])).logits[:, target]
    change = float(expected[0] - expected[1])
    assert float(logit) == pytest.approx(float(expected[0]), abs=1e-5)
    assert float(baseline_logit) == pytest.approx(float(expected[1]), abs=1e-5)
    assert attributions.shape == window.shape
    assert float(attributions.sum()) == pytest.approx(change, abs=0.01 * abs(change) + 1e-4)


def test_a_uniform_fifty_step_path_would_not_add_up(tiny_config):
    """Why the integral is adaptive: the logits change within the first 1e-4 of the path (see explain.py)."""
    model = EcgPmaForSequenceClassification(tiny_config).eval()
    window = EcgPmaFeatureExtractor()(shared_data_dir("physionet2021") / "E07500", return_tensors="pt")["signals"][0]
    alphas = (torch.arange(50) + 0.5) / 50  # the midpoint rule over 50 steps
    points = (alphas[:, None, None] * window).requires_grad_(True)
    (gradients,) = torch.autograd.grad(model(points).logits[:, 0].sum(), points)
    riemann = float((gradients.mean(0) * window).sum())
    with torch.no_grad():
        logits = model(torch.stack([window, torch.zeros_like(window)])).logits[:, 0]
    change = float(logits[0] - logits[1])
    assert abs(riemann - change) > 0.1 * abs(change)


def synthetic_batch(num_records: int, lead: int, generator: torch.Generator):
    """
    Random-phase sines on every lead; in positives, `lead` is replaced by a spike train (one spike per second). The
    label depends on that lead only.
    """
    t = torch.arange(100) / 25
    frequencies = torch.rand(num_records, 12, 1, generator=generator) * 2 + 0.5
    phases = torch.rand(num_records, 12, 1, generator=generator) * 6
    signals = torch.sin(2 * np.pi * frequencies * t + phases)
    labels = torch.rand(num_records, generator=generator) < 0.5
    spikes = torch.zeros(100)
    spikes[12::25] = 5.0
    signals[labels, lead] = spikes + 0.1 * torch.randn(int(labels.sum()), 100, generator=generator)
    return signals, labels.float()[:, None]


def test_the_lead_a_label_depends_on_gets_the_largest_attribution():
    lead = 8  # V3
    config = EcgPmaConfig.from_preset(
        "tiny", sampling_rate=25, signal_length=100, patch_size=25, num_hidden_layers=2, num_labels=1,
        head_type="linear", problem_type="multi_label_classification", id2label={0: "spikes in V3"},
        label2id={"spikes in V3": 0},
    )  # fmt: skip
    model = EcgPmaForSequenceClassification(config)
    model.freeze_encoder()  # linear probing: the explanation must still reach the input through the encoder
    generator = torch.Generator().manual_seed(0)
    signals, labels = synthetic_batch(256, lead, generator)
    with torch.no_grad():
        encoded = model.ecg_pma(signals)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(200):
        fused, _ = model.aggregator(encoded.layer_representations, encoded.input_representation)
        logits = model.classifier(model.ecg_pma.layernorm(fused))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_signals, test_labels = synthetic_batch(64, lead, generator)
    with torch.no_grad():
        accuracy = float(((model(test_signals).logits > 0).float() == test_labels).float().mean())
    assert accuracy > 0.95  # the probe learned the rule, so its explanation means something

    for window in test_signals[test_labels[:, 0] == 1][:4]:
        explanation = explain_window(model, window, label="spikes in V3")
        assert explanation.lead_names[int(np.argmax(explanation.lead_attributions))] == "V3"
        others = np.delete(explanation.lead_attributions, lead)
        assert explanation.lead_attributions[lead] > 2 * others.max()
        assert abs(explanation.convergence_delta) < 0.01 * abs(explanation.logit - explanation.baseline_logit) + 1e-4
        assert explanation.patch_attributions.shape == (12, 4)
    assert model.encoder_frozen and not any(p.requires_grad for p in model.ecg_pma.parameters())


def test_unknown_label_is_a_clear_error(tiny_config):
    model = EcgPmaForSequenceClassification(tiny_config)
    with pytest.raises(ValueError, match="Unknown label 'AF'"):
        explain_window(model, torch.zeros(12, 1000), label="AF")
    with pytest.raises(ValueError, match="one window"):
        integrated_gradients(model, torch.zeros(1, 12, 1000), 0)


def test_labels_are_named_from_id2label_alone():
    # the README's quick start saves `id2label` without `label2id`
    config = EcgPmaConfig.from_preset("tiny", id2label={0: "NSR", 1: "AF", 2: "STach"})
    assert config.label2id is None
    assert resolve_label(config, "STach", torch.zeros(3)) == 2
    assert resolve_label(config, None, torch.tensor([0.0, 2.0, 1.0])) == 1
    with pytest.raises(ValueError, match=r"Unknown label 'RBBB'; the model's labels are \['NSR', 'AF', 'STach'\]"):
        resolve_label(config, "RBBB", torch.zeros(3))


def test_the_default_explained_label_is_the_most_likely_positive_one():
    def prediction(positive_labels):
        probabilities = {"NSR": 0.9, "AF": 0.6, "STach": 0.3}
        return RecordPrediction("HR06009", probabilities, positive_labels, [0.5, 0.5], 1)

    # NSR is the most likely but below its threshold: the most likely of the positives is explained
    assert default_explained_label(prediction(["STach", "AF"])) == "AF"
    assert default_explained_label(prediction(["NSR", "AF"])) == "NSR"
    assert default_explained_label(prediction([])) is None
