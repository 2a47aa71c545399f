"""The trio client: ``AsyncClient.run(model, inputs, **params)`` -> verified :class:`RunResult`.

One task's path: resolve the model to its root; sign the task once (a random
nonce, an expiry covering the caller's deadline); find providers and their
capacity records; pick the best-scored peer (:mod:`mesh.client.selection`);
send; verify the answer. Failures listed in :mod:`mesh.client.retry` move the
task to another peer, never the same one twice unless all others are used up,
all within the caller's ``timeout``. A receipt that does not verify is never
returned: the peer is penalised hard and the task goes elsewhere; if no peer
gives a verified result, :class:`~mesh.errors.VerificationError` is raised.

Above that, the verification mode (``verify=``: ``signature``, ``audit``,
``redundant``; :mod:`mesh.client.verification`) decides whether the result is
also re-checked on independent workers before it is returned, and what a wrong
answer costs its worker (a signed verdict, exclusion by this client).

``AsyncClient.stream(...)`` runs a generation the same way and gives its tokens
as they come (:mod:`mesh.client.streaming`).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Literal, overload

import trio

from mesh.aio.clock import WallClock, trio_wall_clock
from mesh.aio.groups import unwrap_single_error
from mesh.client import batching
from mesh.client.audit import AuditDraw
from mesh.client.batch_verify import BatchVerifier
from mesh.client.config import ClientConfig, load_bootstrap, load_identity
from mesh.client.discovery import Discovery, dial_addr
from mesh.client.local_check import LocalChecker
from mesh.client.mapping import results_or_raise, run_items
from mesh.client.models import resolve_model
from mesh.client.precheck import check_before_sending
from mesh.client.reputation import Reputation
from mesh.client.results import PeerList, PeerView, RunResult
from mesh.client.selection import PeerBook
from mesh.client.sender import Inputs, StreamTap, TaskSender
from mesh.client.streaming import StreamChunk, TokenStream, check_streams_tokens
from mesh.client.verdicts import VerdictBook
from mesh.client.verification import Verifier, VerifyOptions, verify_options
from mesh.client.verify import check_response
from mesh.core import limits
from mesh.core.batch import check_count, encode_items, hash_encoded, items_root
from mesh.core.capacity import CAPACITY_NAMESPACE, capacity_validator
from mesh.core.envelope import Signed, sign_message
from mesh.core.evidence import VerdictFile
from mesh.core.identity import Identity, public_key_from_peer_id
from mesh.core.messages import (
    BATCH_PARAM,
    CapacityRecord,
    Task,
)
from mesh.core.values import values_hash
from mesh.errors import Closed, ConfigError, MeshError
from mesh.files.client_state import ClientStore
from mesh.net.interface import Network, PeerAddr

logger = logging.getLogger(__name__)

__all__ = [
    "AsyncClient",
    "ClientConfig",
    "Inputs",
    "PeerList",
    "PeerView",
    "RunResult",
    "StreamChunk",
    "TokenStream",
    "check_response",
    "load_bootstrap",
    "load_identity",
]

_NONCE_BYTES = 16
# peer_list(): a dial to measure one peer's latency. A peer whose record is still
# live but whose process is gone would otherwise hold the whole list for its
# deadline; a dial on a working link takes milliseconds.
PROBE_TIMEOUT_S = 2.0


class AsyncClient:
    """A mesh client on trio. Use as ``async with AsyncClient(network) as client:``.

    Args:
        network: a running network (``AsyncClient.connect`` opens libp2p for you).
        identity: the key that signs tasks; a fresh one when None.
        config: client settings.
        wall_clock: epoch milliseconds (tests pass one following a fake clock).
        rng: randomness for peer choice among near-equals.
    """

    def __init__(
        self,
        network: Network,
        *,
        identity: Identity | None = None,
        config: ClientConfig | None = None,
        wall_clock: WallClock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._network = network
        self._identity = identity or Identity.generate()
        self._config = config or ClientConfig()
        self._now_ms = wall_clock or trio_wall_clock()
        self._rng = rng or random.Random()
        self._book = PeerBook(network)
        store = ClientStore(self._config.data_dir) if self._config.data_dir else None
        self._reputation = Reputation(store)
        self._discovery = Discovery(network, wall_clock=self._now_ms)
        self._verdicts = VerdictBook(
            network=network,
            identity=self._identity,
            reputation=self._reputation,
            store=store,
            wall_clock=self._now_ms,
        )
        self._sender = TaskSender(
            network=network,
            discovery=self._discovery,
            book=self._book,
            reputation=self._reputation,
            retry=self._config.retry,
            discovery_timeout_s=self._config.discovery_timeout_s,
            rng=self._rng,
        )
        draw = AuditDraw(store.audit_secret if store is not None else None)
        self._verifier = Verifier(
            sender=self._sender,
            sign=self._sign,
            discovery=self._discovery,
            reputation=self._reputation,
            verdicts=self._verdicts,
            draw=draw,
            local=LocalChecker(self._config.zoo_dirs) if self._config.local_check else None,
            zoo_dirs=self._config.zoo_dirs,
        )
        self._batch_verifier = BatchVerifier(
            sender=self._sender,
            verifier=self._verifier,
            discovery=self._discovery,
            reputation=self._reputation,
            draw=draw,
            zoo_dirs=self._config.zoo_dirs,
        )
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._closed = False

    @property
    def identity(self) -> Identity:
        """The key that signs this client's tasks."""
        return self._identity

    @property
    def config(self) -> ClientConfig:
        """This client's settings."""
        return self._config

    @property
    def reputation(self) -> Reputation:
        """This client's table of workers: whom it caught, confirmed, heard accused."""
        return self._reputation

    def verdicts(self) -> list[VerdictFile]:
        """The verdicts this client made so far, with their evidence (oldest first)."""
        return list(self._verdicts.made)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        *,
        bootstrap: Sequence[str] | str | Path,
        key: Identity | Path | str | None = None,
        listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
        config: ClientConfig | None = None,
    ) -> AsyncIterator[AsyncClient]:
        """Open a libp2p network from a bootstrap file or multiaddrs and a client on it.

        Args:
            bootstrap: a bootstrap file path, or multiaddrs with ``/p2p/``.
            key: an Identity, a key file path, or None for a throwaway key.
            listen: where the client's own host listens (loopback by default).
            config: client settings.
        """
        from mesh.net.libp2p_net import open_libp2p_network

        identity = load_identity(key)
        addrs = load_bootstrap(bootstrap)
        with unwrap_single_error():
            async with (
                open_libp2p_network(
                    identity_seed=identity.seed,
                    listen=listen,
                    bootstrap=addrs,
                    dht_server=False,
                    # A client that reached no bootstrap peer can find nobody: say so.
                    require_bootstrap=bool(addrs),
                    # The record exchange with the bootstrap peers is a client's
                    # first source; a DHT lookup, when needed, walks from them.
                    fill_routing_table=False,
                ) as network,
                cls(network, identity=identity, config=config) as client,
            ):
                yield client

    async def __aenter__(self) -> AsyncClient:
        self._network.set_record_validator(CAPACITY_NAMESPACE, capacity_validator(self._now_ms))
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        # Answers /mesh/records/1.0.0 from our book and takes load gossip into it.
        self._discovery.start(nursery)
        nursery.start_soon(self._verdicts.watch_gossip)
        self._verdicts.nursery = nursery
        self._stack = stack
        self._nursery = nursery
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None and self._nursery is not None
        self._closed = True
        self._verdicts.nursery = None
        try:
            self._reputation.save()  # confirmations since the last write
        except MeshError as error:
            logger.error("reputation table not saved: %s", error)
        self._nursery.cancel_scope.cancel()
        with unwrap_single_error():
            return await self._stack.__aexit__(exc_type, exc, tb)

    # -- public API ----------------------------------------------------------------
    def build_task(
        self,
        model_root: bytes,
        inputs: Inputs,
        *,
        params: Mapping[str, int] | None = None,
        window_s: float | None = None,
        verify: str = "signature",
        target: str | None = None,
    ) -> Signed[Task]:
        """Sign a task for ``inputs`` on ``model_root`` (a fresh nonce each call)."""
        now = self._now_ms()
        window_ms = int(1000 * (window_s if window_s is not None else self._config.task_window_s))
        task = Task(
            client=self._identity.public_key,
            nonce=os.urandom(_NONCE_BYTES),
            created_ms=now,
            expires_ms=now + window_ms,
            model_root=model_root,
            input_hash=values_hash(inputs),
            params=dict(params or {}),
            verify=verify,
            target=public_key_from_peer_id(target) if target else b"",
        )
        return sign_message(self._identity, task)

    def _sign(
        self,
        root: bytes,
        inputs: Inputs,
        params: Mapping[str, int],
        window_s: float,
        verify: str,
        target: str | None,
    ) -> Signed[Task]:
        return self.build_task(
            root, inputs, params=params, window_s=window_s, verify=verify, target=target
        )

    def _options(
        self, verify: str | None, audit_rate: float | None, replicas: int | None
    ) -> VerifyOptions:
        config = self._config
        return verify_options(
            mode=config.verify if verify is None else verify,
            audit_rate=config.audit_rate if audit_rate is None else audit_rate,
            replicas=config.replicas if replicas is None else replicas,
        )

    async def run(
        self,
        model: str | bytes,
        inputs: Inputs,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the caller's total deadline)
        target: str | None = None,
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> RunResult:
        """Run ``model`` on ``inputs`` somewhere on the mesh; return a verified result.

        What the result proves depends on ``verify`` (mesh.client.verification):
        ``signature`` trusts the worker (the receipt proves who answered, not
        that the answer is right; no extra cost); ``audit`` re-checks a random
        ``audit_rate`` share of results on an independent worker (about that
        much extra compute) and catches a worker that keeps faking; ``redundant``
        returns a result only when a second independent worker confirmed it
        (``replicas`` times the compute). ``result.verification`` says what was done.

        Args:
            model: a zoo name, a hex model_root or 32 raw bytes.
            inputs: named tensors or lists of strings.
            timeout: total deadline in seconds (default ``config.timeout_s``).
            target: run only on this PeerID (the first run; re-checks go elsewhere).
            verify: ``signature``, ``audit`` or ``redundant`` (default ``config.verify``).
            audit_rate: for ``audit`` (default ``config.audit_rate``, 0.05).
            replicas: for ``redundant`` (default ``config.replicas``, 2).
            params: integer parameters (seed, max_tokens, temperature_milli, ...).
            **more_params: more integer parameters, as keywords (``seed=3``).

        Raises:
            ConfigError: an unknown mode or a bad rate or replica count (before
                anything is sent).
            InvalidInput: the inputs or params do not fit the model's manifest
                (checked before sending), or ``refusal_quorum`` workers refused them.
            Disputed: independent workers disagree and nothing settled it.
            VerificationError: only unverifiable answers came back.
            DeadlineExceeded: no verified answer within ``timeout`` (also when no
                provider was found in time).
            NoPeersAvailable: every provider found was left out before the deadline
                (or too few for ``redundant``).
            ProtocolError: the task itself was refused (expired, ...).
        """
        self._check_open()
        options = self._options(verify, audit_rate, replicas)
        merged = {**(params or {}), **more_params}
        return await self._run(
            model, inputs, timeout=timeout, target=target, options=options, params=merged
        )

    async def _run(
        self,
        model: str | bytes,
        inputs: Inputs,
        *,
        timeout: float | None,  # noqa: ASYNC109
        target: str | None,
        options: VerifyOptions,
        params: Mapping[str, int],
    ) -> RunResult:
        limit = self._config.timeout_s if timeout is None else timeout
        deadline = trio.current_time() + limit
        root = resolve_model(model, zoo_dirs=self._config.zoo_dirs)
        # The task must fit the model before it leaves: then a worker's
        # invalid-input is that worker's fault (mesh.client.retry).
        check_before_sending(model, root, inputs, params, zoo_dirs=self._config.zoo_dirs)
        return await self._verifier.run(
            root,
            inputs,
            params,
            options=options,
            deadline=deadline,
            window_s=_task_window_s(self._config, limit),
            target=target,
        )

    def stream(
        self,
        model: str | bytes,
        inputs: Inputs,
        *,
        timeout: float | None = None,
        target: str | None = None,
        verify: str | None = None,
        audit_rate: float | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> TokenStream:
        """Run a generation on the mesh and give its tokens as they come.

        Returns a :class:`~mesh.client.streaming.TokenStream` whose work starts
        now: iterate it (``async for chunk in stream``) for
        :class:`~mesh.client.streaming.StreamChunk` s, then read ``stream.result``,
        the verified result, as :meth:`run` returns it (``result.verification``
        included). Use ``async with`` (or ``aclose``) to stop a stream early.
        Arguments as for :meth:`run`.

        Verification modes: ``signature`` and ``audit`` stream live, through the
        same verification layer as :meth:`run`; the tokens are provisional until
        the stream ends, and an audit (drawn after the receipt, as for
        :meth:`run`) that finds the streamed result wrong ends the stream with an
        error instead of its result. ``redundant`` cannot stream: its result
        exists only once a second worker confirmed it, after the last token, so
        it is refused here (use :meth:`run`).

        Raises:
            ConfigError: ``verify="redundant"``, or an unknown mode or rate (before
                anything is sent).
            InvalidInput: the inputs or params do not fit the model's manifest, or
                the model emits no tokens (before anything is sent, when the
                client knows the model).

        Raises (from the iteration):
            StreamInterrupted: the worker went away mid-stream and none could continue.
            StreamDiverged: a continuation did not reproduce the tokens given, or
                the verification layer replaced the streamed result.
            VerificationError, DeadlineExceeded, NoPeersAvailable, ProtocolError: as
                :meth:`run` (before the first chunk, or at the end).
        """
        self._check_open()
        assert self._nursery is not None
        options = self._options(verify, audit_rate, None)
        if options.mode == "redundant":
            raise ConfigError(
                "redundant verification cannot stream: its result is confirmed only after "
                "the last token (stream with signature or audit, or use run)"
            )
        limit = self._config.timeout_s if timeout is None else timeout
        deadline = trio.current_time() + limit
        root = resolve_model(model, zoo_dirs=self._config.zoo_dirs)
        merged = {**(params or {}), **more_params}
        check_before_sending(model, root, inputs, merged, zoo_dirs=self._config.zoo_dirs)
        check_streams_tokens(model, root, zoo_dirs=self._config.zoo_dirs)
        window = _task_window_s(self._config, limit)

        async def send(tap: StreamTap) -> RunResult:
            return await self._verifier.run(
                root,
                inputs,
                merged,
                options=options,
                deadline=deadline,
                window_s=window,
                target=target,
                stream=tap,
            )

        return TokenStream(send, self._nursery)

    @overload
    async def map(
        self,
        model: str | bytes,
        many_inputs: Iterable[Inputs],
        *,
        concurrency: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        return_errors: Literal[False] = False,
        batch_size: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> list[RunResult]: ...

    @overload
    async def map(
        self,
        model: str | bytes,
        many_inputs: Iterable[Inputs],
        *,
        concurrency: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        return_errors: Literal[True],
        batch_size: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> list[RunResult | MeshError]: ...

    async def map(
        self,
        model: str | bytes,
        many_inputs: Iterable[Inputs],
        *,
        concurrency: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (each task's deadline)
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        return_errors: bool = False,
        batch_size: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> list[RunResult] | list[RunResult | MeshError]:
        """Run ``model`` on each of ``many_inputs`` concurrently; outcomes in input order.

        Tasks spread over live peers (our own in-flight tasks count as load);
        each is retried elsewhere on its own (one bad worker fails no other
        task) within its own deadline, ``timeout`` from when it starts, and
        verified as :meth:`run` would (``verify``, ``audit_rate``, ``replicas``).
        No item's failure cancels the others (:mod:`mesh.client.mapping`).

        Items are sent in batched tasks when the model allows it
        (:mod:`mesh.client.batching`): one signed task, one receipt and one round
        trip for many items, each item's result carrying its proof in the batch
        (``RunResult.verify()`` checks it alone). A batch is retried and verified
        as a whole (:mod:`mesh.client.batch_verify`); a batch that fails fails
        each of its items with that error, in their places.

        Args:
            model: a zoo name, a hex model_root or 32 raw bytes.
            many_inputs: one inputs mapping per task.
            concurrency: tasks in flight at once (default ``config.map_concurrency``).
            timeout: each task's deadline in seconds (default ``config.timeout_s``).
            verify: the verification mode of every item (see :meth:`run`).
            audit_rate: see :meth:`run`.
            replicas: see :meth:`run`.
            return_errors: True returns each item's :class:`RunResult` or
                :class:`~mesh.errors.MeshError` in its place; False (the default)
                returns the results, or raises the first failed item's error
                (in input order) once every item finished.
            batch_size: items per batched task; None chooses (``ceil(items /
                concurrency)`` up to 256, when the model can be batched); 1 sends
                a task per item.
            params: integer parameters of every task (seed, max_tokens, ...).
            **more_params: more integer parameters, as keywords (``seed=3``).

        Raises:
            ConfigError: an unknown mode or bad settings (before anything is sent).
        """
        self._check_open()
        options = self._options(verify, audit_rate, replicas)
        items = list(many_inputs)
        merged = {**(params or {}), **more_params}
        limit = concurrency or self._config.map_concurrency
        root = resolve_model(model, zoo_dirs=self._config.zoo_dirs)
        size = batching.batch_size(
            len(items),
            concurrency=limit,
            requested=batch_size,
            model=model,
            root=root,
            mode=options.mode,
            zoo_dirs=self._config.zoo_dirs,
        )
        if size > 1:
            outcomes = await self._map_batched(model, items, size, limit, timeout, options, merged)
            return outcomes if return_errors else results_or_raise(outcomes)

        async def one(index: int) -> RunResult:
            return await self._run(
                model, items[index], timeout=timeout, target=None, options=options, params=merged
            )

        outcomes = await run_items(one, len(items), concurrency=limit)
        return outcomes if return_errors else results_or_raise(outcomes)

    async def _map_batched(
        self,
        model: str | bytes,
        items: list[Inputs],
        size: int,
        concurrency: int,
        timeout: float | None,  # noqa: ASYNC109 (each batch's deadline)
        options: VerifyOptions,
        params: Mapping[str, int],
    ) -> list[RunResult | MeshError]:
        """Map's outcomes through batched tasks; each item's error in its place."""
        root = resolve_model(model, zoo_dirs=self._config.zoo_dirs)
        outcomes: list[RunResult | MeshError | None] = [None] * len(items)
        # Each item is checked against the manifest first, as run() does: a bad
        # item fails alone, and a batch that leaves holds only items that fit.
        good: list[int] = []
        for index, item in enumerate(items):
            try:
                check_before_sending(model, root, item, params, zoo_dirs=self._config.zoo_dirs)
            except MeshError as exc:
                outcomes[index] = exc
            else:
                good.append(index)

        async def one(chunk: int) -> list[RunResult]:
            indices = batches[chunk]
            return await self._run_batch(
                root, [items[i] for i in indices], timeout=timeout, options=options, params=params
            )

        batches = [good[r.start : r.stop] for r in batching.split(len(good), size)]
        done = await run_items(one, len(batches), concurrency=concurrency)
        for indices, batch in zip(batches, done, strict=True):
            for position, index in enumerate(indices):
                outcomes[index] = batch[position] if isinstance(batch, list) else batch
        final: list[RunResult | MeshError] = []
        for answer in outcomes:
            assert answer is not None  # every item checked, batched and answered
            final.append(answer)
        return final

    async def run_batch(
        self,
        model: str | bytes,
        items: Sequence[Inputs],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the caller's total deadline)
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        params: Mapping[str, int] | None = None,
    ) -> list[RunResult]:
        """Run ``model`` on every item under ONE signed task and one receipt; results in order.

        Each result holds the batch's receipt and task, its own outputs and its
        :class:`~mesh.core.batch.ItemProof` (``RunResult.verify()`` checks it
        alone). The batch is verified as a whole (:mod:`mesh.client.batch_verify`).

        Raises:
            the same as :meth:`run` (for the whole batch).
        """
        self._check_open()
        options = self._options(verify, audit_rate, replicas)
        root = resolve_model(model, zoo_dirs=self._config.zoo_dirs)
        merged = dict(params or {})
        for item in items:
            check_before_sending(model, root, item, merged, zoo_dirs=self._config.zoo_dirs)
        return await self._run_batch(root, items, timeout=timeout, options=options, params=merged)

    async def _run_batch(
        self,
        root: bytes,
        items: Sequence[Inputs],
        *,
        timeout: float | None,  # noqa: ASYNC109
        options: VerifyOptions,
        params: Mapping[str, int],
    ) -> list[RunResult]:
        check_count(len(items))
        limit = self._config.timeout_s if timeout is None else timeout
        deadline = trio.current_time() + limit
        encoded = encode_items(items)  # hashed for the task, then sent as they are
        input_hashes = hash_encoded(encoded)
        window = min(
            max(self._config.task_window_s, limit + 1.0),
            (limits.MAX_TASK_WINDOW_MS - limits.MAX_CLOCK_SKEW_MS) / 1000,
        )

        def sign(mode: str) -> Signed[Task]:
            now = self._now_ms()
            task = Task(
                client=self._identity.public_key,
                nonce=os.urandom(_NONCE_BYTES),
                created_ms=now,
                expires_ms=now + int(window * 1000),
                model_root=root,
                input_hash=items_root(input_hashes),
                params={**params, BATCH_PARAM: len(items)},
                verify=mode,
                target=b"",
            )
            return sign_message(self._identity, task)

        return await self._batch_verifier.run(
            root,
            items,
            params,
            encoded=encoded,
            input_hashes=input_hashes,
            sign=sign,
            options=options,
            deadline=deadline,
            window_s=window,
        )

    async def peers(self, *, timeout: float | None = None) -> list[PeerView]:  # noqa: ASYNC109
        """Live peers with valid capacity records, with their measured latency.

        The same survey as :meth:`peer_list`, without saying whether it is complete.
        """
        return (await self.peer_list(timeout=timeout)).peers

    async def peer_list(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        probe: bool = True,
    ) -> PeerList:
        """Every live peer the bootstrap peers know of, and whether that view is complete.

        The bootstrap peers are asked for their records until every one of them
        answered and all name the same peers, or until ``timeout``; then, with
        ``probe``, each peer's latency is measured (a dial, or the RTT already
        known; without it ``latency_ms`` is only what is already known).
        """
        self._check_open()
        limit = self._config.discovery_timeout_s if timeout is None else timeout
        deadline = trio.current_time() + limit
        survey = await self._discovery.survey(timeout=limit)
        views: list[PeerView] = []

        async def view(peer_id: str, record: CapacityRecord) -> None:
            rtt = self._book.stats(peer_id).rtt_ms
            if rtt is None and probe:
                peer = dial_addr(peer_id, record)
                left = max(0.1, deadline - trio.current_time())
                rtt = await self._probe(peer, timeout=min(left, PROBE_TIMEOUT_S))
            views.append(PeerView(peer_id, record, rtt))

        # Probed concurrently: one frozen peer must not cost its timeout per peer.
        async with trio.open_nursery() as nursery:
            for peer_id, record in survey.records.items():
                nursery.start_soon(view, peer_id, record)
        return PeerList(
            peers=sorted(views, key=lambda v: v.peer_id),
            complete=survey.complete,
            asked=survey.asked,
            answered=survey.answered,
            note=survey.note,
        )

    async def providers(self, model: str | bytes, *, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109
        """PeerIDs announcing ``model`` in the DHT now (asked afresh, unverified liveness).

        Raises:
            ModelError: an unknown model name.
        """
        root = resolve_model(model, zoo_dirs=self._config.zoo_dirs)
        limit = self._config.discovery_timeout_s if timeout is None else timeout
        found = await self._discovery.dht_providers(root, timeout=limit, fresh=True)
        return [p.peer_id for p in found]

    async def record(self, peer_id: str, *, timeout: float | None = None) -> CapacityRecord | None:  # noqa: ASYNC109
        """``peer_id``'s live signed capacity record from the DHT (verified), or None."""
        limit = self._config.discovery_timeout_s if timeout is None else timeout
        return await self._discovery.fetch_record(peer_id, timeout=limit)

    # -- one task ------------------------------------------------------------------
    async def run_task(
        self,
        task: Signed[Task],
        inputs: Inputs,
        *,
        deadline: float,
        target: str | None = None,
    ) -> RunResult:
        """Send an already signed task until a verified result comes back or ``deadline``."""
        self._check_open()
        return await self._sender.send(task, inputs, deadline=deadline, target=target)

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("the client is closed")

    async def _probe(self, peer: PeerAddr, *, timeout: float) -> float | None:  # noqa: ASYNC109
        started = trio.current_time()
        try:
            await self._network.connect(peer, timeout=timeout)
        except MeshError:
            return None
        return (trio.current_time() - started) * 1000


def _task_window_s(config: ClientConfig, limit_s: float) -> float:
    """How long a task for a call with deadline ``limit_s`` stays valid.

    The task must stay valid until the deadline (retries re-send it), but nodes
    refuse windows over MAX_TASK_WINDOW_MS (their replay caches rely on it);
    keep a margin for clocks that disagree.
    """
    return min(
        max(config.task_window_s, limit_s + 1.0),
        (limits.MAX_TASK_WINDOW_MS - limits.MAX_CLOCK_SKEW_MS) / 1000,
    )
