"""ECG datasets as `datasets.DatasetDict`: PTB-XL, the PhysioNet 2020/2021 challenge databases, any WFDB folder."""

from .download import DATABASES, download_database
from .physionet2021 import SCORED_SNOMED, load_physionet2021
from .preprocessing import extract_features
from .ptbxl import load_ptbxl
from .records import id2label
from .wfdb_folder import load_wfdb_folder

__all__ = [
    "DATABASES",
    "SCORED_SNOMED",
    "download_database",
    "extract_features",
    "id2label",
    "load_physionet2021",
    "load_ptbxl",
    "load_wfdb_folder",
]
