"""The record book and the record-exchange messages: checks on the way in, caps on the way out."""

from __future__ import annotations

import random

import pytest
from core_samples import AUDITOR, CLIENT, MODEL_ROOT, NOW_MS, OTHER, WORKER, sample_capacity

from mesh.core import canonical
from mesh.core.envelope import sign_message
from mesh.core.exchange import (
    MAX_ANSWER_BYTES,
    MAX_ANSWER_RECORDS,
    RecordsAnswer,
    RecordsQuery,
    select_records,
)
from mesh.core.identity import Identity
from mesh.core.record_book import RecordBook
from mesh.errors import BadSignature, Expired, MalformedMessage, TooLarge

pytestmark = pytest.mark.unit

OTHER_ROOT = bytes(32)


def _envelope(
    who: Identity, *, created: int = NOW_MS, ttl: int = 300_000, **changes: object
) -> bytes:
    record = sample_capacity(
        peer=who.public_key, created_ms=created, expires_ms=created + ttl, **changes
    )
    return sign_message(who, record).envelope


def test_the_newest_record_of_a_peer_wins_whatever_the_order() -> None:
    book = RecordBook()
    old = _envelope(WORKER, created=NOW_MS, queue_depth=1)
    new = _envelope(WORKER, created=NOW_MS + 1000, queue_depth=5)
    book.accept(new, now_ms=NOW_MS + 1000)
    held = book.accept(old, now_ms=NOW_MS + 1000)
    assert held.message.queue_depth == 5
    assert len(book) == 1
    got = book.get(WORKER.peer_id, now_ms=NOW_MS + 1000)
    assert got is not None and got.envelope == new


def test_expired_records_are_refused_and_dropped_when_read() -> None:
    book = RecordBook()
    with pytest.raises(Expired):
        book.accept(_envelope(WORKER, created=NOW_MS - 400_000), now_ms=NOW_MS)
    data = _envelope(WORKER)
    book.accept(data, now_ms=NOW_MS)
    later = NOW_MS + 300_001
    assert book.get(WORKER.peer_id, now_ms=later) is None
    assert book.live(now_ms=later) == []
    # The same bytes, once expired, are checked again and refused.
    with pytest.raises(Expired):
        book.accept(data, now_ms=later)


def test_forged_impostor_and_foreign_envelopes_raise() -> None:
    book = RecordBook()
    wire = canonical.decode(_envelope(WORKER))
    with pytest.raises(BadSignature):
        book.accept(canonical.encode({**wire, "sig": bytes(64)}), now_ms=NOW_MS)
    impostor = {**wire, "key": OTHER.public_key, "sig": OTHER.sign(wire["body"])}
    with pytest.raises(BadSignature):
        book.accept(canonical.encode(impostor), now_ms=NOW_MS)
    with pytest.raises(BadSignature):  # valid, but not the peer the DHT key names
        book.accept(_envelope(WORKER), now_ms=NOW_MS, peer_id=CLIENT.peer_id)
    with pytest.raises(MalformedMessage):
        book.accept(canonical.encode({**wire, "type": "mesh/task/v1"}), now_ms=NOW_MS)
    assert len(book) == 0


def test_live_filters_by_model_and_the_cap_evicts_the_soonest_to_expire() -> None:
    book = RecordBook(max_records=2)
    book.accept(_envelope(WORKER, ttl=100_000), now_ms=NOW_MS)
    book.accept(_envelope(CLIENT, ttl=300_000, models=(OTHER_ROOT,)), now_ms=NOW_MS)
    assert [s.key for s in book.live(now_ms=NOW_MS, model_root=MODEL_ROOT)] == [WORKER.public_key]
    book.accept(_envelope(AUDITOR, ttl=200_000), now_ms=NOW_MS)
    assert {s.key for s in book.live(now_ms=NOW_MS)} == {CLIENT.public_key, AUDITOR.public_key}


def test_query_and_answer_have_exact_canonical_bytes() -> None:
    query = RecordsQuery(models=(MODEL_ROOT,), limit=3, own=b"")
    assert query.encode().hex() == (
        "84a46b696e64ad7265636f7264732d7175657279a56c696d697403a66d6f64656c7391c420"
        + MODEL_ROOT.hex()
        + "a36f776ec400"
    )
    assert RecordsQuery.decode(query.encode()) == query
    answer = RecordsAnswer(records=(b"\x01\x02",))
    assert answer.encode().hex() == "82a46b696e64a77265636f726473a77265636f72647391c4020102"
    assert RecordsAnswer.decode(answer.encode()) == answer


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        ({"kind": "records-query", "models": [], "limit": 1}, MalformedMessage),
        ({"kind": "records", "models": [], "limit": 1, "own": b""}, MalformedMessage),
        ({"kind": "records-query", "models": [], "limit": 1, "own": b"", "x": 1}, MalformedMessage),
        ({"kind": "records-query", "models": [b"short"], "limit": 1, "own": b""}, MalformedMessage),
        ({"kind": "records-query", "models": [], "limit": 10**6, "own": b""}, MalformedMessage),
    ],
)
def test_bad_queries_are_refused(wire: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        RecordsQuery.decode(canonical.encode(wire))


def test_an_answer_over_the_record_cap_is_refused() -> None:
    wire = {"kind": "records", "records": [b"\x00"] * (MAX_ANSWER_RECORDS + 1)}
    with pytest.raises(TooLarge):
        RecordsAnswer.decode(canonical.encode(wire))


def test_select_samples_within_the_caps_and_leaves_out_the_asker() -> None:
    book = RecordBook()
    people = [Identity.from_seed(bytes([10 + i]) * 32) for i in range(8)]
    for who in people:
        book.accept(_envelope(who), now_ms=NOW_MS)
    query = RecordsQuery(models=(MODEL_ROOT,), limit=5, own=b"")
    rng = random.Random(1)
    answer = select_records(book, query, now_ms=NOW_MS, rng=rng, exclude=people[0].peer_id)
    assert len(answer.records) == 5
    assert _envelope(people[0]) not in answer.records
    everyone = select_records(
        book, RecordsQuery(models=(), limit=MAX_ANSWER_RECORDS, own=b""), now_ms=NOW_MS, rng=rng
    )
    assert len(everyone.records) == 8
    nobody = select_records(
        book, RecordsQuery(models=(OTHER_ROOT,), limit=10, own=b""), now_ms=NOW_MS, rng=rng
    )
    assert nobody.records == ()
    assert sum(map(len, everyone.records)) <= MAX_ANSWER_BYTES
