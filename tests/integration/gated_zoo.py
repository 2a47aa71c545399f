"""A zoo folder with ``tiny-gated``: tiny-gpt whose workers wait for a file mid-generation.

Real processes serve it (``mesh node --zoo DIR``); only the model is a double
(``gated/model.py``): its decoding stops after ``after`` tokens until the test
creates the gate file, so "the worker has not finished yet" is a state the
test controls, not a race it hopes to win.
"""

from __future__ import annotations

import shutil
from pathlib import Path

NAME = "tiny-gated"
_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]

_MANIFEST = """name = "{name}"
kind = "generate"
description = "tiny-gpt whose decoding waits for a file after {after} tokens (a test double)."
model_root = "{root}"
dtype = "float32"

[architecture]
file = "model.py"

[architecture.config]
vocab_size = 257
n_positions = 512
n_embd = 64
n_layer = 2
n_head = 4
gate = "{gate}"
after = {after}

[weights]
source = "seed"
seed = 777

[tokenizer]
kind = "bytes"
eos_id = 256

[inputs.prompt]
dtype = "str"
shape = [1]
optional = true

[inputs.prompt_ids]
dtype = "int64"
shape = [-1]
optional = true

[outputs.text]
dtype = "str"
shape = [1]

[outputs.token_ids]
dtype = "int64"
shape = [-1]

[limits]
max_tokens = 128
max_prompt_tokens = 256

[commitment]
chunk = 32
k = 32

[tolerance.float32]
hidden_abs = 1e-4
logit_abs = 1e-5
"""


def make_gated_zoo(folder: Path, *, gate: Path, after: int) -> str:
    """Write the zoo entry under ``folder``; return its model_root (hex).

    The root is computed here from the seeded weights (the gate and ``after`` are
    not weights, so every gated zoo serves the same root).
    """
    from mesh.runtime.manifest import load_manifest
    from mesh.runtime.weights import build_model

    entry = folder / NAME
    entry.mkdir(parents=True, exist_ok=True)
    shutil.copy(_HERE / "gated" / "model.py", entry / "model.py")
    shutil.copy(_REPO / "models" / "tiny-gpt" / "tokenizer_config.json", entry)
    manifest = entry / "manifest.toml"
    text = _MANIFEST.format(name=NAME, root="{root}", gate=gate, after=after)
    manifest.write_text(text.replace('model_root = "{root}"\n', ""))
    _, root = build_model(load_manifest(manifest), None)
    manifest.write_text(text.replace("{root}", root.hex()))
    return root.hex()
