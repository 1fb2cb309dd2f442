"""The benchmark baseline computes the same maths as the package (so speed-ups compare like with like), and the speed
benchmark runs end to end."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaForPreTraining, EcgPmaForSequenceClassification


sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from reference_impl import reference_encoder, reference_pretraining_loss  # noqa: E402


def run_benchmark(script: str, *arguments: str, timeout: int = 300, one_line: bool = False) -> dict:
    """Runs `benchmarks/SCRIPT ARGUMENTS` from the repository root and returns its report, the last line of its output
    (with `one_line`, the only line): it must exit 0 and name this machine's CPU capability."""
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / script), *map(str, arguments)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    if one_line:
        assert len(lines) == 1, lines
    report = json.loads(lines[-1])
    assert report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    return report


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
    report = run_benchmark(
        "speed.py", "--presets", "tiny", "--batches", "2", "--dtypes", "fp32", "--repeats", "1", one_line=True
    )
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
        (
            "feature_extraction.py",
            ["--repeat", "1", "--corpus-records", "40", "--corpus-repeats", "1"],
            "records_per_s_num_proc_2",
        ),
        ("probe_cache.py", ["--preset", "tiny", "--epochs", "1"], "per_epoch_speedup"),
        ("bf16_accuracy.py", ["--preset", "tiny"], "test_macro_auroc_bf16"),
        ("training_crops.py", ["--repeat", "1"], "paper_crop_vs_precomputed"),
        ("lead_set_cut.py", ["--preset", "tiny", "--batch", "4", "--repeats", "1"], "per_window_cut_vs_step"),
    ],
)
def test_data_benchmarks_run_on_the_challenge_records(script, arguments, reported):
    shared_data_dir("physionet2021")
    report = run_benchmark(script, *arguments)
    assert report[reported] > 0


@pytest.mark.slow
def test_lead_subset_benchmark_reports_the_mask_and_two_lead_rows():
    """The lead-mask benchmark runs (tiny model), its 'before' model loaded from git and checked equal to today's."""
    report = run_benchmark(
        "lead_subsets.py", "--preset", "tiny", "--batch", "2", "--repeats", "1", "--baseline-rev", "HEAD"
    )
    assert set(report["ecgs_per_s"]) == {
        "12_leads_mask_none", "12_leads_mask_all_true", "12_leads_before", "2_leads_uniform", "mixed_lead_sets",
    }  # fmt: skip
    assert all(report[key] > 0 for key in ("mask_none_vs_before", "all_true_mask_vs_none", "two_leads_vs_twelve"))


@pytest.mark.slow
def test_lora_benchmark_reports_lora_against_full_finetuning():
    report = run_benchmark(
        "peft_lora.py", "--preset", "tiny", "--batch", "4", "--rank", "2", "--repeats", "1", one_line=True
    )
    variants = {r["variant"]: r for r in report["results"]}
    assert set(variants) == {"full", "lora", "lora_checkpointed"}
    # what LoRA trains: rank-2 factors on qkv (h -> 3h), output (h -> h), fc1 (h -> i) and fc2 (i -> h) of every
    # block instead of the encoder's own weights; gate and head trained in both
    model = EcgPmaForSequenceClassification(EcgPmaConfig.from_preset("tiny", num_labels=71, aggregation="pma"))
    config, rank = model.config, 2
    adapters = config.num_hidden_layers * rank * (8 * config.hidden_size + 2 * config.intermediate_size)
    encoder = sum(p.numel() for p in model.ecg_pma.parameters() if p.requires_grad)
    assert variants["full"]["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert variants["full"]["trainable_parameters"] - variants["lora"]["trainable_parameters"] == encoder - adapters
    assert all(r["step_s"] > 0 and r["peak_memory_mb"] >= 0 for r in report["results"])
    assert report["lora_trainable_fraction"] < 1


@pytest.mark.slow
def test_deploy_benchmark_times_every_backend_and_profiles_onnxruntime():
    """The deployment speed benchmark runs end to end (tiny model, one batch size, no compile)."""
    report = run_benchmark(
        "deploy.py", "--presets", "tiny", "--batches", "2", "--repeats", "1", "--no-compile", "--profile",
        "--peak-repeats", "1", one_line=True,
    )  # fmt: skip
    assert [r["variant"] for r in report["results"]] == [
        "eager_fp32", "ort_fp32_optimized", "ort_int8", "ort_int8_masked_graph", "ort_int8_unfused_masked_graph"
    ]  # fmt: skip
    assert all(r["ecgs_per_s"] > 0 and r["achieved_gops"] > 0 for r in report["results"])
    (speedup,) = report["speedups"]
    assert speedup["ort_int8_vs_eager"] > 0 and speedup["ort_fp32_optimized_vs_eager"] > 0
    assert speedup["all_leads_vs_masked_graph_int8"] > 0 and speedup["int8_vs_unfused_masked_graph_int8"] > 0
    profiles = {p["variant"]: p["share"] for p in report["operator_profiles"]}
    assert "DynamicQuantizeMatMul" in profiles["ort_int8"] and "MatMulInteger" not in profiles["ort_fp32_optimized"]
    assert "QAttention" in profiles["ort_int8"] and "Attention" in profiles["ort_fp32_optimized"]
    assert "Where" in profiles["ort_int8_masked_graph"] and "Where" not in profiles["ort_int8"]
    assert sum(profiles["ort_int8"].values()) == pytest.approx(1.0, abs=0.01)
    # the limit row: the ceiling (the instruction peak where it can run), the kernels' best rates on the model's own
    # product shapes and a large square one, and every variant's fraction of them
    peaks = report["matrix_product_peaks"]
    rates = peaks["kernel_gops_per_s"]
    assert set(rates) == {"ort_MatMulInteger", "ort_DynamicQuantizeMatMul", "ort_MatMul", "torch_mm"}
    tiny = EcgPmaConfig.from_preset("tiny")
    fc1 = f"{2 * 12 * (tiny.num_patches + 2)}x{tiny.hidden_size}x{tiny.intermediate_size}"
    assert all({"2048x2048x2048", fc1} <= set(by_shape) for by_shape in rates.values())
    int8_rates = [*rates["ort_MatMulInteger"].values(), *rates["ort_DynamicQuantizeMatMul"].values()]
    assert peaks["int8_best_kernel_gops"] == max(int8_rates)
    if "skipped" in peaks["instruction_peak"]:
        assert peaks["int8_ceiling_gops"] == peaks["int8_best_kernel_gops"]
    else:  # the instruction peak is the ceiling: no kernel beats it
        assert peaks["int8_ceiling_gops"] == peaks["instruction_peak"]["int8_vnni_gops"]
        assert peaks["int8_ceiling_gops"] >= peaks["int8_best_kernel_gops"]
        assert peaks["fp32_ceiling_gflops"] >= peaks["fp32_best_kernel_gflops"]
    for row, result in zip(report["limit"], report["results"]):
        assert row["variant"] == result["variant"]
        assert row["fraction_of_int8_ceiling"] == pytest.approx(
            result["achieved_gops"] / peaks["int8_ceiling_gops"], rel=0.01
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "arguments", "reported"),
    [
        ("deploy_accuracy.py", ["--preset", "tiny", "--epochs", "2"], "int8_max_abs_diff"),
        (
            "folder_screening.py",
            ["--preset", "tiny", "--copies", "1", "--backend", "onnxruntime"],
            "end_to_end_records_per_s",
        ),
    ],
)
def test_deployment_benchmarks_run_on_the_challenge_records(script, arguments, reported):
    shared_data_dir("physionet2021")
    report = run_benchmark(script, *arguments, one_line=True)
    if script == "deploy_accuracy.py":
        assert report["records"] == 40 and report["mixed_lead_sets_per_record"] == {
            str(n): 8 for n in (12, 6, 4, 3, 2)
        }
        for inputs in ("complete_12_lead", "mixed_lead_sets"):
            assert report[inputs][reported] > 0 and report[inputs]["fp32_max_abs_diff"] <= 1e-4
        # the mixed lead sets ran the masked graphs
        assert report["onnx_graphs_run"] == {"ort_fp32_optimized": ["lead_mask"], "ort_int8": ["lead_mask"]}
        assert report["passed"] == (not report["failed_targets"])
    else:
        assert report[reported] > 0
        assert report["records"] == 40 and report["windows"] == 40


@pytest.mark.slow
def test_static_int8_benchmark_calibrates_on_real_records_and_times_both_files():
    shared_data_dir("physionet2021")
    report = run_benchmark(
        "static_int8.py", "--preset", "tiny", "--batch", "2", "--repeats", "1", "--calibration-records", "4",
        one_line=True,
    )  # fmt: skip
    assert report["calibration_windows"] > 0 and report["held_out_windows"] > 0
    assert set(report["ecgs_per_s"]) == {"dynamic_int8", "static_int8"} and report["static_vs_dynamic"] > 0
    assert all(0 < diff < 0.5 for diff in report["max_abs_prob_diff_vs_pytorch"].values())


@pytest.mark.slow
def test_corpus_memory_benchmark_measures_both_paths_at_two_sizes():
    report = run_benchmark("corpus_memory.py", "--sizes", "100", "200", "--shuffle-buffers", "8", timeout=600)
    for size, modes in report["corpora"].items():
        # every exam once cached; streamed, the two halves interleaved until both are exhausted (the smaller repeats)
        assert modes["cached"]["rows"] == int(size) and modes["streamed_buffer_8"]["rows"] >= int(size)
    assert set(report["peak_growth_ratio_large_vs_small"]) == {"cached", "streamed_buffer_8"}


@pytest.mark.slow
def test_benchmark_suite_benchmark_reports_the_rate_and_the_ptbxl_projection():
    shared_data_dir("physionet2021")
    report = run_benchmark("benchmark_suite.py", "--preset", "tiny", "--epochs", "1", timeout=600, one_line=True)
    assert report["sample"]["records"] == 40 and report["sample"]["embedding_records_per_s"] > 0
    assert report["ptbxl_projection"]["records"] == 21_837 and report["ptbxl_projection"]["total_hours"] > 0


def test_read_formats_benchmark_reports_every_format_beside_wfdb():
    shared_data_dir("physionet2021")
    report = run_benchmark("read_formats.py", "--records", "2", "--rounds", "1")
    formats = {"wfdb", "dicom", "edf", "hl7-aecg", "ge-muse", "philips", "csv", "npy", "parquet"}
    assert set(report["records_per_s"]) == formats and all(rate > 0 for rate in report["records_per_s"].values())
    assert report["ratio_to_wfdb"]["wfdb"] == 1.0


@pytest.mark.slow
def test_suite_metrics_cost_benchmark_times_both_cases():
    report = run_benchmark("suite_metrics_cost.py", "--resamples", "20", one_line=True)
    for case in ("ptbxl_all", "physionet2021_with_challenge_metric"):
        assert report[case]["score_with_intervals_seconds"] > 0 and report[case]["suite_scores_seconds"] > 0
