"""Which testnet nodes lie, and how; bad lie settings are refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.core.identity import Identity
from mesh.errors import ConfigError
from mesh.node.config import NodeConfig
from mesh.testnet import launcher

pytestmark = pytest.mark.unit


def test_the_last_nodes_lie_round_robin_and_node_0_stays_honest() -> None:
    config = launcher.TestnetConfig(nodes=5, liars=3, lies=("perturb", "lazy"))
    assert [config.lie_of(i) for i in range(5)] == ["", "", "perturb", "lazy", "perturb"]
    assert [launcher.TestnetConfig(nodes=2).lie_of(i) for i in range(2)] == ["", ""]


@pytest.mark.parametrize(
    "settings",
    [
        {"nodes": 3, "liars": 3},  # node 0 must stay honest
        {"nodes": 3, "liars": -1},
        {"nodes": 3, "liars": 1, "lies": ()},
        {"nodes": 3, "liars": 1, "lies": ("sometimes",)},
        {"nodes": 3, "liars": 1, "lies": ("rate:2",)},
    ],
)
def test_bad_liar_settings_are_config_errors(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        launcher.TestnetConfig(**settings)  # type: ignore[arg-type]


def test_a_node_config_refuses_a_lie_that_does_not_exist(tmp_path: Path) -> None:
    identity = Identity.from_seed(bytes(32))
    assert NodeConfig(identity=identity, data_dir=tmp_path, lie="rate:0.5").lie == "rate:0.5"
    with pytest.raises(ConfigError):
        NodeConfig(identity=identity, data_dir=tmp_path, lie="fib")
