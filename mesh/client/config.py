"""Client settings and the edges a client starts from: a key and a bootstrap list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mesh.client.retry import RetryPolicy
from mesh.core.identity import Identity
from mesh.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Client settings (keyword-only).

    Attributes:
        timeout_s: default deadline of one ``run`` (seconds), all attempts included.
        task_window_s: a task's validity window; at least the deadline is used.
        discovery_timeout_s: deadline of one provider search (plus record fetches).
        retry: attempt bounds.
        zoo_dirs: extra zoo folders for name resolution.
        map_concurrency: default tasks in flight in ``map``.
    """

    timeout_s: float = 30.0
    task_window_s: float = 120.0
    discovery_timeout_s: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    zoo_dirs: tuple[Path, ...] = ()
    map_concurrency: int = 8

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.task_window_s <= 0 or self.discovery_timeout_s <= 0:
            raise ConfigError("timeout_s, task_window_s and discovery_timeout_s must be > 0")
        if self.map_concurrency < 1:
            raise ConfigError("map_concurrency must be at least 1")


def load_identity(key: Identity | Path | str | None) -> Identity:
    """An Identity from an Identity, a key file path, or None (a throwaway key)."""
    if key is None:
        return Identity.generate()
    if isinstance(key, Identity):
        return key
    from mesh.files.keyfile import load_key_file

    return load_key_file(Path(key))


def load_bootstrap(bootstrap: Sequence[str] | str | Path) -> list[str]:
    """Multiaddrs from a bootstrap file path, one multiaddr, or a list of multiaddrs.

    Raises:
        ConfigError: a bad line or address (file and line named).
    """
    from mesh.net.bootstrap import load_bootstrap_file, parse_bootstrap_lines

    if isinstance(bootstrap, Path):
        return load_bootstrap_file(bootstrap)
    if isinstance(bootstrap, str):
        if bootstrap.startswith("/") and not Path(bootstrap).is_file():
            return parse_bootstrap_lines([bootstrap], source="--bootstrap")
        return load_bootstrap_file(bootstrap)
    return parse_bootstrap_lines(bootstrap, source="--bootstrap")
