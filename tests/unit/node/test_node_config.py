"""NodeConfig checks and the ``mesh node`` argument parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.cli import build_parser
from mesh.cli.node import DEFAULT_LISTEN, build_config
from mesh.core import limits
from mesh.core.identity import Identity
from mesh.core.replay import REPLAY_WINDOW_S, start_rate
from mesh.errors import ConfigError
from mesh.files.keyfile import write_key_file
from mesh.node.config import NodeConfig

pytestmark = pytest.mark.unit


def _key(tmp_path: Path) -> Path:
    path = tmp_path / "node.key"
    write_key_file(path, Identity.from_seed(b"\x01" * 32))
    return path


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    ident = Identity.from_seed(b"\x01" * 32)
    with pytest.raises(ConfigError):
        NodeConfig(identity=ident, data_dir=tmp_path, max_queue=0)
    with pytest.raises(ConfigError):
        NodeConfig(identity=ident, data_dir=tmp_path, device="tpu")


def test_capacity_ttl_is_a_few_periods_and_capped(tmp_path: Path) -> None:
    ident = Identity.from_seed(b"\x01" * 32)
    short = NodeConfig(identity=ident, data_dir=tmp_path, capacity_refresh_s=10)
    assert short.capacity_ttl_ms == 20_000  # two periods: one refresh may fail
    long = NodeConfig(identity=ident, data_dir=tmp_path, capacity_refresh_s=3600)
    assert long.capacity_ttl_ms == limits.MAX_CAPACITY_TTL_MS


def test_node_arguments_defaults(tmp_path: Path) -> None:
    key = _key(tmp_path)
    args = build_parser().parse_args(["node", "--key", str(key), "--models", "tiny-mlp"])
    config = build_config(args)
    assert config.model_names == ("tiny-mlp",)
    assert config.listen == (DEFAULT_LISTEN,)
    assert config.bootstrap == ()
    assert config.data_dir == tmp_path / "node.key.data"
    assert config.identity.peer_id == Identity.from_seed(b"\x01" * 32).peer_id


def test_node_arguments_all(tmp_path: Path) -> None:
    key = _key(tmp_path)
    peer = Identity.from_seed(b"\x02" * 32).peer_id
    boot = tmp_path / "boot.txt"
    boot.write_text(f"# test\n/ip4/127.0.0.1/tcp/4001/p2p/{peer}\n")
    argv = [
        "node", "--key", str(key), "--models", "tiny-mlp, minilm-l6",
        "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/5000",
        "--bootstrap", str(boot), "--device", "cpu", "--data-dir", str(tmp_path / "d"),
        "--zoo", str(tmp_path), "--region", "eu-west", "--price-micro", "5",
        "--max-batch", "4", "--max-queue", "9", "--weights", f"gpt2={tmp_path}",
        "--threads", "1", "--drain-timeout", "3",
    ]  # fmt: skip
    config = build_config(build_parser().parse_args(argv))
    assert config.model_names == ("tiny-mlp", "minilm-l6")
    assert config.listen == ("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/5000")
    assert config.bootstrap == (f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}",)
    assert (config.device, config.region, config.price_micro) == ("cpu", "eu-west", 5)
    assert (config.max_batch, config.max_queue, config.threads) == (4, 9, 1)
    assert config.weights == (("gpt2", tmp_path),)
    assert config.zoo_dirs == (tmp_path,)
    assert config.drain_timeout_s == 3.0


@pytest.mark.parametrize(
    "extra",
    [["--max-queue", "0"], ["--device", "tpu"], ["--price-micro", "-1"]],
)
def test_node_arguments_rejected_by_the_parser(tmp_path: Path, extra: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "--key", "k", "--models", "m", *extra])


def test_node_requires_key_and_models() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "--models", "tiny-mlp"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "--key", "k"])


@pytest.mark.parametrize("weights", ["gpt2", "=x", "gpt2="])
def test_bad_weights_item_is_a_config_error(tmp_path: Path, weights: str) -> None:
    key = _key(tmp_path)
    args = build_parser().parse_args(
        ["node", "--key", str(key), "--models", "gpt2", "--weights", weights]
    )
    with pytest.raises(ConfigError):
        build_config(args)


def test_bad_bootstrap_line_names_file_and_line(tmp_path: Path) -> None:
    key = _key(tmp_path)
    boot = tmp_path / "boot.txt"
    boot.write_text("# ok\n/ip4/127.0.0.1/tcp/1\n")
    args = build_parser().parse_args(
        ["node", "--key", str(key), "--models", "m", "--bootstrap", str(boot)]
    )
    with pytest.raises(ConfigError, match=r"boot\.txt:2"):
        build_config(args)


def test_default_replay_cache_lets_tasks_start_at_the_documented_rate(tmp_path: Path) -> None:
    # The start bucket is sized from the cache: a smaller default (100k entries
    # once) silently capped a node at 158 task starts a second, one per 6.3 ms.
    config = NodeConfig(identity=Identity.from_seed(b"\x01" * 32), data_dir=tmp_path)
    rate = start_rate(config.replay_entries)
    assert rate.rate >= 790
    assert rate.burst + rate.rate * (REPLAY_WINDOW_S + 1) <= config.replay_entries
