"""Measure metadata and the measure registry (STYLE.md §3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from zooscope._registry import Registry


class Inv(enum.Flag):
    """Transformations of Y (rows = examples) a measure may be invariant to."""

    NONE = 0
    TRANSLATION = enum.auto()  # X + 1 b^T
    ISOTROPIC_SCALE = enum.auto()  # c X
    ORTHOGONAL = enum.auto()  # X Q, Q^T Q = I
    PERMUTATION = enum.auto()  # reorder the units (columns)
    INVERTIBLE_LINEAR = enum.auto()  # X W, W invertible


@dataclass(frozen=True)
class MeasureMeta:
    """What a measure promises; the contract tests check every flag.

    ``invariances`` must HOLD on generic data and ``not_invariant`` must FAIL on generic data.
    ``layerwise`` says whether ``compare()`` can use the measure on (activations_a, activations_b).
    """

    larger_is_more_similar: bool
    symmetric: bool
    invariances: Inv
    not_invariant: Inv = Inv.NONE
    is_metric: bool = False
    bounds: tuple[float, float] | None = None
    inputs: Literal["features", "gram", "covariance", "correlation", "other"] = "features"
    min_samples: int = 2
    layerwise: bool = True
    stochastic: bool = False
    reference: str = ""


MEASURES: Registry[MeasureMeta] = Registry("measure")


def available(pattern: str = "*") -> list[str]:
    """Names of every registered measure (optionally filtered by a glob)."""
    return MEASURES.available(pattern)


def get(name: str):
    """The registered measure ``name``: callable, with metadata as attributes."""
    return MEASURES.get(name)
