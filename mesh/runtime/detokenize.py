"""Streaming text: turn a growing list of token ids into text deltas.

A token may end in the middle of a multi-byte UTF-8 character (a byte tokenizer
always splits them; byte-level BPE and byte-fallback vocabularies often do), so
decoding each token on its own would emit broken characters. The detokenizer
holds such a tail back until the character completes:

- :class:`~mesh.runtime.tokenize.ByteTokenizer`: the bytes go through an
  incremental UTF-8 decoder, which keeps an incomplete sequence until its next
  bytes arrive (O(1) per token);
- any other tokenizer (``tokenizers``' ``tokenizer.json``): decode all ids so far
  and emit what extends the text already emitted, holding back a trailing run of
  U+FFFD (what the decoder makes of an incomplete character; byte fallback gives
  one per byte). Each push re-decodes the whole output, O(n) for n ids, fine for
  the few hundred tokens a task may ask for.

After :meth:`IncrementalDetokenizer.flush`, the concatenation of all deltas equals
``tokenizer.decode(all_ids)``. For the second kind this holds when decoding is
stable under appending ids apart from that incomplete tail, as it is for
byte-level BPE (GPT-2) and SentencePiece-style byte fallback; a decoder that
rewrites earlier text (WordPiece's clean-up of ``" ."``) is logged and streams
nothing more until :meth:`~IncrementalDetokenizer.flush`, which then returns
only what still extends the emitted text.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Iterable

from mesh.runtime.tokenize import ByteTokenizer, TextTokenizer

log = logging.getLogger(__name__)

REPLACEMENT = "\ufffd"  # what UTF-8 decoders put for bytes that form no character (yet)


class IncrementalDetokenizer:
    """Text deltas for the ids of one generation, pushed as they come.

    Args:
        tokenizer: the model's tokenizer.
    """

    def __init__(self, tokenizer: TextTokenizer) -> None:
        self._tokenizer = tokenizer
        self._bytes = isinstance(tokenizer, ByteTokenizer)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ids: list[int] = []
        self._emitted = ""
        self._diverged = False

    def push(self, ids: Iterable[int]) -> str:
        """The text that the new ``ids`` complete (may be ``""``)."""
        new = list(ids)
        if self._bytes:
            data = bytes(i for i in new if 0 <= i < ByteTokenizer.EOS)
            return self._utf8.decode(data, final=False)
        self._ids.extend(new)
        return self._advance(self._tokenizer.decode(self._ids).rstrip(REPLACEMENT))

    def flush(self) -> str:
        """The text held back, once no more ids come (incomplete tails as U+FFFD)."""
        if self._bytes:
            return self._utf8.decode(b"", final=True)
        self._diverged = False  # a last try: the whole text may extend what was emitted
        return self._advance(self._tokenizer.decode(self._ids))

    def _advance(self, text: str) -> str:
        if self._diverged:
            return ""
        if not text.startswith(self._emitted):
            self._diverged = True
            log.warning(
                "the tokenizer's decode rewrote text already streamed; streaming stops here"
            )
            return ""
        delta = text[len(self._emitted) :]
        self._emitted = text
        return delta
