"""What a person sees: ECG paper plots, integrated-gradients explanations, and the Gradio web demo (`.app`, imported
on its own so that plotting does not need Gradio)."""

from .explain import Explanation, explain_record, explain_window, plot_prediction
from .plotting import plot_ecg, save_figure


__all__ = ["Explanation", "explain_record", "explain_window", "plot_ecg", "plot_prediction", "save_figure"]
