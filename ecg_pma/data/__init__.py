"""ECG datasets as `datasets.DatasetDict`: PTB-XL, the PhysioNet 2020/2021 challenge databases, any WFDB folder."""

from ..constants import DATA_FORMATS
from .code15 import load_code15, load_code_test
from .crops import (
    EcgTrainingDataset,
    build_training_splits,
    handle_short_records,
    prepare_records,
    prepare_streamed_records,
    read_usable_records,
    stream_training_records,
)
from .download import DATABASES, SAMPLES, download_database
from .mimic_iv_ecg import load_mimic_iv_ecg
from .physionet2021 import SCORED_SNOMED, SOURCE_PREFIXES, load_physionet2021
from .preprocessing import extract_features
from .ptbxl import load_ptbxl
from .records import id2label
from .wfdb_folder import load_wfdb_folder


__all__ = [
    "DATABASES",
    "SAMPLES",
    "SCORED_SNOMED",
    "SOURCE_PREFIXES",
    "EcgTrainingDataset",
    "build_training_splits",
    "handle_short_records",
    "prepare_records",
    "prepare_streamed_records",
    "read_usable_records",
    "stream_training_records",
    "download_database",
    "extract_features",
    "id2label",
    "load_code15",
    "load_code_test",
    "load_mimic_iv_ecg",
    "load_physionet2021",
    "load_ptbxl",
    "load_wfdb_folder",
]

FORMATS = DATA_FORMATS


def load_records(
    data_format: str,
    root,
    label_set: str | None = None,
    sampling_rate: int = 100,
    labels_csv=None,
    missing: str = "raise",
    cache_dir=None,
    num_proc: int | None = None,
    drop_unlabeled: bool = True,
    sources=None,
    streaming: bool = False,
):
    """
    One entry point for the command line: `ptbxl`, `physionet2021` (`sources` selects source databases), `wfdb` (a
    folder, labels from a CSV), `code15` (CODE-15%), `code-test` (CODE-test, every exam in `test`) or `mimic-iv-ecg`
    (unlabelled; `label_set="reports"` labels it with the machine's report statements). `streaming`: one
    `datasets.IterableDataset` per split reading the source files as it goes, nothing cached.
    PTB-XL: `label_set` `all` (71) by default; `drop_unlabeled=False` keeps records with no label in the set as
    all-negative rows (the PMA authors' choice) instead of dropping them (the benchmark's rule, default).
    """
    if data_format == "ptbxl":
        return load_ptbxl(
            root,
            sampling_rate=sampling_rate,
            label_set=label_set or "all",
            drop_unlabeled=drop_unlabeled,
            missing=missing,
            cache_dir=cache_dir,
            num_proc=num_proc,
            streaming=streaming,
        )
    if data_format == "physionet2021":
        return load_physionet2021(
            root,
            label_set=label_set or "scored",
            cache_dir=cache_dir,
            num_proc=num_proc,
            sources=sources,
            streaming=streaming,
            missing=missing,
        )
    if data_format == "wfdb":
        return load_wfdb_folder(
            root, labels_csv=labels_csv, missing=missing, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming
        )
    if data_format == "code15":
        return load_code15(root, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming, missing=missing)
    if data_format == "code-test":
        return load_code_test(root, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming)
    if data_format == "mimic-iv-ecg":
        if label_set not in (None, "none", "reports"):
            raise ValueError(f"MIMIC-IV-ECG label sets: none (default) or reports, got {label_set!r}.")
        return load_mimic_iv_ecg(
            root,
            report_labels=label_set == "reports",
            missing=missing,
            cache_dir=cache_dir,
            num_proc=num_proc,
            streaming=streaming,
        )
    raise ValueError(f"Unknown data format {data_format!r}; expected one of {FORMATS}.")


__all__ += ["FORMATS", "load_records"]
