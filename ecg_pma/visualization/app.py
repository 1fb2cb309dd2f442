"""
The web demo: a Gradio app that reads an uploaded WFDB record (a `.hea` with its `.dat`/`.mat`, or a zip of them) or a
bundled example, and shows the 12-lead plot with the explanation of a chosen label, the labels with probabilities and
thresholds (positives highlighted), the PMA layer weights and the preprocessing the model applied. `ecg-pma app`
serves it on 127.0.0.1; a Space runs the same app from the `app.py` that `ecg-pma push --space-dir` writes.

Offline by design: Gradio's analytics are off, no share link is made, fonts are served by the app itself.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


# Before gradio is imported anywhere: no telemetry, no version check against the internet.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

logger = logging.getLogger(__name__)

TOP_LABEL = "(most likely label)"
SIGNAL_SUFFIXES = (".dat", ".mat")
LABELS_ID = "ecg-pma-labels"
ERROR_ID = "ecg-pma-error"


class RecordUploadError(ValueError):
    """An upload that is not one readable WFDB record; the message is shown in the page."""


@dataclass
class AnalysisResult:
    """What the page shows for one record: the plot's PNG path and three HTML/Markdown blocks (or an error)."""

    plot_path: str | None
    labels_html: str
    preprocessing_markdown: str
    error_html: str


def load_classifier(model: str | os.PathLike, trust_remote_code: bool = False):
    """A classifier and its feature extractor from a saved folder or a Hub repo id."""
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from ..serving.loading import load_trained_classifier

    classifier = load_trained_classifier(
        str(model), AutoModelForSequenceClassification, trust_remote_code=trust_remote_code
    )
    extractor = AutoFeatureExtractor.from_pretrained(str(model), trust_remote_code=trust_remote_code)
    return classifier.eval(), extractor


def extract_zip(archive: Path, destination: Path) -> None:
    """Unpacks the files of a zip flat into `destination` (folders inside are ignored; no path leaves it)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                name = Path(member.filename).name
                if member.is_dir() or not name or name.startswith("."):
                    continue
                with bundle.open(member) as source, open(destination / name, "wb") as target:
                    shutil.copyfileobj(source, target)
    except zipfile.BadZipFile as error:
        raise RecordUploadError(f"{archive.name} is not a readable zip archive ({error}).") from error


def stage_upload(files: list[str | os.PathLike], destination: str | os.PathLike) -> str:
    """
    Copies the uploaded files (zips unpacked) into `destination` under their own names and returns the path of the
    one WFDB record among them, after checking that its header parses and every signal file it names is present.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for file in files:
        file = Path(file)
        if file.suffix.lower() == ".zip":
            extract_zip(file, destination)
        else:
            shutil.copy(file, destination / file.name)
    headers = sorted(destination.glob("*.hea"))
    names = sorted(path.name for path in destination.iterdir())
    from ..formats import ECG_FILE_SUFFIXES

    files = [path for path in destination.iterdir() if path.suffix.lower() in ECG_FILE_SUFFIXES]
    if not headers and len(files) == 1:  # one ECG file of another format (DICOM, EDF, XML, arrays): read_ecg reads it
        return str(files[0])
    if not headers:
        raise RecordUploadError(
            f"No WFDB header (.hea) among the uploaded files {names}: upload the record's .hea with its .dat or .mat "
            "file, or a zip of both."
        )
    if len(headers) > 1:
        raise RecordUploadError(
            f"Upload one record at a time; found {len(headers)} headers: {[h.name for h in headers]}."
        )
    record_path = str(headers[0].with_suffix(""))
    import wfdb

    try:
        header = wfdb.rdheader(record_path)
    except Exception as error:
        raise RecordUploadError(
            f"{headers[0].name} is not a readable WFDB header ({type(error).__name__}: {error})."
        ) from error
    missing = sorted({name for name in (header.file_name or []) if not (destination / name).exists()})
    if missing:
        raise RecordUploadError(
            f"{headers[0].name} refers to the signal file(s) {missing}, which were not uploaded: upload the .hea "
            "together with its signal file (or a zip of both)."
        )
    return record_path


def labels_table(prediction, thresholds: list[float], explained: str) -> str:
    """The labels as an HTML table, most likely first; positives (at or above their threshold) highlighted."""
    rows = []
    ranked = sorted(prediction.probabilities.items(), key=lambda item: -item[1])
    threshold_of = dict(zip(prediction.probabilities, thresholds))
    for name, probability in ranked:
        positive = name in prediction.positive_labels
        style = "background:#ffe08a;font-weight:600" if positive else ""
        marker = " (explained)" if name == explained else ""
        rows.append(
            f'<tr class="{"positive" if positive else "negative"}" data-label="{html.escape(name)}" style="{style}">'
            f'<td class="label">{html.escape(name)}{marker}</td><td class="probability">{probability:.3f}</td>'
            f'<td class="threshold">{threshold_of[name]:.3f}</td><td>{"positive" if positive else ""}</td></tr>'
        )
    return (
        f'<table id="{LABELS_ID}"><thead><tr><th>label</th><th>probability</th><th>threshold</th><th></th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def describe_preprocessing(extractor, record_path: str, num_windows: int) -> str:
    """What the feature extractor did to this record, in Markdown."""
    import wfdb

    header = wfdb.rdheader(record_path)
    seconds = header.sig_len / header.fs
    window_seconds = extractor.signal_length / extractor.sampling_rate
    stride = (extractor.stride or max(extractor.signal_length // 2, 1)) / extractor.sampling_rate
    band = (
        f"Butterworth band-pass {extractor.low_cut_hz:g}–{extractor.high_cut_hz:g} Hz (order {extractor.filter_order}, "
        "zero-phase)"
        if extractor.do_filter
        else "no filter"
    )
    return "\n".join(
        [
            f"- **record**: {Path(record_path).name}, {header.n_sig} leads ({', '.join(header.sig_name or [])}), "
            f"{header.fs:g} Hz, {header.sig_len} samples ({seconds:g} s)",
            f"- **rate**: resampled to {extractor.sampling_rate} Hz (polyphase)"
            if header.fs != extractor.sampling_rate
            else f"- **rate**: {extractor.sampling_rate} Hz, no resampling",
            f"- **filter**: {band}",
            "- **normalisation**: " + ("z-score per lead and window" if extractor.do_normalize else "none"),
            f"- **windows**: {num_windows} sliding window(s) of {window_seconds:g} s (stride {stride:g} s), "
            "probabilities and layer weights averaged",
            f"- **explanation**: integrated gradients on the first {window_seconds:g} s window",
        ]
    )


def error_block(message: str) -> str:
    return f'<div id="{ERROR_ID}" style="color:#b00020;font-weight:600">{html.escape(message)}</div>'


class EcgPmaDemo:
    """The app's work, independent of Gradio: load once, then `analyse` records."""

    def __init__(self, model, examples_dir: str | os.PathLike | None = None, trust_remote_code: bool = False):
        self.model_name = str(model)
        self.model, self.extractor = load_classifier(model, trust_remote_code)
        self.examples_dir = Path(examples_dir) if examples_dir is not None else None
        self.work_dir = Path(tempfile.mkdtemp(prefix="ecg-pma-app-"))

    @property
    def label_names(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    @property
    def examples(self) -> list[str]:
        """Names of the bundled example records (WFDB headers in `examples_dir`)."""
        if self.examples_dir is None or not self.examples_dir.is_dir():
            return []
        return sorted(path.stem for path in self.examples_dir.glob("*.hea"))

    def record_from_inputs(self, files, example: str | None, staging: Path) -> str:
        if files:
            # Gradio gives paths; older versions gave temporary-file objects with the path in `.name`
            paths = [file if isinstance(file, (str, os.PathLike)) else file.name for file in files]
            return stage_upload(paths, staging)
        if example:
            if example not in self.examples:
                raise RecordUploadError(f"Unknown example record {example!r}; choose one of {self.examples}.")
            return str(self.examples_dir / example)
        raise RecordUploadError("Upload a WFDB record (.hea with its .dat/.mat, or a zip) or choose an example first.")

    def analyse(self, files=None, example: str | None = None, label: str | None = None) -> AnalysisResult:
        """Everything the page shows for one record; any failure becomes a message, never a traceback."""
        staging = Path(tempfile.mkdtemp(prefix="upload-", dir=self.work_dir))
        try:
            return self._analyse(files, example, label, staging)
        except Exception as error:  # the page must show a message whatever went wrong
            message = (
                str(error)
                if isinstance(error, (ValueError, FileNotFoundError))
                else f"{type(error).__name__}: {error}"
            )
            if not isinstance(error, (ValueError, FileNotFoundError)):
                logger.exception("ecg-pma app: unexpected error")  # the traceback goes to the server log only
            return AnalysisResult(None, "", "", error_block(f"Could not analyse this record: {message}"))
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # an upload is read once; the plot stays for Gradio to serve

    def _analyse(self, files, example, label, staging: Path) -> AnalysisResult:
        from ..serving.inference import predict_records
        from ..serving.loading import decision_thresholds
        from .explain import plot_prediction
        from .plotting import save_figure

        record_path = self.record_from_inputs(files, example, staging)
        prediction = predict_records(self.model, self.extractor, [record_path])[0]
        figure, explanation = plot_prediction(
            self.model,
            self.extractor,
            record_path,
            prediction,
            label=None if label in (None, "", TOP_LABEL) else label,
        )
        plot_path = save_figure(figure, Path(tempfile.mkdtemp(prefix="plot-", dir=self.work_dir)) / "ecg.png")
        return AnalysisResult(
            plot_path=str(plot_path),
            labels_html=labels_table(prediction, decision_thresholds(self.model.config), explanation.label),
            preprocessing_markdown=describe_preprocessing(self.extractor, record_path, prediction.num_windows),
            error_html="",
        )


def build_app(model, examples_dir: str | os.PathLike | None = None, trust_remote_code: bool = False):
    """The Gradio `Blocks` for a classifier (saved folder or Hub repo id)."""
    import gradio as gr

    from ..formats import ECG_FILE_SUFFIXES

    demo_state = EcgPmaDemo(model, examples_dir, trust_remote_code)
    with gr.Blocks(title="ECG-PMA", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# ECG-PMA: 12-lead ECG classification\nModel: `{demo_state.model_name}`. Upload a WFDB record (the "
            "`.hea` header with its `.dat` or `.mat` signal file, or a zip of both), or pick an example."
        )
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(
                    label="WFDB record", file_count="multiple", file_types=[".hea", ".dat", ".mat", ".zip", *ECG_FILE_SUFFIXES],  # and any file read_ecg reads
                    elem_id="ecg-pma-upload",
                )  # fmt: skip
                example = gr.Dropdown(
                    choices=demo_state.examples, value=None, label="or an example record", elem_id="ecg-pma-example"
                )
                label = gr.Dropdown(
                    choices=[TOP_LABEL, *demo_state.label_names], value=TOP_LABEL, label="explain label"
                )
                run = gr.Button("Analyse", variant="primary", elem_id="ecg-pma-run")
                error = gr.HTML(elem_id="ecg-pma-error-box")
                labels = gr.HTML(elem_id="ecg-pma-labels-box")
                preprocessing = gr.Markdown(elem_id="ecg-pma-preprocessing")
            with gr.Column(scale=3):
                plot = gr.Image(
                    label="12-lead ECG, explanation and PMA layer weights", type="filepath", show_label=False
                )

        def analyse(uploaded, chosen_example, chosen_label):
            result = demo_state.analyse(uploaded, chosen_example, chosen_label)
            return result.plot_path, result.labels_html, result.preprocessing_markdown, result.error_html

        run.click(analyse, inputs=[files, example, label], outputs=[plot, labels, preprocessing, error])
    demo.ecg_pma = demo_state
    return demo


def launch_app(demo, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Serves the app locally: no share link, Gradio's own fonts and assets only."""
    return demo.launch(server_name=host, server_port=port, share=False, **kwargs)


__all__ = ["AnalysisResult", "EcgPmaDemo", "RecordUploadError", "build_app", "launch_app", "stage_upload"]
