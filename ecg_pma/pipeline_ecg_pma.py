"""
The `ecg-classification` pipeline: a WFDB path, `wfdb.Record` or array in, `[{"label", "score"}]` out — every sliding
window of the record scored and averaged, labels kept where their score reaches the model's tuned decision threshold.

Self-contained (torch, numpy, transformers) so that a model pushed with it loads with
`pipeline("ecg-classification", model=..., trust_remote_code=True)`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline


class EcgClassificationPipeline(Pipeline):
    """
    Args at call time:
        sampling_rate, lead_names, units: describe array input (WFDB records carry their own).
        top_k (`int`, *optional*): return the `top_k` labels by score instead of the labels above threshold.
        function_to_apply (`"sigmoid"`, `"softmax"`, *optional*): defaults to softmax for single-label models,
            sigmoid otherwise.
    Returns, per record, a list of `{"label": str, "score": float}` sorted by score.
    """

    _load_feature_extractor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_processor = False

    def _sanitize_parameters(
        self, sampling_rate=None, lead_names=None, units=None, top_k=None, function_to_apply=None, **kwargs
    ):
        preprocess_kwargs = {
            key: value
            for key, value in (("sampling_rate", sampling_rate), ("lead_names", lead_names), ("units", units))
            if value is not None
        }
        postprocess_kwargs = {"top_k": top_k, "function_to_apply": function_to_apply}
        return preprocess_kwargs, {}, postprocess_kwargs

    def preprocess(self, inputs: Any, **extractor_kwargs) -> dict[str, torch.Tensor]:
        features = self.feature_extractor(inputs, window_mode="sliding", return_tensors="pt", **extractor_kwargs)
        return {"signals": features["signals"], "lead_mask": features["lead_mask"]}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Records lacking some of the model's leads run on the leads they have (the extractor's `lead_mask`).
        output = self.model(signals=model_inputs["signals"], lead_mask=model_inputs["lead_mask"])
        return {"logits": output.logits, "layer_weights": output.layer_weights}

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
