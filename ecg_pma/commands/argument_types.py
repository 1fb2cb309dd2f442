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
