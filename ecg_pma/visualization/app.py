"""
The web demo: a Gradio app that reads an uploaded WFDB record (a `.hea` with its `.dat`/`.mat`, or a zip of them), one
ECG file of another format `ecg_pma.read_ecg` reads (DICOM, EDF, HL7 aECG, GE MUSE or Philips XML, arrays) or a
bundled example, and shows the labels with probabilities and thresholds (positives highlighted), the preprocessing the
model applied, and the 12-lead plot at the page's full width with the explanation of a chosen label and the PMA layer
weights. The page says that this is a research model, not a diagnostic device, what the model was trained on (from
its model card) and links to that card; it names the model, never a server path. `ecg-pma app` serves it on
127.0.0.1; a Space runs the same app from the `app.py` that `ecg-pma push --space-dir` writes.

Offline by design: Gradio's analytics are off, no share link is made, fonts are served by the app itself.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..formats.reading import ECG_FILE_SUFFIXES, SUFFIX_PROMISES


# Before gradio is imported anywhere: no telemetry, no version check against the internet.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

logger = logging.getLogger(__name__)

TOP_LABEL = "(most likely positive label)"
LABELS_ID = "ecg-pma-labels"
ERROR_ID = "ecg-pma-error"
NOTICE_ID = "ecg-pma-notice"
TRAINING_DATA_ID = "ecg-pma-training-data"
CARD_LINK_ID = "ecg-pma-card-link"
CARD_ID = "ecg-pma-model-card"
PLOT_ID = "ecg-pma-plot"

# What an upload may contain, suffix -> what it is: the one list that the upload check and its message follow.
ACCEPTED_UPLOAD_SUFFIXES = {
    ".hea": "WFDB header",
    ".dat": "WFDB signal file",
    ".mat": "WFDB signal file in MATLAB v4 format, as in the PhysioNet challenges",
    **{suffix: f"{what} ECG file" for suffix, what in SUFFIX_PROMISES.items()},
    ".zip": "zip of the above",
}

RESEARCH_NOTICE = (
    "Research use only. This is a research model, not a medical device: it has not been validated for diagnosis, and "
    "its output must not be used for the care of any patient."
)
# The bundled example records are PhysioNet/CinC Challenge 2021 records (CC BY 4.0 asks for this attribution); an
# `ATTRIBUTION.md` in the examples folder replaces it for records from elsewhere.
EXAMPLES_ATTRIBUTION = (
    "Example records: [PhysioNet/Computing in Cardiology Challenge 2021](https://physionet.org/content/challenge-2021/) "
    "(Reyna et al., *Will Two Do? Varying Dimensions in Electrocardiography*, 2021; Goldberger et al., PhysioNet, "
    "2000), unchanged, under [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/)."
)
ATTRIBUTION_FILE = "ATTRIBUTION.md"

# Source Sans Pro as Gradio bundles it, at the weights whose files hold the whole Latin alphabet: its semibold (600)
# file is a 55-glyph subset, so bold text asking for 600 mixed in fallback glyphs ("PMᴀ"); without a 600 face the
# browser takes the 700 one.
FONT_WEIGHTS = (400, 700)
PAGE_CSS = f"""
#{PLOT_ID} img {{ width: 100% !important; height: auto !important; max-height: none !important; object-fit: contain; }}
#{NOTICE_ID} {{ border-left: 4px solid #b00020; padding: 0.4em 0.8em; background: #fff4f4; }}
"""


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


def check_upload_types(files: list[str | os.PathLike]) -> None:
    """Raises `RecordUploadError` naming the files whose type is not in `ACCEPTED_UPLOAD_SUFFIXES`, and what is."""
    refused = [Path(file).name for file in files if Path(file).suffix.lower() not in ACCEPTED_UPLOAD_SUFFIXES]
    if refused:
        accepted = "; ".join(f"{suffix} ({what})" for suffix, what in ACCEPTED_UPLOAD_SUFFIXES.items())
        raise RecordUploadError(
            f"Cannot read {', '.join(refused)}: not a supported file type. Accepted: {accepted}. Upload a record's "
            ".hea header together with its signal file, a zip of both, or one ECG file of another format."
        )


def stage_upload(files: list[str | os.PathLike], destination: str | os.PathLike) -> str:
    """
    Copies the uploaded files (zips unpacked) into `destination` under their own names and returns the path of the
    one WFDB record among them, after checking the file types, that the header parses and that every signal file it
    names is present.
    """
    check_upload_types(files)
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


def labels_table(prediction, thresholds: list[float], explained: str | None) -> str:
    """
    The labels as an HTML table, most likely first; positives (at or above their threshold) highlighted, the
    explained label marked; a line under it when no label is explained.
    """
    rows = []
    ranked = sorted(prediction.probabilities.items(), key=lambda item: -item[1])
    threshold_of = dict(zip(prediction.probabilities, thresholds))
    for name, probability in ranked:
        positive = name in prediction.positive_labels
        style = "background:#ffe08a;font-weight:700" if positive else ""
        marker = " (explained)" if name == explained else ""
        rows.append(
            f'<tr class="{"positive" if positive else "negative"}" data-label="{html.escape(name)}" style="{style}">'
            f'<td class="label">{html.escape(name)}{marker}</td><td class="probability">{probability:.3f}</td>'
            f'<td class="threshold">{threshold_of[name]:.3f}</td><td>{"positive" if positive else ""}</td></tr>'
        )
    note = (
        ""
        if explained is not None
        else '<p class="no-explanation">No label is positive at its threshold, so none is explained: choose a label '
        "under “explain label” to see what drives it.</p>"
    )
    return (
        f'<table id="{LABELS_ID}"><thead><tr><th>label</th><th>probability</th><th>threshold</th><th></th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>{note}"
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
    return f'<div id="{ERROR_ID}" style="color:#b00020;font-weight:700">{html.escape(message)}</div>'


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/`'\"<>]+/)+(?=[^\s/`'\"<>]+)")


def without_server_paths(text: str) -> str:
    """`text` with the folders of every absolute path removed (`/srv/data/HR06009` -> `HR06009`)."""
    return ABSOLUTE_PATH.sub("", text)


def model_display_name(model: str | os.PathLike) -> str:
    """A local folder by its own name (never the server's path to it), a Hub repo by its id."""
    return Path(model).name if Path(model).exists() else str(model)


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def read_model_card(model: str | os.PathLike, config, extractor) -> tuple[str, bool]:
    """
    The model card's Markdown (`README.md` of the folder or Hub repo) and False; or, where the model has none, a card
    built from its config and extractor (architecture, preprocessing, labels; nothing about its training) and True.
    """
    folder_card = Path(model) / "README.md"
    if folder_card.is_file():
        return folder_card.read_text(encoding="utf-8"), False
    if not Path(model).exists():
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(str(model), "README.md")).read_text(encoding="utf-8"), False
        except Exception as error:  # no card in the repo, or offline without it cached
            logger.info("ecg-pma app: no model card for %s (%s)", model, error)
    from ..sharing.modelcard import build_model_card

    return str(build_model_card(config, extractor, repo_id=model_display_name(model))), True


CARD_DATA_LINE = re.compile(r"^Data: \*\*(?P<name>.+?)\*\*(?::\s*(?P<description>.+?))?\.?\s*$", re.MULTILINE)
CARD_DATASETS = re.compile(r"^datasets:\s*\n((?:\s*-\s*.+\n)+)", re.MULTILINE)


def training_data_line(card: str, generated: bool) -> str:
    """What the model was trained on, as its card states it (`Data: **name**: description.` or the `datasets`
    metadata), or that the model does not say."""
    match = CARD_DATA_LINE.search(card)
    if match:
        described = match.group("name") + (f": {match.group('description')}" if match.group("description") else "")
        return f"Trained on: {without_server_paths(described)}."
    datasets = CARD_DATASETS.search(card)
    if datasets:
        names = [line.strip().lstrip("-").strip() for line in datasets.group(1).splitlines() if line.strip()]
        return f"Trained on: {', '.join(names)} (datasets named in the model card)."
    if generated:
        return "Training data: not stated; this model has no model card saying what it was trained on."
    return "Training data: not stated in the model card."


def card_without_front_matter(card: str) -> str:
    return re.sub(r"\A---\n.*?\n---\n", "", card, flags=re.DOTALL)


def examples_attribution(examples_dir: Path | None) -> str:
    """The attribution shown under the example records: the folder's `ATTRIBUTION_FILE`, else PhysioNet 2021's."""
    if examples_dir is not None and (examples_dir / ATTRIBUTION_FILE).is_file():
        return (examples_dir / ATTRIBUTION_FILE).read_text(encoding="utf-8").strip()
    return EXAMPLES_ATTRIBUTION


class EcgPmaDemo:
    """The app's work, independent of Gradio: load once, then `analyse` records."""

    def __init__(self, model, examples_dir: str | os.PathLike | None = None, trust_remote_code: bool = False):
        self.model_name = model_display_name(model)
        self.model, self.extractor = load_classifier(model, trust_remote_code)
        self.examples_dir = Path(examples_dir) if examples_dir is not None else None
        self.work_dir = Path(tempfile.mkdtemp(prefix="ecg-pma-app-"))
        self.model_card, self.card_generated = read_model_card(model, self.model.config, self.extractor)
        # a Hub repo's card is linked on the Hub; a folder's card is shown on the page itself
        self.card_url = f"#{CARD_ID}" if Path(model).exists() else f"{hub_endpoint()}/{model}"

    @property
    def label_names(self) -> list[str]:
        from ..serving.loading import label_names

        return label_names(self.model.config)

    @property
    def training_data(self) -> str:
        return training_data_line(self.model_card, self.card_generated)

    def header_markdown(self) -> str:
        """The page's opening: title, the research-use notice, the model, its training data and its card."""
        card = "model card (generated from its config: the model has none)" if self.card_generated else "model card"
        return (
            f"# ECG-PMA: 12-lead ECG classification\n\n"
            f'<div id="{NOTICE_ID}"><strong>{html.escape(RESEARCH_NOTICE)}</strong></div>\n\n'
            f"Model: `{self.model_name}` · "
            f'<span id="{TRAINING_DATA_ID}">{html.escape(self.training_data)}</span> · '
            f'<a id="{CARD_LINK_ID}" href="{html.escape(self.card_url)}">{card}</a>\n\n'
            "Upload a WFDB record (the `.hea` header with its `.dat` or `.mat` signal file, or a zip of both), one ECG "
            "file of another format (DICOM, EDF, HL7 aECG, GE MUSE or Philips XML, CSV, .npy, Parquet), or pick an "
            "example."
        )

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
            return AnalysisResult(None, "", "", self.error_message("Could not analyse this record", error, staging))
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # an upload is read once; the plot stays for Gradio to serve

    def error_message(self, context: str, error: Exception, staging: Path | None = None) -> str:
        """The error as the page shows it: our own messages as they are, others with their type, no server paths."""
        ours = isinstance(error, (ValueError, FileNotFoundError))
        if not ours:
            logger.exception("ecg-pma app: unexpected error")  # the traceback goes to the server log only
        message = str(error) if ours else f"{type(error).__name__}: {error}"
        for folder in filter(None, (staging, self.work_dir, self.examples_dir)):
            message = message.replace(f"{folder}{os.sep}", "")
        return error_block(f"{context}: {without_server_paths(message)}")

    def _analyse(self, files, example, label, staging: Path) -> AnalysisResult:
        from ..serving.inference import predict_records
        from ..serving.loading import decision_thresholds
        from .explain import default_explained_label, plot_prediction
        from .plotting import save_figure

        record_path = self.record_from_inputs(files, example, staging)
        prediction = predict_records(self.model, self.extractor, [record_path])[0]
        thresholds = decision_thresholds(self.model.config)
        chosen = None if label in (None, "", TOP_LABEL) else label
        preprocessing = describe_preprocessing(self.extractor, record_path, prediction.num_windows)
        try:
            figure, explanation = plot_prediction(self.model, self.extractor, record_path, prediction, label=chosen)
            plot_path = save_figure(figure, Path(tempfile.mkdtemp(prefix="plot-", dir=self.work_dir)) / "ecg.png")
        except Exception as error:  # the prediction stands even when its plot cannot be drawn
            explained = chosen or default_explained_label(prediction)
            return AnalysisResult(
                None,
                labels_table(prediction, thresholds, explained),
                preprocessing,
                self.error_message("Could not draw the plot", error, staging),
            )
        return AnalysisResult(
            plot_path=str(plot_path),
            labels_html=labels_table(prediction, thresholds, explanation.label if explanation is not None else None),
            preprocessing_markdown=preprocessing,
            error_html="",
        )

    def check_upload(self, files) -> str:
        """The message for uploaded files of a type the app cannot read (shown as soon as they are uploaded)."""
        paths = [file if isinstance(file, (str, os.PathLike)) else file.name for file in files or []]
        try:
            check_upload_types(paths)
        except RecordUploadError as error:
            return error_block(str(error))
        return ""


def build_app(model, examples_dir: str | os.PathLike | None = None, trust_remote_code: bool = False):
    """The Gradio `Blocks` for a classifier (saved folder or Hub repo id)."""
    import gradio as gr
    from gradio.themes.utils import fonts

    demo_state = EcgPmaDemo(model, examples_dir, trust_remote_code)
    theme = gr.themes.Default(
        font=(fonts.LocalFont("Source Sans Pro", weights=FONT_WEIGHTS), "ui-sans-serif", "system-ui", "sans-serif")
    )
    accepted = ", ".join(ACCEPTED_UPLOAD_SUFFIXES)
    with gr.Blocks(title="ECG-PMA", analytics_enabled=False) as demo:
        gr.Markdown(demo_state.header_markdown(), elem_id="ecg-pma-header")
        with gr.Row():
            with gr.Column(scale=1):
                # no `file_types`: the browser would drop other files silently; `check_upload` says what is accepted
                files = gr.File(label=f"ECG record ({accepted})", file_count="multiple", elem_id="ecg-pma-upload")
                example = gr.Dropdown(
                    choices=demo_state.examples, value=None, label="or an example record", elem_id="ecg-pma-example"
                )
                if demo_state.examples:
                    gr.Markdown(examples_attribution(demo_state.examples_dir), elem_id="ecg-pma-attribution")
                label = gr.Dropdown(
                    choices=[TOP_LABEL, *demo_state.label_names], value=TOP_LABEL, label="explain label"
                )
                run = gr.Button("Analyse", variant="primary", elem_id="ecg-pma-run")
                error = gr.HTML(elem_id="ecg-pma-error-box")
            with gr.Column(scale=2):
                labels = gr.HTML(elem_id="ecg-pma-labels-box")
                preprocessing = gr.Markdown(elem_id="ecg-pma-preprocessing")
        plot = gr.Image(
            label="12-lead ECG, explanation and PMA layer weights", type="filepath", show_label=False, elem_id=PLOT_ID
        )
        with gr.Accordion("Model card", open=False, elem_id=CARD_ID):
            gr.Markdown(card_without_front_matter(demo_state.model_card))

        def analyse(uploaded, chosen_example, chosen_label):
            result = demo_state.analyse(uploaded, chosen_example, chosen_label)
            return result.plot_path, result.labels_html, result.preprocessing_markdown, result.error_html

        files.upload(demo_state.check_upload, inputs=[files], outputs=[error])
        run.click(analyse, inputs=[files, example, label], outputs=[plot, labels, preprocessing, error])
    demo.ecg_pma = demo_state
    demo.ecg_pma_theme, demo.ecg_pma_css = theme, PAGE_CSS
    return demo


def launch_app(demo, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Serves the app locally: no share link, Gradio's own fonts and assets only."""
    theme, css = getattr(demo, "ecg_pma_theme", None), getattr(demo, "ecg_pma_css", None)
    return demo.launch(server_name=host, server_port=port, share=False, theme=theme, css=css, **kwargs)


__all__ = [
    "ACCEPTED_UPLOAD_SUFFIXES",
    "AnalysisResult",
    "EcgPmaDemo",
    "RecordUploadError",
    "build_app",
    "check_upload_types",
    "launch_app",
    "stage_upload",
]
