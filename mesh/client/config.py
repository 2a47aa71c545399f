"""Client settings and the edges a client starts from: a key and a bootstrap list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mesh.client.audit import DEFAULT_AUDIT_RATE
from mesh.client.retry import RetryPolicy
from mesh.client.verification import DEFAULT_REPLICAS, verify_options
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
        verify: the default verification mode of ``run`` and ``map`` (see
            :mod:`mesh.client.verification`): ``signature`` trusts the worker
            (a result proves who answered, not that it is right; no extra
            compute); ``audit`` re-checks a random share of results on an
            independent worker; ``redundant`` returns only results a second
            independent worker confirmed.
        audit_rate: the share of results ``audit`` re-checks. The default, 0.05,
            is the detection arithmetic: a worker faking results is caught within
            ``n`` faked results with probability ``1 - (1 - p)^n``; catching it
            with probability >= 0.95 within 60 faked results needs
            ``p >= 1 - 0.05^(1/60) = 0.0487``, and 0.05 gives 0.954 at about 5%
            extra compute. Workers with little verified history here and workers
            others accused are audited more (mesh.client.reputation).
        replicas: how many distinct workers ``redundant`` runs each task on (>= 2).
        data_dir: where the client keeps its audit secret, its reputation table
            and its verdict files (mesh.files.client_state); None keeps them in
            memory for the client's life (the CLI uses ``~/.mesh/client``).
        local_check: settle checks in this process when it holds the model (zoo
            models with a pinned root): classifiers and embeddings are re-run here,
            generations checked with one forward pass. Imports torch and loads
            the model on the first check.
    """

    timeout_s: float = 30.0
    task_window_s: float = 120.0
    discovery_timeout_s: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    zoo_dirs: tuple[Path, ...] = ()
    map_concurrency: int = 8
    verify: str = "signature"
    audit_rate: float = DEFAULT_AUDIT_RATE
    replicas: int = DEFAULT_REPLICAS
    data_dir: Path | None = None
    local_check: bool = False

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.task_window_s <= 0 or self.discovery_timeout_s <= 0:
            raise ConfigError("timeout_s, task_window_s and discovery_timeout_s must be > 0")
        if self.map_concurrency < 1:
            raise ConfigError("map_concurrency must be at least 1")
        verify_options(mode=self.verify, audit_rate=self.audit_rate, replicas=self.replicas)


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
