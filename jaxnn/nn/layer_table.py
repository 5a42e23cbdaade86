"""Parameter tables of any model: name, shape and count of every parameter array, in layer order."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.nn.family import path_names

LayerOrder = Callable[[Sequence[str]], Any]


def natural_order(names: Sequence[str]) -> Any:
    """Sort key that reads numbers as numbers: Conv_2 before Conv_10."""
    return [
        [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]
        for name in names
    ]


def layer_table(
    params: Any, *, order: LayerOrder | None = None
) -> list[tuple[str, tuple[int, ...], int]]:
    """Rows (name like 'hidden_0/kernel', shape, count), sorted by `order` (default: natural)."""
    if isinstance(params, Mapping) and set(params) == {"params"}:
        params = params["params"]
    rows = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        shape = tuple(int(d) for d in jnp.shape(leaf))
        rows.append((path_names(path), shape, math.prod(shape)))
    rows.sort(key=lambda row: (order or natural_order)(row[0]))
    return [("/".join(names), shape, count) for names, shape, count in rows]


def count_params(params: Any) -> int:
    """The total number of scalar parameters."""
    return sum(count for _, _, count in layer_table(params))


def format_layer_table(params: Any, *, order: LayerOrder | None = None) -> str:
    """The layer table as aligned text, one row per parameter array and a total line."""
    rows = [
        (name, str(shape), f"{count:,}") for name, shape, count in layer_table(params, order=order)
    ]
    rows.append(("total", "", f"{count_params(params):,}"))
    header = ("parameter", "shape", "count")
    widths = [max(len(row[col]) for row in [header, *rows]) for col in range(3)]

    def line(row: tuple[str, str, str]) -> str:
        return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

    separator = "-" * (sum(widths) + 4)
    return "\n".join([line(header), separator, *map(line, rows[:-1]), separator, line(rows[-1])])
