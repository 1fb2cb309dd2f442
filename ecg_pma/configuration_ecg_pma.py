"""Configuration of the ECG-PMA model: a 1-D ViT over 12-lead ECG with mixture-of-layers heads."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


STANDARD_LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# The lead sets scored by the PhysioNet/CinC Challenge 2021 ("Will two do?"), by name.
LEAD_SETS = {
    "12": STANDARD_LEAD_NAMES,
    "6": ("I", "II", "III", "aVR", "aVL", "aVF"),
    "4": ("I", "II", "III", "V2"),
    "3": ("I", "II", "V2"),
    "2": ("I", "II"),
}

AGGREGATIONS = ("last", "ppa", "pma", "layer")
PRETRAINING_AGGREGATIONS = ("last", "ipa")
HEAD_TYPES = ("linear", "mlp")
POSITIVE_INTEGER_SETTINGS = (
    "num_leads",
    "sampling_rate",
    "signal_length",
    "patch_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_num_attention_heads",
    "decoder_intermediate_size",
    "classifier_hidden_size",
)
PROBABILITY_SETTINGS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "drop_path_rate",
    "gate_dropout",
    "classifier_dropout",
    "classifier_hidden_dropout",
)

# Signal settings: the PMA paper's code (100 Hz, 10 s, patch 50) and ST-MEM's (250 Hz, 9 s, patch 75).
SIGNAL_PRESETS = {
    "paper": {"sampling_rate": 100, "signal_length": 1000, "patch_size": 50},
    "st-mem": {"sampling_rate": 250, "signal_length": 2250, "patch_size": 75},
}
SIZE_PRESETS = {
    "vit-s": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536},
    "vit-b": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}
PRESETS = {
    f"{size}-{signal}": {**size_values, **signal_values}
    for size, size_values in SIZE_PRESETS.items()
    for signal, signal_values in SIGNAL_PRESETS.items()
}
# Small enough for unit tests on two CPU cores, but with every moving part of the real model.
PRESETS["tiny"] = {
    **SIGNAL_PRESETS["paper"],
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "decoder_hidden_size": 16,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 32,
    "gate_hidden_sizes": [16, 8],
    "classifier_hidden_size": 16,
}


@strict
class EcgPmaConfig(PreTrainedConfig):
    r"""
    Configuration of [`EcgPmaModel`], [`EcgPmaForPreTraining`] and [`EcgPmaForSequenceClassification`].

    Defaults give the ViT-B encoder at the PMA paper's signal setting (12 leads, 100 Hz, 1000 samples,
    patch 50). [`EcgPmaConfig.from_preset`] builds the named presets (`vit-s-paper`, `vit-b-paper`,
    `vit-s-st-mem`, `vit-b-st-mem`, `tiny`).

    Args:
        num_leads (`int`, *optional*, defaults to 12):
            Number of leads the model reads.
        lead_names (`list[str]`, *optional*, defaults to the first `num_leads` of I, II, III, aVR, aVL, aVF, V1-V6):
            The leads' names, in the order the model expects them; unique, case-insensitively.
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate in Hz the weights were trained at (the feature extractor resamples to it).
        signal_length (`int`, *optional*, defaults to 1000):
            Samples per lead in one input window.
        patch_size (`int`, *optional*, defaults to 50):
            Samples per patch; must divide `signal_length`.
        hidden_size (`int`, *optional*, defaults to 768):
            Width of the encoder's tokens.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of encoder blocks (the layers PPA / PMA / IPA fuse).
        num_attention_heads (`int`, *optional*, defaults to 12):
            Attention heads per encoder block; must divide `hidden_size`.
        intermediate_size (`int`, *optional*, defaults to 3072):
            Width of the encoder blocks' MLP.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLPs (any name in `transformers.activations.ACT2FN`).
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the fused query/key/value projection has a bias.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the attention output and in the MLPs.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth of the last encoder block; the rate rises linearly from 0 at block 0.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the encoder's LayerNorms (patch, embedding, blocks, final).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the learnable vectors: the SEP token, the lead
            embeddings and the decoder's mask token. Linear weights do not use it: they are Xavier-uniform with
            zero bias, as in ST-MEM and MAE (their scale follows from each layer's fan-in and fan-out); norms
            start at weight 1, bias 0; position tables are fixed sin-cos.
        mask_ratio (`float`, *optional*, defaults to 0.75):
            Pre-training: fraction of every lead's patches dropped from the encoder, in [0, 1).
        norm_pix_loss (`bool`, *optional*, defaults to `True`):
            Pre-training: reconstruct patches normalised to zero mean and unit variance each.
        decoder_hidden_size (`int`, *optional*, defaults to 256):
            Width of the pre-training decoder.
        decoder_num_hidden_layers (`int`, *optional*, defaults to 4):
            Blocks of the pre-training decoder.
        decoder_num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads per decoder block; must divide `decoder_hidden_size`.
        decoder_intermediate_size (`int`, *optional*, defaults to 1024):
            Width of the decoder blocks' MLP.
        decoder_layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the decoder's LayerNorms.
        pretraining_aggregation (`str`, *optional*, defaults to `"last"`):
            What the decoder reads: `"last"` (the last block's tokens) or `"ipa"` (every token averaged over all
            blocks, each after the final LayerNorm).
        aggregation (`str`, *optional*, defaults to `"pma"`):
            How the classifier fuses the blocks' representations: `"last"`, `"ppa"` (uniform mean), `"pma"`
            (per-sample softmax gate) or `"layer"` (the single block `aggregation_layer`).
        aggregation_layer (`int`, *optional*):
            The block `aggregation="layer"` reads; negative indices count from the end.
        gate_hidden_sizes (`list[int]`, *optional*, defaults to `[256, 128]`):
            Hidden widths of the PMA gate's MLP (LayerNorm, then Linear -> GELU -> Dropout per width, then a
            Linear to one logit per block).
        gate_dropout (`float`, *optional*, defaults to 0.1):
            Dropout in the PMA gate.
        head_type (`str`, *optional*, defaults to `"mlp"`):
            `"linear"` (one Linear) or `"mlp"` (the PMA authors' BatchNorm -> Dropout -> Linear -> ReLU ->
            BatchNorm -> Dropout -> Linear).
        classifier_hidden_size (`int`, *optional*, defaults to 256):
            Hidden width of the MLP head.
        classifier_dropout (`float`, *optional*, defaults to 0.25):
            The MLP head's first dropout.
        classifier_hidden_dropout (`float`, *optional*, defaults to 0.5):
            The MLP head's second dropout.
        decision_thresholds (`list[float]`, *optional*):
            One probability threshold per label, tuned on validation by finetuning; 0.5 when unset.
        kwargs (*optional*):
            The standard [`PreTrainedConfig`] arguments, notably `num_labels`, `id2label`, `label2id` and
            `problem_type`.

    Example:

    ```python
    >>> from ecg_pma import EcgPmaConfig, EcgPmaForSequenceClassification
    >>> config = EcgPmaConfig.from_preset("tiny", aggregation="pma", num_labels=5)
    >>> model = EcgPmaForSequenceClassification(config)
    ```
    """

    model_type = "ecg_pma"

    # signal
    num_leads: int = 12
    lead_names: list[str] | None = None
    sampling_rate: int = 100
    signal_length: int = 1000
    patch_size: int = 50
    # encoder
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    # masked modeling
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_hidden_size: int = 256
    decoder_num_hidden_layers: int = 4
    decoder_num_attention_heads: int = 4
    decoder_intermediate_size: int = 1024
    decoder_layer_norm_eps: float = 1e-6
    pretraining_aggregation: str = "last"
    # downstream
    aggregation: str = "pma"
    aggregation_layer: int | None = None
    gate_hidden_sizes: list[int] | None = None
    gate_dropout: float | int = 0.1
    head_type: str = "mlp"
    classifier_hidden_size: int = 256
    classifier_dropout: float | int = 0.25
    classifier_hidden_dropout: float | int = 0.5
    decision_thresholds: list[float] | None = None

    def __post_init__(self, **kwargs):
        if self.lead_names is None:
            self.lead_names = list(STANDARD_LEAD_NAMES[: self.num_leads])
        self.lead_names = list(self.lead_names)
        if self.gate_hidden_sizes is None:
            self.gate_hidden_sizes = [256, 128]
        self.gate_hidden_sizes = list(self.gate_hidden_sizes)
        super().__post_init__(**kwargs)
        # Raise a plain ValueError at construction; strict re-runs the same checks at save time.
        self.validate_architecture()

    @property
    def custom_pipelines(self) -> dict:
        """
        The pipelines a saved model's code provides (`ecg-classification`, `ecg-feature-extraction`), less those this
        process already serves with its own registered classes: `transformers` asks for `trust_remote_code` for every
        task a config lists here, even one the installed package registered, and `import ecg_pma` must serve its
        models without remote code. The saved config keeps them all (it is written from the instance's `__dict__`).
        """
        from transformers.pipelines import PIPELINE_REGISTRY

        listed = self.__dict__.get("custom_pipelines", {})
        served = set(PIPELINE_REGISTRY.get_supported_tasks())
        return {task: entry for task, entry in listed.items() if task not in served}

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict) -> None:
        self.__dict__["custom_pipelines"] = value

    @property
    def num_patches(self) -> int:
        """Patches per lead."""
        return self.signal_length // self.patch_size

    @property
    def resolved_aggregation_layer(self) -> int | None:
        """`aggregation_layer` as a non-negative block index (or `None`)."""
        if self.aggregation_layer is None:
            return None
        return self.aggregation_layer % self.num_hidden_layers

    def validate_architecture(self):
        """Checks that the sizes fit together and the named choices exist; raises `ValueError` otherwise."""
        self.validate_values()
        if len(self.lead_names) != self.num_leads:
            raise ValueError(
                f"`lead_names` has {len(self.lead_names)} names ({self.lead_names}) but `num_leads` is {self.num_leads}."
            )
        if len({name.lower() for name in self.lead_names}) != len(self.lead_names):
            raise ValueError(f"`lead_names` must be unique (case-insensitive), got {self.lead_names}.")
        for name in ("sampling_rate", "signal_length", "patch_size", "num_leads", "num_hidden_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")
        if self.signal_length % self.patch_size != 0:
            raise ValueError(
                f"`signal_length` ({self.signal_length} samples) must be divisible by `patch_size` "
                f"({self.patch_size}); the nearest valid windows are "
                f"{self.signal_length // self.patch_size * self.patch_size} and "
                f"{(self.signal_length // self.patch_size + 1) * self.patch_size} samples."
            )
        for prefix in ("", "decoder_"):
            hidden = getattr(self, f"{prefix}hidden_size")
            heads = getattr(self, f"{prefix}num_attention_heads")
            if hidden % heads != 0:
                raise ValueError(
                    f"`{prefix}hidden_size` ({hidden}) must be a multiple of `{prefix}num_attention_heads` ({heads})."
                )
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"`mask_ratio` must be in [0, 1), got {self.mask_ratio}.")
        if int(self.num_patches * (1 - self.mask_ratio)) < 1:
            raise ValueError(
                f"`mask_ratio` {self.mask_ratio} keeps no patch of the {self.num_patches} patches per lead."
            )
        if self.pretraining_aggregation not in PRETRAINING_AGGREGATIONS:
            raise ValueError(
                f"Unknown `pretraining_aggregation` {self.pretraining_aggregation!r}; expected one of {PRETRAINING_AGGREGATIONS}."
            )
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"Unknown `aggregation` {self.aggregation!r}; expected one of {AGGREGATIONS}.")
        if self.aggregation == "layer" and self.aggregation_layer is None:
            raise ValueError('`aggregation="layer"` needs `aggregation_layer` (a block index).')
        if self.aggregation_layer is not None and not (
            -self.num_hidden_layers <= self.aggregation_layer < self.num_hidden_layers
        ):
            raise ValueError(
                f"`aggregation_layer` {self.aggregation_layer} is out of range for {self.num_hidden_layers} layers "
                f"(valid: {-self.num_hidden_layers} to {self.num_hidden_layers - 1})."
            )
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"Unknown `head_type` {self.head_type!r}; expected one of {HEAD_TYPES}.")
        if self.decision_thresholds is not None and len(self.decision_thresholds) != self.num_labels:
            raise ValueError(
                f"`decision_thresholds` has {len(self.decision_thresholds)} values for {self.num_labels} labels."
            )
        if not self.gate_hidden_sizes or any(size <= 0 for size in self.gate_hidden_sizes):
            raise ValueError(
                f"`gate_hidden_sizes` must be a non-empty list of positive sizes, got {self.gate_hidden_sizes}."
            )

    def validate_values(self):
        """Each setting on its own: sizes are positive integers, rates and probabilities finite and in range."""
        for name in POSITIVE_INTEGER_SETTINGS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.aggregation_layer is not None and (
            isinstance(self.aggregation_layer, bool) or not isinstance(self.aggregation_layer, int)
        ):
            raise ValueError(f"`aggregation_layer` must be an integer block index, got {self.aggregation_layer!r}.")
        for name in PROBABILITY_SETTINGS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1), got {value!r}.")
        for name in ("layer_norm_eps", "decoder_layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < math.inf:
                raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
        thresholds = self.decision_thresholds or []
        if not all(isinstance(t, (int, float)) and math.isfinite(t) for t in thresholds):
            raise ValueError(f"`decision_thresholds` must be finite numbers, got {self.decision_thresholds}.")

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # `from_pretrained(path, aggregation_layer=99)` sets the overrides after construction: check them too, before
        # any weights are loaded or any training starts.
        result = super().from_dict(config_dict, **kwargs)
        (result[0] if isinstance(result, tuple) else result).validate_architecture()
        return result

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> EcgPmaConfig:
        """
        Builds a named preset: `vit-s-paper`, `vit-b-paper` (100 Hz, 1000 samples, patch 50), `vit-s-st-mem`,
        `vit-b-st-mem` (250 Hz, 2250 samples, patch 75) or `tiny` (for tests). `kwargs` override preset values.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **kwargs})


def resolve_lead_set(lead_set: str | list[str] | tuple[str, ...], lead_names: list[str]) -> list[str]:
    """
    The leads of `lead_set` as `lead_names` spells them, in `lead_names` order. `lead_set` is a name of
    [`LEAD_SETS`] (`"12"`, `"6"`, `"4"`, `"3"`, `"2"`), a list of lead names, or lead names joined by commas
    (`"I,II,V2"`); names match case-insensitively. Raises `ValueError` for a lead `lead_names` lacks.
    """
    if isinstance(lead_set, str):
        names = LEAD_SETS[lead_set] if lead_set in LEAD_SETS else [name.strip() for name in lead_set.split(",")]
    else:
        names = list(lead_set)
    known = {name.lower(): name for name in lead_names}
    unknown = [name for name in names if str(name).lower() not in known]
    if unknown or not names:
        raise ValueError(
            f"Lead set {lead_set!r}: {'leads ' + str(unknown) + ' are' if unknown else 'no lead is'} not among the "
            f"model's leads {list(lead_names)}; give one of {sorted(LEAD_SETS, key=int, reverse=True)} or lead names."
        )
    wanted = {str(name).lower() for name in names}
    return [name for name in lead_names if name.lower() in wanted]


__all__ = ["EcgPmaConfig", "LEAD_SETS", "PRESETS", "STANDARD_LEAD_NAMES", "resolve_lead_set"]
