"""A worker's receipt chain on disk: append-only, hash-chained, crash-tolerant.

The record format and the chain rules are the core's
(:mod:`mesh.core.receipt_chain`); this module keeps the file. On open the whole
chain is read and checked; a torn final record -- a crash in the middle of a
write -- is cut off with a warning, anything else that does not check is an
error. Appends are fsynced before the receipt is handed out, so a receipt a
client holds is never lost from the chain by a crash. An exclusive lock keeps a
second process from forking the chain (equivocation).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from mesh.core.envelope import Signed
from mesh.core.identity import Identity
from mesh.core.messages import Receipt, RuntimeValue
from mesh.core.receipt_chain import check_chain, encode_record, open_records
from mesh.core.receipts import make_receipt
from mesh.errors import ConfigError, VerificationError

logger = logging.getLogger(__name__)


class ReceiptLog:
    """The open receipt chain of one worker. Build with :meth:`open`.

    Thread-safe: :meth:`issue` and :meth:`append` may be called from worker threads.
    """

    def __init__(self, *, path: Path, identity: Identity, fd: int, count: int, prev: bytes) -> None:
        self._path = path
        self._identity = identity
        self._fd = fd
        self._next_seq = count
        self._prev = prev
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | str, identity: Identity) -> ReceiptLog:
        """Open (or create) the log at ``path`` for ``identity`` and check its chain.

        Raises:
            VerificationError: a complete record does not check (tampered or foreign).
            ConfigError: the file cannot be opened, or another process holds it.
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open receipt log {path}: {exc.strerror}") from exc
        try:
            # Two processes appending to one chain would fork it: equivocation.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"receipt log {path} is in use by another process") from exc
        try:
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
            chain = check_chain(data, source=str(path), worker=identity.public_key)
            if chain.good_bytes < len(data):
                logger.warning(
                    "receipt log %s: cutting a torn final record (%d bytes)",
                    path,
                    len(data) - chain.good_bytes,
                )
                os.ftruncate(fd, chain.good_bytes)
                os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot read receipt log {path}: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        return cls(path=path, identity=identity, fd=fd, count=chain.count, prev=chain.prev)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next receipt gets."""
        return self._next_seq

    @property
    def prev_digest(self) -> bytes:
        """The ``prev`` the next receipt gets (digest of the last envelope)."""
        return self._prev

    def append(self, signed: Signed[Receipt]) -> None:
        """Append a receipt that continues the chain, and fsync.

        Raises:
            VerificationError: it is not this worker's next receipt.
            ConfigError: the write failed.
        """
        with self._lock:
            self._append_locked(signed)

    def issue(
        self,
        *,
        task_id: bytes,
        client: bytes,
        model_root: bytes,
        runtime: Mapping[str, RuntimeValue],
        output_hash: bytes,
        started_ms: int,
        finished_ms: int,
        commitment: bytes = b"",
    ) -> Signed[Receipt]:
        """Build, sign and append the next receipt in one step; return it."""
        with self._lock:
            signed = make_receipt(
                self._identity,
                task_id=task_id,
                client=client,
                seq=self._next_seq,
                prev=self._prev,
                model_root=model_root,
                runtime=runtime,
                output_hash=output_hash,
                started_ms=started_ms,
                finished_ms=finished_ms,
                commitment=commitment,
            )
            self._append_locked(signed)
            return signed

    def _append_locked(self, signed: Signed[Receipt]) -> None:
        receipt = signed.message
        if receipt.worker != self._identity.public_key:
            raise VerificationError("receipt belongs to another worker")
        if receipt.seq != self._next_seq or receipt.prev != self._prev:
            raise VerificationError(
                f"receipt seq {receipt.seq} does not continue the chain at {self._next_seq}"
            )
        if self._fd < 0:
            raise ConfigError(f"receipt log {self._path} is closed")
        record = encode_record(signed)
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            raise ConfigError(f"cannot append to receipt log {self._path}: {exc}") from exc
        self._next_seq += 1
        self._prev = signed.digest

    def close(self) -> None:
        """Close the file (and release the lock on it)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> ReceiptLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_receipts(path: Path | str) -> list[Signed[Receipt]]:
    """Every receipt in a log file, opened (signatures verified), in order.

    A torn final record is ignored. The chain links are not checked here; see
    :func:`mesh.core.receipt_chain.check_chain`.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read receipt log {path}: {exc.strerror}") from exc
    return open_records(data, source=str(path))
