"""What this client knows of workers' honesty: the ones caught answering wrongly.

Health (:mod:`mesh.net.health`) says whether a peer answers; reputation says
whether its answers can be trusted. A worker whose answer failed verification
(a receipt that does not bind the task or the outputs, a commitment that does
not check) is left out of this client's peer choice from then on.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class Reputation:
    """The workers this client caught, with the reason it caught each."""

    def __init__(self) -> None:
        self._caught: dict[str, str] = {}

    def convict(self, peer_id: str, reason: str) -> None:
        """Leave ``peer_id`` out from now on: its answer failed verification."""
        if peer_id not in self._caught:
            logger.warning("worker %s excluded: %s", peer_id, reason)
        self._caught[peer_id] = reason

    def excluded(self, peer_id: str) -> bool:
        """True for a worker this client caught."""
        return peer_id in self._caught

    def caught(self) -> dict[str, str]:
        """Every caught worker and the reason (a copy)."""
        return dict(self._caught)
