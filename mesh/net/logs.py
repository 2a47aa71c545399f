"""The networking libraries' log noise: one policy, applied when a network opens.

py-libp2p 0.8.1 logs a WARNING on every normal DHT stream close ("Failed to
read DHT message from stream") and LifecycleError tracebacks at shutdown
(notes, bug 7). On import, without ``LIBP2P_DEBUG``, it also clears its logger's
handlers and cuts propagation, which sends those warnings to logging's
last-resort handler: an SDK user's stderr.

The policy: the libraries' loggers stay silent unless the application asked for
debug output (``mesh -vv``, :func:`set_library_verbosity`); with
``LIBP2P_DEBUG`` set, py-libp2p's own logging is left alone. Only the adapter
applies it (:func:`apply_library_log_policy`, when a network opens, after
libp2p is imported: importing it is what resets the levels), so neither
``import mesh`` nor an offline CLI command imports libp2p for logging's sake.
"""

from __future__ import annotations

import logging
import os

# Loggers of the networking libraries under the adapter.
LIBRARY_LOGGERS = ("libp2p", "multiaddr", "async_service", "aioquic")
# The CLI's -vv: library debug output on our handlers.
DEBUG_VERBOSITY = 2

_verbosity = 0


def set_library_verbosity(verbosity: int) -> None:
    """Choose how much the networking libraries may log (the CLI's ``-v`` count).

    Takes effect when a network opens (or at once if one is open).
    """
    global _verbosity
    _verbosity = verbosity
    if "libp2p" in logging.Logger.manager.loggerDict:
        apply_library_log_policy()


def apply_library_log_policy() -> None:
    """Apply the policy to the library loggers; call after libp2p is imported."""
    if os.environ.get("LIBP2P_DEBUG"):
        return  # the library's own debug switch: leave its logging as it set it
    debug = _verbosity >= DEBUG_VERBOSITY
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.CRITICAL)
    library = logging.getLogger("libp2p")
    # libp2p cut its logger off from ours on import: reconnect it only when asked for.
    library.propagate = debug
    if not debug and not library.handlers:
        # Without a handler of its own, a record below CRITICAL is already dropped by
        # the level; the NullHandler keeps CRITICAL ones off the last-resort handler too.
        library.addHandler(logging.NullHandler())
