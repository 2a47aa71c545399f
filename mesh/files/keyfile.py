"""Key files: a node's or client's Ed25519 seed on disk, mode 0600.

Format (text, one line; see :func:`mesh.core.identity.format_key_line`)::

    mesh-ed25519-seed-v1 <64 lowercase hex digits of the 32-byte seed>

A key file is created with mode 0600 from the first byte (``O_CREAT | O_EXCL``),
never overwritten, and refused on load when group or others may access it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mesh.core.identity import Identity, format_key_line, parse_key_line
from mesh.errors import KeyFileError

# A key file is one short line; reading more than this would be a mistake.
MAX_KEY_FILE_BYTES = 256


def write_key_file(path: Path | str, identity: Identity) -> None:
    """Write ``identity``'s seed to a new file of mode 0600.

    Raises:
        KeyFileError: the file exists or cannot be created.
    """
    try:
        # O_EXCL: never overwrite a key; 0o600 at creation, so no window in which
        # the seed is readable by others.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        # The umask may have cleared bits but never adds any; fchmod makes 0600 exact.
        os.fchmod(fd, 0o600)
        os.write(fd, format_key_line(identity))
        os.fsync(fd)
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def load_key_file(path: Path | str) -> Identity:
    """Read an identity from a key file written by :func:`write_key_file`.

    Raises:
        KeyFileError: missing, unreadable, accessible by group or others, or not a
            valid key file.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):04o});"
                f" run: chmod 600 {path}"
            )
        with open(path, "rb") as handle:
            content = handle.read(MAX_KEY_FILE_BYTES)
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} does not exist") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    return parse_key_line(content, source=str(path))
