"""Dial-back: answer "can you reach me?" for peers, and ask it about ourselves.

**Serving** (:class:`DialbackServer`, ``/mesh/dialback/1.0.0``): a connected peer
names up to :data:`~mesh.core.dialback.MAX_DIALBACK_ADDRS` addresses; for each we
open a fresh TCP connection and check that the peer completes a Noise handshake
there as itself (``Network.probe_listener``). What a ``reachable`` verdict
proves: from *this* peer's network position, a new TCP connection to that address
reaches a libp2p listener holding the requester's key. What it does not: that
peers elsewhere can (another network may filter differently), or anything about
other transports. It is not an amplification tool:

- only addresses whose IP is the requester's observed IP (the source address of
  its connection to us) are dialled, so a requester can make us dial nobody but
  itself (``refused`` otherwise; DNS names are refused, they would need resolving);
- at most 4 addresses a request, each dial bounded by :data:`DIAL_TIMEOUT_S`;
- one request per peer per :data:`REQUEST_INTERVAL_S` (``busy`` otherwise), and
  :data:`MAX_CONCURRENT_PROBES` dials at once for all peers together.

**Asking** (:class:`ReachabilityCheck`): at start, once the node advertises, it
asks up to :data:`PEERS_TO_ASK` connected peers to dial back each advertised
address, then says plainly which addresses the mesh can reach and, for those it
cannot, what to open (the TCP port, and the ``--announce`` option). An address is
``reachable`` when one peer reached it, ``unreachable`` when peers tried and none
did, ``unknown`` when no peer could try (none connected, or none may dial it: the
peers see this node at another IP, as behind NAT with a private address
advertised). The check repeats (:data:`RECHECK_S`), sooner while it knows nothing.

py-libp2p 0.8.1 ships AutoNAT v1, tried first and not used: its server dials back
with ``host.connect``, which reuses the connection the request came on, so it
answered OK for a closed port (measured: status OK for ``/ip4/127.0.0.1/tcp/1``);
it has no rate limit and no bound on the addresses it dials.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from mesh.core import dialback as wire
from mesh.core.messages import ErrorReply
from mesh.errors import Busy, ConfigError, DeadlineExceeded, MeshError, PeerUnavailable
from mesh.net.endpoints import IPAddress, normalize_ip, observed_ip, tcp_endpoint
from mesh.net.interface import Inbound, Network, PeerAddr

logger = logging.getLogger(__name__)

DIALBACK_PROTOCOL = "/mesh/dialback/1.0.0"
# One dial: a TCP connect and a Noise handshake take ~10-20 ms on loopback and a
# few round trips across the world; 3 s is generous and bounds the cost.
DIAL_TIMEOUT_S = 3.0
# A peer may ask once this often: the self-check asks at start and every RECHECK_S.
REQUEST_INTERVAL_S = 30.0
# Dials running at once for all requesters together.
MAX_CONCURRENT_PROBES = 4
# Requesters remembered for the rate limit; the oldest are forgotten past this.
MAX_TRACKED_PEERS = 4096
# The asking side: peers asked per check, the deadline of one request (the
# server's dials run concurrently, so one dial timeout plus margin), and when to
# check again: soon while nothing is known (no peer yet), then rarely.
PEERS_TO_ASK = 3
REQUEST_TIMEOUT_S = DIAL_TIMEOUT_S + 5.0
RETRY_UNKNOWN_S = (5.0, 15.0, 60.0)
RECHECK_S = 600.0

Probe = Callable[..., Awaitable[None]]  # probe(addr, peer_id, *, timeout=...)


class DialbackServer:
    """Answers ``/mesh/dialback/1.0.0`` requests under the policy in the module docstring.

    Args:
        probe: ``Network.probe_listener``.
        interval_s: the shortest time between two requests of one peer.
    """

    def __init__(self, probe: Probe, *, interval_s: float = REQUEST_INTERVAL_S) -> None:
        self._probe = probe
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._limiter = trio.CapacityLimiter(MAX_CONCURRENT_PROBES)
        self.answered = 0  # requests answered with verdicts (tests and stats)

    async def handle(self, inbound: Inbound) -> bytes:
        """One request: the verdicts, or busy / malformed as an ErrorReply."""
        now = trio.current_time()
        try:
            request = wire.decode_request(inbound.message)
            self._admit(inbound.peer_id, now)
        except MeshError as exc:  # malformed, too large, or Busy from the rate limit
            return ErrorReply.from_exception(exc).encode()
        seen = observed_ip(inbound.addr)
        outcomes = [(wire.REFUSED, "")] * len(request.addrs)

        async def one(index: int, addr: str) -> None:
            outcomes[index] = await self._dial(addr, inbound.peer_id, seen)

        async with trio.open_nursery() as nursery:
            for index, addr in enumerate(request.addrs):
                nursery.start_soon(one, index, addr)
        self.answered += 1
        reply = wire.DialbackReply(
            observed=inbound.addr,
            addrs=request.addrs,
            outcomes=tuple(o for o, _ in outcomes),
            details=tuple(wire.detail(d) for _, d in outcomes),
        )
        logger.info(
            "dial-back for %s: %s",
            inbound.peer_id,
            ", ".join(f"{a} {o}" for a, o in zip(reply.addrs, reply.outcomes, strict=True)),
        )
        return wire.encode(reply)

    def _admit(self, peer_id: str, now: float) -> None:
        last = self._last.get(peer_id)
        if last is not None and now - last < self._interval_s:
            wait_ms = int((self._interval_s - (now - last)) * 1000)
            raise Busy("dial-back asked too often", retry_after_ms=wait_ms)
        if len(self._last) >= MAX_TRACKED_PEERS:
            # Forget the longest-ago requester (dicts keep insertion order).
            del self._last[next(iter(self._last))]
        self._last.pop(peer_id, None)
        self._last[peer_id] = now

    async def _dial(self, addr: str, peer_id: str, seen: IPAddress | None) -> tuple[str, str]:
        try:
            host, _ = tcp_endpoint(addr)
        except ConfigError as exc:
            return wire.REFUSED, f"only /ip4|ip6/<address>/tcp/<port> is dialled: {exc}"
        if seen is None or normalize_ip(ipaddress.ip_address(host)) != seen:
            return wire.REFUSED, f"not your address as seen here ({seen or 'unknown'})"
        async with self._limiter:
            try:
                await self._probe(addr, peer_id, timeout=DIAL_TIMEOUT_S)
            except DeadlineExceeded:
                return wire.TIMEOUT, f"no answer within {DIAL_TIMEOUT_S:.0f} s"
            except (PeerUnavailable, ConfigError) as exc:
                return wire.UNREACHABLE, str(exc)
        return wire.REACHABLE, ""


REACHABLE, UNREACHABLE, UNKNOWN = "reachable", "unreachable", "unknown"


@dataclass(frozen=True, slots=True)
class AddrVerdict:
    """What the mesh says about one advertised address.

    Attributes:
        addr: the address (without ``/p2p/``).
        status: ``reachable``, ``unreachable`` or ``unknown``.
        tried: peers that dialled it; ``reached``: of those, how many got through.
        details: the peers' reasons (``<peer>: <outcome> <detail>``).
        advice: what to do about it, for the operator ("" when reachable).
    """

    addr: str
    status: str
    tried: int
    reached: int
    details: tuple[str, ...]
    advice: str


@dataclass(frozen=True, slots=True)
class Reachability:
    """The outcome of one self-check."""

    checked_ms: int
    asked: tuple[str, ...]
    answered: tuple[str, ...]
    observed: tuple[str, ...]  # this node's address as the answering peers see it
    verdicts: tuple[AddrVerdict, ...] = field(default=())

    @property
    def status(self) -> str:
        """``reachable`` if any address is, ``unreachable`` if all tried ones failed, else
        ``unknown``."""
        statuses = {v.status for v in self.verdicts}
        if REACHABLE in statuses:
            return REACHABLE
        if UNREACHABLE in statuses:
            return UNREACHABLE
        return UNKNOWN

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "checked_ms": self.checked_ms,
            "asked": list(self.asked),
            "answered": list(self.answered),
            "observed": list(self.observed),
            "addrs": [
                {
                    "addr": v.addr,
                    "status": v.status,
                    "tried": v.tried,
                    "reached": v.reached,
                    "details": list(v.details),
                    "advice": v.advice,
                }
                for v in self.verdicts
            ],
        }


def advice_for(addr: str, status: str, observed: Sequence[str]) -> str:
    """What the operator should do about an address that is not reachable."""
    if status == REACHABLE:
        return ""
    try:
        _, port = tcp_endpoint(addr)
        port_text = f"TCP port {port}"
    except ConfigError:
        port_text = "the node's TCP port"
    if status == UNREACHABLE:
        return (
            f"the mesh cannot reach this node at {addr}: allow inbound {port_text} in the "
            f"host's firewall, forward {port_text} from the router's public address to this "
            "host if it is behind NAT, or announce the address others can dial with "
            "--announce /ip4/<public address>/tcp/<port>"
        )
    seen = ", ".join(sorted(set(observed))) or "nowhere yet"
    return (
        f"not checked: no peer could dial {addr} (peers see this node at {seen}); if that "
        f"is the address others dial, announce it with --announce and open {port_text}"
    )


class ReachabilityCheck:
    """Asks connected peers to dial this node back; keeps the latest :class:`Reachability`.

    Args:
        network: the node's network.
        addrs: the addresses the node advertises (read at each check).
        wall_clock: epoch milliseconds.
        rng: which peers to ask.
    """

    def __init__(
        self,
        network: Network,
        *,
        addrs: Callable[[], Sequence[str]],
        wall_clock: Callable[[], int],
        rng: random.Random | None = None,
    ) -> None:
        self._network = network
        self._addrs = addrs
        self._now_ms = wall_clock
        self._rng = rng or random.Random()
        self.latest: Reachability | None = None
        self.checks = 0
        self.changed = trio.Event()  # set after each check (then replaced)

    async def check_once(self) -> Reachability:
        """Ask up to :data:`PEERS_TO_ASK` connected peers about every advertised address."""
        addrs = [a.split("/p2p/")[0] for a in self._addrs()][: wire.MAX_DIALBACK_ADDRS]
        others = [p for p in self._network.connected_peers() if p != self._network.peer_id]
        asked = self._rng.sample(others, min(PEERS_TO_ASK, len(others)))
        replies: dict[str, wire.DialbackReply] = {}
        payload = wire.encode(wire.DialbackRequest(addrs=tuple(addrs)))

        async def ask(peer_id: str) -> None:
            try:
                data = await self._network.request(
                    PeerAddr(peer_id), DIALBACK_PROTOCOL, payload, timeout=REQUEST_TIMEOUT_S
                )
                reply = wire.decode_reply(data)
            except MeshError as exc:
                logger.info("dial-back request to %s failed: %s", peer_id, exc)
                return
            if isinstance(reply, ErrorReply):
                logger.info("dial-back request to %s refused: %s", peer_id, reply.message)
                return
            if list(reply.addrs) != addrs:
                logger.info("dial-back reply of %s is about other addresses", peer_id)
                return
            replies[peer_id] = reply

        if addrs:
            async with trio.open_nursery() as nursery:
                for peer_id in asked:
                    nursery.start_soon(ask, peer_id)
        result = _summarise(addrs, asked, replies, self._now_ms())
        self.latest = result
        self.checks += 1
        self.changed.set()
        self.changed = trio.Event()
        _log(result)
        return result

    async def run(self) -> None:
        """Check now, then again: soon while nothing is known, every RECHECK_S after."""
        retries = iter(RETRY_UNKNOWN_S)
        while True:
            result = await self.check_once()
            delay = RECHECK_S
            if result.status == UNKNOWN:
                delay = next(retries, RECHECK_S)
            await trio.sleep(delay)


def _summarise(
    addrs: Sequence[str],
    asked: Sequence[str],
    replies: dict[str, wire.DialbackReply],
    now_ms: int,
) -> Reachability:
    observed = tuple(r.observed for r in replies.values() if r.observed)
    verdicts = []
    for index, addr in enumerate(addrs):
        tried = reached = 0
        details = []
        for peer_id, reply in sorted(replies.items()):
            outcome, text = reply.outcomes[index], reply.details[index]
            details.append(f"{peer_id}: {outcome}{' ' + text if text else ''}")
            if outcome != wire.REFUSED:
                tried += 1
                reached += outcome == wire.REACHABLE
        status = REACHABLE if reached else UNREACHABLE if tried else UNKNOWN
        verdicts.append(
            AddrVerdict(
                addr=addr,
                status=status,
                tried=tried,
                reached=reached,
                details=tuple(details),
                advice=advice_for(addr, status, observed),
            )
        )
    return Reachability(
        checked_ms=now_ms,
        asked=tuple(asked),
        answered=tuple(sorted(replies)),
        observed=observed,
        verdicts=tuple(verdicts),
    )


def _log(result: Reachability) -> None:
    if not result.asked:
        logger.info("reachability: no connected peer to ask yet; will check again")
        return
    for verdict in result.verdicts:
        if verdict.status == REACHABLE:
            logger.info(
                "reachability: %s reachable (dialled back by %d of %d peers)",
                verdict.addr,
                verdict.reached,
                verdict.tried,
            )
        elif verdict.status == UNREACHABLE:
            logger.warning(
                "reachability: %s NOT reachable (%d peers tried: %s); %s",
                verdict.addr,
                verdict.tried,
                "; ".join(verdict.details),
                verdict.advice,
            )
        else:
            logger.info("reachability: %s unknown; %s", verdict.addr, verdict.advice)
