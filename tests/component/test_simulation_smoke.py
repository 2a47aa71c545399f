"""The discovery simulation (benchmarks/scenarios/simulation.py) on a small mesh.

On the virtual clock a cold discovery must take exactly one round trip to the
nearest bootstrap peer, and bootstrap peers carry more traffic than the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The benchmarks live beside the package, not in it: import them from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scenarios import simulation
from benchmarks.scenarios.common import Progress

pytestmark = pytest.mark.component


def test_a_small_simulated_mesh_discovers_in_one_round_trip() -> None:
    part = simulation.run({"peers": 30, "clients": 5, "seed": 3}, Progress())
    assert part["round_trips"] == pytest.approx([1.0] * 5)
    assert min(part["found"]) >= 25  # most of the 30 nodes, from the first answer
    assert min(part["bootstrap_bytes_per_s"]) > max(part["node_bytes_per_s"])
    figures = simulation.summarize([part])
    assert figures["per_size"]["30"]["warm_discovery_cpu_p50_us"] > 0
