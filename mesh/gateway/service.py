"""The gateway's work, apart from HTTP: requests in, mesh tasks out, OpenAI bodies back.

One :class:`Gateway` wraps one shared mesh client (``map``, ``stream`` and
``peers`` of :class:`mesh.AsyncClient`, nothing else). Each method takes a
checked request (:mod:`mesh.gateway.schemas`) and returns a :class:`Reply`: the
JSON body and the headers, receipts included (:mod:`mesh.gateway.evidence`); a
generation asked with ``stream: true`` returns a
:class:`~mesh.gateway.streaming.StreamReply` instead, once its first tokens came
(:mod:`mesh.gateway.streaming`).

Generation defaults: ``max_tokens`` is 16 for completions (OpenAI's default)
and, for chat, as many as the model allows (its ``max_tokens`` limit, within
its context after the prompt). Requests over a model's limits are refused
here with OpenAI's ``context_length_exceeded`` before any task is sent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio

from mesh.client.async_client import AsyncClient
from mesh.client.results import RunResult
from mesh.core.tensors import Tensor
from mesh.gateway import evidence, responses, streaming
from mesh.gateway.catalog import Catalog, ModelEntry
from mesh.gateway.errors import bad_request, unsupported
from mesh.gateway.schemas import (
    MAX_SEED,
    ChatRequest,
    CompletionRequest,
    EmbeddingsRequest,
    Sampling,
    Streaming,
)
from mesh.runtime.tokenize import ByteTokenizer, TextTokenizer

logger = logging.getLogger(__name__)

Inputs = Mapping[str, Tensor | Sequence[str]]

COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
# Defaults of the runtime (mesh.runtime.generate / embed, which import torch)
# for manifests that set no limit.
DEFAULT_MAX_TOKENS = 64
DEFAULT_MAX_PROMPT_TOKENS = 256
DEFAULT_MAX_TEXTS = 64
# Tasks one request may spread over. The receipts of all of them travel in one
# header, and HTTP clients cap a response's header block (16 KiB in h11, under
# httpx and openai); an embedding receipt is about 0.7 KiB in base64.
MAX_TASKS_PER_REQUEST = 8
# Texts up to this many characters in all are tokenized on the event loop:
# minilm-l6's WordPiece takes 0.02 ms for 50 chars, 0.33 ms for 1 KiB and 5 ms
# for 16 KiB (measured here); past 1 KiB a worker thread keeps the loop free.
INLINE_TOKENIZE_CHARS = 1024


@dataclass(frozen=True)
class Reply:
    """A response body, its headers, and what the request log line says of it."""

    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)
    log: str = ""


class Gateway:
    """OpenAI's endpoints over one mesh client.

    Args:
        client: the shared mesh client.
        catalog: the local zoo's models.
        timeout_s: the mesh deadline of one request.
        rng: draws seeds for requests that give none.
    """

    def __init__(
        self,
        client: AsyncClient,
        catalog: Catalog,
        *,
        timeout_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.timeout_s = timeout_s
        self._rng = rng or random.SystemRandom()

    # -- GET /v1/models --------------------------------------------------------
    async def models(self) -> Reply:
        """The models live peers serve now that this gateway can serve too.

        A model a peer advertises under a root other than the local manifest's
        (other weights), or that the local zoo does not know, is left out: a
        request for it could not be served here.
        """
        views = await self.client.peers()
        found: dict[str, ModelEntry] = {}
        workers: dict[str, int] = {}
        created: dict[str, int] = {}
        for view in views:
            record = view.record
            for root, name in zip(record.models, record.model_names, strict=False):
                entry = self.catalog.get(name)
                if entry is None or entry.root != root:
                    continue
                workers[name] = workers.get(name, 0) + 1
                # When the mesh began serving it, as far as live adverts show.
                since = record.created_ms // 1000
                created[name] = min(created.get(name, since), since)
                found[name] = entry
        data = [
            responses.model_object(
                name,
                created=created[name],
                model_root=found[name].root,
                workers=workers[name],
                kind=found[name].kind,
            )
            for name in sorted(found)
        ]
        return Reply({"object": "list", "data": data})

    # -- POST /v1/embeddings ---------------------------------------------------
    async def embeddings(self, request: EmbeddingsRequest, *, verify: str) -> Reply:
        """Embed ``request.texts``, several tasks when they exceed one task's cap."""
        entry = self.catalog.entry(request.model, kind="embed")
        dims = entry.embedding_dims
        if request.dimensions is not None and request.dimensions != dims:
            raise unsupported("dimensions", f"{entry.name} gives {dims} dimensions only")
        per_task = entry.manifest.limit("max_texts", DEFAULT_MAX_TEXTS)
        if len(request.texts) > per_task * MAX_TASKS_PER_REQUEST:
            raise bad_request(
                f"at most {per_task * MAX_TASKS_PER_REQUEST} inputs per request for {entry.name}",
                param="input",
            )
        tokenizer = self.catalog.tokenizer(entry)
        prompt_tokens = sum(await _count_tokens(tokenizer, request.texts))
        chunks = [request.texts[i : i + per_task] for i in range(0, len(request.texts), per_task)]
        inputs: list[Inputs] = [{entry.text_input: list(chunk)} for chunk in chunks]
        results = await self._run_many(entry, inputs, verify=verify)
        output = next(iter(entry.manifest.outputs))
        vectors: list[list[float]] = []
        for chunk, result in zip(chunks, results, strict=True):
            vectors += responses.read_embeddings(result.outputs, name=output, rows=len(chunk))
        body = responses.embedding_list(
            vectors, model=entry.name, as_base64=request.base64, prompt_tokens=prompt_tokens
        )
        return self._reply(body, results, verify=verify, user=request.user)

    # -- POST /v1/completions and /v1/chat/completions -------------------------
    async def completion(
        self, request: CompletionRequest, *, verify: str
    ) -> Reply | streaming.StreamReply:
        """Complete one prompt (as events when ``request.streaming`` says so)."""
        entry = self.catalog.entry(request.model, kind="generate")
        job = await self._prepare(entry, request.prompt, request.sampling, chat=False)
        if request.streaming.enabled:
            return await self._stream(job, request.streaming, verify=verify, user=request.user)
        return await self._generate(job, verify=verify, user=request.user)

    async def chat(self, request: ChatRequest, *, verify: str) -> Reply | streaming.StreamReply:
        """Answer a conversation, rendered with the model's chat template."""
        entry = self.catalog.entry(request.model, kind="generate")
        prompt = self.catalog.chat_template(entry).render(request.messages)
        job = await self._prepare(entry, prompt, request.sampling, chat=True)
        if request.streaming.enabled:
            return await self._stream(job, request.streaming, verify=verify, user=request.user)
        return await self._generate(job, verify=verify, user=request.user)

    async def _prepare(
        self, entry: ModelEntry, prompt: str, sampling: Sampling, *, chat: bool
    ) -> streaming.Generation:
        """Count the prompt's tokens, check the limits, choose the seed: the task to send."""
        tokenizer = self.catalog.tokenizer(entry)
        (prompt_tokens,) = await _count_tokens(tokenizer, [prompt])
        max_tokens = self._max_tokens(entry, sampling, prompt_tokens, chat=chat)
        seed = sampling.seed if sampling.seed is not None else self._rng.randint(0, MAX_SEED)
        params = {
            "max_tokens": max_tokens,
            "temperature_milli": sampling.temperature_milli,
            "top_p_milli": sampling.top_p_milli,
            "seed": seed,
        }
        return streaming.Generation(
            entry=entry,
            inputs={entry.text_input: [prompt]},
            params=params,
            prompt_tokens=prompt_tokens,
            stop=sampling.stop,
            chat=chat,
        )

    async def _generate(self, job: streaming.Generation, *, verify: str, user: str | None) -> Reply:
        entry = job.entry
        (result,) = await self._run_many(entry, [job.inputs], verify=verify, params=job.params)
        generation = responses.read_generation(
            result.outputs, eos_id=entry.eos_id, max_tokens=job.max_tokens, stop=job.stop
        )
        build = responses.chat_completion if job.chat else responses.completion
        body = build(
            generation,
            id=result.receipt.message.task_id.hex(),
            model=entry.name,
            # The worker's signed finishing time, not the gateway's clock.
            created=result.receipt.message.finished_ms // 1000,
            prompt_tokens=job.prompt_tokens,
        )
        return self._reply(body, [result], verify=verify, seed=job.seed, user=user)

    async def _stream(
        self,
        job: streaming.Generation,
        options: Streaming,
        *,
        verify: str,
        user: str | None,
    ) -> streaming.StreamReply:
        if verify == "redundant":
            raise bad_request(
                "redundant verification cannot stream: its result is confirmed only after "
                "the last token (send stream=false, or verify signature or audit)",
                param="stream",
                code="stream_unsupported",
            )
        stream = self.client.stream(
            job.entry.root, job.inputs, timeout=self.timeout_s, verify=verify, params=job.params
        )
        log = f"model={job.entry.name} verify={verify} tasks=1 stream=true user={user!r}"
        return await streaming.open_events(
            stream, job, include_usage=options.include_usage, verify=verify, log=log
        )

    def _max_tokens(
        self, entry: ModelEntry, sampling: Sampling, prompt_tokens: int, *, chat: bool
    ) -> int:
        """The tokens to generate, checked against the model's limits (400 when over)."""
        manifest = entry.manifest
        cap = manifest.limit("max_tokens", DEFAULT_MAX_TOKENS)
        max_prompt = manifest.limit("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS)
        positions = int(manifest.config.get("n_positions", 0)) or None
        if prompt_tokens > max_prompt:
            raise bad_request(
                f"the prompt has {prompt_tokens} tokens; {entry.name} takes at most {max_prompt}",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        room = cap if positions is None else min(cap, positions - prompt_tokens)
        wanted = sampling.max_tokens
        if wanted is None:
            wanted = room if chat else min(COMPLETION_MAX_TOKENS, room)
        if wanted > cap:
            raise bad_request(
                f"max_tokens is {wanted}; {entry.name} generates at most {cap} per request",
                param="max_tokens",
                code="context_length_exceeded",
            )
        if wanted > room or wanted < 1:
            raise bad_request(
                f"the prompt ({prompt_tokens} tokens) and max_tokens ({wanted}) exceed "
                f"{entry.name}'s context of {positions} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return wanted

    # -- the mesh --------------------------------------------------------------
    async def _run_many(
        self,
        entry: ModelEntry,
        inputs: Sequence[Inputs],
        *,
        verify: str,
        params: Mapping[str, int] | None = None,
    ) -> list[RunResult]:
        """Run one task per item concurrently (the client's ``map``); one failure fails all.

        An answer needs every item, so the first error (in input order) is raised.
        """
        return await self.client.map(
            entry.root, inputs, timeout=self.timeout_s, verify=verify, params=params
        )

    def _reply(
        self,
        body: dict[str, object],
        results: Sequence[RunResult],
        *,
        verify: str,
        user: str | None,
        seed: int | None = None,
    ) -> Reply:
        body["mesh"] = evidence.mesh_field(results, verify=verify, seed=seed)
        headers = {evidence.RECEIPT_HEADER: evidence.receipt_header(results)}
        # `user` is OpenAI's end-user tag for abuse tracing: it goes to the log, nowhere else.
        log = f"model={body.get('model')} verify={verify} tasks={len(results)} user={user!r}"
        return Reply(body, headers, log)


async def _count_tokens(tokenizer: TextTokenizer, texts: Sequence[str]) -> list[int]:
    """Token counts as the worker tokenizes (truncation included), off the event loop."""
    if isinstance(tokenizer, ByteTokenizer) or sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
        return [len(tokenizer.encode(t)) for t in texts]
    return await trio.to_thread.run_sync(lambda: [len(tokenizer.encode(t)) for t in texts])
