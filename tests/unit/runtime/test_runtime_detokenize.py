"""The incremental detokenizer: deltas add up to decode(all), no broken characters."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mesh.runtime.detokenize import REPLACEMENT, IncrementalDetokenizer
from mesh.runtime.tokenize import ByteTokenizer, HFTokenizer, TextTokenizer

pytestmark = pytest.mark.unit

TEXTS = [
    "plain ascii",
    "héllo wörld",
    "€uro 日本語 and 🙂 emoji",
    "🙂🙂🙂",
    "x" + "\u00e9" * 5,
]


def _stream(tokenizer: TextTokenizer, ids: list[int], chunks: list[int]) -> list[str]:
    """The deltas when ``ids`` come in pieces of the given sizes, then the flush."""
    detok = IncrementalDetokenizer(tokenizer)
    deltas, start = [], 0
    for size in chunks:
        deltas.append(detok.push(ids[start : start + size]))
        start += size
    deltas.append(detok.push(ids[start:]))
    deltas.append(detok.flush())
    return deltas


def _check(tokenizer: TextTokenizer, ids: list[int], chunks: list[int]) -> None:
    deltas = _stream(tokenizer, ids, chunks)
    full = tokenizer.decode(ids)
    assert "".join(deltas) == full
    if REPLACEMENT not in full:  # valid text: no delta may carry half a character
        assert all(REPLACEMENT not in d for d in deltas)


@pytest.mark.parametrize("text", TEXTS)
def test_bytes_one_token_at_a_time(text: str) -> None:
    tok = ByteTokenizer()
    ids = [*tok.encode(text), ByteTokenizer.EOS]
    deltas = _stream(tok, ids, [1] * len(ids))
    assert "".join(deltas) == text == tok.decode(ids)
    assert REPLACEMENT not in "".join(deltas)


def test_bytes_hold_back_a_split_character_until_it_completes() -> None:
    detok = IncrementalDetokenizer(ByteTokenizer())
    euro = list("€".encode())
    assert len(euro) == 3
    assert detok.push([ord("a"), euro[0]]) == "a"
    assert detok.push([euro[1]]) == ""
    assert detok.push([euro[2], ord("b")]) == "€b"
    assert detok.flush() == ""


def test_an_unfinished_character_comes_out_as_decode_gives_it_at_the_end() -> None:
    tok = ByteTokenizer()
    ids = [ord("a"), *list("€".encode())[:2]]
    deltas = _stream(tok, ids, [1, 1, 1])
    assert deltas[-1] == REPLACEMENT  # only the flush releases it
    assert "".join(deltas) == tok.decode(ids) == "a" + REPLACEMENT


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=40),
    chunks=st.lists(st.integers(min_value=0, max_value=5), max_size=20),
)
def test_bytes_any_split_of_any_bytes_adds_up(data: bytes, chunks: list[int]) -> None:
    _check(ByteTokenizer(), list(data), chunks)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=30), chunks=st.lists(st.integers(0, 4), max_size=12))
def test_decode_and_diff_agrees_with_the_byte_decoder(data: bytes, chunks: list[int]) -> None:
    class Plain:  # a byte tokenizer the detokenizer does not recognise: decode-and-diff
        def encode(self, text: str) -> list[int]:
            return list(text.encode())

        def decode(self, ids: list[int]) -> str:
            return ByteTokenizer().decode(ids)

    _check(Plain(), list(data), chunks)


@pytest.fixture(scope="module")
def byte_level_bpe(tmp_path_factory: pytest.TempPathFactory) -> HFTokenizer:
    """A GPT-2-style byte-level BPE trained on a few lines (multi-byte chars stay split)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
    )
    tok.train_from_iterator(["hello world, the mesh runs models"] * 10 + TEXTS, trainer)
    return _saved(tok, tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="module")
def byte_fallback(tmp_path_factory: pytest.TempPathFactory) -> HFTokenizer:
    """A SentencePiece-style vocabulary: letters, ``▁``, and ``<0xNN>`` byte fallback."""
    vocab = {"<unk>": 0, **{f"<0x{b:02X}>": 1 + b for b in range(256)}}
    for piece in ["▁", *"abcdefghijklmnopqrstuvwxyz", "▁h"]:
        vocab[piece] = len(vocab)
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=[("▁", "h")], byte_fallback=True, unk_token="<unk>")
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    return _saved(tok, tmp_path_factory.mktemp("fallback"))


def _saved(tok: Tokenizer, folder: Path) -> HFTokenizer:
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return HFTokenizer(path, special_tokens=False)


@pytest.mark.parametrize("kind", ["byte_level_bpe", "byte_fallback"])
@pytest.mark.parametrize("text", TEXTS)
def test_hf_tokenizers_one_token_at_a_time(
    kind: str, text: str, request: pytest.FixtureRequest
) -> None:
    tok: HFTokenizer = request.getfixturevalue(kind)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    _check(tok, ids, [1] * len(ids))


@pytest.mark.parametrize("kind", ["byte_level_bpe", "byte_fallback"])
def test_hf_tokenizers_really_split_characters_and_hold_them_back(
    kind: str, request: pytest.FixtureRequest
) -> None:
    tok: HFTokenizer = request.getfixturevalue(kind)
    ids = tok.encode("€uro 🙂")
    prefixes = [tok.decode(ids[:n]) for n in range(1, len(ids) + 1)]
    assert any(p.endswith(REPLACEMENT) for p in prefixes)  # the case under test occurs
    detok = IncrementalDetokenizer(tok)
    emitted = ""
    for i in ids:
        emitted += detok.push([i])
        assert REPLACEMENT not in emitted
    assert emitted + detok.flush() == "€uro 🙂"


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=20), chunks=st.lists(st.integers(0, 3), max_size=10))
def test_hf_byte_fallback_any_text_any_split(
    byte_fallback: HFTokenizer, text: str, chunks: list[int]
) -> None:
    _check(byte_fallback, byte_fallback.encode(text), chunks)


class _Rewriting:
    """A decoder that rewrites earlier text (like WordPiece's clean-up of ``" ."``)."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids).replace(" .", ".")


def test_a_decoder_that_rewrites_the_past_stops_streaming_without_repeating() -> None:
    detok = IncrementalDetokenizer(_Rewriting())
    assert detok.push([ord("a"), ord(" ")]) == "a "
    assert detok.push([ord(".")]) == ""  # "a." does not extend "a ": nothing more streams
    assert detok.push([ord("b")]) == ""
    assert detok.flush() == ""
