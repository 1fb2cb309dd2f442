"""Metrics shipped with the package as `evaluate` modules, loadable offline by path."""

from pathlib import Path

import evaluate


ECG_MULTILABEL_PATH = str(Path(__file__).parent / "ecg_multilabel")


def load_ecg_multilabel() -> evaluate.EvaluationModule:
    """The multi-label ECG metric (macro AUROC / F1 / mAP with per-record averaging), from this package."""
    return evaluate.load(ECG_MULTILABEL_PATH)


__all__ = ["ECG_MULTILABEL_PATH", "load_ecg_multilabel"]
