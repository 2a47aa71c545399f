"""Runtime tests run with torch's deterministic algorithms on, as a node does."""

from __future__ import annotations

import pytest
import torch

from mesh.runtime.device import configure_determinism


@pytest.fixture(autouse=True, scope="session")
def _deterministic() -> None:
    configure_determinism()
    assert torch.are_deterministic_algorithms_enabled()
