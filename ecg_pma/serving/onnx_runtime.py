"""
ONNX Runtime sessions on an exported classifier: the file found beside the model, checked against its config, and
the graph chosen per batch: the all-leads graph for complete windows, the masked graph for windows lacking leads.
"""

from __future__ import annotations

import os

import torch

from .onnx_export import all_leads_path, lead_mask_path, read_onnx_metadata


DEFAULT_ONNX_FILE = "model.onnx"


def onnx_session(onnx_path: str | os.PathLike, num_threads: int | None = None, memory_arena: bool = True):
    """
    An ONNX Runtime CPU session with every graph optimization enabled at load time, on as many threads as PyTorch uses
    (`torch.get_num_threads()`) unless `num_threads` says otherwise. `memory_arena=False` returns freed buffers to the
    system allocator instead of keeping them in ORT's arena (slower; for measuring a call's peak memory).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = memory_arena
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    return onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def check_onnx_matches_config(onnx_path: str | os.PathLike, config) -> None:
    """Refuses an ONNX file exported from another model: its labels and input shape must be the config's."""
    spec = read_onnx_metadata(onnx_path)
    expected_labels = {str(index): label for index, label in config.id2label.items()}
    expected_input = ["batch", config.num_leads, config.signal_length]
    if spec and (
        spec.get("id2label", expected_labels) != expected_labels or spec["inputs"]["signals"] != expected_input
    ):
        raise ValueError(
            f"ONNX file {onnx_path} was exported from another model: labels {spec.get('id2label')} and input "
            f"{spec['inputs']['signals']}, but this model has labels {expected_labels} and input {expected_input}. "
            "Export it again with `ecg-pma export-onnx`."
        )


def resolve_onnx_path(model, onnx_path: str | os.PathLike | None) -> str:
    """
    `onnx_path`, else `model.onnx` (or only `model.all-leads.onnx`) in the folder the model was loaded from; a clear
    error when there is none.
    """
    if onnx_path is None:
        model_dir = getattr(model, "name_or_path", "") or ""
        onnx_path = os.path.join(model_dir, DEFAULT_ONNX_FILE) if model_dir else None
        if onnx_path is not None and not os.path.isfile(onnx_path) and all_leads_path(onnx_path).is_file():
            onnx_path = str(all_leads_path(onnx_path))
        if onnx_path is None or not os.path.isfile(onnx_path):
            raise FileNotFoundError(
                f"backend='onnxruntime' needs an ONNX file: none given and no {DEFAULT_ONNX_FILE} in "
                f"{model_dir or 'the model folder'}. Export one with `ecg-pma export-onnx MODEL OUT.onnx` and pass "
                "it as onnx_path= (CLI: --onnx OUT.onnx)."
            )
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(f"ONNX file {onnx_path} not found.")
    return str(onnx_path)


def run_onnx_session(session, signals: torch.Tensor, lead_mask: torch.Tensor | None = None):
    """
    `logits`, `layer_weights` of an exported classifier's session: the masked graph (every lead present when
    `lead_mask` is None) or the all-leads graph (no `lead_mask` input; `lead_mask` must then be None).
    """
    inputs = {"signals": signals.cpu().numpy()}
    if any(graph_input.name == "lead_mask" for graph_input in session.get_inputs()):
        if lead_mask is None:
            lead_mask = torch.ones(signals.shape[:2], dtype=torch.bool)
        inputs["lead_mask"] = lead_mask.cpu().numpy().astype(bool)
    elif lead_mask is not None:
        raise ValueError("This ONNX graph takes complete records only (no lead_mask input); got a lead_mask.")
    logits, layer_weights = session.run(["logits", "layer_weights"], inputs)
    return torch.from_numpy(logits), torch.from_numpy(layer_weights)


def is_complete(lead_mask: torch.Tensor | None) -> bool:
    """True when every lead of every window is present (`lead_mask` None or all true)."""
    return lead_mask is None or bool(lead_mask.all())


class ClassifierSessions:
    """
    The two graphs of one export (`model.onnx`, inputs `signals` and `lead_mask`, and `model.all-leads.onnx` beside
    it, `signals` only), either given by name: each batch of complete windows runs the all-leads graph (no mask
    operators), a batch lacking leads the masked graph. A file exported before the all-leads graph existed runs every
    batch through its mask. Sessions (see [`onnx_session`]) open on first use; both files are checked against
    `config`.
    """

    def __init__(self, onnx_path: str | os.PathLike, config=None, num_threads: int | None = None, **session_kwargs):
        masked, complete = lead_mask_path(onnx_path), all_leads_path(onnx_path)
        self.paths = {
            "lead_mask": str(masked) if masked.is_file() else None,
            "all_leads": str(complete) if complete.is_file() else None,
        }
        if config is not None:
            for path in filter(None, self.paths.values()):
                check_onnx_matches_config(path, config)
        self.session_kwargs = {"num_threads": num_threads, **session_kwargs}
        self.sessions = {}

    def graph_for(self, lead_mask: torch.Tensor | None) -> str:
        """`"all_leads"` for complete windows when that graph was exported, else `"lead_mask"`."""
        if is_complete(lead_mask) and self.paths["all_leads"]:
            return "all_leads"
        if self.paths["lead_mask"] is None:
            raise ValueError(
                f"{self.paths['all_leads']} takes records with every lead only, and this batch lacks some; the "
                f"masked graph {lead_mask_path(self.paths['all_leads']).name} exported beside it (by `ecg-pma "
                "export-onnx`) is not there."
            )
        return "lead_mask"

    def session(self, graph: str):
        if graph not in self.sessions:
            self.sessions[graph] = onnx_session(self.paths[graph], **self.session_kwargs)
        return self.sessions[graph]

    def __call__(self, signals: torch.Tensor, lead_mask: torch.Tensor | None = None):
        """`(signals (windows, leads, samples), lead_mask (windows, leads) or None)` -> `(logits, layer_weights)`."""
        graph = self.graph_for(lead_mask)
        return run_onnx_session(self.session(graph), signals, None if graph == "all_leads" else lead_mask)
