"""``frozen``: the churn scenario with nodes frozen by SIGSTOP instead of killed.

A frozen node keeps its sockets open and answers nothing: connections look
alive, requests wait for their deadline. See :mod:`benchmarks.scenarios.churn`.
"""

from __future__ import annotations

from typing import Any

from benchmarks.scenarios.churn import plan_part, run, summarize

__all__ = ["plan", "run", "summarize"]


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    return [plan_part(quick=quick, fault="freeze")]
