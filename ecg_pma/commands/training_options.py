"""
The options that pretrain, finetune and probe-layers share (`constants.TRAINING_OPTIONS`): each spelled as the
dashed `TrainingArguments` field (`--num-train-epochs`), with one help text, and accepting the aliases so that a
pretrain command line can be edited into a finetune one and back. `finetune` gets them from `HfArgumentParser`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..constants import TRAINING_OPTIONS


def add_training_option(
    parser: argparse.ArgumentParser,
    field: str,
    type: Callable | None = None,
    default=None,
    required: bool = False,
    note: str = "",
) -> None:
    """
    Adds `TRAINING_OPTIONS[field]` to `parser` under its documented flag (its help text, then `note`); each alias
    is accepted into the same `args.<field>` but left out of `--help`.
    """
    flag, aliases, text = TRAINING_OPTIONS[field]
    # required: one of the spellings, so an alias satisfies it (argparse checks each action on its own)
    container = parser.add_mutually_exclusive_group(required=True) if required else parser
    container.add_argument(flag, dest=field, type=type, default=default, help=f"{text}{'; ' + note if note else ''}")
    add_hidden_aliases(container, field, type)


def add_hidden_aliases(parser, field: str, type: Callable | None = None) -> None:
    """`TRAINING_OPTIONS[field]`'s aliases that `parser` does not already have, writing `args.<field>`, not listed."""
    flag, aliases, _ = TRAINING_OPTIONS[field]
    for alias in aliases:
        try:  # SUPPRESS: no default of their own, so they never overwrite the documented flag's
            parser.add_argument(alias, dest=field, type=type, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        except argparse.ArgumentError:  # already an option of `parser` (HfArgumentParser adds the field's own name)
            pass
