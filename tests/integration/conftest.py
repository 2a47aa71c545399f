"""Shared fixtures for the real-process mesh tests (``tests/integration/test_mesh_*.py``).

Helpers live in :mod:`meshproc`; see its docstring for how testnets and
clients are run and waited for.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from meshproc import TestnetProcess, running_testnet


@pytest.fixture(scope="session")
def shared_testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestnetProcess]:
    """One 3-node testnet (tiny-mlp, tiny-gpt) for every test that only reads from it.

    Tests that kill, freeze or stop nodes start their own.
    """
    work = tmp_path_factory.mktemp("shared-testnet")
    with running_testnet(work, nodes=3, models="tiny-mlp,tiny-gpt") as net:
        yield net
