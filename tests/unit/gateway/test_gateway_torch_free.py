"""The gateway process never imports torch: it tokenizes and renders prompts without it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# Everything the gateway does locally, in a fresh process: its modules, the
# CLI, the catalog, both kinds of tokenizer, a chat template.
SCRIPT = """
import json, sys
import mesh.cli
import mesh.cli.gateway
import mesh.gateway.app, mesh.gateway.serve
from mesh.gateway.catalog import Catalog

catalog = Catalog()
gpt = catalog.entry("tiny-gpt", kind="generate")
minilm = catalog.entry("minilm-l6", kind="embed")
prompt = catalog.chat_template(gpt).render([{"role": "user", "content": "hi"}])
counts = {
    "tiny-gpt": len(catalog.tokenizer(gpt).encode(prompt)),
    "minilm-l6": len(catalog.tokenizer(minilm).encode("hello mesh world")),
    "minilm-long": len(catalog.tokenizer(minilm).encode("word " * 1000)),
}
mesh.cli.build_parser().parse_args(["gateway", "--bootstrap", "b.txt"])
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
print(json.dumps({"heavy": heavy, "counts": counts, "prompt": prompt}))
"""


def test_gateway_work_imports_no_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout.splitlines()[-1])
    assert doc["heavy"] == []
    # Byte tokenizer: a start token, then one per byte of the rendered prompt.
    assert doc["counts"]["tiny-gpt"] == len(doc["prompt"].encode()) + 1
    # BERT's WordPiece with [CLS] and [SEP], truncated at 256 as the worker does.
    assert doc["counts"]["minilm-l6"] == 5
    assert doc["counts"]["minilm-long"] == 256
