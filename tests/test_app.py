"""
The web demo: uploads are staged and checked, bad ones (a wrong file type included) become messages; what the page
says about the model (research-use notice, training data, model card, no server path); `predict --plot` and the page
for the README's quick-start model (no `label2id`); the Space folder; and the app end to end in a real headless
Chromium on 127.0.0.1.
"""

import json
import os
import re
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
from ecg_pma.sharing.modelcard import write_model_card
from ecg_pma.visualization.app import (
    ACCEPTED_UPLOAD_SUFFIXES,
    EXAMPLES_ATTRIBUTION,
    RESEARCH_NOTICE,
    EcgPmaDemo,
    RecordUploadError,
    build_app,
    examples_attribution,
    stage_upload,
)


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
def quickstart_dir(tmp_path_factory):
    """The README's quick-start model: `id2label` only (no `label2id`, no thresholds), no model card."""
    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset("tiny", aggregation="pma", id2label={0: "NSR", 1: "AF", 2: "STach"})
    path = tmp_path_factory.mktemp("my-model")
    EcgPmaForSequenceClassification(config).save_pretrained(path)
    EcgPmaFeatureExtractor.from_model_config(config).save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["label2id"] is None
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
    notes = tmp_path / "notes.txt"
    notes.write_text("HR06009 looked odd")
    with pytest.raises(RecordUploadError, match=r"Cannot read notes.txt: not a supported file type") as refused:
        stage_upload([*record_files("E07500"), notes], tmp_path / "f")
    assert all(suffix in str(refused.value) for suffix in ACCEPTED_UPLOAD_SUFFIXES)
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").iterdir())  # refused before anything is copied


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
    assert str(tmp_path) not in result.error_html  # the message names files, never the server's folders


def test_the_page_says_what_the_model_is_and_is_not(classifier_dir, tmp_path):
    folder = tmp_path / "card-model"
    shutil.copytree(classifier_dir, folder)
    model = EcgPmaForSequenceClassification.from_pretrained(folder)
    data = {"name": "physionet2021 records in /srv/ecg/data/challenge", "description": "200 simulated 12-lead ECGs"}
    write_model_card(folder, model.config, EcgPmaFeatureExtractor.from_pretrained(folder), dataset=data)
    page = EcgPmaDemo(folder, examples_dir=shared_data_dir("physionet2021"))
    header = page.header_markdown()
    assert RESEARCH_NOTICE in header and "not a medical device" in header
    assert "Trained on: physionet2021 records in challenge: 200 simulated 12-lead ECGs." in header
    assert 'href="#ecg-pma-model-card">model card</a>' in header and "/srv" not in header
    assert str(tmp_path) not in header and "Model: `card-model`" in header
    assert "## Training data and protocol" in page.model_card
    # a model without a card (the quick start's) says so, and gets a card built from its config
    bare = EcgPmaDemo(classifier_dir)
    assert "Training data: not stated; this model has no model card" in bare.header_markdown()
    assert bare.card_generated and "## Preprocessing" in bare.model_card
    assert (
        "PhysioNet/Computing in Cardiology Challenge 2021" in EXAMPLES_ATTRIBUTION
        and "CC BY 4.0" in EXAMPLES_ATTRIBUTION
    )


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_the_space_requires_the_readers_of_what_its_upload_box_takes(monkeypatch):
    """
    The Space's requirements.txt: the package's dependencies, Gradio and the `formats` extra (a DICOM or EDF upload
    needs them), from pyproject.toml, and the same from the installed metadata where Python 3.10 has no `tomllib`.
    """
    from ecg_pma.sharing.space import runtime_requirements

    from_pyproject = requirement_names(runtime_requirements())
    assert {"torch", "transformers", "gradio", "pydicom", "edfio", "sierraecg"} <= from_pyproject
    assert not from_pyproject & {"pytest", "selenium", "ruff"}  # the dev extra stays out
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` fails, as on Python 3.10
    assert requirement_names(runtime_requirements()) == from_pyproject


def test_example_records_carry_their_attribution(tmp_path):
    assert examples_attribution(shared_data_dir("physionet2021")) == EXAMPLES_ATTRIBUTION
    (tmp_path / "ATTRIBUTION.md").write_text("Records from the Example Hospital study, CC BY 4.0.\n")
    assert examples_attribution(tmp_path) == "Records from the Example Hospital study, CC BY 4.0."


def test_the_page_uses_only_font_files_with_every_glyph_it_shows(classifier_dir):
    import gradio
    from fontTools.ttLib import TTFont
    from gradio.themes.utils.fonts import font_dir_name

    app = build_app(classifier_dir, examples_dir=shared_data_dir("physionet2021"))
    text = app.ecg_pma.header_markdown() + EXAMPLES_ATTRIBUTION + "".join(app.ecg_pma.label_names) + "Analyse"
    (font,) = [font for font in app.ecg_pma_theme._font if hasattr(font, "weights")]
    folder = Path(gradio.__file__).parent / "templates" / "frontend" / "static" / "fonts" / font_dir_name(font.name)
    css = font.stylesheet()["css"]
    for weight in font.weights:
        file_weight = {400: "Regular", 700: "Bold"}[weight]
        assert f"{font_dir_name(font.name)}-{file_weight}.woff2" in css
        glyphs = TTFont(folder / f"{font_dir_name(font.name)}-{file_weight}.woff2").getBestCmap()
        missing = sorted({character for character in text if character.isprintable() and ord(character) not in glyphs})
        assert not missing, f"{font.name} {weight} lacks {missing}: the browser would mix in another font"
    assert 600 not in font.weights  # Gradio's semibold file is a 55-glyph subset


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
def test_predict_plots_the_quick_start_model(quickstart_dir, tmp_path, capsys):
    record = shared_data_dir("physionet2021") / "E07500"
    assert main(["predict", str(quickstart_dir), str(record), "--json", "--plot", str(tmp_path / "ecg.png")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert sorted(printed[0]["probabilities"]) == ["AF", "NSR", "STach"]
    from PIL import Image

    with Image.open(tmp_path / "ecg.png") as image:
        # paper 260 x 160 mm + 16 mm patient block + 12 mm title, + 70 mm side panel, at 150 dpi
        assert image.size[0] == pytest.approx(330 / 25.4 * 150, abs=1)
        assert image.size[1] == pytest.approx(188 / 25.4 * 150, abs=1)
    assert main(["predict", str(quickstart_dir), str(record), "--plot", str(tmp_path / "ecg.jpg")]) == 2
    assert "the suffix must be one of .png, .svg, .pdf" in capsys.readouterr().err


@pytest.mark.slow
def test_the_page_explains_the_most_likely_positive_label_or_says_none_is_positive(quickstart_dir, tmp_path):
    page = EcgPmaDemo(quickstart_dir, examples_dir=shared_data_dir("physionet2021"))
    model, extractor = page.model, page.extractor
    record = str(shared_data_dir("physionet2021") / "HR06009")
    probabilities = predict_records(model, extractor, [record])[0].probabilities
    ranked = sorted(probabilities, key=probabilities.get, reverse=True)
    # the most probable label below its threshold, the second one above it: the second is explained
    thresholds = {ranked[0]: 0.999, ranked[1]: 0.001, ranked[2]: 0.999}
    model.config.decision_thresholds = [thresholds[model.config.id2label[i]] for i in range(3)]
    result = page.analyse(example="HR06009")
    assert f'data-label="{ranked[1]}"' in result.labels_html and f"{ranked[1]} (explained)" in result.labels_html
    assert result.error_html == "" and Path(result.plot_path).read_bytes().startswith(b"\x89PNG")
    model.config.decision_thresholds = [0.999] * 3
    result = page.analyse(example="HR06009")
    assert "(explained)" not in result.labels_html and "No label is positive at its threshold" in result.labels_html
    assert result.plot_path is not None and result.error_html == ""
    result = page.analyse(example="HR06009", label=ranked[2])  # a label chosen by name, without label2id
    assert f"{ranked[2]} (explained)" in result.labels_html


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
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1300",
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
def test_the_app_in_a_real_browser(quickstart_dir, tmp_path, capsys):
    """The README's quick-start model served by `ecg-pma app`, in Chromium at 1400 px: what the page says about the
    model, its prediction (equal to `ecg-pma predict`), the plot at full width, and the messages for bad uploads."""
    browser, driver_path = chromium_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = shared_data_dir("physionet2021")
    record = data / "JS20003"
    # `ecg-pma predict` run in this process (the console script's `main`): a second process would only import torch
    assert main(["predict", str(quickstart_dir), str(record), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)[0]

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO_ROOT)}
    app = subprocess.Popen(
        [sys.executable, "-m", "ecg_pma.cli", "app", str(quickstart_dir), "--port", str(port), "--examples", str(data)],
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

        def choose(*files):
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

        def upload(*files):
            choose(*files)
            chrome.find_element(By.ID, "ecg-pma-run").click()
            WebDriverWait(chrome, 600).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#ecg-pma-labels tr[data-label], #ecg-pma-error"),
                "neither labels nor an error were shown",
            )

        upload(Path(f"{record}.hea"), Path(f"{record}.mat"))
        # what the page says about the model, before any result
        notice = chrome.find_element(By.ID, "ecg-pma-notice").text
        assert "research model, not a medical device" in notice
        training = chrome.find_element(By.ID, "ecg-pma-training-data").text
        assert training.startswith("Training data: not stated")  # the quick-start model has no card
        link = chrome.find_element(By.ID, "ecg-pma-card-link")
        assert link.get_attribute("href").endswith("#ecg-pma-model-card") and "model card" in link.text
        assert chrome.find_elements(By.ID, "ecg-pma-model-card")
        attribution = chrome.find_element(By.ID, "ecg-pma-attribution").text
        assert "PhysioNet/Computing in Cardiology Challenge 2021" in attribution and "CC BY 4.0" in attribution
        body = chrome.find_element(By.TAG_NAME, "body").text
        assert str(quickstart_dir) not in body and str(quickstart_dir.parent) not in body

        # the prediction, as `ecg-pma predict` prints it
        rows = chrome.find_elements(By.CSS_SELECTOR, "#ecg-pma-labels tr[data-label]")
        shown = {row.get_attribute("data-label"): row for row in rows}
        assert set(shown) == set(expected["probabilities"]) == {"NSR", "AF", "STach"}
        for name, probability in expected["probabilities"].items():
            assert shown[name].find_element(By.CSS_SELECTOR, "td.probability").text == f"{probability:.3f}"
        positives = {name for name, row in shown.items() if row.get_attribute("class") == "positive"}
        assert positives == set(expected["positive_labels"])
        assert chrome.find_elements(By.ID, "ecg-pma-error") == []

        # the plot at the page's full width
        plot = WebDriverWait(chrome, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#ecg-pma-plot img[src*='ecg.png']"), "no plot"
        )[0]
        WebDriverWait(chrome, 60).until(lambda d: plot.get_attribute("naturalWidth") not in (None, "0"), "not loaded")
        header_width = chrome.find_element(By.ID, "ecg-pma-header").size["width"]
        assert plot.size["width"] >= 0.95 * header_width > 1000, (plot.size, header_width)
        assert plot.size["height"] == pytest.approx(plot.size["width"] * 184 / 330, rel=0.03)  # not squeezed
        assert "resampled to 100 Hz" in chrome.find_element(By.ID, "ecg-pma-preprocessing").text
        chrome.execute_script("document.body.style.zoom = '1'; window.scrollTo(0, 0);")
        assert chrome.save_screenshot(str(tmp_path / "app.png"))
        assert (tmp_path / "app.png").read_bytes().startswith(b"\x89PNG")

        # a file type the app cannot read: said as soon as it is uploaded, naming what is accepted
        notes = tmp_path / "notes.txt"
        notes.write_text("not an ECG")
        choose(notes)
        message = (
            WebDriverWait(chrome, 60)
            .until(lambda d: d.find_elements(By.ID, "ecg-pma-error"), "no message for a .txt upload")[0]
            .text
        )
        assert "Cannot read notes.txt: not a supported file type" in message
        assert all(suffix in message for suffix in (".hea", ".dat", ".mat", ".zip"))

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
        # every font file the page loaded is one of the full ones
        fonts = [u for u in urls if u.endswith(".woff2")]
        assert fonts and not any("SemiBold" in u for u in fonts), fonts
    finally:
        if chrome is not None:
            chrome.quit()
        app.terminate()
        app.wait(timeout=30)
