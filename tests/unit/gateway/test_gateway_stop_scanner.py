"""Stop sequences on a stream: the text given out is the whole text cut at the first stop."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.gateway.streaming import StopScanner

pytestmark = pytest.mark.unit


def cut(text: str, stop: tuple[str, ...]) -> str:
    """What a non-streamed response returns (mesh.gateway.responses.read_generation)."""
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def run(pieces: list[str], stop: tuple[str, ...]) -> tuple[list[str], bool]:
    scanner = StopScanner(stop)
    out = [scanner.push(p) for p in pieces]
    out.append(scanner.finish())
    return out, scanner.stopped


def test_text_that_may_begin_a_stop_waits_until_it_cannot() -> None:
    out, stopped = run(["Hello wo", "r", "ld!"], ("world!", "wx"))
    assert out == ["Hello ", "", "", ""] and stopped
    out, stopped = run(["Hello wo", "r", "k"], ("world!",))
    assert out == ["Hello ", "", "work", ""] and not stopped


def test_the_earliest_stop_wins_and_nothing_follows() -> None:
    out, stopped = run(["ab", "cd", "ef"], ("de", "bc"))
    assert "".join(out) == "a" and stopped
    out, _ = run(["abcdef", "more"], ("cd",))
    assert out == ["ab", "", ""]


def test_without_stop_sequences_everything_goes_at_once() -> None:
    assert run(["a", "b"], ())[0] == ["a", "b", ""]


@settings(max_examples=1000, deadline=None)
@given(
    data=st.data(),
    text=st.text(alphabet="abc\n", max_size=30),
    stop=st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4), max_size=4),
)
def test_any_split_gives_the_cut_text(data: st.DataObject, text: str, stop: list[str]) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    out, stopped = run(pieces, tuple(stop))
    assert "".join(out) == cut(text, tuple(stop))
    assert stopped == any(s in text for s in stop)
