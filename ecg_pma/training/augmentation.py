"""
ST-MEM's finetuning augmentations on tensors: RandAugment (Cubuk et al. 2020) over eight ECG operations, as ST-MEM's
augmentation module defines them (its downstream config: 2 operations per sample, level 10, each applied with
probability 0.5). Every random draw comes from the `torch.Generator` passed in, so a seeded generator per sample
(`ecg_pma.data.crops.EcgTrainingDataset` derives one from seed, epoch and row) makes a run reproducible.

Each operation maps one standardised window `(leads, samples)` to a new tensor of the same shape. At level `L` of 10,
`ratio = 0.3 L / 10` bounds the masked or shifted fraction, and noise has amplitude `0.3 L / 10` (sine period
`10 / (2 L)` windows: two periods at level 10).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


MAX_LEVEL = 10


def _uniform(generator: torch.Generator, high: float) -> float:
    return float(torch.rand((), generator=generator)) * high


def _integer(generator: torch.Generator, high: int) -> int:
    """Uniform in [0, high) (`high` at least 1)."""
    return int(torch.randint(max(high, 1), (), generator=generator))


def _ratio(level: int) -> float:
    return level / MAX_LEVEL * 0.3


def shift(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Shifts every lead left or right by up to `ratio` of the window; the vacated samples are zeros."""
    length = signals.shape[-1]
    offset = int(_uniform(generator, _ratio(level)) * length)
    direction = 1 if _integer(generator, 2) else -1
    shifted = torch.zeros_like(signals)
    if direction == 1:
        shifted[..., offset:] = signals[..., : length - offset]
    else:
        shifted[..., : length - offset] = signals[..., offset:]
    return shifted


def cutout(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Zeros one span of up to `ratio` of the window, in every lead."""
    length = signals.shape[-1]
    count = int(_uniform(generator, _ratio(level)) * length)
    start = _integer(generator, length - count)
    result = signals.clone()
    result[..., start : start + count] = 0
    return result


def drop(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Zeros up to `ratio` of the time samples, chosen at random, in every lead (ST-MEM's `RandomMask`)."""
    length = signals.shape[-1]
    count = _integer(generator, int(length * _ratio(level)))
    result = signals.clone()
    result[..., torch.randperm(length, generator=generator)[:count]] = 0
    return result


def flip(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Inverts the polarity of every lead."""
    return -signals


def erase(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Zeros one lead chosen at random (ST-MEM's `RandomSingleLeadMask`)."""
    result = signals.clone()
    result[_integer(generator, signals.shape[-2])] = 0
    return result


def _sine(signals: torch.Tensor, level: int) -> torch.Tensor:
    time = torch.arange(signals.shape[-1], dtype=signals.dtype) / signals.shape[-1]
    period = 0.5 / (level / MAX_LEVEL)
    return _ratio(level) * torch.sin(2 * math.pi * time / period)


def sine(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Adds a sine of amplitude `0.3 L / 10` to every lead."""
    return signals + _sine(signals, level)


def _partial(signals: torch.Tensor, noise: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    length = signals.shape[-1]
    count = int(_uniform(generator, _ratio(level)) * length)
    start = _integer(generator, length - count)
    result = signals.clone()
    result[..., start : start + count] += noise[..., :count]
    return result


def partial_sine(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Adds the start of that sine to one random span of up to `ratio` of the window."""
    return _partial(signals, _sine(signals, level).expand_as(signals), level, generator)


def partial_white_noise(signals: torch.Tensor, level: int, generator: torch.Generator) -> torch.Tensor:
    """Adds Gaussian noise of standard deviation `0.3 L / 10` to one random span of up to `ratio` of the window."""
    noise = _ratio(level) * torch.randn(signals.shape, generator=generator, dtype=signals.dtype)
    return _partial(signals, noise, level, generator)


OPERATIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "shift": shift,
    "cutout": cutout,
    "drop": drop,
    "flip": flip,
    "erase": erase,
    "sine": sine,
    "partial_sine": partial_sine,
    "partial_white_noise": partial_white_noise,
}


class RandAugment:
    """
    Per sample: picks `num_operations` distinct operations of `operations` uniformly, and applies each with
    probability `probability` at strength `level` (of 10). ST-MEM's finetuning setting is the default.

    `(leads, samples)` -> `(leads, samples)`
    """

    def __init__(
        self,
        operations: Sequence[str] = tuple(OPERATIONS),
        level: int = 10,
        num_operations: int = 2,
        probability: float = 0.5,
    ):
        unknown = [name for name in operations if name not in OPERATIONS]
        if unknown:
            raise ValueError(f"Unknown augmentations {unknown}; expected names among {list(OPERATIONS)}.")
        if not 0 < level <= MAX_LEVEL:
            raise ValueError(f"`level` must be in (0, {MAX_LEVEL}], got {level}.")
        if not 0 < num_operations <= len(operations):
            raise ValueError(f"`num_operations` must be in [1, {len(operations)}], got {num_operations}.")
        if not 0 <= probability <= 1:
            raise ValueError(f"`probability` must be in [0, 1], got {probability}.")
        self.operations = list(operations)
        self.level = level
        self.num_operations = num_operations
        self.probability = probability

    def __call__(self, signals: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        chosen = torch.randperm(len(self.operations), generator=generator)[: self.num_operations]
        for index in chosen.tolist():
            if float(torch.rand((), generator=generator)) < self.probability:
                signals = OPERATIONS[self.operations[index]](signals, self.level, generator)
        return signals

    def __repr__(self) -> str:
        return (
            f"RandAugment(operations={self.operations}, level={self.level}, "
            f"num_operations={self.num_operations}, probability={self.probability})"
        )
