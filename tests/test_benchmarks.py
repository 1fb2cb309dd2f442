"""The benchmark baseline computes the same maths as the package (so speed-ups compare like with like), and the speed
benchmark runs end to end."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, shared_data_dir

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
        torch.testing.assert_close(
            reference_pretraining_loss(model, signals, noise), model(signals, noise=noise).loss, atol=1e-5, rtol=1e-5
        )


def test_figures_keep_significant_digits_however_small():
    from common import significant

    assert significant(0.00001234567) == 0.00001235  # a tiny model's TFLOP/s: rounding to 4 decimals gave 0.0
    assert significant(123456.7) == 123500.0
    assert significant(2.0) == 2.0 and significant(0.0) == 0.0 and significant(None) is None


@pytest.mark.slow
def test_speed_benchmark_prints_one_json_line_with_every_variant():
    """The speed benchmark runs end to end (tiny model, one small batch) and reports what its README table needs."""
    command = [
        sys.executable, str(REPO_ROOT / "benchmarks" / "speed.py"),
        "--presets", "tiny", "--batches", "2", "--dtypes", "fp32", "--repeats", "1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    measured = {(r["task"], r["variant"]) for r in report["results"]}
    assert measured == {
        ("encoder_inference", "ours_sdpa"), ("encoder_inference", "ours_eager"), ("encoder_inference", "reference"),
        ("pretraining_step", "ours_sdpa"), ("pretraining_step", "reference"),
    }  # fmt: skip
    # figures only: their size depends on the machine and its load, which no test may assert on
    for r in report["results"]:
        assert all(isinstance(r[key], float) for key in ("ecgs_per_s", "tflops_per_s", "first_call_s")), r
    assert {(s["task"], s["dtype"]) for s in report["speedups"]} == {
        ("encoder_inference", "fp32"),
        ("pretraining_step", "fp32"),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "arguments", "reported"),
    [
        ("feature_extraction.py", ["--repeat", "1", "--corpus-records", "40"], "records_per_s_num_proc_2"),
        ("probe_cache.py", ["--preset", "tiny", "--epochs", "1"], "per_epoch_speedup"),
        ("bf16_accuracy.py", ["--preset", "tiny"], "test_macro_auroc_bf16"),
        ("training_crops.py", ["--repeat", "1"], "paper_crop_vs_precomputed"),
    ],
)
def test_data_benchmarks_run_on_the_challenge_records(script, arguments, reported):
    shared_data_dir("physionet2021")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report[reported] > 0
