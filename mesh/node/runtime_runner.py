"""The real :class:`~mesh.node.runner.TaskRunner`: the runtime's executor on loaded models.

Importing this module does not import torch; :func:`load_runtime_runner` does,
when a node actually starts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from mesh.core.checks import CheckRequest
from mesh.core.partials import runtime_class
from mesh.core.values import Values
from mesh.errors import CommitmentMismatch, ConfigError, InvalidInput, ModelError
from mesh.node.config import NodeConfig
from mesh.node.runner import ExecutionLike, TokenHook

if TYPE_CHECKING:
    from mesh.runtime.detokenize import IncrementalDetokenizer
    from mesh.runtime.executor import Executor
    from mesh.runtime.registry import LoadedModel

logger = logging.getLogger(__name__)


class RuntimeRunner:
    """Adapts ``mesh.runtime.executor.Executor`` to the node's TaskRunner protocol."""

    def __init__(self, executor: Executor, models: Sequence[LoadedModel], *, device: str) -> None:
        self._executor = executor
        self._models = {m.model_root: m.name for m in models}
        self._device = device
        self._checks = trio.CapacityLimiter(1)

    @property
    def models(self) -> Mapping[bytes, str]:
        return self._models

    @property
    def device(self) -> str:
        return self._device

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        self._executor.model(model_root).validate(inputs, params)

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> ExecutionLike:
        if on_tokens is None:
            return await self._executor.run(model_root, inputs, params, on_start=on_start)
        # Text deltas that never split a character; the tail held back comes last.
        detokenizer = text_deltas(self._executor.model(model_root))

        def hook(ids: list[int]) -> None:
            on_tokens(ids, detokenizer.push(ids) if detokenizer is not None else "")

        execution = await self._executor.run(
            model_root, inputs, params, on_start=on_start, on_tokens=hook
        )
        tail = detokenizer.flush() if detokenizer is not None else ""
        if tail:
            on_tokens([], tail)
        return execution

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        return runtime_class(self._executor.model(model_root).runtime_claim(0))

    def queue_depth(self) -> int:
        return self._executor.queue_depth()

    def queue_capacity(self) -> int:
        return self._executor.queue_capacity()

    async def run_forever(self) -> None:
        await self._executor.run_forever()

    async def check_generation(
        self, model_root: bytes, request: CheckRequest, params: dict[str, int]
    ) -> tuple[bool, str, dict[str, str | int | bool]]:
        """Check another worker's generation with one forward pass (see mesh.node.checks).

        The tolerance is the manifest's for the checked receipt's dtype and ours.

        Raises:
            UnknownModel: the model is not served here.
            InvalidInput: not a language model, or the manifest has no tolerance for the dtype.
        """
        model = self._executor.model(model_root)
        if model.manifest.kind != "generate":
            raise InvalidInput(f"{model.name} has no activation commitments to check")
        try:
            tolerance = model.manifest.tolerance(request.dtype or model.dtype, model.dtype)
        except ModelError as exc:
            raise InvalidInput(f"cannot check a {request.dtype} run: {exc}") from exc

        def check() -> tuple[bool, str]:
            from mesh.runtime.commitment import verify_task_outputs
            from mesh.runtime.device import apply_thread_count

            apply_thread_count()
            try:
                verify_task_outputs(
                    model,
                    request.inputs,
                    params,
                    {"token_ids": request.token_ids},
                    request.commitment,
                    tolerance=tolerance,
                )
            except CommitmentMismatch as exc:
                return False, str(exc)
            return True, ""

        # One check at a time: a forward pass competes with the executor's batches
        # for the same cores, and checks are a small share of the work.
        async with self._checks:
            passed, reason = await trio.to_thread.run_sync(check)
        return passed, reason, model.runtime_claim(1)

    def memory_free_mb(self) -> int:
        """Free memory of the device the models run on (MiB), best effort."""
        return device_free_bytes(self._device) // (1024 * 1024)


def device_free_bytes(device: str) -> int:
    """Free memory of ``device`` now, read afresh each call (each advert calls it).

    CUDA: the driver's free figure for *that* device (``cuda:1`` is not the
    current device); CPU: the kernel's MemAvailable.
    """
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return _mem_available_mb() * 1024 * 1024


def text_deltas(model: LoadedModel) -> IncrementalDetokenizer | None:
    """A detokenizer for a generation model's tokenizer; None for other models and none."""
    from mesh.runtime.detokenize import IncrementalDetokenizer

    if model.manifest.kind != "generate":
        return None  # the executor refuses a token hook for it (InvalidInput)
    tokenizer = model.generator().tokenizer
    return IncrementalDetokenizer(tokenizer) if tokenizer is not None else None


def _mem_available_mb() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


async def load_runtime_runner(config: NodeConfig) -> RuntimeRunner:
    """Load ``config.model_names`` from the zoos (in a worker thread) and build the executor.

    Operator zoo folders come first, then the built-in zoo. ``config.weights``
    maps a model name to its weights folder (``--weights gpt2=PATH``).

    Raises:
        ModelError: an unknown name, missing weights or a model_root mismatch.
        ConfigError: a bad device, zoo folder or option.
    """
    if not config.model_names:
        raise ConfigError("a node needs at least one model (--models NAMES)")
    from mesh.runtime.device import configure_determinism, resolve_device
    from mesh.runtime.executor import Executor

    configure_determinism(threads=config.threads)
    device = resolve_device(config.device)
    names = config.model_names
    if names == (AUTO,):
        names = await trio.to_thread.run_sync(
            functools.partial(
                models_that_fit,
                device=device,
                zoo_dirs=config.zoo_dirs,
                weights=dict(config.weights),
            )
        )
    models = await trio.to_thread.run_sync(
        functools.partial(
            load_zoo_models,
            names,
            device=device,
            zoo_dirs=config.zoo_dirs,
            weights=dict(config.weights),
        )
    )
    executor = Executor(models, max_batch=config.max_batch, max_queue=config.max_queue)
    return RuntimeRunner(executor, models, device=device)


AUTO = "auto"  # --models auto


def models_that_fit(
    *, device: str, zoo_dirs: Sequence[Path], weights: Mapping[str, Path]
) -> tuple[str, ...]:
    """``--models auto``: the zoo models whose weights are here and that fit in the
    device's free memory now (the rule: :mod:`mesh.runtime.fit`); each decision logged.

    Raises:
        ConfigError: none fits.
    """
    from mesh.runtime.fit import choose, sizings
    from mesh.runtime.zoo import manifests

    free = device_free_bytes(device)
    decisions = choose(sizings(list(manifests(zoo_dirs).values()), dict(weights)), free_bytes=free)
    for decision in decisions:
        logger.info("--models auto: %s %s", decision.name, decision.reason)
    chosen = tuple(d.name for d in decisions if d.chosen)
    if not chosen:
        raise ConfigError(
            f"--models auto: no zoo model fits in {free // (1024 * 1024)} MiB free on {device}"
        )
    logger.info("--models auto on %s: serving %s", device, ", ".join(chosen))
    return chosen


def load_zoo_models(
    names: Sequence[str],
    *,
    device: str,
    zoo_dirs: Sequence[Path] = (),
    weights: Mapping[str, Path] | None = None,
) -> list[LoadedModel]:
    """Load zoo models by name (blocking: call off the event loop).

    Operator zoo folders come first, then the built-in zoo; ``weights`` maps a
    model name to its weights folder. Raises ModelError for an unknown name, missing
    weights or a model_root mismatch.
    """
    from mesh.runtime.registry import load_model
    from mesh.runtime.zoo import find_manifest

    return [
        load_model(
            find_manifest(name, zoo_dirs), device=device, weights_dir=(weights or {}).get(name)
        )
        for name in names
    ]
