"""
The `ecg-classification` pipeline: a WFDB path, `wfdb.Record` or array in, `[{"label", "score"}]` out — every sliding
window of the record scored and averaged, labels kept where their score reaches the model's tuned decision threshold.

Self-contained (torch, numpy, transformers) so that a model pushed with it loads with
`pipeline("ecg-classification", model=..., trust_remote_code=True)`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import Pipeline


# `ecg_pma.serving.onnx_export`'s names for the graph of complete records, repeated here: this file runs without the
# package (saved beside a model on the Hub).
ALL_LEADS_SUFFIX = ".all-leads.onnx"
ALL_LEADS_FILE = "model" + ALL_LEADS_SUFFIX


class EcgClassificationPipeline(Pipeline):
    """
    Args at call time:
        sampling_rate, lead_names, units: describe array input (WFDB records carry their own).
        top_k (`int`, *optional*): return the `top_k` labels by score instead of the labels above threshold.
        function_to_apply (`"sigmoid"`, `"softmax"`, *optional*): defaults to softmax for single-label models,
            sigmoid otherwise.
        backend (`"torch"` or `"onnxruntime"`, *optional*): score the windows with the PyTorch model (default) or
            with ONNX Runtime on `onnx_path` (default: `model.onnx` beside the weights, local or on the Hub), e.g. a
            file from `ecg-pma export-onnx --optimize --quantize int8`. Windows, averaging and thresholds are the same.
            A record with every lead runs the all-leads graph exported beside it (`model.all-leads.onnx`: no mask
            operators) where there is one; a record lacking leads runs the masked graph.
    Returns, per record, a list of `{"label": str, "score": float}` sorted by score.
    """

    _load_feature_extractor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_processor = False

    def _sanitize_parameters(
        self,
        sampling_rate=None,
        lead_names=None,
        units=None,
        top_k=None,
        function_to_apply=None,
        backend=None,
        onnx_path=None,
        **kwargs,
    ):
        preprocess_kwargs = {
            key: value
            for key, value in (("sampling_rate", sampling_rate), ("lead_names", lead_names), ("units", units))
            if value is not None
        }
        postprocess_kwargs = {"top_k": top_k, "function_to_apply": function_to_apply}
        if backend not in (None, "torch", "onnxruntime"):
            raise ValueError(f"`backend` must be 'torch' or 'onnxruntime', got {backend!r}.")
        forward_kwargs = {
            key: value for key, value in (("backend", backend), ("onnx_path", onnx_path)) if value is not None
        }
        return preprocess_kwargs, forward_kwargs, postprocess_kwargs

    def preprocess(self, inputs: Any, **extractor_kwargs) -> dict[str, torch.Tensor]:
        features = self.feature_extractor(inputs, window_mode="sliding", return_tensors="pt", **extractor_kwargs)
        return {"signals": features["signals"], "lead_mask": features["lead_mask"]}

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], backend: str = "torch", onnx_path: str | None = None
    ) -> dict[str, torch.Tensor]:
        # Records lacking some of the model's leads run on the leads they have (the extractor's `lead_mask`).
        if backend == "onnxruntime":
            session = self.onnx_session(onnx_path, all_leads=bool(model_inputs["lead_mask"].all()))
            inputs = {"signals": model_inputs["signals"].cpu().numpy()}
            if any(graph_input.name == "lead_mask" for graph_input in session.get_inputs()):
                inputs["lead_mask"] = model_inputs["lead_mask"].cpu().numpy().astype(bool)
            logits, layer_weights = session.run(["logits", "layer_weights"], inputs)
            return {"logits": torch.from_numpy(logits), "layer_weights": torch.from_numpy(layer_weights)}
        output = self.model(signals=model_inputs["signals"], lead_mask=model_inputs["lead_mask"])
        return {"logits": output.logits, "layer_weights": output.layer_weights}

    def onnx_graph(self, onnx_path: str | None = None, all_leads: bool = False) -> str:
        """
        The file to run: for a record with every lead (`all_leads`), the all-leads graph beside `onnx_path`
        (`model.onnx` -> `model.all-leads.onnx`, from the model's folder or Hub repository when `onnx_path` is None)
        where there is one; otherwise the masked graph.
        """
        from transformers.utils import cached_file

        if onnx_path is None:
            repository = self.model.config._name_or_path
            found = cached_file(repository, ALL_LEADS_FILE, _raise_exceptions_for_missing_entries=False)
            return found if all_leads and found else cached_file(repository, "model.onnx")
        onnx_path = str(onnx_path)
        stem = onnx_path.removesuffix(ALL_LEADS_SUFFIX).removesuffix(".onnx")
        complete, masked = stem + ALL_LEADS_SUFFIX, stem + ".onnx"
        if all_leads and os.path.isfile(complete):
            return complete
        if not all_leads and onnx_path.endswith(ALL_LEADS_SUFFIX):
            if not os.path.isfile(masked):
                raise ValueError(
                    f"{onnx_path} takes records with every lead only, and this record lacks some; the masked graph "
                    f"{masked} exported beside it is not there."
                )
            return masked
        return onnx_path

    def onnx_session(self, onnx_path: str | None = None, all_leads: bool = False):
        """
        An ONNX Runtime CPU session on the graph [`onnx_graph`] picks; created once per file. onnxruntime is imported
        here, so the pipeline loads without it.
        """
        import onnxruntime

        onnx_path = self.onnx_graph(onnx_path, all_leads)
        sessions = self.__dict__.setdefault("_onnx_sessions", {})
        if onnx_path not in sessions:
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = torch.get_num_threads()
            sessions[onnx_path] = onnxruntime.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        return sessions[onnx_path]

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], top_k: int | None = None, function_to_apply: str | None = None
    ):
        config = self.model.config
        if function_to_apply is None:
            function_to_apply = "softmax" if config.problem_type == "single_label_classification" else "sigmoid"
        if function_to_apply not in ("sigmoid", "softmax"):
            raise ValueError(f"`function_to_apply` must be 'sigmoid' or 'softmax', got {function_to_apply!r}.")
        logits = model_outputs["logits"].float()
        # The windows of one record are averaged into one prediction.
        scores = (logits.softmax(-1) if function_to_apply == "softmax" else logits.sigmoid()).mean(dim=0).tolist()
        ranked = sorted(
            ({"label": config.id2label[index], "score": score} for index, score in enumerate(scores)),
            key=lambda entry: entry["score"],
            reverse=True,
        )
        if top_k is not None:
            return ranked[:top_k]
        thresholds = config.decision_thresholds or [0.5] * config.num_labels
        label2index = {label: index for index, label in config.id2label.items()}
        return [entry for entry in ranked if entry["score"] >= thresholds[label2index[entry["label"]]]]


EMBEDDINGS = ("layer_representations", "input_representation", "pooled", "mixed")


class EcgFeatureExtractionPipeline(Pipeline):
    """
    The `ecg-feature-extraction` pipeline: a WFDB path, `wfdb.Record` or array in; the deterministic embeddings of
    `ecg-pma embed` and `ecg-pma benchmark` out: the record's evaluation windows (the extractor's `n_crop` crops or
    sliding windows, never random crops, no masking) through the encoder, averaged over the windows.

    Args at call time:
        sampling_rate, lead_names, units: describe array input (WFDB records carry their own).
        return_tensors (`bool`, *optional*): torch tensors instead of nested lists.
    Returns, per record, `{"layer_representations": (layers, hidden), "input_representation": (hidden,),
    "pooled": (hidden,), "mixed": (hidden,), "mixture": "pma" | "ppa"}`: every block's output, the patch embedding
    the PMA gate reads, the final LayerNorm of the last layer, and the layer mixture (the classifier's trained PMA gate
    when the model is a PMA classifier, else PPA, the uniform mean), each LayerNorm-ed as the heads read it.
    """

    _load_feature_extractor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_processor = False

    def _sanitize_parameters(self, sampling_rate=None, lead_names=None, units=None, return_tensors=None, **kwargs):
        preprocess_kwargs = {
            key: value
            for key, value in (("sampling_rate", sampling_rate), ("lead_names", lead_names), ("units", units))
            if value is not None
        }
        return preprocess_kwargs, {}, {"return_tensors": bool(return_tensors)}

    def preprocess(self, inputs: Any, **extractor_kwargs) -> dict[str, torch.Tensor]:
        # the evaluation windows of `ecg_pma.evaluation.embeddings.evaluation_window_mode`
        window_mode = (
            "sliding" if self.feature_extractor.window_mode == "random" else self.feature_extractor.window_mode
        )
        features = self.feature_extractor(inputs, window_mode=window_mode, return_tensors="pt", **extractor_kwargs)
        return {"signals": features["signals"], "lead_mask": features["lead_mask"]}

    def uses_trained_gate(self) -> bool:
        """A PMA classifier's saved gate mixes the layers; any other model (pre-trained weights) gets PPA. The rule of
        `ecg_pma.evaluation.benchmark.load_benchmark_model`, repeated: this file runs without the package."""
        config = self.model.config
        classifier = any(name.endswith("ForSequenceClassification") for name in config.architectures or [])
        return classifier and config.aggregation == "pma" and hasattr(self.model, "aggregator")

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        encoder = getattr(self.model, "ecg_pma", self.model)
        output = encoder(signals=model_inputs["signals"], lead_mask=model_inputs["lead_mask"].bool())
        layers, inputs = output.layer_representations.float(), output.input_representation.float()
        fused = self.model.aggregator(layers, inputs)[0] if self.uses_trained_gate() else layers.mean(dim=1)
        return dict(zip(EMBEDDINGS, (layers, inputs, output.pooler_output.float(), encoder.layernorm(fused))))

    def postprocess(self, model_outputs: dict[str, torch.Tensor], return_tensors: bool = False):
        # the windows of one record are averaged into one embedding
        embeddings = {name: model_outputs[name].mean(dim=0) for name in EMBEDDINGS}
        if not return_tensors:
            embeddings = {name: value.tolist() for name, value in embeddings.items()}
        return {**embeddings, "mixture": "pma" if self.uses_trained_gate() else "ppa"}
