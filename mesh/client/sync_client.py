"""``mesh.Client``: the blocking client, for scripts and notebooks.

Choice: one background thread runs a trio loop for the client's whole life,
and each blocking call is handed to it with ``trio.from_thread.run``. The
alternative, ``trio.run`` per call, would start a libp2p host, dial the
bootstrap peers and fill the DHT routing table on every call (hundreds of ms
and a new PeerID each time) and would lose the warm streams (a reused stream
costs ~1 ms, a new one ~4 ms) and the measured latencies that peer choice
relies on. The thread is a daemon so a forgotten ``close()`` cannot hang the
interpreter at exit; ``with Client(...) as client:`` closes it properly.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import trio

from mesh.client.async_client import (
    AsyncClient,
    ClientConfig,
    Inputs,
    PeerList,
    PeerView,
    RunResult,
)
from mesh.client.blocking_stream import BlockingTokenStream
from mesh.client.mapping import results_or_raise
from mesh.client.reputation import Reputation
from mesh.core.evidence import VerdictFile
from mesh.core.identity import Identity
from mesh.errors import Closed, MeshError

T = TypeVar("T")
ClientFactory = Callable[[], AbstractAsyncContextManager[AsyncClient]]

# How long close() waits for the loop thread to finish shutting the network down.
_CLOSE_TIMEOUT_S = 30.0


class Client:
    """A blocking mesh client (a trio loop in a background thread).

    Args:
        bootstrap: a bootstrap file path or multiaddrs with ``/p2p/``.
        key: an Identity, a key file path, or None for a throwaway key.
        config: client settings.
        factory: for tests: builds the AsyncClient context instead of libp2p.
    """

    def __init__(
        self,
        *,
        bootstrap: Sequence[str] | str | Path = (),
        key: Identity | Path | str | None = None,
        config: ClientConfig | None = None,
        factory: ClientFactory | None = None,
    ) -> None:
        self._factory = factory or functools.partial(
            AsyncClient.connect, bootstrap=bootstrap, key=key, config=config
        )
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._client: AsyncClient | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="mesh-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # handed to the constructor's thread, or lost at close
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with self._factory() as client:
            self._client = client
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._token is None or not self._thread.is_alive():
            raise Closed("the client is closed")
        return trio.from_thread.run(functools.partial(fn, *args, **kwargs), trio_token=self._token)

    @property
    def identity(self) -> Identity:
        assert self._client is not None
        return self._client.identity

    def run(
        self,
        model: str | bytes,
        inputs: Inputs,
        *,
        timeout: float | None = None,
        target: str | None = None,
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> RunResult:
        """Blocking :meth:`AsyncClient.run`: a verified result, or a MeshError.

        ``verify`` is ``signature`` (trusts the worker), ``audit`` (re-checks a
        random ``audit_rate`` share on independent workers) or ``redundant``
        (``replicas`` independent workers must agree); see AsyncClient.run.
        """
        assert self._client is not None
        result: RunResult = self._call(
            self._client.run,
            model,
            inputs,
            timeout=timeout,
            target=target,
            verify=verify,
            audit_rate=audit_rate,
            replicas=replicas,
            params={**(params or {}), **more_params},
        )
        return result

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
    ) -> BlockingTokenStream:
        """Blocking :meth:`AsyncClient.stream`: a plain iterator of chunks, then ``.result``.

        ``for chunk in client.stream(...)`` reads chunks as the loop thread gets
        them (each ``next`` waits for the next one); ``with client.stream(...) as
        chunks:`` or ``close()`` stops a stream left early.
        """
        assert self._client is not None
        if self._token is None or not self._thread.is_alive():
            raise Closed("the client is closed")
        stream = trio.from_thread.run_sync(
            functools.partial(
                self._client.stream,
                model,
                inputs,
                timeout=timeout,
                target=target,
                verify=verify,
                audit_rate=audit_rate,
                params={**(params or {}), **more_params},
            ),
            trio_token=self._token,
        )
        return BlockingTokenStream(stream, self._token)

    @overload
    def map(
        self,
        model: str | bytes,
        many_inputs: Iterable[Inputs],
        *,
        concurrency: int | None = None,
        timeout: float | None = None,
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        return_errors: Literal[False] = False,
        batch_size: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> list[RunResult]: ...

    @overload
    def map(
        self,
        model: str | bytes,
        many_inputs: Iterable[Inputs],
        *,
        concurrency: int | None = None,
        timeout: float | None = None,
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        return_errors: Literal[True],
        batch_size: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> list[RunResult | MeshError]: ...

    def map(
        self,
        model: str | bytes,
        many_inputs: Iterable[Inputs],
        *,
        concurrency: int | None = None,
        timeout: float | None = None,
        verify: str | None = None,
        audit_rate: float | None = None,
        replicas: int | None = None,
        return_errors: bool = False,
        batch_size: int | None = None,
        params: Mapping[str, int] | None = None,
        **more_params: int,
    ) -> list[RunResult] | list[RunResult | MeshError]:
        """Blocking :meth:`AsyncClient.map`: outcomes in input order, each verified as
        ``verify`` (see there), in batched tasks as ``batch_size`` says."""
        assert self._client is not None
        items = list(many_inputs)
        outcomes: list[RunResult | MeshError] = self._call(
            functools.partial(self._client.map, return_errors=True),
            model,
            items,
            concurrency=concurrency,
            timeout=timeout,
            verify=verify,
            audit_rate=audit_rate,
            replicas=replicas,
            batch_size=batch_size,
            params={**(params or {}), **more_params},
        )
        return outcomes if return_errors else results_or_raise(outcomes)

    def run_batch(
        self,
        model: str | bytes,
        items: Sequence[Inputs],
        *,
        timeout: float | None = None,
        verify: str | None = None,
        params: Mapping[str, int] | None = None,
    ) -> list[RunResult]:
        """Blocking :meth:`AsyncClient.run_batch`: one signed task and one receipt for all."""
        assert self._client is not None
        results: list[RunResult] = self._call(
            self._client.run_batch, model, items, timeout=timeout, verify=verify, params=params
        )
        return results

    def verdicts(self) -> list[VerdictFile]:
        """The verdicts this client made so far (see :meth:`AsyncClient.verdicts`)."""
        assert self._client is not None
        return self._client.verdicts()

    @property
    def reputation(self) -> Reputation:
        """This client's table of workers (read it, do not change it from this thread)."""
        assert self._client is not None
        return self._client.reputation

    def peers(self, *, timeout: float | None = None) -> list[PeerView]:
        """Blocking :meth:`AsyncClient.peers`."""
        assert self._client is not None
        views: list[PeerView] = self._call(self._client.peers, timeout=timeout)
        return views

    def peer_list(self, *, timeout: float | None = None) -> PeerList:
        """Blocking :meth:`AsyncClient.peer_list`: the peers, and whether the view is complete."""
        assert self._client is not None
        listing: PeerList = self._call(self._client.peer_list, timeout=timeout)
        return listing

    def close(self) -> None:
        """Stop the loop thread (closing the network). Idempotent."""
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            stop = self._stop
            # The loop may finish between the check and the call: nothing to stop then.
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=self._token)
        self._thread.join(timeout=_CLOSE_TIMEOUT_S)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
