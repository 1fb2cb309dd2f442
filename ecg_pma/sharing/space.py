"""
A Space-ready folder for the web demo (`ecg_pma.visualization.app`): `app.py`, `requirements.txt`, a README whose
front matter says `sdk: gradio`, this package's source (the app imports it), example WFDB records and, optionally, the model itself.
Upload the folder as a Gradio Space, or run `python app.py` in it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parents[1]
MODEL_FILES = ("config.json", "preprocessor_config.json", "*.safetensors", "*.py")

APP_TEMPLATE = '''"""Hugging Face Space: the ECG-PMA web demo (written by `ecg-pma push --space-dir`)."""

import os
from pathlib import Path


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from ecg_pma.visualization.app import build_app  # noqa: E402


HERE = Path(__file__).resolve().parent
# A folder beside this file (the bundled model) or a Hub repo id; ECG_PMA_MODEL overrides it.
MODEL = os.environ.get("ECG_PMA_MODEL", {model})
demo = build_app(HERE / MODEL if (HERE / MODEL).is_dir() else MODEL, examples_dir=HERE / "examples")

if __name__ == "__main__":
    demo.launch(theme=demo.ecg_pma_theme, css=demo.ecg_pma_css)  # fonts with every glyph, the plot at full width
'''

README_TEMPLATE = """---
{front_matter}
---

# {title}

Upload a 12-lead WFDB record (the `.hea` header with its `.dat` or `.mat` signal file, or a zip of both), one ECG file
(DICOM, EDF/BDF, HL7 aECG, GE MUSE or Philips XML, CSV, .npy, Parquet) or pick an example, and see the ECG on paper,
the predicted labels with probabilities and thresholds, the integrated-gradients explanation of a chosen label and the
PMA layer weights. Model: {model_line}.

Runs on CPU; the page makes no request outside this Space. Locally: `pip install -r requirements.txt` then
`python app.py` (served on http://127.0.0.1:7860).
"""


# The extras a Space needs: Gradio, and the readers of the file formats its upload box takes.
SPACE_EXTRAS = ("app", "formats")


def runtime_requirements() -> list[str]:
    """
    This package's runtime dependencies plus its `app` (Gradio) and `formats` (DICOM, EDF, Philips XML readers) extras:
    from the `pyproject.toml` of the source checkout the package runs from, else (or on Python 3.10, which has no
    `tomllib`) from the installed distribution's metadata.
    """
    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = None
    if pyproject.exists() and tomllib is not None:
        project = tomllib.loads(pyproject.read_text())["project"]
        extras = project["optional-dependencies"]
        return [*project["dependencies"], *(spec for extra in SPACE_EXTRAS for spec in extras[extra])]
    selected = []
    wanted = {"", *(f'extra=="{extra}"' for extra in SPACE_EXTRAS)}
    for requirement in importlib.metadata.requires("ecg-pma") or []:
        spec, _, marker = requirement.partition(";")
        if marker.replace(" ", "").replace("'", '"') in wanted:
            selected.append(spec.strip())
    return selected


def copy_record(record: str | os.PathLike, destination: Path) -> None:
    """Copies a WFDB record's header and every signal file it names."""
    import wfdb

    record = str(record).removesuffix(".hea")
    header = wfdb.rdheader(record)
    source = Path(record).parent
    for name in [f"{Path(record).name}.hea", *sorted(set(header.file_name or []))]:
        if not (source / name).exists():
            raise FileNotFoundError(f"WFDB record {record!r}: {source / name} not found.")
        shutil.copy(source / name, destination / name)


def write_space(
    space_dir: str | os.PathLike,
    model: str,
    examples: list[str | os.PathLike] | None = None,
    bundle_model_dir: str | os.PathLike | None = None,
    title: str = "ECG-PMA demo",
) -> Path:
    """
    Writes the Space folder. The app loads `model` (a Hub repo id) unless `bundle_model_dir` is given: then the saved
    model is copied to `model/` in the folder and loaded from there. `examples` are WFDB record paths.
    """
    space_dir = Path(space_dir)
    space_dir.mkdir(parents=True, exist_ok=True)
    model_reference = model
    if bundle_model_dir is not None:
        (space_dir / "model").mkdir(exist_ok=True)
        for pattern in MODEL_FILES:
            for file in Path(bundle_model_dir).glob(pattern):
                shutil.copy(file, space_dir / "model" / file.name)
        model_reference = "model"
    package = space_dir / "ecg_pma"
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (space_dir / "examples").mkdir(exist_ok=True)
    for record in examples or []:
        copy_record(record, space_dir / "examples")
    (space_dir / "app.py").write_text(APP_TEMPLATE.format(model=json.dumps(model_reference)))
    (space_dir / "requirements.txt").write_text("\n".join(runtime_requirements()) + "\n")

    import gradio

    front_matter = {
        "title": title,
        "emoji": "❤️",
        "colorFrom": "red",
        "colorTo": "pink",
        "sdk": "gradio",
        "sdk_version": gradio.__version__,
        "app_file": "app.py",
        "pinned": False,
        "license": "mit",
        **({"models": [model]} if bundle_model_dir is None else {}),
    }
    lines = [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in front_matter.items()]
    model_line = (
        "bundled in `model/`" if bundle_model_dir is not None else f"[{model}](https://huggingface.co/{model})"
    )
    (space_dir / "README.md").write_text(
        README_TEMPLATE.format(front_matter="\n".join(lines), title=title, model_line=model_line)
    )
    return space_dir


__all__ = ["runtime_requirements", "write_space"]
