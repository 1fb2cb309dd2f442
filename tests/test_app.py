"""
The web demo: uploads are staged and checked, bad ones become messages; `predict --plot`; the Space folder; and the
app end to end in a real headless Chromium on 127.0.0.1.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import torch
import wfdb
from conftest import REPO_ROOT, run_without_package, shared_data_dir

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.cli import main
from ecg_pma.serving.inference import predict_records
from ecg_pma.visualization.app import EcgPmaDemo, RecordUploadError, stage_upload


# Labels found in the `# Dx:` lines of the challenge records.
LABELS = ["NSR", "SB", "STach", "AF", "RBBB", "TAb"]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A small saved classifier (tiny encoder, PMA, the records' labels, random weights)."""
    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(
        "tiny", num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
        problem_type="multi_label_classification",
    )  # fmt: skip
    path = tmp_path_factory.mktemp("classifier")
    EcgPmaForSequenceClassification(config).save_pretrained(path)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def demo(classifier_dir):
    return EcgPmaDemo(classifier_dir, examples_dir=shared_data_dir("physionet2021"))


def record_files(name):
    folder = shared_data_dir("physionet2021")
    return [folder / f"{name}.hea", folder / f"{name}.mat"]


def write_record_with_unknown_lead(folder: Path) -> Path:
    """A real record rewritten with its lead V6 renamed `X9`."""
    record = wfdb.rdrecord(str(shared_data_dir("physionet2021") / "E07500"))
    names = [("X9" if name == "V6" else name) for name in record.sig_name]
    wfdb.wrsamp(
        "unknown_lead", fs=record.fs, units=["mV"] * 12, sig_name=names, p_signal=record.p_signal,
        fmt=["16"] * 12, write_dir=str(folder),
    )  # fmt: skip
    return folder / "unknown_lead"


# -------------------------------------------------------------------------------------------------------- uploads


def test_upload_of_a_header_with_its_signal_file_and_as_a_zip(tmp_path):
    record = stage_upload(record_files("E07500"), tmp_path / "plain")
    assert Path(record) == tmp_path / "plain" / "E07500"
    archive = tmp_path / "record.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in record_files("JS20003"):
            bundle.write(file, f"nested/folder/{file.name}")
        bundle.writestr("../../escape.txt", "must not leave the upload folder")
    record = stage_upload([archive], tmp_path / "zipped")
    assert Path(record) == tmp_path / "zipped" / "JS20003"
    assert (tmp_path / "zipped" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_bad_uploads_are_clear_errors(tmp_path):
    header, _ = record_files("E07500")
    with pytest.raises(RecordUploadError, match=r"refers to the signal file\(s\) \['E07500.mat'\], which were not"):
        stage_upload([header], tmp_path / "a")
    with pytest.raises(RecordUploadError, match="No WFDB header"):
        stage_upload([record_files("E07500")[1]], tmp_path / "b")
    with pytest.raises(RecordUploadError, match="one record at a time"):
        stage_upload([*record_files("E07500"), *record_files("E07501")], tmp_path / "c")
    broken = tmp_path / "broken.hea"
    broken.write_text("this is not a header\n")
    with pytest.raises(RecordUploadError, match="broken.hea is not a readable WFDB header"):
        stage_upload([broken], tmp_path / "d")
    not_zip = tmp_path / "record.zip"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(RecordUploadError, match="record.zip is not a readable zip archive"):
        stage_upload([not_zip], tmp_path / "e")


def test_the_page_shows_a_message_not_a_traceback_for_bad_records(demo, tmp_path):
    result = demo.analyse(files=[record_files("E07500")[0]])
    assert result.plot_path is None and result.labels_html == ""
    assert "which were not uploaded" in result.error_html and "Traceback" not in result.error_html
    unknown = write_record_with_unknown_lead(tmp_path)
    result = demo.analyse(files=[f"{unknown}.hea", f"{unknown}.dat"])
    assert "unknown lead names [&#x27;X9&#x27;]" in result.error_html
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    shutil.copy(record_files("E07500")[0], truncated)
    (truncated / "E07500.mat").write_bytes(record_files("E07500")[1].read_bytes()[:1000])
    result = demo.analyse(files=sorted(truncated.iterdir()))
    assert "could not be read" in result.error_html
    assert "or choose an example first" in demo.analyse().error_html


@pytest.mark.slow
def test_the_page_shows_what_predict_records_computes(demo, classifier_dir):
    result = demo.analyse(example="HR06009", label="AF")
    model = EcgPmaForSequenceClassification.from_pretrained(classifier_dir)
    extractor = EcgPmaFeatureExtractor.from_pretrained(classifier_dir)
    expected = predict_records(model, extractor, [str(shared_data_dir("physionet2021") / "HR06009")])[0]
    for name, probability in expected.probabilities.items():
        positive = "positive" if name in expected.positive_labels else "negative"
        assert f'<tr class="{positive}" data-label="{name}"' in result.labels_html
        assert f"{probability:.3f}</td>" in result.labels_html
    assert "AF (explained)" in result.labels_html
    assert (
        "resampled to 100 Hz" in result.preprocessing_markdown
        and "1 sliding window(s)" in result.preprocessing_markdown
    )
    assert Path(result.plot_path).read_bytes().startswith(b"\x89PNG") and result.error_html == ""


# -------------------------------------------------------------------------------------------------- predict --plot


@pytest.mark.slow
def test_predict_writes_the_plot_with_the_explanation(classifier_dir, tmp_path, capsys):
    record = shared_data_dir("physionet2021") / "E07500"
    assert main(["predict", str(classifier_dir), str(record), "--json", "--plot", str(tmp_path / "ecg.png")]) == 0
    printed = json.loads(capsys.readouterr().out)
    top = max(printed[0]["probabilities"], key=printed[0]["probabilities"].get)
    from PIL import Image

    with Image.open(tmp_path / "ecg.png") as image:
        # paper 260 x 120 mm + 14 mm title, + 70 mm layer-weight panel, at 100 dpi
        assert image.size[0] == pytest.approx(330 / 25.4 * 100, abs=1)
        assert image.size[1] == pytest.approx(134 / 25.4 * 100, abs=1)
    assert main(["predict", str(classifier_dir), str(record), "--plot", str(tmp_path / "ecg.jpg")]) == 2
    assert "the suffix must be one of .png, .svg, .pdf" in capsys.readouterr().err
    assert top in LABELS


# ---------------------------------------------------------------------------------------------------- Space folder


@pytest.mark.slow
def test_the_space_folder_runs_its_app_without_the_installed_package(classifier_dir, tmp_path):
    from huggingface_hub.repocard import metadata_load

    space = tmp_path / "space"
    record = shared_data_dir("physionet2021") / "E07500"
    code = main([
        "push", str(classifier_dir), "org/ecg-pma-demo", "--space-dir", str(space), "--space-example", str(record),
        "--space-bundle-model", "--space-only",
    ])  # fmt: skip
    assert code == 0
    front_matter = metadata_load(space / "README.md")
    assert front_matter["sdk"] == "gradio" and front_matter["app_file"] == "app.py"
    requirements = (space / "requirements.txt").read_text().split()
    assert any(line.startswith("gradio") for line in requirements) and any(r.startswith("torch") for r in requirements)
    assert sorted(p.name for p in (space / "examples").iterdir()) == ["E07500.hea", "E07500.mat"]
    script = f"""
import json, os, sys
sys.modules.pop("ecg_pma", None)
os.chdir({str(space)!r})
sys.path.insert(0, {str(space)!r})
import app, ecg_pma
assert ecg_pma.__file__.startswith({str(space)!r}), ecg_pma.__file__
result = app.demo.ecg_pma.analyse(example="E07500")
assert result.error_html == "", result.error_html
print(json.dumps(result.labels_html))
"""
    result = run_without_package(tmp_path, script, env={"GRADIO_ANALYTICS_ENABLED": "False"})
    labels_html = json.loads(result.stdout.strip().splitlines()[-1])
    model = EcgPmaForSequenceClassification.from_pretrained(classifier_dir)
    extractor = EcgPmaFeatureExtractor.from_pretrained(classifier_dir)
    expected = predict_records(model, extractor, [str(record)])[0]
    for name, probability in expected.probabilities.items():
        assert f'data-label="{name}"' in labels_html and f"{probability:.3f}</td>" in labels_html


@pytest.mark.slow
def test_the_space_app_loads_the_model_by_repo_id(classifier_dir, tmp_path):
    from hub_server import LocalHub

    from ecg_pma.sharing.hub import push_to_hub
    from ecg_pma.sharing.space import write_space

    repo_id, token = "cardio-lab/ecg-pma-demo", "hf_test_token"
    space = write_space(tmp_path / "space", repo_id)
    assert 'os.environ.get("ECG_PMA_MODEL", "cardio-lab/ecg-pma-demo")' in (space / "app.py").read_text()
    script = f"""
import json, sys
sys.modules.pop("ecg_pma", None)
sys.path.insert(0, {str(space)!r})
import app
print(json.dumps(app.demo.ecg_pma.label_names))
"""
    with LocalHub(token) as hub:
        push_to_hub(classifier_dir, repo_id, token=token, endpoint=hub.endpoint)
        env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": token, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        result = run_without_package(tmp_path, script, env={**env, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert json.loads(result.stdout.strip().splitlines()[-1]) == LABELS


# --------------------------------------------------------------------------------------------------------- browser

CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1600,1400",
)  # fmt: skip


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromium-driver (installed by .ci/run); missing ones skip locally, fail under CI."""
    browser, driver = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
    if not (os.path.exists(browser) and driver):
        message = "Chromium and chromedriver not found: `apt-get install chromium chromium-driver` (.ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited: {process.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the app did not answer on {url} within {timeout} s")


@pytest.mark.slow
def test_the_app_in_a_real_browser(classifier_dir, tmp_path):
    browser, driver_path = chromium_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = shared_data_dir("physionet2021")
    record = data / "JS20003"
    predicted = subprocess.run(
        [sys.executable, "-m", "ecg_pma.cli", "predict", str(classifier_dir), str(record), "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    expected = json.loads(predicted.stdout)[0]

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO_ROOT)}
    app = subprocess.Popen(
        [sys.executable, "-m", "ecg_pma.cli", "app", str(classifier_dir), "--port", str(port), "--examples", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    chrome = None
    try:
        wait_for_server(url, app)
        chrome = webdriver.Chrome(options=options, service=Service(driver_path))

        def upload(*files):
            chrome.get(url)
            WebDriverWait(chrome, 120).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#ecg-pma-upload input[type=file]"), "no upload field"
            )
            chrome.find_element(By.CSS_SELECTOR, "#ecg-pma-upload input[type=file]").send_keys(
                "\n".join(str(f) for f in files)
            )
            WebDriverWait(chrome, 120).until(
                # the page shows a name as its stem and suffix on two lines
                lambda d: all(f.name in "".join(d.find_element(By.ID, "ecg-pma-upload").text.split()) for f in files),
                "the uploaded files are not listed",
            )
            chrome.find_element(By.ID, "ecg-pma-run").click()
            WebDriverWait(chrome, 600).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#ecg-pma-labels tr[data-label], #ecg-pma-error"),
                "neither labels nor an error were shown",
            )

        upload(Path(f"{record}.hea"), Path(f"{record}.mat"))
        rows = chrome.find_elements(By.CSS_SELECTOR, "#ecg-pma-labels tr[data-label]")
        shown = {row.get_attribute("data-label"): row for row in rows}
        assert set(shown) == set(expected["probabilities"])
        for name, probability in expected["probabilities"].items():
            assert shown[name].find_element(By.CSS_SELECTOR, "td.probability").text == f"{probability:.3f}"
        positives = {name for name, row in shown.items() if row.get_attribute("class") == "positive"}
        assert positives == set(expected["positive_labels"])
        WebDriverWait(chrome, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "img[src*='ecg.png']"), "no plot")
        assert "resampled to 100 Hz" in chrome.find_element(By.ID, "ecg-pma-preprocessing").text
        assert chrome.save_screenshot(str(tmp_path / "app.png"))
        assert (tmp_path / "app.png").read_bytes().startswith(b"\x89PNG")

        upload(Path(f"{record}.hea"))  # a header without its signal file
        error = chrome.find_element(By.ID, "ecg-pma-error").text
        assert "JS20003.hea refers to the signal file(s) ['JS20003.mat'], which were not uploaded" in error
        assert "Traceback" not in chrome.find_element(By.TAG_NAME, "body").text
        chrome.save_screenshot(str(tmp_path / "app-error.png"))

        # No request left the machine: every http(s) request of the page went to the app.
        requests = [json.loads(entry["message"])["message"] for entry in chrome.get_log("performance")]
        urls = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
        outside = [u for u in urls if u.startswith("http") and not u.startswith(f"http://127.0.0.1:{port}/")]
        assert not outside, outside
    finally:
        if chrome is not None:
            chrome.quit()
        app.terminate()
        app.wait(timeout=30)
