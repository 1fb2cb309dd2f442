"""Pre-training (Accelerate), probing and finetuning (Trainer), and the layer-wise probing study."""

from .. import register_auto_classes
from .collator import EcgDataCollator
from .pretrain import PretrainingArguments, PretrainingResult, pretrain


register_auto_classes()  # the models they save carry their code and auto_map

__all__ = ["EcgDataCollator", "PretrainingArguments", "PretrainingResult", "pretrain"]
