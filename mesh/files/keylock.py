"""One running node per key: an exclusive lock taken before the network starts.

Two processes serving with one key share one PeerID: the second one joins the
network, takes over the first one's place in peers' address books and, when it
exits, leaves it unreachable for many minutes (the library's negative dial
cache), while the first one's log shows nothing wrong. So a node takes this
lock before it opens the network; a second node with the same key fails at
once, naming the key and the process that holds it, without ever joining.

The lock is an ``flock`` on ``<lock dir>/<peer id>.lock`` (the PeerID, not the key
file's path, so a copy of the key file is caught too); the file holds a line
describing the holder. The kernel drops the lock when the holder exits, however
it exits, so a stale file never blocks a restart. The lock directory is
``$XDG_RUNTIME_DIR/mesh`` or ``<temp dir>/mesh-<uid>``: one machine, one user.
Nodes of one key on two machines cannot be seen from here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType

from mesh.core.identity import Identity
from mesh.errors import ConfigError

# A holder line is short; reading more would be a mistake.
MAX_HOLDER_BYTES = 1024


def default_lock_dir() -> Path:
    """Where key locks live: ``$XDG_RUNTIME_DIR/mesh``, else ``<temp dir>/mesh-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "mesh"
    return Path(tempfile.gettempdir()) / f"mesh-{os.getuid()}"


class KeyLock:
    """The exclusive lock of one key; build with :meth:`acquire`, free with :meth:`release`."""

    def __init__(self, *, path: Path, fd: int) -> None:
        self._path = path
        self._fd = fd

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    def acquire(
        cls, identity: Identity, *, directory: Path | None = None, what: str = ""
    ) -> KeyLock:
        """Take the lock of ``identity``'s key, or fail at once.

        Args:
            identity: the key.
            directory: the lock directory (default :func:`default_lock_dir`).
            what: describes this holder in the lock file (for example the data dir).

        Raises:
            ConfigError: another process holds the key's lock (it is named), or the
                lock file cannot be made.
        """
        folder = directory or default_lock_dir()
        path = folder / f"{identity.peer_id}.lock"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot make the key lock {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"key {identity.peer_id} is already in use by a running node"
                f" ({holder or 'holder unknown'}; lock {path}): stop that node first,"
                " or give this one another key"
            ) from exc
        line = (
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}{f', {what}' if what else ''}\n"
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, line.encode("utf-8", "replace")[:MAX_HOLDER_BYTES], 0)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot write the key lock {path}: {exc.strerror}") from exc
        return cls(path=path, fd=fd)

    def release(self) -> None:
        """Free the lock (also freed by the kernel when this process exits)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> KeyLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, MAX_HOLDER_BYTES, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
