"""
`ecg-pma benchmark --lead-sets` on the 40 real PhysioNet 2021 records: rows per task x lead set in benchmark.json,
benchmark.md and the predictions layout; a lead set's embeddings equal those of the records written with only its leads
(same digital samples, through the loader and the extractor); a rerun after losing a lead set's files redoes only
those and gives the same numbers.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb
from conftest import shared_data_dir
from datasets import Dataset
from sklearn.metrics import roc_auc_score

from ecg_pma import LEAD_SETS, EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForPreTraining
from ecg_pma.cli import build_parser
from ecg_pma.constants import CHALLENGE_LEAD_SETS
from ecg_pma.evaluation.benchmark import (
    BenchmarkSettings,
    benchmark_lead_sets,
    check_lead_set_coverage,
    lead_set_windows,
    load_benchmark_model,
    run_benchmark,
)
from ecg_pma.evaluation.embeddings import (
    RecordEmbeddings,
    embed_records,
    evaluation_window_mode,
    evaluation_windows,
)
from ecg_pma.evaluation.suites import load_suite
from ecg_pma.training.collator import LeadSetSampler
from ecg_pma.training.probe_layers import model_fingerprint


SPLIT = {"validation_fraction": 0.25, "test_fraction": 0.25}
FAST = {"heads": ["last", "pma"], "label_percents": [100], "epochs": 2, "batch_size": 16, "num_resamples": 100}
TASKS = ["pooled", "georgia"]


def test_lead_set_names_are_the_configs_and_all_expands_to_the_five():
    assert tuple(LEAD_SETS) == CHALLENGE_LEAD_SETS
    assert benchmark_lead_sets(["all"]) == ["12", "6", "4", "3", "2"]
    assert benchmark_lead_sets(["6", "12", "6"]) == ["6", "12"]
    with pytest.raises(ValueError, match=r"Unknown lead set\(s\) \['5'\]; expected some of \['12', '6'"):
        BenchmarkSettings(suite="physionet2021", data=".", lead_sets=["5"])
    assert BenchmarkSettings(suite="physionet2021", data=".").lead_sets == ["12"]  # the default: as before
    parser = build_parser()
    common = ["benchmark", "--model", "m", "--suite", "physionet2021", "--data", "d", "--output-dir", "o"]
    assert parser.parse_args(common).lead_sets == ["12"]
    assert parser.parse_args([*common, "--lead-sets", "all"]).lead_sets == ["all"]


def save_model(path):
    """A tiny pre-trained encoder whose extractor standardises each window over the leads present (`per_window`), so
    a lead set changes the kept leads' values too, not only which leads are read."""
    torch.manual_seed(3)
    config = EcgPmaConfig.from_preset("tiny")
    EcgPmaForPreTraining(config).save_pretrained(path)
    EcgPmaFeatureExtractor.from_model_config(config, normalization="per_window").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lead_set_benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("lead-sets")
    model = save_model(root / "model")
    settings = BenchmarkSettings(
        suite="physionet2021", data=str(shared_data_dir("physionet2021")), tasks=TASKS, lead_sets=["all"], **SPLIT,
        **FAST,
    )  # fmt: skip
    benchmark = run_benchmark(str(model), settings, root / "out", cache_dir=root / "cache")
    return root, model, settings, benchmark


@pytest.mark.slow
def test_every_task_gets_rows_per_lead_set(lead_set_benchmark):
    root, _, _, benchmark = lead_set_benchmark
    results = {(result["task"], result["lead_set"]): result for result in benchmark["results"]}
    assert set(results) == {(task, lead_set) for task in TASKS for lead_set in CHALLENGE_LEAD_SETS}
    assert benchmark["lead_sets"]["4"] == ["I", "II", "III", "V2"]
    for (task, _), result in results.items():
        assert {(row["encoder"], row["head"]) for row in result["runs"]} == {
            (encoder, head) for encoder in ("pretrained", "random") for head in ("last", "pma")
        }
        assert result["records"] == results[task, "12"]["records"]
    # the lead sets read different inputs: their test predictions differ
    pooled = {lead_set: results["pooled", lead_set]["runs"][0]["macro_auroc"]["value"] for lead_set in LEAD_SETS}
    assert len(set(pooled.values())) > 1, pooled

    output = root / "out"
    markdown = (output / "benchmark.md").read_text()
    for lead_set, leads in (("12", None), ("6", "I, II, III, aVR, aVL, aVF"), ("2", "I, II")):
        title = f"## {lead_set} leads" + (f" ({leads})" if leads else "") + ": 100 % of the training records, seed 0"
        assert title in markdown, title
    assert "## 2 leads (I, II): Paired differences of test macro AUROC" in markdown
    # predictions: one data folder per task, a model folder per run and lead set, scored as benchmark.json says
    folder = output / "predictions" / "georgia"
    references = np.load(folder / "data" / "y_test.npy")
    for lead_set, suffix in (("12", ""), ("3", "_3leads")):
        row = next(
            r for r in results["georgia", lead_set]["runs"] if (r["encoder"], r["head"]) == ("pretrained", "pma")
        )
        predictions = np.load(folder / "models" / f"pretrained_pma_100pct_seed0{suffix}" / "y_test_pred.npy")
        scored = [c for c in range(references.shape[1]) if 0 < references[:, c].sum() < len(references)]
        expected = np.mean([roc_auc_score(references[:, c], predictions[:, c]) for c in scored])
        assert row["macro_auroc"]["value"] == pytest.approx(expected, abs=1e-9)
    assert (output / "plots" / "pooled-2leads_auroc.png").is_file() and (
        output / "plots" / "pooled_auroc.png"
    ).is_file()
    # the 12-lead embeddings where they always were, keyed without a lead set (existing caches stay valid)
    assert "lead_set" not in RecordEmbeddings.load(output / "embeddings" / "pretrained.safetensors").key
    cut = RecordEmbeddings.load(output / "embeddings" / "leads-I-II" / "pretrained.safetensors")
    assert cut.key["lead_set"] == ["I", "II"]


def write_records_with_leads(folder, leads):
    """The 40 real records rewritten with only `leads`: the same digital samples, gains, names and header comments."""
    folder.mkdir()
    for header in sorted(shared_data_dir("physionet2021").glob("*.hea")):
        source = wfdb.rdrecord(str(header.with_suffix("")), physical=False)
        columns = [source.sig_name.index(lead) for lead in leads]
        wfdb.wrsamp(
            header.stem, fs=source.fs, units=[source.units[c] for c in columns], sig_name=list(leads),
            d_signal=source.d_signal[:, columns], adc_gain=[source.adc_gain[c] for c in columns],
            baseline=[source.baseline[c] for c in columns], fmt=["16"] * len(columns), comments=source.comments,
            write_dir=str(folder),
        )  # fmt: skip
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("lead_set", ["6", "2"])
def test_a_lead_sets_embeddings_equal_the_records_written_with_only_its_leads(lead_set_benchmark, tmp_path, lead_set):
    root, model, settings, _ = lead_set_benchmark
    leads = list(LEAD_SETS[lead_set])
    folder = write_records_with_leads(tmp_path / "records", leads)
    encoder, gate, loaded, extractor = load_benchmark_model(str(model))
    # the loader holds 12-lead records only: the written records are read by the model's extractor itself, with the
    # benchmark's evaluation windows, told that the lead set is all a record needs
    reading = EcgPmaFeatureExtractor.from_dict({**extractor.to_dict(), "required_leads": lead_set})
    rows = {"signals": [], "lead_mask": [], "record_id": []}
    for header in sorted(folder.glob("*.hea")):
        features = reading(str(header.with_suffix("")), window_mode=evaluation_window_mode(extractor))
        rows["signals"] += list(features["signals"])
        rows["lead_mask"] += list(features["lead_mask"])
        rows["record_id"] += [header.stem] * len(features["signals"])
    windows = Dataset.from_dict(rows)
    assert not np.asarray(windows["lead_mask"])[:, [name not in leads for name in encoder.config.lead_names]].any()
    written = embed_records(encoder, windows, tmp_path / "written.safetensors", model_fingerprint(loaded), gate)
    benchmarked = RecordEmbeddings.load(
        root / "out" / "embeddings" / f"leads-{'-'.join(leads)}" / "pretrained.safetensors"
    )
    full = RecordEmbeddings.load(root / "out" / "embeddings" / "pretrained.safetensors")
    assert sorted(written.record_ids) == sorted(benchmarked.record_ids) == sorted(full.record_ids)
    order = torch.as_tensor([written.record_ids.index(record_id) for record_id in benchmarked.record_ids])
    for name in ("layer_representations", "input_representation", "pooled", "mixed"):
        torch.testing.assert_close(getattr(benchmarked, name), getattr(written, name)[order], atol=2e-5, rtol=1e-4)
        # and not the 12-lead embeddings: the check can fail
        assert not torch.allclose(getattr(full, name), getattr(written, name)[order], atol=1e-3)


@pytest.mark.slow
def test_a_rerun_redoes_only_a_lost_lead_sets_files_with_the_same_numbers(lead_set_benchmark):
    root, model, settings, benchmark = lead_set_benchmark
    output = root / "out"
    lost_embeddings = output / "embeddings" / "leads-I-II-III-V2" / "random.safetensors"
    lost_run = output / "runs" / "physionet2021" / "pooled-4leads" / "random" / "100pct" / "seed0" / "pma.safetensors"
    kept_run = output / "runs" / "physionet2021" / "pooled-3leads" / "random" / "100pct" / "seed0" / "pma.safetensors"
    kept_embeddings = output / "embeddings" / "leads-I-II-V2" / "pretrained.safetensors"
    lost_embeddings.unlink()
    lost_run.unlink()
    unchanged = {path: path.stat().st_mtime_ns for path in (kept_run, kept_embeddings)}
    resumed = run_benchmark(str(model), settings, output, cache_dir=root / "cache")
    assert lost_embeddings.is_file() and lost_run.is_file()
    assert {path: path.stat().st_mtime_ns for path in unchanged} == unchanged
    assert resumed["results"] == benchmark["results"]
    assert json.loads((output / "benchmark.json").read_text())["results"] == json.loads(
        json.dumps(benchmark["results"])
    )


def test_embed_takes_one_challenge_lead_set(capsys):
    parser = build_parser()
    common = ["embed", "--data", "d", "--model", "m", "--output", "o.safetensors"]
    assert parser.parse_args(common).lead_set == "12"  # the default: every lead, as before
    assert parser.parse_args([*common, "--lead-set", "2"]).lead_set == "2"
    with pytest.raises(SystemExit):
        parser.parse_args([*common, "--lead-set", "5"])
    assert "invalid choice: '5' (choose from" in capsys.readouterr().err
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    paragraph = readme.split("- **Embeddings alone**")[1].split("\n- ")[0].replace("\n  ", " ")
    assert "`--lead-set 6` (one of 12, 6, 4, 3, 2; default 12)" in paragraph
    assert "gives the benchmark's embeddings of that lead set" in paragraph and "never reused" in paragraph


@pytest.mark.slow
def test_embed_with_a_lead_set_writes_the_benchmarks_embeddings_and_never_reuses_another_lead_sets(
    lead_set_benchmark, tmp_path, capsys
):
    root, model, _, _ = lead_set_benchmark
    output = tmp_path / "embeddings.safetensors"

    def embed(lead_set):
        args = build_parser().parse_args([
            "embed", "--data", str(shared_data_dir("physionet2021")), "--data-format", "physionet2021",
            "--model", str(model), "--output", str(output), "--cache-dir", str(root / "cache"), "--lead-set", lead_set,
        ])  # fmt: skip
        assert args.handler(args) == 0
        return RecordEmbeddings.load(output)

    # 2 leads, then 12 into the same file: the 2-lead file is not taken for the 12-lead one
    for lead_set, folder in (("2", "leads-I-II"), ("12", "")):
        embedded = embed(lead_set)
        benchmarked = RecordEmbeddings.load(root / "out" / "embeddings" / folder / "pretrained.safetensors")
        assert embedded.key.get("lead_set") == benchmarked.key.get("lead_set")
        assert sorted(embedded.record_ids) == sorted(benchmarked.record_ids) and len(embedded.record_ids) == 40
        order = torch.as_tensor([embedded.record_ids.index(record_id) for record_id in benchmarked.record_ids])
        for name in ("layer_representations", "input_representation", "pooled", "mixed"):
            torch.testing.assert_close(getattr(embedded, name)[order], getattr(benchmarked, name), atol=1e-6, rtol=0)
    assert embedded.key.get("lead_set") is None
    assert "leads I, II)" in capsys.readouterr().out


def test_the_readme_describes_the_lead_sets():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Where does my model stand?")[1].split("\n## ")[0]
    bullet = section.split("- **Lead sets.**")[1].split("\n- ")[0]
    for claim in ("`--lead-sets 12 6 4 3 2` (or `all`; default `12`)", "`embeddings/leads-I-II/`",
                  "`2 leads\n  (I, II): ...`", "`runs/<suite>/<task>-2leads/`", "`..._seed0_2leads`",
                  "`finetune` / `lora` runs train, validate and test on the records cut alike"):  # fmt: skip
        assert claim in bullet, claim
    for name, leads in LEAD_SETS.items():
        if name != "12":
            assert f"{name} = {', '.join(leads)}" in bullet.replace("\n  ", " "), name


@pytest.mark.slow
def test_finetune_rows_per_lead_set_train_on_the_cut_windows(lead_set_benchmark, tmp_path):
    root, model, _, _ = lead_set_benchmark
    settings = BenchmarkSettings(
        suite="physionet2021", data=str(shared_data_dir("physionet2021")), tasks=["pooled"], lead_sets=["12", "2"],
        protocols=["finetune"], finetune_epochs=1, finetune_batch_size=8, **SPLIT, **FAST,
    )  # fmt: skip
    benchmark = run_benchmark(str(model), settings, tmp_path / "out", cache_dir=root / "cache")
    rows = {(result["lead_set"], row["encoder"]): row for result in benchmark["results"] for row in result["runs"]
            if row["head"] == "finetune"}  # fmt: skip
    assert set(rows) == {(lead_set, encoder) for lead_set in ("12", "2") for encoder in ("pretrained", "random")}
    folder = tmp_path / "out" / "predictions" / "pooled" / "models"
    full, cut = (np.load(folder / f"pretrained_finetune_100pct_seed0{suffix}" / "y_test_pred.npy")
                 for suffix in ("", "_2leads"))  # fmt: skip
    assert not np.allclose(full, cut, atol=1e-4)  # the 2-lead classifier read other inputs


def test_lead_set_windows_are_the_embeddings_cut(tmp_path):
    """The windows an end-to-end run trains on for a lead set are the rows the lead-set embeddings encode."""
    encoder, _, _, extractor = load_benchmark_model(str(save_model(tmp_path / "model")))
    data = shared_data_dir("physionet2021")
    records, _ = load_suite("physionet2021", data, tasks=["georgia"], **SPLIT, cache_dir=tmp_path / "cache")
    windows, _, _ = evaluation_windows(records, extractor)
    windows = windows.select(range(8))
    cut = lead_set_windows(windows, "3", encoder.config, extractor).with_format("torch")[:]
    sampler = LeadSetSampler(encoder.config, ["3"], extractor)
    expected = sampler.cut(windows.with_format("torch", columns=["signals", "lead_mask"])[:], torch.Generator())
    assert torch.equal(cut["signals"], expected["signals"])
    assert cut["lead_mask"].tolist() == [[lead in ("I", "II", "V2") for lead in encoder.config.lead_names]] * 8


def test_a_record_without_any_lead_of_a_lead_set_is_refused_by_name():
    lead_names = list(LEAD_SETS["12"])
    dead_limb_leads = [name not in ("I", "II", "III", "aVR", "aVL", "aVF") for name in lead_names]
    windows = Dataset.from_dict(
        {"record_id": ["A1", "A1", "B2"], "lead_mask": [[True] * 12, [True] * 12, dead_limb_leads]}
    )
    check_lead_set_coverage(windows, "12", lead_names)
    check_lead_set_coverage(windows, "4", lead_names)  # B2 still has V2
    with pytest.raises(ValueError, match=r"1 record\(s\) have none of the leads of lead set 2 \(I, II\).*\['B2'\]"):
        check_lead_set_coverage(windows, "2", lead_names)
