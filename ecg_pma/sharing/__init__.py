"""Sharing a model: Hub uploads, model cards, and a Space folder for the web demo."""

from .hub import push_to_hub, save_shareable
from .modelcard import build_model_card, write_model_card
from .space import write_space


__all__ = ["build_model_card", "push_to_hub", "save_shareable", "write_model_card", "write_space"]
