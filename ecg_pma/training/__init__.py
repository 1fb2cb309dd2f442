"""Pre-training (Accelerate), probing and finetuning (Trainer), and the layer-wise probing study."""

from .collator import EcgDataCollator
from .pretrain import PretrainingArguments, PretrainingResult, pretrain


__all__ = ["EcgDataCollator", "PretrainingArguments", "PretrainingResult", "pretrain"]
