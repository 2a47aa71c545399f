"""The receipt log's group commit: one fsync for many receipts, none handed out before it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mesh.core.identity import Identity
from mesh.core.receipt_chain import check_chain, encode_record
from mesh.errors import ConfigError
from mesh.node import receipt_log as receipt_log_module
from mesh.node.receipt_log import ReceiptLog

pytestmark = pytest.mark.unit

WORKER = Identity.from_seed(bytes([9]) * 32)
CLIENT = Identity.from_seed(bytes([8]) * 32)


def _issue(log: ReceiptLog, n: int) -> Any:
    return log.issue(
        task_id=n.to_bytes(32, "big"),
        client=CLIENT.public_key,
        model_root=bytes(32),
        runtime={"device": "cpu"},
        output_hash=bytes(32),
        started_ms=1,
        finished_ms=2,
    )


class SlowFsync:
    """Records how many bytes of the file each fsync made durable (and takes a while)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.durable_bytes = 0
        self.calls = 0
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        size = os.fstat(fd).st_size  # everything written before this fsync began
        time.sleep(0.02)
        self._real(fd)
        self.calls += 1
        self.durable_bytes = max(self.durable_bytes, size)


def test_concurrent_receipts_share_fsyncs_and_none_goes_out_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "receipts.log"
    log = ReceiptLog.open(path, WORKER)
    fsync = SlowFsync(path)
    monkeypatch.setattr(receipt_log_module.os, "fsync", fsync)
    returned: list[tuple[int, int, int]] = []  # (seq, record bytes, durable bytes at return)

    def worker(start: int) -> None:
        for n in range(start, start + 8):
            signed = _issue(log, n)
            durable = fsync.durable_bytes
            returned.append((signed.message.seq, len(encode_record(signed)), durable))

    threads = [threading.Thread(target=worker, args=(i * 100,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    end = 0
    for seq, size, durable in sorted(returned):
        end += size
        assert end <= durable, f"receipt {seq} went out before its record was fsynced"
    chain = check_chain(path.read_bytes(), source="test", worker=WORKER.public_key)
    assert chain.count == 64 and chain.good_bytes == end
    assert fsync.calls == log.fsyncs
    assert log.fsyncs < 64  # shared: 8 threads appending at once
    print(f"64 receipts from 8 threads: {log.fsyncs} fsyncs")


def test_a_lone_receipt_still_pays_one_fsync(tmp_path: Path) -> None:
    with ReceiptLog.open(tmp_path / "receipts.log", WORKER) as log:
        for n in range(3):
            _issue(log, n)
        assert log.fsyncs == 3


def test_a_failed_fsync_hands_out_no_receipt_and_breaks_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ReceiptLog.open(tmp_path / "receipts.log", WORKER)
    _issue(log, 0)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(receipt_log_module.os, "fsync", failing)
    with pytest.raises(ConfigError, match="fsync failed"):
        _issue(log, 1)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="broken"):
        _issue(log, 2)
    log.close()
