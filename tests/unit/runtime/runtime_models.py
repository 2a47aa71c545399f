"""Loaded models of the built-in zoo, cached for the runtime tests (loading is the slow part)."""

from __future__ import annotations

from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.zoo import Zoo

_CACHE: dict[tuple[str, str], LoadedModel] = {}


def loaded(name: str, dtype: str = "float32") -> LoadedModel:
    """A model of the built-in zoo on CPU, loaded once per test session."""
    key = (name, dtype)
    if key not in _CACHE:
        _CACHE[key] = load_model(Zoo.builtin().manifest(name), device="cpu", dtype=dtype)
    return _CACHE[key]
