"""The gateway's settings: one frozen object, built by the CLI from its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mesh.errors import ConfigError

DEFAULT_TIMEOUT_S = 60.0  # one request's deadline on the mesh, all retries included
# 1 MiB holds the largest request the zoo's models accept (64 texts of at most
# 16 Ki characters for minilm-l6, or a prompt of a few thousand tokens) with
# room for JSON; bigger bodies are refused before they are read.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Slack on top of the mesh deadline for the gateway's own work (tokenizing,
# discovery of a first peer), so the HTTP answer is a typed 504, never a hang.
DEADLINE_SLACK_S = 5.0
# A graceful stop lets requests in flight finish for this long.
GRACEFUL_STOP_S = 10.0


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Settings of one gateway.

    Attributes:
        host: address to listen on.
        port: TCP port (0: any free port; the startup line names the one taken).
        timeout_s: deadline of one request on the mesh.
        max_body_bytes: the largest request body read.
        api_keys: accepted bearer keys; None leaves the gateway open.
        zoo_dirs: extra zoo folders (manifests, tokenizers, chat templates).
        graceful_stop_s: how long requests in flight may finish after a stop signal.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_keys: frozenset[str] | None = None
    zoo_dirs: tuple[Path, ...] = field(default_factory=tuple)
    graceful_stop_s: float = GRACEFUL_STOP_S

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in [0, 65535], not {self.port}")
        if self.timeout_s <= 0:
            raise ConfigError("the request timeout must be positive")
        if self.max_body_bytes < 1024:
            raise ConfigError("max body bytes must be at least 1024")
        if self.api_keys is not None and not self.api_keys:
            raise ConfigError("an API key file must hold at least one key")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port).

    Raises:
        ConfigError: no port, or a port that is not a number in range.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"--listen takes HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--listen: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--listen: port {number} is out of range")
    return host, number
