"""One running node per key: the key lock (mesh.files.keylock)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.core.identity import Identity
from mesh.errors import ConfigError
from mesh.files.keylock import KeyLock

pytestmark = pytest.mark.unit


def test_a_second_holder_fails_at_once_naming_the_first(tmp_path: Path) -> None:
    key = Identity.generate()
    with KeyLock.acquire(key, directory=tmp_path, what="data dir /srv/a") as lock:
        assert lock.path == tmp_path / f"{key.peer_id}.lock"
        # Another process tries the same key.
        code = (
            "import sys; from pathlib import Path\n"
            "from mesh.core.identity import Identity\n"
            "from mesh.files.keylock import KeyLock\n"
            f"KeyLock.acquire(Identity.from_seed(bytes.fromhex('{key.seed.hex()}')),"
            f" directory=Path({str(tmp_path)!r}))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode != 0
        assert f"key {key.peer_id} is already in use" in done.stderr
        assert f"pid {os.getpid()}" in done.stderr and "data dir /srv/a" in done.stderr
        # Other keys are not affected.
        KeyLock.acquire(Identity.generate(), directory=tmp_path).release()
    # Released: the key can be taken again (a restart).
    KeyLock.acquire(key, directory=tmp_path).release()


def test_the_same_process_cannot_take_it_twice_either(tmp_path: Path) -> None:
    key = Identity.generate()
    with KeyLock.acquire(key, directory=tmp_path), pytest.raises(ConfigError, match="in use"):
        KeyLock.acquire(key, directory=tmp_path)
