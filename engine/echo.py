"""Short renderings of caller-supplied values for error messages.

An error message that echoes a whole input can be larger than the limit of whatever
carries it (a 100,000-character name made gRPC refuse the status trailer with
RESOURCE_EXHAUSTED instead of sending NOT_FOUND), and a list of every collection
name floods logs. Every message that quotes a caller's value or a list of names
goes through :func:`shorten`.
"""
from __future__ import annotations

from collections.abc import Mapping, Set, ValuesView
from typing import Any

#: Characters of one echoed value.
MAX_CHARS = 80
#: Entries of an echoed list, set or dict.
MAX_ITEMS = 10


def shorten(value: Any, limit: int = MAX_CHARS, items: int = MAX_ITEMS) -> str:
    """``repr(value)`` cut to ``limit`` characters; lists, tuples, sets and dicts cut to ``items`` entries.

    What was cut is said (``... (100000 chars)``, ``... (and 990 more)``), so a reader
    knows the value was longer.
    """
    if isinstance(value, Mapping):
        shown = [f"{shorten(k, limit, items)}: {shorten(v, limit, items)}" for k, v in list(value.items())[:items]]
        return "{" + ", ".join(shown + _more(len(value), items)) + "}"
    if isinstance(value, (list, tuple, Set, ValuesView)):
        entries = list(value)
        shown = [shorten(v, limit, items) for v in entries[:items]]
        brackets = "()" if isinstance(value, tuple) else ("{}" if isinstance(value, Set) else "[]")
        return brackets[0] + ", ".join(shown + _more(len(entries), items)) + brackets[1]
    text = repr(value)
    if len(text) <= limit:
        return text
    size = {str: "chars", bytes: "bytes"}.get(type(value))
    return f"{text[:limit]}... ({len(value)} {size})" if size else clip(text, limit)


def clip(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` itself when short enough, else its first ``limit`` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _more(total: int, items: int) -> list[str]:
    return [f"... (and {total - items} more)"] if total > items else []
