"""Tokenizers: bytes for the tiny models, the ``tokenizers`` library for real ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from tokenizers import Tokenizer

from mesh.errors import InvalidInput, ModelError


class TextTokenizer(Protocol):
    """Text to ids and back."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; id 256 is ``<|endoftext|>`` (BOS and EOS)."""

    EOS = 256
    VOCAB = 257

    def encode(self, text: str) -> list[int]:
        return [self.EOS, *text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A ``tokenizer.json`` read with the ``tokenizers`` library (no download).

    Args:
        path: the tokenizer.json file.
        max_length: truncate encodings to this many ids (0: no truncation).
        special_tokens: add the tokenizer's template tokens ([CLS]/[SEP] for BERT).
    """

    def __init__(self, path: Path, *, max_length: int = 0, special_tokens: bool = True) -> None:
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception on bad files
            raise ModelError(f"cannot read tokenizer {path}: {exc}") from exc
        self._tok.no_padding()
        if max_length:
            self._tok.enable_truncation(max_length)
        else:
            self._tok.no_truncation()
        self._special = special_tokens

    def encode(self, text: str) -> list[int]:
        try:
            return list(self._tok.encode(text, add_special_tokens=self._special).ids)
        except Exception as exc:  # e.g. text the normaliser rejects
            raise InvalidInput(f"cannot tokenize text: {exc}") from exc

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def token_id(self, token: str) -> int:
        """The id of one token of the vocabulary (e.g. a special token by its text).

        Raises:
            ModelError: the vocabulary has no such token.
        """
        found = self._tok.token_to_id(token)
        if found is None:
            raise ModelError(f"the tokenizer has no token {token!r}")
        return int(found)


def read_tokenizer_config(path: Path) -> dict[str, Any]:
    """A Hugging Face ``tokenizer_config.json`` (bos/eos tokens, ``chat_template``, ...).

    Raises:
        ModelError: unreadable, not JSON, or not a JSON object.
    """
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read tokenizer config {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ModelError(f"tokenizer config {path} is not a JSON object")
    return loaded


def special_token_text(config: dict[str, Any], key: str) -> str | None:
    """The text of a special token (``"eos_token"``, ``"bos_token"``) of a tokenizer config.

    Accepts both spellings Hugging Face writes: a string, or an ``AddedToken``
    object ``{"content": ...}``; None when the config names none.

    Raises:
        ModelError: the entry is neither.
    """
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    if value is None or isinstance(value, str):
        return value
    raise ModelError(f"tokenizer config {key} is {value!r}, not a token")
