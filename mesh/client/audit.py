"""Which results to audit: a draw the worker cannot predict, made after its receipt arrives.

The decision for a result is ``draw < rate`` with::

    draw = first 8 bytes of HMAC-SHA256(secret, "mesh-audit/v1" || receipt digest) / 2^64

``secret`` is 32 random bytes that never leave the client (kept in its data
directory, so the client can re-derive every decision later and show why a task
was or was not audited). The worker signs its receipt before it can know
anything of the draw: the digest is fixed by what it signed, and without the
secret it cannot tell which of its receipts will be checked, nor grind receipts
(varying times or sequence numbers) towards unaudited ones. The re-check itself
goes out as an ordinary task (fresh nonce, the same ``verify`` field, inputs and
params as the client's other tasks), so the checking worker cannot tell it from
first-hand work either.

Why the default rate is 5% (:data:`DEFAULT_AUDIT_RATE`): a worker faking results
is caught, when each faked result is audited independently with probability
``p`` and an audit exposes a fake, with probability ``1 - (1 - p)^n`` within
``n`` faked results. Catching it with probability at least 0.95 within 60 faked
results needs ``p >= 1 - 0.05^(1/60) = 0.0487``; 0.05 gives
``1 - 0.95^60 = 0.954``. Each audit costs one extra run of the task (a forward
pass for a language model), so the steady-state extra compute is about ``p``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

DEFAULT_AUDIT_RATE = 0.05
SECRET_BYTES = 32
_DOMAIN = b"mesh-audit/v1"
_SCALE = float(2**64)


class AuditDraw:
    """Reproducible, unpredictable audit draws keyed by a client-local secret.

    Args:
        secret: 32 bytes; or a callable giving them, called on the first draw
            (a data directory's secret is then read or made only when an audit
            mode is used); a fresh random secret when None (then decisions cannot
            be re-derived after the client exits).
    """

    def __init__(self, secret: bytes | Callable[[], bytes] | None = None) -> None:
        self._load = secret if callable(secret) else None
        self._secret = secret if isinstance(secret, bytes) else None
        if secret is None:
            self._secret = os.urandom(SECRET_BYTES)
        if self._secret is not None and len(self._secret) != SECRET_BYTES:
            raise ValueError(f"an audit secret is {SECRET_BYTES} bytes")

    def _key(self) -> bytes:
        if self._secret is None:
            assert self._load is not None
            secret = self._load()
            if len(secret) != SECRET_BYTES:
                raise ValueError(f"an audit secret is {SECRET_BYTES} bytes")
            self._secret = secret
        return self._secret

    def draw(self, receipt_digest: bytes) -> float:
        """A number in [0, 1) fixed by the receipt and the secret."""
        mac = hmac.new(self._key(), _DOMAIN + receipt_digest, hashlib.sha256).digest()
        return int.from_bytes(mac[:8], "big") / _SCALE

    def audit(self, receipt_digest: bytes, rate: float) -> bool:
        """True when the result with this receipt is to be audited at ``rate``."""
        return rate > 0 and self.draw(receipt_digest) < rate
