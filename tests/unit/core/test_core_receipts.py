"""Receipts: binding checks, and the hash-chained log across restarts and crashes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from core_samples import (
    CLIENT,
    MODEL_ROOT,
    NOW_MS,
    OTHER,
    WORKER,
    sample_outputs,
    signed_receipt,
    signed_task,
)

from mesh.core.envelope import sign_message
from mesh.core.receipts import ZERO_HASH, make_receipt, verify_receipt
from mesh.core.values import values_hash
from mesh.errors import (
    ConfigError,
    MalformedMessage,
    OutputMismatch,
    TaskMismatch,
    VerificationError,
)
from mesh.node.receipt_log import ReceiptLog, read_receipts

pytestmark = pytest.mark.unit


def test_receipt_binds_task_and_outputs() -> None:
    task = signed_task()
    receipt = signed_receipt(task)
    verify_receipt(receipt, task=task, outputs=sample_outputs())
    verify_receipt(receipt)


def test_receipt_for_other_task() -> None:
    with pytest.raises(TaskMismatch, match="another task"):
        verify_receipt(signed_receipt(signed_task()), task=signed_task(nonce=bytes(16)))


def test_receipt_with_other_model_root() -> None:
    task = signed_task()
    receipt = make_receipt(
        WORKER,
        task_id=task.digest,
        client=task.message.client,
        seq=0,
        prev=ZERO_HASH,
        model_root=bytes(32),
        runtime={},
        output_hash=values_hash(sample_outputs()),
        started_ms=1,
        finished_ms=2,
    )
    with pytest.raises(TaskMismatch, match="model_root"):
        verify_receipt(receipt, task=task)


def test_receipt_names_the_tasks_client() -> None:
    task = signed_task()
    receipt = signed_receipt(task)
    assert receipt.message.client == task.message.client == CLIENT.public_key
    other = make_receipt(
        WORKER,
        task_id=task.digest,
        client=OTHER.public_key,  # another client than the task's signer
        seq=0,
        prev=ZERO_HASH,
        model_root=task.message.model_root,
        runtime={},
        output_hash=values_hash(sample_outputs()),
        started_ms=1,
        finished_ms=2,
    )
    with pytest.raises(TaskMismatch, match="client"):
        verify_receipt(other, task=task)


def test_receipt_from_untargeted_worker() -> None:
    task = signed_task(target=OTHER.public_key)
    with pytest.raises(TaskMismatch, match="addressed"):
        verify_receipt(signed_receipt(task), task=task)
    targeted = signed_task(target=WORKER.public_key)
    verify_receipt(signed_receipt(targeted), task=targeted)


def test_receipt_with_other_outputs() -> None:
    with pytest.raises(OutputMismatch):
        verify_receipt(signed_receipt(), outputs={"embedding": ["not it"]})


def test_receipt_inconsistent_in_itself() -> None:
    task = signed_task()
    common = dict(
        task_id=task.digest,
        client=CLIENT.public_key,
        model_root=MODEL_ROOT,
        runtime={},
        output_hash=bytes(32),
    )
    backwards = make_receipt(WORKER, seq=0, prev=ZERO_HASH, started_ms=5, finished_ms=4, **common)
    with pytest.raises(MalformedMessage):
        verify_receipt(backwards)
    bad_start = make_receipt(
        WORKER, seq=0, prev=bytes([1]) * 32, started_ms=1, finished_ms=4, **common
    )
    with pytest.raises(MalformedMessage):
        verify_receipt(bad_start)


def _issue(log: ReceiptLog, n: int) -> None:
    for i in range(n):
        task = signed_task(nonce=i.to_bytes(16, "big"))
        log.issue(
            task_id=task.digest,
            client=task.message.client,
            model_root=MODEL_ROOT,
            runtime={"device": "cpu"},
            output_hash=values_hash(sample_outputs()),
            started_ms=NOW_MS + i,
            finished_ms=NOW_MS + i + 1,
        )


def _check_chain(path: Path, count: int) -> None:
    receipts = read_receipts(path)
    assert [r.message.seq for r in receipts] == list(range(count))
    prev = ZERO_HASH
    for receipt in receipts:
        assert receipt.message.prev == prev
        prev = receipt.digest


def test_log_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "receipts.log"
    with ReceiptLog.open(path, WORKER) as log:
        assert (log.next_seq, log.prev_digest) == (0, ZERO_HASH)
        _issue(log, 3)
        last = log.prev_digest
    with ReceiptLog.open(path, WORKER) as log:
        assert (log.next_seq, log.prev_digest) == (3, last)
        _issue(log, 1)
    _check_chain(path, 4)


def test_log_cuts_torn_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "receipts.log"
    with ReceiptLog.open(path, WORKER) as log:
        _issue(log, 3)
    whole = path.read_bytes()
    third_start = len(whole) - (len(read_receipts(path)[2].envelope) + 4)
    for cut in (third_start + 2, third_start + 4 + 10, len(whole) - 1):
        path.write_bytes(whole[:cut])
        with ReceiptLog.open(path, WORKER) as log:
            assert log.next_seq == 2
            _issue(log, 1)
        assert "torn" in caplog.text
        _check_chain(path, 3)


def test_log_rejects_tampered_middle_record(tmp_path: Path) -> None:
    path = tmp_path / "receipts.log"
    with ReceiptLog.open(path, WORKER) as log:
        _issue(log, 3)
    data = bytearray(path.read_bytes())
    first_len = int.from_bytes(data[:4], "big")
    data[4 + first_len + 40] ^= 1  # inside the second record's envelope
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="record 1"):
        ReceiptLog.open(path, WORKER)


def test_log_rejects_broken_link(tmp_path: Path) -> None:
    path = tmp_path / "receipts.log"
    with ReceiptLog.open(path, WORKER) as log:
        _issue(log, 2)
    records = path.read_bytes()
    first_len = int.from_bytes(records[:4], "big")
    # Drop the first record: the second now claims seq 1 at position 0.
    path.write_bytes(records[4 + first_len :])
    with pytest.raises(VerificationError, match="chain broken"):
        ReceiptLog.open(path, WORKER)


def test_log_of_another_worker_rejected(tmp_path: Path) -> None:
    path = tmp_path / "receipts.log"
    with ReceiptLog.open(path, WORKER) as log:
        _issue(log, 1)
    with pytest.raises(VerificationError, match="another worker"):
        ReceiptLog.open(path, OTHER)


def test_append_refuses_receipt_off_the_chain(tmp_path: Path) -> None:
    with ReceiptLog.open(tmp_path / "r.log", WORKER) as log:
        with pytest.raises(VerificationError):
            log.append(signed_receipt(seq=1))
        log.append(signed_receipt(seq=0))
        with pytest.raises(VerificationError):
            log.append(signed_receipt(seq=0))  # a second seq 0 would be equivocation
        assert log.next_seq == 1


def test_log_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    with ReceiptLog.open(path, WORKER), pytest.raises(ConfigError, match="in use"):
        ReceiptLog.open(path, WORKER)
    ReceiptLog.open(path, WORKER).close()


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = ReceiptLog.open(tmp_path / "r.log", WORKER)
    log.close()
    with pytest.raises(ConfigError):
        _issue(log, 1)


def test_issue_from_threads_keeps_chain(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    with ReceiptLog.open(path, WORKER) as log:
        threads = [threading.Thread(target=_issue, args=(log, 5)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.next_seq == 20
    _check_chain(path, 20)


def test_receipt_signed_by_client_key_is_not_a_worker_receipt() -> None:
    # make_receipt always names the signing identity as the worker.
    receipt = make_receipt(
        CLIENT,
        task_id=bytes(32),
        client=CLIENT.public_key,
        seq=0,
        prev=ZERO_HASH,
        model_root=MODEL_ROOT,
        runtime={},
        output_hash=bytes(32),
        started_ms=0,
        finished_ms=0,
    )
    assert receipt.message.worker == CLIENT.public_key
    assert sign_message(CLIENT, receipt.message).envelope == receipt.envelope


def test_chain_links_and_equivocation(tmp_path: Path) -> None:
    from mesh.core.receipts import is_equivocation, verify_chain_link

    path = tmp_path / "r.log"
    with ReceiptLog.open(path, WORKER) as log:
        _issue(log, 3)
    first, second, third = read_receipts(path)
    verify_chain_link(first, second)
    verify_chain_link(second, third)
    with pytest.raises(VerificationError):
        verify_chain_link(first, third)
    with pytest.raises(VerificationError):
        verify_chain_link(second, first)
    forked = make_receipt(
        WORKER,
        task_id=bytes(32),
        client=CLIENT.public_key,
        seq=1,
        prev=first.digest,
        model_root=MODEL_ROOT,
        runtime={},
        output_hash=bytes(32),
        started_ms=0,
        finished_ms=0,
    )
    verify_chain_link(first, forked)  # a fork links too...
    assert is_equivocation(second, forked)  # ...but two seq-1 receipts prove it
    assert not is_equivocation(second, second)
    assert not is_equivocation(first, second)
    other = make_receipt(
        OTHER,
        task_id=bytes(32),
        client=CLIENT.public_key,
        seq=1,
        prev=first.digest,
        model_root=MODEL_ROOT,
        runtime={},
        output_hash=bytes(32),
        started_ms=0,
        finished_ms=0,
    )
    assert not is_equivocation(second, other)
    with pytest.raises(VerificationError, match="different workers"):
        verify_chain_link(first, other)
