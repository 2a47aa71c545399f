"""Optional API keys: ``Authorization: Bearer KEY`` checked in constant time.

The key file holds one key per line; blank lines and ``#`` comments are
skipped. Without a key file the gateway is open (its startup line says so).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from mesh.errors import ConfigError
from mesh.gateway.errors import INVALID_REQUEST, ApiError

_BEARER = "bearer "
# Keys are opaque strings; a line this long is a mistake (a pasted file), not a key.
MAX_KEY_CHARS = 512


def load_api_keys(path: Path) -> frozenset[str]:
    """The keys of a key file.

    Raises:
        ConfigError: unreadable, empty, or a key with spaces or over the length cap.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read API key file {path}: {exc}") from exc
    keys = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_KEY_CHARS or any(c.isspace() for c in line):
            raise ConfigError(
                f"{path}:{number}: a key is one word of at most {MAX_KEY_CHARS} chars"
            )
        keys.add(line)
    if not keys:
        raise ConfigError(f"API key file {path} holds no key")
    return frozenset(keys)


class ApiKeys:
    """Checks bearer keys against a set without revealing which key nearly matched.

    Args:
        keys: the accepted keys.
    """

    def __init__(self, keys: frozenset[str]) -> None:
        # Digests have one length, so comparing them leaks neither a key's
        # length nor its prefix; every key is compared on every request.
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, authorization: str | None) -> None:
        """Accept an ``Authorization`` header value, or raise.

        Raises:
            ApiError: 401 when the header is missing, not a bearer key, or a wrong key.
        """
        if authorization is None or not authorization.lower().startswith(_BEARER):
            raise _unauthorized(
                "missing API key: send Authorization: Bearer KEY", "missing_api_key"
            )
        given = hashlib.sha256(authorization[len(_BEARER) :].strip().encode()).digest()
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(given, digest)
        if not found:
            raise _unauthorized("incorrect API key", "invalid_api_key")


def _unauthorized(message: str, code: str) -> ApiError:
    # OpenAI answers a bad key as an invalid_request_error with code invalid_api_key.
    return ApiError(
        401, message, type=INVALID_REQUEST, code=code, headers={"WWW-Authenticate": "Bearer"}
    )
