"""The gateway's catalog: zoo names to entries, tokenizers found without torch, templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.gateway.catalog import Catalog
from mesh.gateway.errors import ApiError
from mesh.gateway.service import INLINE_TOKENIZE_CHARS, _count_tokens
from mesh.runtime.tokenize import ByteTokenizer, HFTokenizer

pytestmark = pytest.mark.unit


def _code(call: object) -> tuple[int, str | None]:
    with pytest.raises(ApiError) as caught:
        call()  # type: ignore[operator]
    return caught.value.status, caught.value.code


def test_entries_by_name_and_kind() -> None:
    catalog = Catalog()
    gpt = catalog.entry("tiny-gpt", kind="generate")
    assert (
        gpt.root.hex().startswith("13a6a8bc") and gpt.eos_id == 256 and gpt.text_input == "prompt"
    )
    minilm = catalog.entry("minilm-l6", kind="embed")
    assert minilm.embedding_dims == 384 and minilm.text_input == "texts"
    assert _code(lambda: catalog.entry("nope", kind="generate")) == (404, "model_not_found")
    assert _code(lambda: catalog.entry("tiny-gpt", kind="embed")) == (400, "wrong_endpoint")
    assert _code(lambda: catalog.entry("tiny-mlp", kind="embed")) == (400, "wrong_endpoint")
    # gpt2 ships no weights, so its manifest pins no root the mesh could be asked for.
    assert _code(lambda: catalog.entry("gpt2", kind="generate")) == (400, "model_not_supported")
    assert catalog.get("gpt2") is None and catalog.get("tiny-mlp") is None
    assert catalog.get("tiny-gpt") == gpt


def test_tokenizers_and_templates() -> None:
    catalog = Catalog()
    gpt = catalog.entry("tiny-gpt", kind="generate")
    minilm = catalog.entry("minilm-l6", kind="embed")
    assert isinstance(catalog.tokenizer(gpt), ByteTokenizer)
    assert isinstance(catalog.tokenizer(minilm), HFTokenizer)  # from its weights package
    assert catalog.tokenizer(minilm) is catalog.tokenizer(minilm)  # loaded once
    assert (
        catalog.chat_template(gpt)
        .render([{"role": "user", "content": "x"}])
        .startswith("<|im_start|>user")
    )
    assert _code(lambda: catalog.chat_template(minilm))[1] == "chat_template_missing"


def test_operator_zoo_comes_first_and_broken_templates_are_400(tmp_path: Path) -> None:
    builtin = Catalog().entry("tiny-gpt", kind="generate").manifest
    entry = tmp_path / "tiny-gpt"
    entry.mkdir()
    manifest = (builtin.folder / "manifest.toml").read_text()
    manifest = manifest.replace('file = "../gpt2/model.py"', 'file = "builtin:gpt2/model.py"')
    (entry / "manifest.toml").write_text(manifest)
    (entry / "tokenizer_config.json").write_text('{"chat_template": "{% for %}"}')
    catalog = Catalog([tmp_path])
    gpt = catalog.entry("tiny-gpt", kind="generate")
    assert gpt.manifest.folder == entry
    assert _code(lambda: catalog.chat_template(gpt)) == (400, "chat_template_invalid")


async def test_token_counts_inline_and_in_a_thread_agree() -> None:
    catalog = Catalog()
    tokenizer = catalog.tokenizer(catalog.entry("minilm-l6", kind="embed"))
    short = ["hello mesh world"]
    long = ["word " * 400]  # 2000 chars, past the inline cap: a thread
    assert len(long[0]) > INLINE_TOKENIZE_CHARS
    assert await _count_tokens(tokenizer, short) == [5]
    assert await _count_tokens(tokenizer, long) == [256]  # truncated as the worker does
    assert await _count_tokens(ByteTokenizer(), ["ab", ""]) == [3, 1]
