"""Benchmark scenarios, one module each.

Every scenario module has three functions:

- ``plan(*, quick: bool, wan: str) -> list[dict]``: the parameters of each
  process the scenario needs (one per testnet, since a process that has run
  trio must not fork a new testnet);
- ``run(params: dict, progress: Progress) -> dict``: runs in that fresh process
  (``python -m benchmarks.scenarios NAME``) and returns its raw measurements;
- ``summarize(parts: list[dict]) -> dict``: the named figures, from every part.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, cast

SCENARIOS = (
    "overhead",
    "efficiency",
    "discovery",
    "cold_start",
    "churn",
    "frozen",
    "attacks",
    "verification",
    "wan",
)
DEFAULT_SCENARIOS = SCENARIOS[:-1]  # "wan" runs when --wan is given


class Scenario(Protocol):
    """What :func:`load` returns (a scenario module)."""

    plan: Callable[..., list[dict[str, Any]]]
    run: Callable[..., dict[str, Any]]
    summarize: Callable[[list[dict[str, Any]]], dict[str, Any]]


def load(name: str) -> Scenario:
    """The scenario module called ``name``.

    Raises:
        KeyError: no such scenario.
    """
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return cast(Scenario, importlib.import_module(f"benchmarks.scenarios.{name}"))
