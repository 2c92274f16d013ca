"""Input shapes of zoo models.

The shapes a zoo dataset (or the user) vouches for, and settling the shapes of models added before any dataset
fitted them (at `Zoo.embed`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import Catalog
from zooscope.zoo.probes import find_input_shape, shape_candidates

__all__ = ["firm_shapes", "settle_input_shapes", "with_cost"]

log = logging.getLogger(__name__)


def firm_shapes(datasets: list[dict[str, Any]], explicit: Sequence[int] | None, trained_on: str | None,
                kwargs: dict | None, model: Any) -> list[tuple[int, ...]]:
    """`shape_candidates` without timm's default input size: the shapes a zoo dataset (or the user) vouches for."""
    cands = shape_candidates(datasets, explicit, trained_on, kwargs, model)
    if explicit is not None:
        return cands
    known = {tuple(d.input_shape) for d in datasets if d.input_shape}
    known |= set(shape_candidates([], None, None, kwargs, None))  # the kwargs' in_features / in_chans × img_size²
    return [c for c in cands if c in known]


def settle_input_shapes(catalog: Catalog, names: Sequence[str] | None) -> None:
    """Give models added without a usable input shape.

    (no dataset fitted yet) the first registered dataset shape a dry forward pass accepts; says the guess in
    one line per shape.
    """
    from zooscope.nets.models import ModelSpec

    wanted = None if names is None else set(names)
    todo = [m for m in catalog.models() if not m.input_shape and (wanted is None or m.name in wanted)]
    if not todo:
        return
    datasets = catalog.datasets()
    guessed: dict[tuple[int, ...], list[str]] = {}
    for m in todo:
        net = ModelSpec.from_row(m).build()
        firm = firm_shapes(datasets, None, m.trained_on, m.kwargs, net)
        try:
            shape = find_input_shape(net, firm) if firm else None
        except ZooscopeInputError:
            shape = None
        if shape is None:
            log.warning("model %r: no registered dataset has an input shape it accepts; add one, or set it "
                        "with add-model %s --replace --input-shape C,H,W", m.name, m.name)
            continue
        catalog.update_model(m.name, input_shape=shape, metrics=with_cost(m.metrics, net, shape))
        guessed.setdefault(shape, []).append(m.name)
    for shape, who in guessed.items():
        src = next((d.name for d in sorted(datasets, key=lambda d: d.id)
                    if d.input_shape and tuple(d.input_shape) == shape), None)
        names_txt = ", ".join(who[:5]) + (f" and {len(who) - 5} more" if len(who) > 5 else "")
        log.warning("input shape %s guessed for %d model%s (%s) from the registered dataset %r; set it with "
                    "add-model NAME --replace --input-shape C,H,W", "×".join(map(str, shape)), len(who),
                    "s" if len(who) > 1 else "", names_txt, src)


def with_cost(metrics: dict | None, model: Any, shape: Sequence[int] | None) -> dict | None:
    """``metrics`` plus the model's measured cost at ``shape`` under `zooscope.nets.cost.COST_KEY`.

    Unchanged when the shape is not known yet: the cost is recorded when `embed` settles it.
    """
    from zooscope.nets.cost import COST_KEY, measure_cost

    if shape is None:
        return metrics
    return {**(metrics or {}), COST_KEY: measure_cost(model, shape)}
