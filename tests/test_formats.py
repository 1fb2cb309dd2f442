"""
`ecg_pma.read_ecg` and the formats it reads: real published files (pydicom's DICOM ECG, Philips XML 1.03 and 1.04,
the HL7 example aECG — see tests/data/ecg_files/README.md), round trips through each format's reference writer,
one real record carried through every format to the same prediction as its WFDB original, bad files refused with
one error naming the file, and folder screening of mixed formats.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data_dir
from ecg_files import published_file, write_arrays, write_ge_muse, write_hl7_aecg

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification, read_ecg, write_ecg
from ecg_pma.cli import main as cli_main
from ecg_pma.configuration_ecg_pma import STANDARD_LEAD_NAMES
from ecg_pma.formats import EcgFileError, detect_format, find_ecg_files
from ecg_pma.serving.inference import predict_records
from ecg_pma.serving.screening import screen_records


pydicom = pytest.importorskip("pydicom")
pytest.importorskip("edfio")
pytest.importorskip("sierraecg")

RECORD = "E07500"  # a real 12-lead, 10 s, 500 Hz PhysioNet 2021 record (gain 1000/mV: 1 uV steps)


def wfdb_path() -> str:
    return str(shared_data_dir("physionet2021") / RECORD)


@pytest.fixture(scope="module")
def original():
    return read_ecg(wfdb_path())


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny PMA classifier (5 s windows at 100 Hz) and its extractor."""
    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset("tiny", signal_length=500, aggregation="pma", id2label={0: "NSR", 1: "AF"})
    directory = tmp_path_factory.mktemp("classifier")
    EcgPmaForSequenceClassification(config).eval().save_pretrained(directory)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(directory)
    model = EcgPmaForSequenceClassification.from_pretrained(directory).eval()
    return model, EcgPmaFeatureExtractor.from_pretrained(directory), directory


def dicom_test_file() -> Path:
    return Path(pydicom.data.get_testdata_file("waveform_ecg.dcm"))


# ------------------------------------------------------------------------------------------------- real files


def test_pydicom_wheel_ships_its_12_lead_ecg():
    path = dicom_test_file()
    assert path.is_file() and Path(pydicom.__file__).parent in path.parents  # inside the installed wheel


def test_real_dicom_ecg_is_read_in_millivolts_with_its_metadata():
    path = dicom_test_file()
    record = read_ecg(path)
    assert detect_format(path) == "dicom"
    assert record.signal.shape == (12, 10000) and record.fs == 1000.0 and record.units == "mV"
    assert record.leads == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    raw = pydicom.dcmread(path).waveform_array(0)  # uV (sensitivity 1.25 uV per bit)
    np.testing.assert_allclose(record.signal, raw.T / 1000.0)
    assert 0.5 < np.abs(record.signal).max() < 5  # a 12-lead ECG in mV, not uV
    assert record.metadata["sex"] == "female" and record.metadata["age"] == 42
    assert record.metadata["statements"][:2] == ["RITMO SINUSALE", "ECG NORMALE"]
    assert record.metadata["filters"]["low_pass_hz"] == 300 and "Mortara" in record.metadata["device"]


def test_content_not_the_name_says_the_format(tmp_path):
    renamed = tmp_path / "exported_without_suffix"
    shutil.copy(dicom_test_file(), renamed)
    assert detect_format(renamed) == "dicom"
    np.testing.assert_array_equal(read_ecg(renamed).signal, read_ecg(dicom_test_file()).signal)


@pytest.mark.parametrize(
    ("name", "version", "age", "sex"),
    [
        ("philips_1_03_129DYPRG.xml.gz", "1.03", 50, "male"),
        ("philips_1_04_3191723_ZZDEMOPTONLY.xml.gz", "1.04", None, "male"),
    ],
)
def test_real_philips_xml_both_schemas(tmp_path, name, version, age, sex):
    path = published_file(name, tmp_path)  # 1.04 is UTF-16: the root element is found in either encoding
    record = read_ecg(path)
    assert detect_format(path) == "philips" and record.metadata["schema"] == version
    # 11 s stored: the ECG, then 0.4-0.5 s where every lead is flat but for the 1 mV calibration pulse, cut off
    assert record.leads == list(STANDARD_LEAD_NAMES) and record.fs == 500 and 5200 < record.signal.shape[1] <= 5300
    assert record.metadata["calibration_pulse_mv"] == 1.0  # 200 digits of 5 uV: the scaling is right
    assert record.metadata.get("age") == age and record.metadata["sex"] == sex and record.metadata["statements"]
    leads = dict(zip(record.leads, record.signal))
    # Einthoven: III = II - I, to two of the file's 5 uV steps (XLI decoding and the limb-lead rebuild both right)
    assert np.abs(leads["III"] - (leads["II"] - leads["I"])).max() <= 0.0101
    assert 0.3 < np.percentile(np.abs(record.signal), 99.9) < 10


def test_real_hl7_aecg(tmp_path):
    path = published_file("hl7_aecg_subject1_0.xml.gz", tmp_path)
    record = read_ecg(path)
    assert detect_format(path) == "hl7-aecg" and record.fs == 500 and record.signal.shape == (12, 5000)
    assert sorted(record.leads) == sorted(STANDARD_LEAD_NAMES)
    assert record.metadata["sex"] == "male" and record.metadata["age"] == 46 and "ELI250" in record.metadata["device"]
    leads = dict(zip(record.leads, record.signal))
    assert np.abs(leads["III"] - (leads["II"] - leads["I"])).max() <= 0.0026  # 2.5 uV digits
    assert 0.3 < np.abs(record.signal).max() < 10


def test_real_files_predict_and_plot(classifier, tmp_path):
    from ecg_pma.visualization.plotting import patient_line, plot_ecg

    model, extractor, _ = classifier
    paths = [dicom_test_file(), published_file("philips_1_03_129DYPRG.xml.gz", tmp_path)]
    paths.append(published_file("hl7_aecg_subject1_0.xml.gz", tmp_path))
    predictions = predict_records(model, extractor, [str(path) for path in paths])
    assert [prediction.record for prediction in predictions] == [str(path) for path in paths]
    assert all(0 <= score <= 1 for prediction in predictions for score in prediction.probabilities.values())
    figure = plot_ecg(dicom_test_file())
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert patient_line(read_ecg(dicom_test_file()).metadata) in texts
    assert "Female 42 y" in patient_line(read_ecg(dicom_test_file()).metadata)


# ------------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("suffix", "step_mv"), [(".dcm", 0.001), (".edf", None), (".hea", 0.001)])
def test_round_trip_through_the_reference_writer(original, tmp_path, suffix, step_mv):
    written = write_ecg(original, tmp_path / f"copy{suffix}")
    back = read_ecg(written)
    assert back.leads == original.leads and back.units == "mV" and back.fs == original.fs
    assert back.signal.shape == original.signal.shape
    if step_mv is None:  # EDF: 16 bits over each lead's own range (edfio's physical min/max scaling)
        span = original.signal.max(axis=1) - original.signal.min(axis=1) + 0.004
        step_mv = (span / 65535)[:, None]
    assert (np.abs(back.signal - original.signal) <= np.asarray(step_mv) / 2 + 1e-9).all()
    assert back.metadata.get("sex", "male") == "male"


def test_pydicom_reads_what_the_dicom_writer_wrote(original, tmp_path):
    dataset = pydicom.dcmread(write_ecg(original, tmp_path / "copy.dcm"))
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG Waveform Storage
    assert [item.ChannelSourceSequence[0].CodeValue for item in dataset.WaveformSequence[0].ChannelDefinitionSequence][
        :3
    ] == [
        "5.6.3-9-1",
        "5.6.3-9-2",
        "5.6.3-9-61",
    ]


def test_schema_built_xml_round_trips(original, tmp_path):
    aecg = read_ecg(write_hl7_aecg(original, tmp_path / "aecg.xml"))
    np.testing.assert_allclose(aecg.signal, original.signal, atol=0.0005 + 1e-12)
    assert aecg.leads == original.leads
    # MUSE as GE writes it: 8 leads stored (4.88 uV per bit), III/aVR/aVL/aVF derived from I and II
    muse = read_ecg(
        write_ge_muse(original, tmp_path / "muse.xml", 4.88, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"])
    )
    assert muse.leads == ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"]
    assert (
        muse.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
        and muse.metadata["filters"]["high_pass_hz"] == 0.16
    )
    stored = dict(zip(original.leads, original.signal))
    for lead, row in zip(muse.leads[:8], muse.signal[:8]):
        assert np.abs(row - stored[lead]).max() <= 0.00244 + 1e-9
    derived = dict(zip(muse.leads, muse.signal))
    np.testing.assert_allclose(derived["aVF"], derived["II"] - derived["I"] / 2)


def test_edf_labels_need_the_users_aliases(original, tmp_path):
    import edfio

    signals = [
        edfio.EdfSignal(row, 500, label=f"ECG {lead}", physical_dimension="uV")
        for lead, row in zip(original.leads, original.signal * 1000)
    ]
    path = tmp_path / "holter.edf"
    edfio.Edf(signals).write(path)
    assert read_ecg(path).leads[:2] == ["ECG I", "ECG II"]  # kept as labelled: never guessed
    with pytest.raises(ValueError, match=r"holter.edf: unknown lead names \['ECG I'"):
        EcgPmaFeatureExtractor()(str(path))
    aliases = {f"ECG {lead}": lead for lead in original.leads}
    record = read_ecg(path, lead_aliases=aliases)
    assert record.leads == original.leads
    np.testing.assert_allclose(record.signal, original.signal, atol=1e-3)  # uV -> mV from the physical dimension
    assert EcgPmaFeatureExtractor(lead_aliases=aliases)(str(path))["signals"].shape == (1, 12, 1000)


def test_every_format_gives_the_wfdb_prediction(classifier, original, tmp_path):
    model, extractor, _ = classifier
    paths = {
        "dicom": write_ecg(original, tmp_path / "r.dcm"),
        "edf": write_ecg(original, tmp_path / "r.edf"),
        "hl7-aecg": write_hl7_aecg(original, tmp_path / "aecg.xml"),
        "ge-muse": write_ge_muse(original, tmp_path / "muse.xml"),
        **write_arrays(original, tmp_path, "r"),
    }
    reference, other = (
        prediction.probabilities
        for prediction in predict_records(model, extractor, [wfdb_path(), wfdb_path().replace(RECORD, "E07501")])
    )
    assert max(abs(other[label] - score) for label, score in reference.items()) > 1e-2  # the model tells records apart
    predictions = predict_records(model, extractor, [str(path) for path in paths.values()])
    for kind, prediction in zip(paths, predictions):
        assert detect_format(paths[kind]) == kind
        for label, score in reference.items():
            assert abs(prediction.probabilities[label] - score) <= 1e-4, (kind, label)


# ------------------------------------------------------------------------------------------------- bad files


def bad_files(original, directory: Path) -> dict[str, tuple[Path, str]]:
    """Broken files of every kind, with the phrase their error must hold."""
    directory.mkdir(parents=True, exist_ok=True)
    dicom = Path(write_ecg(original, directory / "whole.dcm")).read_bytes()
    (directory / "truncated.dcm").write_bytes(dicom[: len(dicom) // 2])
    edf = Path(write_ecg(original, directory / "whole.edf")).read_bytes()
    (directory / "truncated.edf").write_bytes(edf[: len(edf) // 2])
    (directory / "whole.dcm").unlink()
    (directory / "whole.edf").unlink()
    text = write_hl7_aecg(original, directory / "whole.xml").read_text()
    (directory / "truncated.xml").write_text(text[: len(text) // 2])
    (directory / "whole.xml").unlink()
    (directory / "wrong_magic.dcm").write_text("not a DICOM file at all")
    short = [np.round(row * 1000).astype(int) for row in original.signal]
    short[3] = short[3][:-10]
    codes = [f"MDC_ECG_LEAD_{lead.upper()}" for lead in original.leads]
    write_hl7_aecg(original, directory / "inconsistent_lengths.xml", digits=short)
    write_hl7_aecg(original, directory / "unknown_lead.xml", lead_codes=[*codes[:-1], "MDC_ECG_LEAD_FOO"])
    write_hl7_aecg(original, directory / "no_waveforms.xml", with_series=False)
    write_ge_muse(original, directory / "median_only.xml", waveform_type="Median")
    eleven_record = type(original)(original.name, original.signal[:-1], original.fs, original.leads[:-1], "mV", {})
    write_ecg(eleven_record, directory / "missing_lead.dcm")
    (directory / "other.xml").write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')
    return {
        "truncated.dcm": "truncated",
        "truncated.edf": "truncated",
        "truncated.xml": "truncated",
        "wrong_magic.dcm": "the name says DICOM but the content is not",
        "inconsistent_lengths.xml": "inconsistent lengths",
        "unknown_lead.xml": "unknown lead code 'MDC_ECG_LEAD_FOO'",
        "no_waveforms.xml": "no waveforms",
        "median_only.xml": "without a Rhythm waveform",
        "missing_lead.dcm": "missing leads ['V6']",
        "other.xml": "root element <svg> is not an ECG format",
    }


def test_each_bad_file_gets_one_error_naming_it_and_the_problem(original, tmp_path):
    extractor = EcgPmaFeatureExtractor()
    for name, phrase in bad_files(original, tmp_path).items():
        with pytest.raises(ValueError) as raised:
            extractor(str(tmp_path / name))
        message = str(raised.value)
        assert message.startswith(str(tmp_path / name)) and phrase in message, message
        if name != "missing_lead.dcm":  # readable; the extractor refuses the lead set
            assert isinstance(raised.value, EcgFileError)


def test_folder_screening_of_mixed_formats_loses_nothing(classifier, original, tmp_path):
    model, extractor, _ = classifier
    folder = tmp_path / "folder"
    bad = bad_files(original, folder / "bad")
    for suffix in (".hea", ".mat"):
        (folder / f"{RECORD}{suffix}").symlink_to(Path(wfdb_path() + suffix))
    good = {RECORD, "r.dcm", "r.edf", "aecg.xml", "muse.xml", "r.csv", "r.npy", "r_table.parquet", "dicom_no_suffix"}
    write_ecg(original, folder / "r.dcm")
    write_ecg(original, folder / "r.edf")
    write_hl7_aecg(original, folder / "aecg.xml")
    write_ge_muse(original, folder / "muse.xml", 4.88, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"])
    write_arrays(original, folder, "r")
    shutil.copy(dicom_test_file(), folder / "dicom_no_suffix")
    (folder / "notes.txt").write_text("not an ECG, and not named like one")
    assert len(find_ecg_files(folder)) == len(good) + len(bad)
    output = tmp_path / "predictions.csv"
    summary = screen_records(model, extractor, [str(folder)], output, num_workers=0, progress=False)
    assert (summary.predicted, summary.failed) == (len(good), len(bad))
    with open(output, newline="") as handle:
        assert {row["record"] for row in csv.DictReader(handle)} == good
    with open(tmp_path / "predictions.errors.csv", newline="") as handle:
        errors = {row["record"]: row["error"] for row in csv.DictReader(handle)}
    assert set(errors) == {f"bad/{name}" for name in bad}
    for name, phrase in bad.items():
        assert phrase in errors[f"bad/{name}"]


# ------------------------------------------------------------------------------------------------- arrays, commands


def test_arrays_take_rate_and_leads_from_the_caller_or_a_sidecar(original, tmp_path):
    paths = write_arrays(original, tmp_path, "r")
    for path in paths.values():
        record = read_ecg(path)
        assert record.leads == original.leads and record.fs == 500
        np.testing.assert_allclose(record.signal, original.signal, atol=5e-7)
    bare = tmp_path / "bare.npy"
    np.save(bare, original.signal * 1000)
    with pytest.raises(EcgFileError, match="bare.npy: a npy array does not say its sampling rate"):
        read_ecg(bare)
    with pytest.raises(EcgFileError, match=r"bare.npy: 3 lead names .* for 12 rows"):
        read_ecg(bare, sampling_rate=500, lead_names=["I", "II", "III"])
    record = read_ecg(bare, sampling_rate=500, lead_names=original.leads, units="uV")
    np.testing.assert_allclose(record.signal, original.signal)
    with pytest.raises(ValueError, match="describe bare arrays"):
        read_ecg(dicom_test_file(), sampling_rate=500)


def test_a_missing_library_names_the_formats_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"pip install 'ecg-pma\[formats\]'"):
        read_ecg(dicom_test_file())


def test_the_extractor_alone_names_the_package_for_other_formats(monkeypatch):
    from ecg_pma import feature_extraction_ecg_pma

    monkeypatch.setattr(feature_extraction_ecg_pma, "FILE_READER", None)
    with pytest.raises(ValueError, match="not a WFDB record; other ECG files are read by the ecg-pma package"):
        EcgPmaFeatureExtractor()(str(dicom_test_file()))


def test_convert_command_writes_wfdb_and_dicom(original, tmp_path, capsys):
    source = write_ge_muse(original, tmp_path / "muse.xml")
    assert cli_main(["convert", str(source), str(tmp_path / "out" / "rec")]) == 0
    assert "written to" in capsys.readouterr().out
    wfdb_copy = read_ecg(tmp_path / "out" / "rec")
    np.testing.assert_allclose(wfdb_copy.signal, original.signal, atol=1e-9)
    assert wfdb_copy.metadata["sex"] == "female" and wfdb_copy.metadata["age"] == 61
    assert cli_main(["convert", str(tmp_path / "out" / "rec.hea"), str(tmp_path / "rec.dcm")]) == 0
    np.testing.assert_allclose(read_ecg(tmp_path / "rec.dcm").signal, original.signal, atol=1e-9)


def test_predict_command_reads_a_dicom_file(classifier, capsys):
    _, _, directory = classifier
    assert cli_main(["predict", str(directory), str(dicom_test_file())]) == 0
    assert "waveform_ecg.dcm" in capsys.readouterr().out


def test_pipeline_reads_a_dicom_file(classifier):
    from transformers import pipeline

    _, _, directory = classifier
    classify = pipeline("ecg-classification", model=str(directory))
    scores = classify(str(dicom_test_file()), top_k=2)
    assert sorted(entry["label"] for entry in scores) == ["AF", "NSR"]


def test_bdf_is_read_from_its_version_field(original, tmp_path):
    import edfio

    signals = [
        edfio.BdfSignal(row, original.fs, label=lead, physical_dimension="mV", physical_range=(-20, 20))
        for lead, row in zip(original.leads, original.signal)
    ]
    path = tmp_path / "exported.dat_without_bdf_suffix"
    edfio.Bdf(signals).write(path)
    assert detect_format(path) == "bdf"
    record = read_ecg(path)
    assert record.leads == original.leads and record.metadata["format"] == "bdf"
    assert np.abs(record.signal - original.signal).max() <= 40 / (2**24 - 1)  # 24-bit steps over 40 mV


def test_the_web_demo_accepts_one_ecg_file_of_any_format(tmp_path):
    from ecg_pma.visualization.app import RecordUploadError, stage_upload

    staged = stage_upload([dicom_test_file()], tmp_path / "upload")
    assert Path(staged).name == "waveform_ecg.dcm" and read_ecg(staged).metadata["format"] == "dicom"
    with pytest.raises(RecordUploadError, match="No WFDB header"):  # two files and no header: which one?
        stage_upload([dicom_test_file(), write_ecg(read_ecg(dicom_test_file()), tmp_path / "b.edf")], tmp_path / "two")
