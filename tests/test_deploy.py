"""
CPU deployment: ONNX export as two graphs (masked, and all-leads for complete records) with ONNX Runtime's graph
optimizations, fused attention and int8 quantization (recorded in the file and the model card), the onnxruntime
backend of `predict_records` / `ecg-pma predict` / the pipeline choosing the graph per batch, and folder screening
(errors file, incremental writes, resume after a kill) on the real challenge records.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import wfdb
from conftest import REPO_ROOT, run_without_package, shared_data_dir
from transformers import pipeline

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.cli import main as cli_main
from ecg_pma.pipeline_ecg_pma import EcgClassificationPipeline
from ecg_pma.serving.inference import predict_records, window_forward
from ecg_pma.serving.onnx_export import export_classifier_onnx, export_onnx, read_onnx_metadata
from ecg_pma.serving.screening import completed_records, prediction_columns, screen_records
from ecg_pma.sharing.modelcard import build_model_card


LABELS = {0: "NSR", 1: "AF", 2: "STach"}


def save_classifier(directory: Path, seed: int = 0, id2label=None) -> Path:
    """A tiny PMA classifier (5 s windows, so a 10 s record gives 3 sliding windows), saved with its extractor."""
    torch.manual_seed(seed)
    config = EcgPmaConfig.from_preset(
        "tiny", signal_length=500, aggregation="pma", id2label=id2label or LABELS, decision_thresholds=[0.5, 0.4, 0.6]
    )
    model = EcgPmaForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """
    The classifier with `model.onnx` (fp32, optimized) and `model-int8.onnx` (optimized, int8) beside it, each with
    its all-leads graph (`model.all-leads.onnx`, `model-int8.all-leads.onnx`).
    """
    model_dir = save_classifier(tmp_path_factory.mktemp("deploy") / "model")
    export_onnx(model_dir, model_dir / "model.onnx", optimize=True)
    export_onnx(model_dir, model_dir / "model-int8.onnx", optimize=True, quantize="int8")
    return model_dir


def load(model_dir):
    return EcgPmaForSequenceClassification.from_pretrained(model_dir).eval(), EcgPmaFeatureExtractor.from_pretrained(
        model_dir
    )


def challenge_records(*names):
    return [str(shared_data_dir("physionet2021") / name) for name in names]


# ------------------------------------------------------------------------------------------------------------ export


def test_export_prints_no_tracer_or_shape_inference_warnings(tmp_path, capfd):
    """The exporter's warnings a user would read as a problem: the tracer's about the input checks and the q/k/v split
    (constants by design) and the C++ shape inference's about the fused attention operator (typed by its symbolic)."""
    model_dir = save_classifier(tmp_path / "model")
    capfd.readouterr()
    export_onnx(model_dir, tmp_path / "model.onnx", optimize=True)
    printed = "".join(capfd.readouterr())
    assert "TracerWarning" not in printed and "shape inference" not in printed, printed[-2000:]


def test_exported_files_record_how_they_were_made(exported):
    fp32, int8 = read_onnx_metadata(exported / "model.onnx"), read_onnx_metadata(exported / "model-int8.onnx")
    assert "ORT_ENABLE_EXTENDED" in fp32["optimization"] and fp32["quantization"] is None
    assert int8["quantization"]["method"] == "onnxruntime.quantization.quantize_dynamic"
    assert int8["quantization"]["per_channel"] and int8["quantization"]["weight_type"] == "QInt8"
    assert fp32["id2label"] == {"0": "NSR", "1": "AF", "2": "STach"}
    # the graphs are what the records say: fused kernels in both, integer products only in the int8 file
    assert fp32["operators"].get("BiasGelu") and fp32["operators"].get("LayerNormalization")
    assert fp32["operators"]["Attention"] == 4  # one fused attention kernel per encoder block
    assert "MatMulInteger" not in fp32["operators"] and "DynamicQuantizeLinear" not in fp32["operators"]
    # every linear layer of the 4 encoder blocks (output, fc1, fc2) is quantized, and attention's packed q/k/v
    # projection inside the int8 fused attention; the patch embedding (raw signal in) stays fp32
    assert int8["operators"]["MatMulInteger"] == 4 * 3 and int8["operators"]["QAttention"] == 4
    graph = onnx.load(str(exported / "model-int8.all-leads.onnx")).graph
    patch_embedding = [node.op_type for node in graph.node if node.name.startswith("/model/ecg_pma/embeddings/")]
    assert "MatMul" in patch_embedding and "MatMulInteger" not in patch_embedding
    record = json.loads((exported / "onnx_export.json").read_text())
    assert [entry["file"] for entry in record["exports"]] == [
        "model.onnx",
        "model.all-leads.onnx",
        "model-int8.onnx",
        "model-int8.all-leads.onnx",
    ]
    assert [entry["graph"] for entry in record["exports"]] == ["lead_mask", "all_leads"] * 2
    model, extractor = load(exported)
    card = str(build_model_card(model.config, extractor, onnx=record))
    assert "`model.onnx` (any lead set" in card and "`model.all-leads.onnx` (every lead present" in card
    assert "onnxruntime graph optimization level ORT_ENABLE_EXTENDED, applied offline; attention in" in card
    assert "`model-int8.onnx` (any lead set" in card and "QInt8 weights, per channel" in card


def test_the_all_leads_graph_has_no_mask(exported):
    """The graph for complete records takes `signals` alone and holds none of the mask's operators."""
    import onnxruntime

    for name in ("model", "model-int8"):
        complete = read_onnx_metadata(exported / f"{name}.all-leads.onnx")
        masked = read_onnx_metadata(exported / f"{name}.onnx")
        assert complete["graph"] == "all_leads" and "lead_mask" not in complete["inputs"]
        assert masked["graph"] == "lead_mask" and masked["inputs"]["lead_mask"] == ["batch", 12]
        assert "Where" in masked["operators"] and "Where" not in complete["operators"]
        assert "ReduceSum" in masked["operators"] and "ReduceSum" not in complete["operators"]  # the masked means
        session = onnxruntime.InferenceSession(str(exported / f"{name}.all-leads.onnx"))
        assert [graph_input.name for graph_input in session.get_inputs()] == ["signals"]


def mixed_lead_batch(config, windows: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows with 12, 6, 2 and 1 leads present (absent slots hold garbage) and their `lead_mask`."""
    generator = torch.Generator().manual_seed(seed)
    signals = torch.randn(windows, config.num_leads, config.signal_length, generator=generator)
    lead_mask = torch.ones(windows, config.num_leads, dtype=torch.bool)
    lead_mask[1, 6:] = lead_mask[2, 2:] = lead_mask[3, 1:] = lead_mask[4, :11] = False
    signals[~lead_mask] = 100.0
    return signals, lead_mask


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
def test_both_graphs_match_pytorch_on_complete_and_mixed_batches(tmp_path, optimize):
    """fp32, plain ONNX operators and ORT's fused attention alike: each graph gives PyTorch's outputs (<= 1e-4)."""
    import onnxruntime

    model, _ = load(save_classifier(tmp_path / "model"))
    export_classifier_onnx(model, tmp_path / "model.onnx", optimize=optimize)
    model.set_attn_implementation("sdpa")  # the export switched it to eager attention
    masked = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    complete = onnxruntime.InferenceSession(str(tmp_path / "model.all-leads.onnx"))
    signals, lead_mask = mixed_lead_batch(model.config)
    with torch.no_grad():
        mixed = model(signals, lead_mask=lead_mask)
        full = model(signals)
    outputs = {
        "masked graph, mixed batch": (
            masked.run(None, {"signals": signals.numpy(), "lead_mask": lead_mask.numpy()}),
            mixed,
        ),
        "masked graph, complete batch": (
            masked.run(None, {"signals": signals.numpy(), "lead_mask": np.ones_like(lead_mask.numpy())}),
            full,
        ),
        "all-leads graph, complete batch": (complete.run(None, {"signals": signals.numpy()}), full),
        "all-leads graph, one window": (complete.run(None, {"signals": signals[:1].numpy()}), model(signals[:1])),
    }
    for case, ((logits, layer_weights), expected) in outputs.items():
        np.testing.assert_allclose(logits, expected.logits.detach().numpy(), atol=1e-4, rtol=0, err_msg=case)
        np.testing.assert_allclose(
            layer_weights, expected.layer_weights.detach().numpy(), atol=1e-4, rtol=0, err_msg=case
        )
    # the windows lacking leads are not the complete windows' predictions: the mask was applied
    assert not np.allclose(outputs["masked graph, mixed batch"][0][0][1:5], full.logits[1:5].numpy(), atol=1e-3)


def test_the_backend_runs_the_all_leads_graph_for_complete_batches(exported):
    model, _ = load(exported)
    signals, lead_mask = mixed_lead_batch(model.config)
    forward = window_forward(model, "onnxruntime")  # MODEL/model.onnx and model.all-leads.onnx beside it
    assert forward.paths == {
        "lead_mask": str(exported / "model.onnx"),
        "all_leads": str(exported / "model.all-leads.onnx"),
    }
    with torch.no_grad():
        expected_full, expected_mixed = model(signals), model(signals, lead_mask=lead_mask)
    for mask in (None, torch.ones_like(lead_mask)):
        logits, _ = forward(signals, mask)
        torch.testing.assert_close(logits, expected_full.logits, atol=1e-4, rtol=0)
    assert list(forward.sessions) == ["all_leads"]  # complete batches never opened the masked graph
    logits, layer_weights = forward(signals, lead_mask)
    torch.testing.assert_close(logits, expected_mixed.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(layer_weights, expected_mixed.layer_weights, atol=1e-4, rtol=0)
    assert list(forward.sessions) == ["all_leads", "lead_mask"]
    # given the all-leads file by name, the backend still finds the masked graph beside it for a mixed batch
    by_name = window_forward(model, "onnxruntime", exported / "model-int8.all-leads.onnx")
    assert by_name.graph_for(lead_mask) == "lead_mask" and by_name.graph_for(None) == "all_leads"


def test_an_all_leads_graph_alone_refuses_records_lacking_leads(exported, tmp_path):
    (tmp_path / "model.all-leads.onnx").write_bytes((exported / "model.all-leads.onnx").read_bytes())
    model, _ = load(exported)
    forward = window_forward(model, "onnxruntime", tmp_path / "model.all-leads.onnx")
    signals, lead_mask = mixed_lead_batch(model.config)
    forward(signals, None)
    with pytest.raises(ValueError, match=r"takes records with every lead only.*model.onnx"):
        forward(signals, lead_mask)


def test_unknown_quantization_and_misnamed_or_unfusable_exports_are_refused(exported, tmp_path):
    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        export_onnx(exported, tmp_path / "model.onnx", quantize="int4")
    with pytest.raises(ValueError, match=r"name the masked graph instead \(e.g. model.onnx\)"):
        export_onnx(exported, tmp_path / "model.all-leads.onnx")
    model, _ = load(exported)
    with pytest.raises(ValueError, match="fused_attention=True needs optimize=True"):
        export_classifier_onnx(model, tmp_path / "model.onnx", fused_attention=True)
    assert not list(tmp_path.iterdir())  # nothing written


# ----------------------------------------------------------------------------------------------------------- backend


def test_onnxruntime_backend_gives_the_pytorch_predictions(exported):
    model, extractor = load(exported)
    records = challenge_records("E07500", "HR06000", "JS20002")
    expected = predict_records(model, extractor, records, batch_size=4)
    fp32 = predict_records(model, extractor, records, batch_size=4, backend="onnxruntime")  # MODEL/model.onnx
    int8 = predict_records(
        model, extractor, records, batch_size=4, backend="onnxruntime", onnx_path=exported / "model-int8.onnx"
    )
    assert [p.num_windows for p in expected] == [3, 3, 3]  # the batches of 4 windows cut through records
    for ours, tolerance in ((fp32, 1e-5), (int8, 0.02)):
        assert [(p.record, p.num_windows, list(p.probabilities)) for p in ours] == [
            (p.record, p.num_windows, list(p.probabilities)) for p in expected
        ]
        for prediction, reference in zip(ours, expected):
            assert np.allclose(
                list(prediction.probabilities.values()), list(reference.probabilities.values()), atol=tolerance
            )
            assert np.allclose(prediction.layer_weights, reference.layer_weights, atol=tolerance)
    assert [p.positive_labels for p in fp32] == [p.positive_labels for p in expected]


def test_onnx_file_of_another_model_or_none_is_refused(exported, tmp_path):
    other_dir = save_classifier(tmp_path / "other", id2label={0: "NSR", 1: "LBBB", 2: "STach"})
    other, extractor = load(other_dir)
    records = challenge_records("E07500")
    with pytest.raises(ValueError, match="exported from another model"):
        predict_records(other, extractor, records, backend="onnxruntime", onnx_path=exported / "model.onnx")
    with pytest.raises(FileNotFoundError, match="ecg-pma export-onnx"):
        predict_records(other, extractor, records, backend="onnxruntime")
    with pytest.raises(ValueError, match="dtype='bf16' is for the PyTorch backend"):
        predict_records(other, extractor, records, dtype="bf16", backend="onnxruntime")


def test_predict_cli_with_onnxruntime_prints_the_same_predictions(exported, capsys):
    records = challenge_records("E07501", "JS20003")
    assert cli_main(["predict", str(exported), *records, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    onnx = ["--backend", "onnxruntime", "--onnx", str(exported / "model.onnx")]
    assert cli_main(["predict", str(exported), *records, "--json", *onnx]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert [(p["record"], p["positive_labels"]) for p in ours] == [
        (p["record"], p["positive_labels"]) for p in expected
    ]
    for prediction, reference in zip(ours, expected):
        for label, score in reference["probabilities"].items():
            assert prediction["probabilities"][label] == pytest.approx(score, abs=1e-5)


def test_pipeline_with_onnxruntime_backend(exported):
    model, extractor = load(exported)
    record = challenge_records("E07502")[0]
    expected = pipeline("ecg-classification", model=model, feature_extractor=extractor)(record, top_k=3)
    classify = pipeline("ecg-classification", model=model, feature_extractor=extractor, backend="onnxruntime")
    ours = classify(record, top_k=3)  # model.onnx found beside the weights the model was loaded from
    assert [entry["label"] for entry in ours] == [entry["label"] for entry in expected]
    assert [entry["score"] for entry in ours] == pytest.approx([entry["score"] for entry in expected], abs=1e-5)
    int8 = classify(record, top_k=3, onnx_path=str(exported / "model-int8.onnx"))
    assert [entry["score"] for entry in int8] == pytest.approx([entry["score"] for entry in expected], abs=0.02)
    # complete records ran the all-leads graphs beside the files named
    assert sorted(Path(path).name for path in classify._onnx_sessions) == [
        "model-int8.all-leads.onnx",
        "model.all-leads.onnx",
    ]
    with pytest.raises(ValueError, match="`backend` must be 'torch' or 'onnxruntime'"):
        classify(record, backend="tensorrt")


def test_pipeline_runs_the_masked_graph_for_a_record_lacking_leads(exported):
    model, _ = load(exported)
    extractor = EcgPmaFeatureExtractor.from_model_config(model.config, allow_missing_leads=True)
    signals = wfdb.rdrecord(challenge_records("E07502")[0]).p_signal[:, :6].T  # the limb leads only, (leads, samples)
    inputs = {"sampling_rate": 500, "lead_names": ["I", "II", "III", "aVR", "aVL", "aVF"], "top_k": 3}
    expected = pipeline("ecg-classification", model=model, feature_extractor=extractor)(signals, **inputs)
    classify = pipeline("ecg-classification", model=model, feature_extractor=extractor, backend="onnxruntime")
    ours = classify(signals, **inputs)
    assert [entry["label"] for entry in ours] == [entry["label"] for entry in expected]
    assert [entry["score"] for entry in ours] == pytest.approx([entry["score"] for entry in expected], abs=1e-5)
    assert [Path(path).name for path in classify._onnx_sessions] == ["model.onnx"]
    # given the all-leads file by name, the masked graph beside it is found
    classify(signals, onnx_path=str(exported / "model-int8.all-leads.onnx"), **inputs)
    assert Path(list(classify._onnx_sessions)[-1]).name == "model-int8.onnx"


FRESH_PIPELINE = """
import json, sys
from transformers import pipeline

model_dir, record = sys.argv[1:]
scores = {}
for backend in ("torch", "onnxruntime"):
    classify = pipeline("ecg-classification", model=model_dir, trust_remote_code=True, backend=backend)
    scores[backend] = classify(record, top_k=3)
print(json.dumps(scores))
"""


@pytest.mark.slow
def test_pipeline_saved_with_the_model_runs_onnxruntime_without_the_package(exported, tmp_path):
    """The pipeline code saved beside the weights imports onnxruntime itself and finds model.onnx in the folder."""
    model, extractor = load(exported)
    saved = tmp_path / "saved"
    EcgClassificationPipeline(model=model, feature_extractor=extractor).save_pretrained(saved)
    (saved / "model.onnx").write_bytes((exported / "model.onnx").read_bytes())
    result = run_without_package(tmp_path, FRESH_PIPELINE, str(saved), challenge_records("HR06000")[0])
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert [e["label"] for e in scores["onnxruntime"]] == [e["label"] for e in scores["torch"]]
    assert [e["score"] for e in scores["onnxruntime"]] == pytest.approx(
        [e["score"] for e in scores["torch"]], abs=1e-5
    )


# --------------------------------------------------------------------------------------------------------- screening


def challenge_folder(folder: Path, copies: int = 1, broken: bool = False) -> list[str]:
    """
    Links to the real challenge records (`copies` of each, in sub-folders), plus a record whose signal file is
    garbage when `broken`. Returns the record names the predictions CSV should hold.
    """
    source = shared_data_dir("physionet2021")
    names = []
    for copy in range(copies):
        target = folder / f"copy{copy}"
        target.mkdir(parents=True)
        for header in sorted(source.glob("*.hea")):
            for path in (header, header.with_suffix(".mat")):
                (target / path.name).symlink_to(path)
            names.append(f"copy{copy}/{header.stem}")
    if broken:
        (folder / "broken.hea").write_text((source / "E07500.hea").read_text().replace("E07500", "broken"))
        (folder / "broken.mat").write_bytes(b"not a MATLAB file")
    return names


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_screening_lists_the_broken_record_and_predicts_the_rest(exported, tmp_path):
    model, extractor = load(exported)
    names = challenge_folder(tmp_path / "folder", broken=True)
    output = tmp_path / "predictions.csv"
    summary = screen_records(model, extractor, [str(tmp_path / "folder")], output, batch_size=8, num_workers=2)
    assert (summary.predicted, summary.failed, summary.skipped) == (40, 1, 0)
    rows = read_rows(output)
    assert sorted(row["record"] for row in rows) == sorted(names)
    errors = read_rows(tmp_path / "predictions.errors.csv")
    assert [row["record"] for row in errors] == ["broken"] and "broken" in errors[0]["error"]
    # the same numbers as predict_records (rounded to 6 significant digits in the CSV)
    expected = predict_records(model, extractor, [str(tmp_path / "folder" / name) for name in names[:5]])
    by_name = {row["record"]: row for row in rows}
    for name, reference in zip(names[:5], expected):
        row = by_name[name]
        assert int(row["num_windows"]) == reference.num_windows == 3
        assert row["positive_labels"] == ";".join(reference.positive_labels)
        for label, score in reference.probabilities.items():
            assert float(row[label]) == pytest.approx(score, rel=1e-5)
    # a rerun predicts nothing twice and tries the broken record again
    again = screen_records(model, extractor, [str(tmp_path / "folder")], output, num_workers=0, progress=False)
    assert (again.predicted, again.failed, again.skipped) == (0, 1, 40)
    assert len(read_rows(output)) == 40


def test_a_line_cut_short_is_predicted_again(exported, tmp_path):
    model, extractor = load(exported)
    names = challenge_folder(tmp_path / "folder")
    output = tmp_path / "predictions.csv"
    screen_records(model, extractor, [str(tmp_path / "folder")], output, num_workers=0, progress=False)
    content = output.read_bytes()
    output.write_bytes(content[: content.rfind(b"\n", 0, len(content) - 1) + 10])  # the last row half-written
    columns = prediction_columns(model.config)
    assert len(completed_records(output, columns)) == len(names) - 1
    summary = screen_records(model, extractor, [str(tmp_path / "folder")], output, num_workers=0, progress=False)
    assert summary.predicted == 1
    assert sorted(row["record"] for row in read_rows(output)) == sorted(names)
    other_dir = save_classifier(tmp_path / "other", id2label={0: "NSR", 1: "LBBB", 2: "STach"})
    other, _ = load(other_dir)
    with pytest.raises(ValueError, match="not this model's"):
        screen_records(other, extractor, [str(tmp_path / "folder")], output, num_workers=0)


def test_a_folder_without_output_is_refused(exported, tmp_path, capsys):
    challenge_folder(tmp_path / "folder")
    with pytest.raises(SystemExit) as stop:
        cli_main(["predict", str(exported), str(tmp_path / "folder")])
    assert stop.value.code == 2  # a usage error, as argparse's
    assert (
        "ecg-pma predict: error: a folder of records is screened into a CSV: pass --output" in capsys.readouterr().err
    )


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_a_killed_screening_run_resumes_and_predicts_every_record_once(exported, tmp_path):
    names = challenge_folder(tmp_path / "folder", broken=True)  # 40 readable records
    output = tmp_path / "predictions.csv"
    command = [
        sys.executable, "-m", "ecg_pma.cli", "predict", str(exported), str(tmp_path / "folder"),
        "--output", str(output), "--batch-size", "2", "--num-workers", "1", "--backend", "onnxruntime",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while line_count(output) < 1 + 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed halfway"
    first_run = len(read_rows(output))
    assert 10 <= first_run < len(names)
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert rerun.returncode == 1, rerun.stderr[-3000:]  # 1: the broken record is listed as failed
    assert f"{len(names) - first_run} predicted now, {first_run} already there, 1 failed" in rerun.stdout
    records = [row["record"] for row in read_rows(output)]
    assert sorted(records) == sorted(names)  # every readable record exactly once
    assert [row["record"] for row in read_rows(tmp_path / "predictions.errors.csv")] == ["broken"]
