"""
The README's two pictures, from a real record: the 12-lead plot with its explanation (`docs/ecg_plot.png`) and the web
demo in headless Chromium at 1400 px width, the whole page (`docs/app_screenshot.png`, reduced to 256 colours to stay
small).

    python examples/make_screenshots.py [--model DIR] [--record PATH] [--output-dir docs]

Without `--model`, a tiny encoder is pre-trained for a few steps and probed with a PMA head for two epochs on the 40
PhysioNet 2021 records in ../shared/data (a minute or two on a CPU): the pictures show the plot and the page, not a
diagnosis. Needs Debian's `chromium` and `chromium-driver` for the app screenshot.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ecg_pma.cli import main as ecg_pma


REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO.parent / "shared" / "data" / "physionet2021"
PAGE_WIDTH = 1400


def build_model(work_dir: Path) -> Path:
    data = ["--data", str(RECORDS), "--data-format", "physionet2021", "--cache-dir", str(work_dir / "cache")]
    steps = [
        ["pretrain", *data, "--preset", "tiny", "--output-dir", str(work_dir / "pretrained"),
         "--per-device-train-batch-size", "8",
         "--max-steps", "30", "--warmup-steps", "3", "--save-steps", "0"],
        ["finetune", *data, "--model", str(work_dir / "pretrained"), "--output-dir", str(work_dir / "probed"),
         "--mode", "probe", "--aggregation", "pma", "--num-train-epochs", "2",
         "--per-device-train-batch-size", "8"],
    ]  # fmt: skip
    for step in steps:
        if ecg_pma(step) != 0:
            raise SystemExit(f"ecg-pma {step[0]} failed")
    return work_dir / "probed"


def plot_picture(model_dir: Path, record: Path, output: Path) -> None:
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ecg_pma.serving.inference import predict_records
    from ecg_pma.visualization.explain import plot_prediction
    from ecg_pma.visualization.plotting import save_figure

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    prediction = predict_records(model, extractor, [str(record)])[0]
    figure, _ = plot_prediction(model, extractor, str(record), prediction)
    save_figure(figure, output)


def app_picture(model_dir: Path, record: Path, output: Path) -> None:
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    command = [
        sys.executable,
        "-m",
        "ecg_pma.cli",
        "app",
        str(model_dir),
        "--port",
        str(port),
        "--examples",
        str(RECORDS),
    ]
    app = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 f"--window-size={PAGE_WIDTH},1000", f"--user-data-dir={tempfile.mkdtemp()}"):  # fmt: skip
        options.add_argument(flag)
    chrome = None
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                time.sleep(1)
        chrome = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        chrome.get(url)
        wait = WebDriverWait(chrome, 600)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#ecg-pma-upload input[type=file]"))
        upload.send_keys(f"{record}.hea\n{record}.mat")
        wait.until(lambda d: f"{record.name}.mat" in "".join(d.find_element(By.ID, "ecg-pma-upload").text.split()))
        chrome.find_element(By.ID, "ecg-pma-run").click()
        plot = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ecg-pma-plot img[src*='ecg.png']"))[0]
        wait.until(lambda d: plot.get_attribute("naturalWidth") not in (None, "0"))
        # the whole page in one picture: as tall as its content, at the width the README describes
        height = chrome.execute_script("return document.documentElement.scrollHeight")
        chrome.set_window_size(PAGE_WIDTH, height + 140)  # the window's frame takes part of its height
        time.sleep(2)  # let the page lay out and the image finish painting
        chrome.save_screenshot(str(output))
        with Image.open(output) as image:
            image.convert("RGB").quantize(colors=256).save(output, optimize=True)
    finally:
        if chrome is not None:
            chrome.quit()
        app.terminate()
        app.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--record", type=Path, default=RECORDS / "HR06009")
    parser.add_argument("--output-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "screenshots")
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model_dir = args.model or build_model(args.work_dir)
    plot_picture(model_dir, args.record, args.output_dir / "ecg_plot.png")
    app_picture(model_dir, args.record, args.output_dir / "app_screenshot.png")
    print(json.dumps({"model": str(model_dir), "record": str(args.record), "output_dir": str(args.output_dir)}))


if __name__ == "__main__":
    main()
