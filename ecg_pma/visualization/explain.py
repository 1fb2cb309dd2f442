"""
Which leads and which seconds drove a prediction: integrated gradients (Sundararajan et al., 2017) of one label's
logit with respect to the model's input window, summed per lead and per patch. Plain autograd through the unchanged
model forward; nothing in the model is hooked or replaced.

The encoder normalises every patch (LayerNorm over its samples) and every token, so it is nearly blind to the scale of
its input: on the straight path from a flat baseline to the ECG, the logits change almost entirely within the first
1e-4 of the way, in a few sharp steps. A fixed uniform quadrature (50 Riemann steps, as usual) misses them and the
attributions would not add up. So the path integral is adaptive, in log scale: Gauss-Legendre on each decade
`[10^-(k+1), 10^-k]` (and a linear piece `[0, 10^-decades]`), and an interval whose integral does not match the change
of the logit between its two ends (one forward pass each, no gradient) is halved until it does. The remaining
completeness gap (sum of attributions minus the change in logit) is reported with every explanation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..modeling_ecg_pma import EcgPmaForSequenceClassification
from ..serving.loading import label_names


@dataclass
class Explanation:
    """
    Integrated gradients for one label on one model window.

    Args:
        label (`str`) and label_index (`int`): the explained label.
        lead_names (`list[str]`): the model's leads, in the order of the rows below.
        attributions (`(leads, samples)`): per input sample of the (standardised) window.
        patch_attributions (`(leads, patches)`): summed over each patch (what the encoder sees as one token).
        patch_seconds (`float`): a patch's duration; start_seconds (`float`): where the window starts in the record.
        logit, baseline_logit (`float`): the label's logit for the window and for the baseline.
        convergence_delta (`float`): sum of attributions minus `logit - baseline_logit` (0 for an exact integral).
        layer_weights (`list[float]`): the model's layer weights for this window.
    """

    label: str
    label_index: int
    lead_names: list[str]
    attributions: np.ndarray
    patch_attributions: np.ndarray
    patch_seconds: float
    start_seconds: float
    logit: float
    baseline_logit: float
    convergence_delta: float
    layer_weights: list[float] = field(default_factory=list)

    @property
    def lead_attributions(self) -> np.ndarray:
        """`(leads,)`: total absolute attribution of each lead's patches, summing to 1 (which leads mattered)."""
        totals = np.abs(self.patch_attributions).sum(axis=1)
        return totals / max(float(totals.sum()), 1e-12)


def gauss_legendre(low: float, high: float, num_nodes: int, log_scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """
    Nodes and weights for the integral of `g(alpha)` over `[low, high]`, Gauss-Legendre in `alpha` or (`log_scale`,
    `low > 0`) in `log10(alpha)`, the weights then carrying `d alpha = ln(10) alpha d log10(alpha)`.
    """
    points, weights = np.polynomial.legendre.leggauss(num_nodes)
    if not log_scale:
        return low + (points + 1) * (high - low) / 2, weights * (high - low) / 2
    log_low, log_high = np.log10(low), np.log10(high)
    alphas = 10 ** (log_low + (points + 1) * (log_high - log_low) / 2)
    return alphas, weights * (log_high - log_low) / 2 * np.log(10) * alphas


@contextlib.contextmanager
def gradients_through_encoder(model: EcgPmaForSequenceClassification):
    """Eval mode, and a frozen (linear-probing) encoder temporarily unfrozen: its forward builds no graph otherwise."""
    was_training, was_frozen = model.training, model.encoder_frozen
    if was_frozen:
        model.unfreeze_encoder()
    model.eval()
    try:
        yield model
    finally:
        if was_frozen:
            model.freeze_encoder()
        model.train(was_training)


def path_logits(model, points: torch.Tensor, target: int, batch_size: int, gradients: bool):
    """The target logit at each path point `(points, leads, samples)`, and its input gradients when asked."""
    logits, grads = [], []
    for start in range(0, len(points), batch_size):
        batch = points[start : start + batch_size]
        if gradients:
            batch = batch.detach().requires_grad_(True)
            with torch.enable_grad():
                logit = model(batch).logits[:, target]
                (gradient,) = torch.autograd.grad(logit.sum(), batch)
            grads.append(gradient.double())
        else:
            with torch.no_grad():
                logit = model(batch).logits[:, target]
        logits.append(logit.detach().double())
    return torch.cat(logits), (torch.cat(grads) if gradients else None)


def integrated_gradients(
    model: EcgPmaForSequenceClassification,
    signals: torch.Tensor,
    target: int,
    baseline: torch.Tensor | None = None,
    rtol: float = 0.005,
    decades: int = 8,
    num_nodes: int = 6,
    max_splits: int = 6,
    batch_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Integrated gradients of the logit `target` along the straight path from `baseline` (zeros: a flat line at every
    lead's mean, in the standardised input) to `signals`, integrated adaptively (see the module docstring) until the
    attributions of each interval add up to the logit's change over it within `rtol` of the total change (shared in
    proportion to the interval's width), or an interval has been halved `max_splits` times.

    Args:
        signals: `(leads, samples)`, one standardised window (as the feature extractor returns it).
        baseline: same shape; zeros by default.
        batch_size: path points per forward/backward pass.
    Returns:
        attributions `(leads, samples)` and the logit at `signals` and at `baseline` (`()` each).
    """
    if signals.ndim != 2:
        raise ValueError(f"`signals` must be one window (leads, samples), got shape {tuple(signals.shape)}.")
    if not 0 <= target < model.config.num_labels:
        raise ValueError(f"`target` {target} is not a label index of this model (0 to {model.config.num_labels - 1}).")
    signals = signals.detach().float()
    baseline = torch.zeros_like(signals) if baseline is None else baseline.detach().float().to(signals.device)
    if baseline.shape != signals.shape:
        raise ValueError(f"`baseline` has shape {tuple(baseline.shape)}; `signals` has {tuple(signals.shape)}.")
    difference = signals - baseline

    def points(alphas) -> torch.Tensor:
        return (
            baseline + torch.as_tensor(alphas, dtype=signals.dtype, device=signals.device)[:, None, None] * difference
        )

    edges = [0.0, *np.logspace(-decades, 0, decades + 1)]
    # (low, high, log scale?, splits so far); width is measured in decades, the linear piece counting as one
    pending = [(low, high, low > 0, 0) for low, high in zip(edges[:-1], edges[1:])]
    total = torch.zeros_like(signals, dtype=torch.float64)
    with gradients_through_encoder(model):
        end_logits, _ = path_logits(model, points([1.0, 0.0]), target, batch_size, gradients=False)
        tolerance = rtol * max(abs(float(end_logits[0] - end_logits[1])), 1e-6)
        while pending:
            rules = [gauss_legendre(low, high, num_nodes, log_scale) for low, high, log_scale, _ in pending]
            alphas = np.concatenate([nodes for nodes, _ in rules])
            ends = np.array([bound for low, high, _, _ in pending for bound in (high, low)])
            _, gradients = path_logits(model, points(alphas), target, batch_size, gradients=True)
            bounds, _ = path_logits(model, points(ends), target, batch_size, gradients=False)
            gradients = gradients.split([len(nodes) for nodes, _ in rules])
            retry = []
            for index, ((low, high, log_scale, splits), (_, weights)) in enumerate(zip(pending, rules)):
                piece = (gradients[index] * torch.as_tensor(weights)[:, None, None].to(total)).sum(0)
                change = float(bounds[2 * index] - bounds[2 * index + 1])
                width = (np.log10(high) - np.log10(low) if log_scale else 1.0) / (decades + 1)
                gap = abs(float((piece * difference.double()).sum()) - change)
                if gap <= tolerance * width or splits >= max_splits:
                    total += piece
                    continue
                middle = 10 ** ((np.log10(low) + np.log10(high)) / 2) if log_scale else (low + high) / 2
                retry += [(low, middle, log_scale, splits + 1), (middle, high, log_scale, splits + 1)]
            pending = retry
    return (total * difference.double()).float(), end_logits[0].float(), end_logits[1].float()


def resolve_label(config, label: str | int | None, logits: torch.Tensor) -> int:
    """
    A label name or index as an index; `None` is the label with the highest logit. Names are read from `id2label`
    (a config saved with `id2label` alone, as in the README's quick start, has no `label2id`).
    """
    if label is None:
        return int(logits.argmax())
    if isinstance(label, str):
        names = label_names(config)
        if label not in names:
            raise ValueError(f"Unknown label {label!r}; the model's labels are {names}.")
        return names.index(label)
    if not 0 <= int(label) < config.num_labels:
        raise ValueError(f"Label index {label} is out of range for {config.num_labels} labels.")
    return int(label)


def explain_window(
    model: EcgPmaForSequenceClassification,
    signals: torch.Tensor,
    label: str | int | None = None,
    start_seconds: float = 0.0,
    **kwargs,
) -> Explanation:
    """
    Explains one standardised window `(leads, samples)`: integrated gradients for `label` (a name, an index, or the
    highest logit by default), summed per patch. `kwargs` go to [`integrated_gradients`].
    """
    config = model.config
    device = next(model.parameters()).device
    signals = signals.to(device)
    with gradients_through_encoder(model), torch.no_grad():
        output = model(signals[None].float())
    target = resolve_label(config, label, output.logits[0])
    attributions, logit, baseline_logit = integrated_gradients(model, signals, target, **kwargs)
    attributions = attributions.cpu().numpy()
    patch_attributions = attributions.reshape(config.num_leads, config.num_patches, config.patch_size).sum(-1)
    return Explanation(
        label=config.id2label[target],
        label_index=target,
        lead_names=list(config.lead_names),
        attributions=attributions,
        patch_attributions=patch_attributions,
        patch_seconds=config.patch_size / config.sampling_rate,
        start_seconds=start_seconds,
        logit=float(logit),
        baseline_logit=float(baseline_logit),
        convergence_delta=float(attributions.sum() - (logit - baseline_logit)),
        layer_weights=output.layer_weights[0].float().cpu().tolist(),
    )


def explain_record(model, feature_extractor, record, label: str | int | None = None, **kwargs) -> Explanation:
    """
    Explains the record's first window (its first `signal_length / sampling_rate` seconds, the part a 10 s ECG plot
    shows), preprocessed exactly as for prediction. `record` is anything the feature extractor reads.
    """
    features = feature_extractor(record, window_mode="sliding", return_tensors="pt")
    return explain_window(model, features["signals"][0], label=label, start_seconds=0.0, **kwargs)


def default_explained_label(prediction) -> str | None:
    """The most probable of the record's positive labels (at or above their thresholds), or None when none is."""
    positives = [name for name in prediction.probabilities if name in prediction.positive_labels]
    return max(positives, key=prediction.probabilities.get) if positives else None


MAX_TITLE_LABELS = 12


def prediction_title(prediction, explained: str | None, window_seconds: float) -> str:
    """The lines above the plot: positives, the most likely labels, and what the heat strip shows."""
    top = sorted(prediction.probabilities.items(), key=lambda item: -item[1])[:3]
    heat = (
        f"Heat strip under each lead: integrated gradients for {explained} over the first {window_seconds:g} s "
        "(colour scale on the right)."
        if explained is not None
        else "No label is positive at its threshold, so none is explained; choose a label to explain it."
    )
    positives = prediction.positive_labels[:MAX_TITLE_LABELS] + (
        [f"and {len(prediction.positive_labels) - MAX_TITLE_LABELS} more"]
        if len(prediction.positive_labels) > MAX_TITLE_LABELS
        else []
    )  # one line across the figure; the full list is in the prediction
    return (
        f"Positive: {', '.join(positives) or 'none'}.  Most likely: "
        f"{', '.join(f'{name} {score:.2f}' for name, score in top)}.\n{heat}"
    )


def plot_prediction(model, feature_extractor, record, prediction, label: str | int | None = None, dpi: float = 150):
    """
    The 12-lead plot of `record` with its prediction (a `RecordPrediction` from `predict_records`) above it, the
    integrated-gradients heat strip for `label` and the layer weights beside it. By default the explained label is the
    most probable *positive* label; when no label is positive nothing is explained (the title says so). Returns the
    figure and the explanation (None when nothing is explained).
    """
    from .plotting import plot_ecg

    if label is None:
        label = default_explained_label(prediction)
    explanation = None if label is None else explain_record(model, feature_extractor, record, label=label)
    window_seconds = model.config.signal_length / model.config.sampling_rate
    title = prediction_title(prediction, explanation.label if explanation is not None else None, window_seconds)
    figure = plot_ecg(record, title=title, explanation=explanation, layer_weights=prediction.layer_weights, dpi=dpi)
    return figure, explanation


def write_prediction_plots(model, feature_extractor, records: list, predictions: list, path) -> list[Path]:
    """
    [`plot_prediction`] for each record, saved to `path` (one record) or `<stem>_<record name><suffix>` beside it
    (several). The format follows the suffix (.png, .svg, .pdf), checked before any work.
    """
    from .plotting import SAVE_FORMATS, save_figure

    path = Path(path)
    if path.suffix.lower().lstrip(".") not in SAVE_FORMATS:
        raise ValueError(f"Cannot write a plot to {str(path)!r}: the suffix must be one of .png, .svg, .pdf.")
    written = []
    for record, prediction in zip(records, predictions):
        target = path
        if len(records) > 1:
            name = Path(str(prediction.record)).name.removesuffix(".hea")
            target = path.with_name(f"{path.stem}_{name}{path.suffix}")
        figure, _ = plot_prediction(model, feature_extractor, record, prediction)
        written.append(save_figure(figure, target))
    return written


__all__ = [
    "Explanation",
    "default_explained_label",
    "explain_record",
    "explain_window",
    "integrated_gradients",
    "plot_prediction",
    "write_prediction_plots",
]
