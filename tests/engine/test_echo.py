"""shorten(): echoed values in error messages stay short and say they were cut."""
from __future__ import annotations

from shoal.engine.echo import MAX_CHARS, MAX_ITEMS, clip, shorten


def test_short_values_are_their_repr() -> None:
    assert shorten("abc") == "'abc'" and shorten(5) == "5" and shorten([1, "a"]) == "[1, 'a']"
    assert shorten((1, 2)) == "(1, 2)" and shorten({"k": 1}) == "{'k': 1}"


def test_long_strings_and_bytes_are_cut() -> None:
    text = shorten("x" * 100_000)
    assert len(text) < MAX_CHARS + 30 and text.endswith("... (100000 chars)")
    assert shorten(b"\x00" * 500).endswith("... (500 bytes)")


def test_long_collections_are_cut_element_by_element() -> None:
    names = [f"collection-{i}" for i in range(1000)]
    text = shorten(names)
    assert text.count("collection-") == MAX_ITEMS and text.endswith("... (and 990 more)]")
    assert len(shorten({str(i): "v" * 1000 for i in range(50)})) < 1500
    assert shorten(set(range(20))).endswith("... (and 10 more)}")


def test_clip_keeps_plain_text() -> None:
    assert clip("short") == "short" and clip("y" * 5000, 100).endswith("... (5000 chars)")
