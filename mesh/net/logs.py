"""Quieting py-libp2p's log noise; called by the CLI (library code never does).

py-libp2p 0.8.1 logs a WARNING "Failed to read DHT message from stream" on every
normal DHT stream close and ERROR tracebacks (``LifecycleError``) at shutdown
(notes, bug 7). Operators should see our own messages, not those.
"""

from __future__ import annotations

import logging

# Loggers of the networking libraries under the adapter.
LIBRARY_LOGGERS = ("libp2p", "multiaddr", "async_service", "aioquic")


def quiet_library_logs(level: int = logging.CRITICAL, *, verbose: bool = False) -> None:
    """Raise the level of the libp2p family of loggers.

    Args:
        level: the level they are set to (CRITICAL hides the shutdown noise).
        verbose: leave them at WARNING instead (``mesh ... -v`` for debugging).
    """
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else level)
