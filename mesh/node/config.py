"""The node's configuration: one frozen object, keyword-only, built by the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mesh.core import limits
from mesh.core.identity import Identity
from mesh.core.replay import DEFAULT_REPLAY_ENTRIES
from mesh.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """Everything a node needs to run, read once at the edge (the CLI).

    Attributes:
        identity: the node's key (signs receipts and capacity records; its PeerID).
        data_dir: where the receipt log lives (``receipts.log``).
        model_names: zoo names to serve (resolved by the runner factory).
        listen: multiaddrs to listen on.
        bootstrap: multiaddrs (with ``/p2p/``) of peers to join through.
        device: ``auto``, ``cpu`` or ``cuda``.
        zoo_dirs: extra zoo folders besides the built-in one.
        weights: ``(model name, weights path)`` pairs for models without shipped weights.
        region: free-form region label advertised to clients.
        price_micro: advertised price per task, in micro-units.
        max_batch: the executor's largest batch.
        max_queue: tasks in flight (queued or running) before answering busy.
        max_in_flight_per_client: fairness cap: tasks in flight per client key.
        threads: torch CPU threads (``None``: torch's default).
        replay_entries: replay cache size; when full of live nonces, tasks get busy.
        capacity_refresh_s: how often the signed capacity record is re-put and
            providers re-announced.
        capacity_ttl_periods: a capacity record expires this many refresh periods
            after it was made (capped by ``limits.MAX_CAPACITY_TTL_MS``).
        load_gossip_s: how often a changed load is gossiped on ``LOAD_TOPIC``.
        advert_jitter_s: the adverts' schedule (record pushes, gossip, DHT) starts
            after a random delay of up to this long, so many nodes started at
            once do not all walk the DHT at the same moment (a testnet sets it).
        net_timeout_s: deadline of each DHT and pubsub call made by the advertiser.
        drain_timeout_s: on shutdown, how long in-flight tasks may finish.
        announce: the multiaddrs others dial (``--announce``); empty: the listen
            addresses, ``0.0.0.0`` ones replaced by the host's interface addresses.
        http_listen: ``(host, port)`` of the HTTP endpoint (``/metrics``, ``/healthz``,
            ``/status``; :mod:`mesh.node.status_http`); None: no endpoint.
        self_check: ask peers to dial the advertised addresses back at start
            (:mod:`mesh.node.dialback`) and report what the mesh can reach.
        lie: for researchers only: ``""`` (honest), or ``perturb``, ``lazy`` or
            ``rate:F`` to make this node sign wrong answers (see mesh.node.lies).
    """

    identity: Identity
    data_dir: Path
    model_names: tuple[str, ...] = ()
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    device: str = "auto"
    zoo_dirs: tuple[Path, ...] = ()
    weights: tuple[tuple[str, Path], ...] = ()
    region: str = ""
    price_micro: int = 0
    max_batch: int = 16
    max_queue: int = 64
    max_in_flight_per_client: int = 16
    threads: int | None = None
    # The size the replay module's arithmetic is stated for (790 task starts/s).
    replay_entries: int = DEFAULT_REPLAY_ENTRIES
    # A record is re-put every 20 s and lives 2 periods: one refresh may fail (a
    # DHT hiccup) without the node vanishing, and a node that dies without a word
    # (SIGKILL) leaves clients' views 40 s later, not 3 minutes (60 s x 3 before).
    # A draining node leaves at once (mesh.node.departure). Cost: one DHT put and
    # one provide per model every 20 s per node.
    capacity_refresh_s: float = 20.0
    capacity_ttl_periods: int = 2
    load_gossip_s: float = 2.0
    advert_jitter_s: float = 0.0
    net_timeout_s: float = 5.0
    drain_timeout_s: float = 30.0
    announce: tuple[str, ...] = ()
    http_listen: tuple[str, int] | None = None
    self_check: bool = False
    lie: str = ""

    def __post_init__(self) -> None:
        from mesh.node.lies import parse_lie

        parse_lie(self.lie)  # raises ConfigError for a kind that does not exist
        if self.max_queue < 1 or self.max_batch < 1 or self.max_in_flight_per_client < 1:
            raise ConfigError("max_queue, max_batch and max_in_flight_per_client must be >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.capacity_refresh_s <= 0 or self.capacity_ttl_periods < 1:
            raise ConfigError("capacity_refresh_s must be > 0 and capacity_ttl_periods >= 1")
        if self.advert_jitter_s < 0:
            raise ConfigError("advert_jitter_s must be >= 0")

    @property
    def receipt_log_path(self) -> Path:
        return self.data_dir / "receipts.log"

    @property
    def capacity_ttl_ms(self) -> int:
        """Lifetime of one capacity record, a few refresh periods, capped."""
        ttl = int(self.capacity_refresh_s * self.capacity_ttl_periods * 1000)
        return min(ttl, limits.MAX_CAPACITY_TTL_MS)
