"""Shared pytest fixtures: a prepared-data cache shared by all workers, dataset configs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import ml_collections
import pytest

# Tests run on CPU; set before any test module imports jax (none of the imports above do).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> str:
    """`<repo>/.data/tfds`: prepared once, reused by every run and xdist worker (load() locks)."""
    return str(REPO / ".data" / "tfds")


@pytest.fixture
def dataset_config(data_dir: str) -> Callable[..., ml_collections.ConfigDict]:
    """Factory: dataset_config(name, **overrides) -> a config.dataset ConfigDict."""

    def make(name: str, **overrides: object) -> ml_collections.ConfigDict:
        fields = {
            "name": name,
            "data_dir": data_dir,
            "validation_fraction": 0.1,
            "standardize": True,
            "classes": (),
            "train_per_class": 0,
            "split_seed": 0,
        }
        unknown = set(overrides) - set(fields)
        if unknown:
            raise TypeError(f"unknown dataset fields {sorted(unknown)}")
        fields.update(overrides)
        return ml_collections.ConfigDict(fields)

    return make
