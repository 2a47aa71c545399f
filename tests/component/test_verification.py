"""Verification modes over the memory network on a fake clock: every decision of the table.

Liars are the node's own ``lie`` option (mesh.node.lies) over the echo runner:
``perturb`` answers ``0.5 - x``, ``lazy`` answers empty outputs at once. The
model (ROOT_A) is in no zoo, so results are compared exactly.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import trio
from meshfakes import ROOT_A, FakeRunner, inputs, open_client, start_node
from verifyfakes import FakeGenRunner, tap_requests

from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.client.reputation import ACCUSED_RATE, CLEARING_CHECKS
from mesh.core.checks import CHECK_TOKENS
from mesh.core.evidence import decode_verdict_file, verify_verdict_file
from mesh.core.tensors import Tensor
from mesh.errors import ConfigError, Disputed, NoPeersAvailable
from mesh.net.interface import TASK_PROTOCOL, VERDICT_TOPIC
from mesh.node.service import Node
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40


async def _client(
    nursery: trio.Nursery, hub: MemoryHub, n: int = CLIENT, **config: Any
) -> AsyncClient:
    client: AsyncClient = await nursery.start(
        functools.partial(open_client, hub, n, config=ClientConfig(**config))
    )
    return client


def _task_requests(hub: MemoryHub) -> int:
    """Task requests the hub delivered (record-exchange queries are not tasks)."""
    return sum(
        n for (_, protocol), n in hub.served_by_protocol.items() if protocol == TASK_PROTOCOL
    )


def _prefer(client: AsyncClient, *nodes: Node) -> None:
    """Make ``nodes`` look best to ``client``, in that order (lower latency first)."""
    for rank, node in enumerate(nodes):
        client._book.success(node.peer_id, 1.0 + 10 * rank)


def _honest(x: float = 1.0) -> Any:
    return {f"out_{k}": v for k, v in inputs(x).items()}


async def test_unknown_mode_and_bad_settings_refused_before_anything_is_sent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client = await _client(nursery, hub)
        bad: list[dict[str, Any]] = [
            {"verify": "bogus"},
            {"verify": "audit", "audit_rate": 1.5},
            {"verify": "redundant", "replicas": 1},
        ]
        for settings in bad:
            with pytest.raises(ConfigError):
                await client.run(ROOT_A, inputs(), timeout=10, **settings)
            with pytest.raises(ConfigError):
                await client.map(ROOT_A, [inputs()], timeout=10, **settings)
        with pytest.raises(ConfigError):
            await client.run(ROOT_A, inputs(), verify="redundant", target="someone")
        assert _task_requests(hub) == 0
        with pytest.raises(ConfigError):
            ClientConfig(verify="trust-me")
        nursery.cancel_scope.cancel()


async def test_signature_mode_trusts_the_worker(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, FakeRunner(), tmp_path, lie="perturb")
        client = await _client(nursery, hub)
        result = await client.run(ROOT_A, inputs(), timeout=10)
        # Documented: signature proves who answered, not that it is right.
        assert result.outputs != _honest()
        assert result.verification is not None and not result.verification.checked
        assert _task_requests(hub) == 1 and client.verdicts() == []
        nursery.cancel_scope.cancel()


async def test_audit_at_rate_zero_sends_once_and_at_one_rechecks_as_an_ordinary_task(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        b = await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        seen = {a.peer_id: tap_requests(a), b.peer_id: tap_requests(b)}
        client = await _client(nursery, hub, verify="audit")
        _prefer(client, a, b)
        plain = await client.run(ROOT_A, inputs(), timeout=10, audit_rate=0.0)
        assert _task_requests(hub) == 1
        assert plain.verification is not None and not plain.verification.checked

        checked = await client.run(ROOT_A, inputs(2.0), timeout=10, audit_rate=1.0)
        report = checked.verification
        assert report is not None and report.checked and report.extra_runs == 1
        assert report.confirmed_by == (b.peer_id,) and checked.worker == a.peer_id
        first, second = seen[a.peer_id][-1].task.message, seen[b.peer_id][-1].task.message
        # The re-check looks like any task of this client: same question, new nonce.
        assert second.nonce != first.nonce
        assert (second.input_hash, second.params, second.verify, second.target) == (
            first.input_hash,
            first.params,
            "audit",
            b"",
        )
        assert client.reputation.record(a.peer_id).confirmed == 1  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()


async def test_audit_catches_a_liar_returns_the_confirmed_result_and_publishes_a_verdict(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, FakeRunner(), tmp_path, lie="perturb")
        h1 = await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        h2 = await start_node(nursery, hub, 3, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        other = await _client(nursery, hub, CLIENT + 1)
        _prefer(client, liar, h1, h2)
        result = await client.run(ROOT_A, inputs(), timeout=20)
        assert result.outputs == _honest() and result.worker in (h1.peer_id, h2.peer_id)
        report = result.verification
        assert report is not None and report.checked and report.extra_runs == 2
        assert len(report.verdicts) == 1
        assert client.reputation.excluded(liar.peer_id)
        (made,) = client.verdicts()
        verify_verdict_file(decode_verdict_file(made.encode()))  # anyone can re-check it
        assert made.verdict.message.kind == "outputs" and not made.verdict.message.agree
        assert [e.role for e in made.evidence.exhibits] == ["accused", "witness", "witness"]
        await trio.testing.wait_all_tasks_blocked()
        # Another client heard it: audits the liar more, does not exclude it on hearsay.
        assert other._verdicts.accepted == 1
        assert not other.reputation.excluded(liar.peer_id)
        assert other.reputation.audit_rate(liar.peer_id, 0.05) >= ACCUSED_RATE
        # Nothing goes to the liar any more, not even checks.
        served = hub.served_by_protocol[liar.peer_id, TASK_PROTOCOL]
        for i in range(5):
            again = await client.run(ROOT_A, inputs(float(i)), timeout=20)
            assert again.worker != liar.peer_id and again.outputs == _honest(float(i))
        assert hub.served_by_protocol[liar.peer_id, TASK_PROTOCOL] == served
        nursery.cancel_scope.cancel()


async def test_three_different_answers_and_no_fourth_worker_is_disputed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        perturb = await start_node(nursery, hub, 1, FakeRunner(), tmp_path, lie="perturb")
        lazy = await start_node(nursery, hub, 2, FakeRunner(), tmp_path, lie="lazy")
        honest = await start_node(nursery, hub, 3, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="redundant")
        _prefer(client, perturb, lazy, honest)
        with pytest.raises(Disputed):
            await client.run(ROOT_A, inputs(), timeout=20)
        assert client.verdicts() == []  # nobody can be shown wrong: no verdict
        nursery.cancel_scope.cancel()


async def test_redundant_tie_break_convicts_both_liars_when_two_honest_agree(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        perturb = await start_node(nursery, hub, 1, FakeRunner(), tmp_path, lie="perturb")
        lazy = await start_node(nursery, hub, 2, FakeRunner(), tmp_path, lie="lazy")
        h1 = await start_node(nursery, hub, 3, FakeRunner(), tmp_path)
        h2 = await start_node(nursery, hub, 4, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="redundant")
        _prefer(client, perturb, lazy, h1, h2)
        result = await client.run(ROOT_A, inputs(), timeout=30)
        assert result.outputs == _honest()
        assert {result.worker, *result.verification.confirmed_by} == {h1.peer_id, h2.peer_id}  # type: ignore[union-attr]
        assert set(client.reputation.caught()) == {perturb.peer_id, lazy.peer_id}
        for made in client.verdicts():
            verify_verdict_file(made)
        nursery.cancel_scope.cancel()


async def test_redundant_sends_to_distinct_workers_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        nodes = [await start_node(nursery, hub, n, FakeRunner(), tmp_path) for n in (1, 2, 3)]
        client = await _client(nursery, hub, verify="redundant", replicas=3)
        start = trio.current_time()
        result = await client.run(ROOT_A, inputs(), timeout=20)
        # Three replicas at once: one compute time (10 ms), not three.
        assert trio.current_time() - start == pytest.approx(0.01, abs=0.005)
        assert all(hub.served_by_protocol[n.peer_id, TASK_PROTOCOL] == 1 for n in nodes)
        report = result.verification
        assert report is not None and report.extra_runs == 2 and len(report.confirmed_by) == 2
        assert {result.worker, *report.confirmed_by} == {n.peer_id for n in nodes}
        nursery.cancel_scope.cancel()


async def test_redundant_with_one_worker_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="redundant")
        with pytest.raises(NoPeersAvailable, match="2 independent workers"):
            await client.run(ROOT_A, inputs(), timeout=10)
        nursery.cancel_scope.cancel()


async def test_a_drawn_audit_with_no_independent_worker_is_reported_not_hidden(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        only = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        result = await client.run(ROOT_A, inputs(), timeout=10)
        assert result.worker == only.peer_id
        report = result.verification
        assert report is not None and not report.checked and "not done" in report.note
        nursery.cancel_scope.cancel()


async def test_convictions_and_verdict_files_persist_in_the_data_dir(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    data = tmp_path / "client-data"
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, FakeRunner(), tmp_path, lie="perturb")
        h1 = await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        await start_node(nursery, hub, 3, FakeRunner(), tmp_path)
        async with trio.open_nursery() as inner:
            first = await _client(inner, hub, verify="audit", audit_rate=1.0, data_dir=data)
            _prefer(first, liar, h1)
            await first.run(ROOT_A, inputs(), timeout=20)
            assert first.reputation.excluded(liar.peer_id)
            inner.cancel_scope.cancel()
        files = sorted((data / "verdicts").glob("*.verdict"))
        assert len(files) == 1
        verify_verdict_file(decode_verdict_file(files[0].read_bytes()))
        assert (data / "audit.key").stat().st_mode & 0o777 == 0o600
        # A new client on the same data dir (same process or not) still leaves it out.
        later = await _client(nursery, hub, CLIENT + 2, data_dir=data)
        assert later.reputation.excluded(liar.peer_id)
        _prefer(later, liar)
        result = await later.run(ROOT_A, inputs(), timeout=20)
        assert result.worker != liar.peer_id
        nursery.cancel_scope.cancel()


async def test_hearsay_never_excludes_and_own_checks_clear_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        honest = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="audit", audit_rate=0.01)
        # A false accusation from a client that never ran anything: a signed verdict
        # about the honest worker, published on the topic like a real one.
        slanderer = await _client(nursery, hub, CLIENT + 3)
        fake = slanderer._verdicts
        verdict = _forged_verdict(slanderer, honest)
        await slanderer._network.publish(VERDICT_TOPIC, verdict, timeout=5)
        await trio.testing.wait_all_tasks_blocked()
        accuser = slanderer.identity.public_key.hex()
        assert client.reputation.accused() == {honest.peer_id: [accuser]}
        assert fake.made == []
        assert not client.reputation.excluded(honest.peer_id)
        _prefer(client, honest)
        for i in range(30):
            result = await client.run(ROOT_A, inputs(float(i)), timeout=20)
            assert result.outputs == _honest(float(i))
        row = client.reputation.record(honest.peer_id)
        assert row is not None and row.watch == 0 and row.cleared == 1
        assert row.confirmed >= CLEARING_CHECKS
        assert client.verdicts() == [] and not client.reputation.excluded(honest.peer_id)
        nursery.cancel_scope.cancel()


def _forged_verdict(author: AsyncClient, victim: Node) -> bytes:
    import hashlib

    from mesh.core.envelope import sign_message
    from mesh.core.identity import public_key_from_peer_id
    from mesh.core.messages import Verdict

    verdict = Verdict(
        auditor=author.identity.public_key,
        worker=public_key_from_peer_id(victim.peer_id),
        task_id=hashlib.sha256(b"t").digest(),
        receipt_digest=hashlib.sha256(b"r").digest(),
        model_root=ROOT_A,
        agree=False,
        kind="outputs",
        distance_micro=1,
        evidence=hashlib.sha256(b"nothing").digest(),
        created_ms=author._now_ms(),
    )
    return sign_message(author.identity, verdict).envelope


async def test_a_lazy_worker_is_caught_early_and_then_gets_no_traffic(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        lazy = await start_node(nursery, hub, 1, FakeRunner(), tmp_path, lie="lazy")
        for n in (2, 3):
            await start_node(nursery, hub, n, FakeRunner(compute_s=0.05), tmp_path)
        client = await _client(nursery, hub, verify="audit")
        results = await client.map(ROOT_A, [inputs(float(i)) for i in range(60)], timeout=30)
        from_lazy = [i for i, r in enumerate(results) if r.worker == lazy.peer_id]
        wrong = [i for i, r in enumerate(results) if r.outputs != _honest(float(i))]
        assert client.reputation.excluded(lazy.peer_id)
        # Newcomers are audited at 0.5: a lazy one that answers first survives k of its
        # tasks with probability 0.5^k; the fastest node does not keep the traffic.
        assert len(from_lazy) < 20 and wrong == from_lazy
        later = await client.map(ROOT_A, [inputs(float(i)) for i in range(20)], timeout=30)
        assert all(r.worker != lazy.peer_id for r in later)
        nursery.cancel_scope.cancel()


# -- generations (commitment checks) -----------------------------------------------------
async def test_generation_audit_is_two_checks_not_a_regeneration(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        runners = [FakeGenRunner() for _ in range(3)]
        nodes = [
            await start_node(nursery, hub, n, r, tmp_path)  # type: ignore[arg-type]
            for n, r in enumerate(runners, start=1)
        ]
        seen = tap_requests(nodes[1])
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        _prefer(client, *nodes)
        result = await client.run(ROOT_A, inputs(), timeout=20, seed=5)
        report = result.verification
        assert result.worker == nodes[0].peer_id
        assert report is not None and report.checks == 2 and report.extra_runs == 0
        assert set(report.confirmed_by) == {nodes[1].peer_id, nodes[2].peer_id}
        assert [(r.ran, r.checked) for r in runners] == [(1, 0), (0, 1), (0, 1)]
        (check,) = seen
        assert CHECK_TOKENS in check.inputs and check.task.message.params == {"seed": 5}
        assert check.task.message.verify == "audit"
        nursery.cancel_scope.cancel()


async def test_with_one_other_worker_its_passing_check_confirms(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, hub, 1, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        b = await start_node(nursery, hub, 2, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        _prefer(client, a, b)
        result = await client.run(ROOT_A, inputs(), timeout=20)
        report = result.verification
        assert report is not None and report.checks == 1 and report.confirmed_by == (b.peer_id,)
        assert "no more independent" in report.note
        nursery.cancel_scope.cancel()


async def test_a_lying_generator_fails_two_checks_and_gets_a_commitment_verdict(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, FakeGenRunner(), tmp_path, lie="perturb")  # type: ignore[arg-type]
        h1 = await start_node(nursery, hub, 2, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        h2 = await start_node(nursery, hub, 3, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        _prefer(client, liar, h1, h2)
        result = await client.run(ROOT_A, inputs(), timeout=30)
        assert result.worker in (h1.peer_id, h2.peer_id)
        (made,) = client.verdicts()
        assert made.verdict.message.kind == "commitment"
        assert [e.role for e in made.evidence.exhibits] == ["accused", "checker", "checker"]
        assert client.reputation.excluded(liar.peer_id)
        nursery.cancel_scope.cancel()


async def test_a_checker_that_fails_an_honest_generation_gets_the_verdict(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        honest = await start_node(nursery, hub, 1, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        # This liar generates wrongly too, but here it is only asked to check.
        liar = await start_node(nursery, hub, 2, FakeGenRunner(), tmp_path, lie="perturb")  # type: ignore[arg-type]
        judges = [await start_node(nursery, hub, n, FakeGenRunner(), tmp_path) for n in (3, 4)]  # type: ignore[arg-type]
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        _prefer(client, honest, liar, *judges)
        result = await client.run(ROOT_A, inputs(), timeout=30)
        # One pass against one fail settles nothing; a third checker breaks the tie.
        assert result.worker == honest.peer_id
        assert set(result.verification.confirmed_by) == {j.peer_id for j in judges}  # type: ignore[union-attr]
        (made,) = client.verdicts()
        assert made.verdict.message.kind == "check"
        assert made.verdict.message.worker == made.evidence.accused.receipt.message.worker
        assert [e.role for e in made.evidence.exhibits] == [
            "accused",
            "witness",
            "checker",
            "checker",
        ]
        assert client.reputation.caught().keys() == {liar.peer_id}
        nursery.cancel_scope.cancel()


async def test_one_pass_against_one_fail_with_no_third_checker_is_disputed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        honest = await start_node(nursery, hub, 1, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        liar = await start_node(nursery, hub, 2, FakeGenRunner(), tmp_path, lie="perturb")  # type: ignore[arg-type]
        judge = await start_node(nursery, hub, 3, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        _prefer(client, honest, liar, judge)
        with pytest.raises(Disputed, match=r"1 checker\(s\) pass and 1 fail"):
            await client.run(ROOT_A, inputs(), timeout=30)
        assert client.verdicts() == []
        nursery.cancel_scope.cancel()


async def test_redundant_generation_needs_two_passing_checkers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        # A lazy checker passes everything; alone it must not be able to vouch.
        lazy = await start_node(
            nursery, hub, 1, FakeGenRunner(invariant=False), tmp_path, lie="lazy"
        )  # type: ignore[arg-type]
        liar = await start_node(
            nursery, hub, 2, FakeGenRunner(invariant=False), tmp_path, lie="perturb"
        )  # type: ignore[arg-type]
        honest = [
            await start_node(nursery, hub, n, FakeGenRunner(invariant=False), tmp_path)  # type: ignore[arg-type]
            for n in (3, 4, 5)
        ]
        client = await _client(nursery, hub, verify="redundant")
        _prefer(client, liar, lazy, *honest)
        result = await client.run(ROOT_A, inputs(), timeout=30)
        assert result.worker in {h.peer_id for h in honest}
        assert result.outputs["token_ids"] == (await _reference(client, honest[0]))
        assert set(client.reputation.caught()) <= {lazy.peer_id, liar.peer_id}
        for made in client.verdicts():
            verify_verdict_file(made)
        nursery.cancel_scope.cancel()


async def _reference(client: AsyncClient, node: Node) -> Any:
    honest = await client.run(ROOT_A, inputs(), timeout=30, target=node.peer_id, verify="signature")
    return honest.outputs["token_ids"]


@pytest.mark.parametrize("invariant", [True, False])
async def test_redundant_generations_confirmed_by_identical_tokens_or_by_checks(
    invariant: bool, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        runners = [FakeGenRunner(invariant=invariant) for _ in range(2)]
        for n, runner in enumerate(runners, start=1):
            await start_node(nursery, hub, n, runner, tmp_path)  # type: ignore[arg-type]
        client = await _client(nursery, hub, verify="redundant")
        result = await client.run(ROOT_A, inputs(), timeout=30)
        report = result.verification
        assert report is not None and report.checked and report.extra_runs == 1
        # One batch-invariant class: identical tokens confirm each other, no check.
        # Otherwise tokens are not comparable and the other worker checks the result.
        assert report.checks == (0 if invariant else 1)
        assert client.verdicts() == []
        nursery.cancel_scope.cancel()


class _LogitRunner(FakeRunner):
    """Serves tiny-mlp's root with fixed logits, shifted by ``shift``, claiming ``device``."""

    def __init__(self, *, shift: float = 0.0, device: str = "cpu") -> None:
        from mesh.runtime.zoo import find_manifest

        root = find_manifest("tiny-mlp").model_root
        assert root is not None
        super().__init__(served={root: "tiny-mlp"})
        self.root, self.shift, self.claim = root, shift, device

    async def run(
        self,
        model_root: bytes,
        inputs: Any,
        params: Any,
        *,
        on_start: Any = None,
        on_tokens: Any = None,
    ) -> Any:
        import struct

        from meshfakes import FakeExecution

        from mesh.core.tensors import Tensor

        if on_start is not None:
            on_start()
        await trio.sleep(self.compute_s)
        values = [0.1 * i + self.shift for i in range(10)]
        logits = Tensor("float32", (1, 10), struct.pack("<10f", *values))
        runtime = {"device": self.claim, "dtype": "float32", "torch": "2.13"}
        return FakeExecution({"logits": logits}, runtime, b"", 1, 10.0)


@pytest.mark.parametrize("shift", [3e-5, 0.5])
async def test_a_small_gap_across_devices_is_set_aside_a_gross_one_convicts(
    shift: float, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        cpu = [await start_node(nursery, hub, n, _LogitRunner(), tmp_path) for n in (1, 2)]
        gpu = await start_node(nursery, hub, 3, _LogitRunner(shift=shift, device="H200"), tmp_path)
        client = await _client(nursery, hub, verify="redundant", replicas=3)
        # A tiny-mlp input: the client checks it against tiny-mlp's manifest first.
        row = {"x": Tensor("float32", (1, 32), bytes(128))}
        result = await client.run(_LogitRunner().root, row, timeout=20)
        assert result.worker in {c.peer_id for c in cpu}
        report = result.verification
        assert report is not None
        if shift < 1e-3:  # 3 tolerances (1e-5) on another device: maybe the hardware
            assert client.verdicts() == [] and "set aside" in report.note
        else:
            assert client.reputation.excluded(gpu.peer_id) and len(report.verdicts) == 1
        nursery.cancel_scope.cancel()
