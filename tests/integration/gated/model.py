"""tiny-gpt's architecture whose decoding waits for a file: a test double of a slow worker.

Copied into a zoo folder by ``gated_zoo.make_gated_zoo`` as a model's architecture.
Each sequence's first step (the prefill, which gives its first token) and up to
``after`` steps run freely; later steps wait until the file ``gate`` exists. So a
test can know that a worker has *not* finished a generation: it cannot, until
the test creates the file. The wait has a deadline (a test that never opens the
gate fails its task instead of hanging the node).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import mesh._zoo

GATE_DEADLINE_S = 120.0
_POLL_S = 0.01  # a file check per 10 ms while held: cheap, and the gate is a file

_path = Path(mesh._zoo.__file__).parent / "gpt2" / "model.py"
_spec = importlib.util.spec_from_file_location("gated_gpt2_base", _path)
assert _spec is not None and _spec.loader is not None
_base: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


class Gated(_base.GPT2):  # type: ignore[misc]
    """GPT-2 whose sequences wait for ``gate`` before their step ``after + 1``."""

    def __init__(self, *, gate: str, after: int, **config: Any) -> None:
        super().__init__(**config)
        self._gate = Path(gate)
        self._after = after
        self._steps: dict[int, int] = {}

    def hidden(self, ids: list[Any], caches: list[Any]) -> list[Any]:
        for cache in caches:
            # An empty cache is a prefill: a new sequence (ids of dead caches are reused).
            done = 0 if not cache else self._steps.get(id(cache), 0)
            if done >= self._after:
                self._wait()
        out = super().hidden(ids, caches)
        for cache in caches:
            self._steps[id(cache)] = (self._steps.get(id(cache), 0) if cache else 0) + 1
        return list(out)

    def _wait(self) -> None:
        deadline = time.monotonic() + GATE_DEADLINE_S
        while not self._gate.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gate {self._gate} was never opened")
            time.sleep(_POLL_S)


def build(**config: Any) -> Gated:
    return Gated(**config)


init_weights = _base.init_weights
load_state = _base.load_state
