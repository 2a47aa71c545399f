"""A client's data directory on disk: audit secret, reputation table, verdict files.

Layout (the folder is made on first write, mode 0700; files are 0600)::

    <data_dir>/audit.key                   32 random bytes: the audit secret
    <data_dir>/reputation.json             the per-worker table of mesh.client.reputation
    <data_dir>/verdicts/<hex>.verdict      verdict files this client made (mesh.core.evidence)

Nothing is written until there is something to keep, so a client that only
runs ``signature`` tasks leaves no trace. Writes replace files atomically
(a temporary file, then ``rename``), so a crash never leaves half a table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mesh.errors import ConfigError

SECRET_FILE = "audit.key"
REPUTATION_FILE = "reputation.json"
VERDICTS_DIR = "verdicts"
SECRET_BYTES = 32
# A reputation table of thousands of workers is a few hundred KiB; this bounds a bad file.
MAX_TABLE_BYTES = 16 * 1024 * 1024


class ClientStore:
    """Reads and writes one client data directory (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()

    def _ensure(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create client data dir {folder}: {exc.strerror}") from exc

    def _write(self, path: Path, data: bytes) -> None:
        self._ensure(path.parent)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc

    def audit_secret(self) -> bytes:
        """The client's audit secret, made (and kept) on first use.

        Raises:
            ConfigError: the file cannot be read or written, or is not 32 bytes.
        """
        path = self.path / SECRET_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = os.urandom(SECRET_BYTES)
            self._write(path, data)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        if len(data) != SECRET_BYTES:
            raise ConfigError(f"{path} is not a {SECRET_BYTES}-byte audit secret")
        return data

    def read_reputation(self) -> dict[str, Any] | None:
        """The stored reputation table, or None when there is none yet.

        Raises:
            ConfigError: the file exists but is unreadable or not a JSON object.
        """
        path = self.path / REPUTATION_FILE
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_TABLE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        if len(raw) > MAX_TABLE_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_TABLE_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path} is not a JSON object")
        return doc

    def write_reputation(self, doc: dict[str, Any]) -> None:
        """Replace the stored table. Raises ConfigError when it cannot be written."""
        data = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")
        self._write(self.path / REPUTATION_FILE, data)

    def write_verdict(self, digest_hex: str, data: bytes) -> Path:
        """Keep a verdict file; returns its path. Raises ConfigError when it cannot."""
        path = self.path / VERDICTS_DIR / f"{digest_hex}.verdict"
        self._write(path, data)
        return path

    def verdict_files(self) -> list[Path]:
        """The verdict files kept so far, oldest name first."""
        folder = self.path / VERDICTS_DIR
        if not folder.is_dir():
            return []
        return sorted(folder.glob("*.verdict"))
