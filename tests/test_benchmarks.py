"""The benchmark baseline computes the same maths as the package (so speed-ups compare like with like)."""

import sys

import torch

from conftest import REPO_ROOT
from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from reference_impl import reference_encoder, reference_pretraining_loss  # noqa: E402


def test_reference_implementation_matches_the_package(signals):
    config = EcgPmaConfig.from_preset("tiny")
    model = EcgPmaForPreTraining(config).eval()
    with torch.no_grad():
        representations, _ = reference_encoder(model.ecg_pma, signals)
        torch.testing.assert_close(representations, model.ecg_pma(signals).layer_representations, atol=1e-5, rtol=1e-5)
        noise = torch.rand(4, 12, config.num_patches)
        torch.testing.assert_close(reference_pretraining_loss(model, signals, noise), model(signals, noise=noise).loss, atol=1e-5, rtol=1e-5)
