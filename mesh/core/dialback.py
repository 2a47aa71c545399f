"""The dial-back messages of ``/mesh/dialback/1.0.0``: "can you reach me at these addresses?".

A node asks a connected peer to open a *fresh* connection to each address it
advertises and check that it answers there as itself (the node's
``mesh.node.dialback`` runs both sides). One request, one reply::

    request = {"addrs": [str, ...], "kind": "dialback"}
    reply   = {"addrs": [str, ...], "details": [str, ...], "kind": "dialback-result",
               "observed": str, "outcomes": [str, ...]}

``outcomes[i]`` is the verdict on ``addrs[i]``: ``reachable`` (the requester
completed a secure handshake there), ``unreachable`` (nothing, or not the
requester, answers), ``timeout``, or ``refused`` (not dialled: not an address the
policy allows, see ``details``). ``observed`` is the requester's address as the
answering peer sees it (where a NAT maps it). A peer may also answer with an
:class:`~mesh.core.messages.ErrorReply` (``busy`` when asked too often).

Not signed: the answer is only as good as the peer that gives it, which is why a
node asks several.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from mesh.core import canonical
from mesh.core.messages import MAX_ADDR_BYTES, ErrorReply
from mesh.core.schema import List, Str, WireMessage
from mesh.errors import MalformedMessage

# Addresses one request may ask for: a node advertises a few (one per interface
# and family); a bound here keeps one request from making a peer dial many.
MAX_DIALBACK_ADDRS = 4
MAX_DETAIL_BYTES = 256
MAX_DIALBACK_MESSAGE_BYTES = 8 * 1024

REACHABLE = "reachable"
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
REFUSED = "refused"
OUTCOMES = (REACHABLE, UNREACHABLE, TIMEOUT, REFUSED)

Addr = Annotated[tuple[str, ...], List(Str(MAX_ADDR_BYTES), MAX_DIALBACK_ADDRS)]


@dataclass(frozen=True, slots=True)
class DialbackRequest(WireMessage):
    """Addresses the requester asks to be dialled back on (without ``/p2p/``)."""

    WIRE_CONSTANTS: ClassVar = {"kind": "dialback"}

    addrs: Addr


@dataclass(frozen=True, slots=True)
class DialbackReply(WireMessage):
    """The verdict on each requested address, in request order."""

    WIRE_CONSTANTS: ClassVar = {"kind": "dialback-result"}

    observed: Annotated[str, Str(MAX_ADDR_BYTES)]
    addrs: Addr
    outcomes: Annotated[tuple[str, ...], List(Str(16, choices=OUTCOMES), MAX_DIALBACK_ADDRS)]
    details: Annotated[tuple[str, ...], List(Str(MAX_DETAIL_BYTES), MAX_DIALBACK_ADDRS)]

    def __post_init__(self) -> None:
        WireMessage.__post_init__(self)
        if not len(self.addrs) == len(self.outcomes) == len(self.details):
            raise MalformedMessage("a dial-back reply needs one outcome and detail per address")


def encode(message: DialbackRequest | DialbackReply) -> bytes:
    """The canonical bytes of a dial-back request or reply."""
    return canonical.encode(message.to_wire())


def decode_request(data: bytes) -> DialbackRequest:
    """Raises MalformedMessage or TooLarge for anything but a valid request."""
    return DialbackRequest.from_wire(canonical.decode(data, max_bytes=MAX_DIALBACK_MESSAGE_BYTES))


def decode_reply(data: bytes) -> DialbackReply | ErrorReply:
    """A reply, or the ErrorReply a peer answered instead.

    Raises:
        MalformedMessage, TooLarge: neither.
    """
    wire = canonical.decode(data, max_bytes=MAX_DIALBACK_MESSAGE_BYTES)
    if isinstance(wire, dict) and wire.get("kind") == "error":
        return ErrorReply.from_wire(wire)
    return DialbackReply.from_wire(wire)


def detail(text: str) -> str:
    """``text`` cut to fit a reply's detail field (UTF-8 safe)."""
    return text.encode("utf-8")[:MAX_DETAIL_BYTES].decode("utf-8", errors="ignore")
