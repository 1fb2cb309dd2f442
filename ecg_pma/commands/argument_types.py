"""
Argument types with ranges for the `ecg-pma` subcommands: a bad value ends at parse time with
`argument --epochs: must be a number > 0, got '-1'`, before any data is read or any model trained.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def _number(kind: type, minimum: float | None, maximum: float | None, exclusive_minimum: bool) -> Callable:
    """An argparse `type=` parsing `kind` (int or float) within [minimum, maximum] (or (minimum, ...])."""
    low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum:g}"
    high = "" if maximum is None else f"<= {maximum:g}"
    bounds = " and ".join(part for part in (low, high) if part)
    expected = f"{'an integer' if kind is int else 'a number'}{' ' + bounds if bounds else ''}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
        too_high = maximum is not None and value > maximum
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def int_in_range(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    return _number(int, minimum, maximum, exclusive_minimum=False)


def float_in_range(
    minimum: float | None = None, maximum: float | None = None, exclusive_minimum: bool = False
) -> Callable[[str], float]:
    return _number(float, minimum, maximum, exclusive_minimum)


positive_int = int_in_range(1)
non_negative_int = int_in_range(0)
positive_float = float_in_range(0, exclusive_minimum=True)
non_negative_float = float_in_range(0)
fraction = float_in_range(0, 1)


def output_directory(text: str) -> str:
    """A folder to write into: absent (it is created) or an existing folder, never an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    for parent in path.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
    return text


def output_file(text: str) -> str:
    """A file to write: absent or an existing file (overwritten), never a folder; its folder can be created."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    output_directory(str(path.parent))
    return text


def model_source(text: str) -> str:
    """
    A saved model: a local folder, or a Hub repo id that can be reached (or is in the local cache). Anything else is
    a usage error saying so ("no such folder X (and not a reachable Hub id)") instead of huggingface-hub's message
    about repo id syntax or the connection. A path whose parent folder exists (`outputs/model`), or that starts with
    `.`, `/` or `~`, is a folder by intent and never tried on the Hub.
    """
    path = Path(text).expanduser()
    if path.is_dir():
        return text
    if path.exists():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a saved model folder or a Hub repo id")
    folder_like = text.startswith((".", "/", "~", "\\")) or (path.parent != Path(".") and path.parent.is_dir())
    reason = "a path" if folder_like else hub_unreachable(text)
    if reason:
        raise argparse.ArgumentTypeError(f"no such folder {text} (and not a reachable Hub id: {reason})")
    return text


def require_model_source(value: str, option: str) -> None:
    """`model_source` where a command starts (not when its line is parsed, which needs no model to exist): a model
    that is neither a folder nor a reachable Hub id stops the command with `OPTION: no such folder ...`."""
    try:
        model_source(value)
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"{option}: {error}") from None


def hub_unreachable(repo_id: str) -> str | None:
    """Why `repo_id` cannot be loaded from the Hub (`HF_ENDPOINT`, `HF_HUB_OFFLINE` honoured), or None if it can."""
    from huggingface_hub import constants, file_exists, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return "not of the form name or owner/name"
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and it is not in the local cache"
    try:
        return None if file_exists(repo_id, "config.json") else f"no config.json in it at {constants.ENDPOINT}"
    except Exception as error:  # noqa: BLE001 - any failure to reach it is the answer
        return (
            f"{constants.ENDPOINT} answered {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        )
