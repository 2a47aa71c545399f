"""Checks run in the client's own process, for a client that holds the model.

With ``ClientConfig(local_check=True)`` the verification layer may settle a
result here instead of asking another worker: a classifier or embedding is run
again locally and compared, a generation is checked with one forward pass
(``verify_task_outputs``). A local check is trusted as the tie-breaker: it is
the client's own computation.

Only zoo models with a pinned ``model_root`` can be checked (the weights are
built and their root checked exactly as a node does). torch is imported on the
first check, never before; models load once, in a worker thread, on CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from mesh.client.compare import Profile, profile_for
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import CommitmentMismatch, ModelError

if TYPE_CHECKING:
    from mesh.runtime.registry import LoadedModel

RuntimeClaim = dict[str, str | int | bool]


class LocalChecker:
    """Runs and checks tasks on models loaded in this process.

    Args:
        zoo_dirs: extra zoo folders (the built-in zoo is always searched).
    """

    def __init__(self, zoo_dirs: tuple[Path, ...] = ()) -> None:
        self._zoo_dirs = zoo_dirs
        self._models: dict[bytes, LoadedModel | None] = {}
        self._lock = trio.Lock()
        self._configured = False
        self.runs = 0  # local runs and checks done (each one model call)

    def can_check(self, model_root: bytes) -> bool:
        """True when the zoo pins ``model_root`` (so this process can load the model)."""
        return profile_for(model_root, self._zoo_dirs).manifest is not None

    async def _model(self, model_root: bytes) -> LoadedModel | None:
        async with self._lock:  # one load per model, however many checks wait for it
            if model_root not in self._models:
                profile = profile_for(model_root, self._zoo_dirs)
                self._models[model_root] = await trio.to_thread.run_sync(
                    functools.partial(self._load, profile)
                )
        return self._models[model_root]

    def _load(self, profile: Profile) -> LoadedModel | None:
        if profile.manifest is None:
            return None
        from mesh.runtime.device import configure_determinism
        from mesh.runtime.registry import load_model

        if not self._configured:
            configure_determinism()
            self._configured = True
        try:
            return load_model(profile.manifest, device="cpu")
        except ModelError:
            return None  # weights missing here (an optional package): no local check

    async def run(
        self, model_root: bytes, inputs: Values, params: Mapping[str, int]
    ) -> tuple[Values, RuntimeClaim] | None:
        """The outputs and runtime claim of running the task here, or None without the model."""
        model = await self._model(model_root)
        if model is None:
            return None

        def work() -> Values:
            model.validate(inputs, dict(params))
            return model.run_batch([(inputs, dict(params))])[0].outputs

        outputs = await trio.to_thread.run_sync(work)
        self.runs += 1
        return outputs, model.runtime_claim(1)

    async def check_generation(
        self,
        model_root: bytes,
        inputs: Values,
        params: Mapping[str, int],
        token_ids: Tensor,
        commitment: bytes,
        dtype: str,
    ) -> tuple[bool, str] | None:
        """(passed, reason) of the commitment and sampling check, or None without the model."""
        model = await self._model(model_root)
        if model is None:
            return None
        try:
            tolerance = model.manifest.tolerance(dtype or model.dtype, model.dtype)
        except ModelError:
            tolerance = model.manifest.tolerance(model.dtype)

        def work() -> tuple[bool, str]:
            from mesh.runtime.commitment import verify_task_outputs

            try:
                verify_task_outputs(
                    model,
                    inputs,
                    dict(params),
                    {"token_ids": token_ids},
                    commitment,
                    tolerance=tolerance,
                )
            except CommitmentMismatch as exc:
                return False, str(exc)
            return True, ""

        result = await trio.to_thread.run_sync(work)
        self.runs += 1
        return result
