"""Constructor options of the index families, declared once per family with type, range and default.

Each family lists its options in ``OPTIONS`` (name -> :class:`Option`); ``Index.__init__``
checks what it is given against that table before anything is built, and the spec
factory passes spec numbers (``"HNSW32"`` -> ``M=32``) through the same table. An
unchecked option once made a whole database unopenable (issue 15): ``seed="x"`` was
accepted at create time and raised ``TypeError`` while the WAL was replayed, and
``M=2**40`` raised ``MemoryError``. Ranges bound what one option can make the index
allocate; cross-option rules (PQ's ``m`` dividing the dimension) stay in the families.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.echo import shorten
from ..engine.errors import InvalidSpecError

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}

#: Parameter names of ``make_index`` / ``create_collection``; an option of that name would be ambiguous.
RESERVED = ("self", "name", "spec", "dim", "metric", "index")


@dataclass(frozen=True)
class Option:
    """One option: its type (int, float, bool or str), default and allowed values.

    ``low``/``high`` bound numbers (``high`` excluded when ``open_high``), ``choices``
    lists the accepted strings (compared case-insensitively), ``nullable`` admits None
    (the family decides later, e.g. ``nlist`` at train time).
    """

    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    open_high: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def allowed(self) -> str:
        """The accepted values in words, for error messages and docs."""
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.low is not None or self.high is not None:
            low = "-inf" if self.low is None else self._number(self.low)
            high = "inf" if self.high is None else self._number(self.high)
            text = f"{_TYPE_NAMES[self.type]} in [{low}, {high}{')' if self.open_high else ']'}"
        else:
            text = _TYPE_NAMES[self.type]
        return text + (" or null" if self.nullable else "")

    def _number(self, bound: float) -> str:
        return str(int(bound)) if self.type is int else f"{bound:g}"

    def check(self, owner: str, name: str, value: Any) -> Any:
        """``value`` as this option's Python type, or InvalidSpecError naming the option and what it accepts."""
        if value is None and self.nullable:
            return None
        converted = self._convert(value)
        if converted is None or not self._in_range(converted):
            raise InvalidSpecError(f"{owner} option {name} must be {self.allowed()}, got {shorten(value)}")
        return converted

    def _convert(self, value: Any) -> Any:
        """``value`` as ``self.type``, or None when it is not of that type."""
        if self.type is bool:
            return bool(value) if isinstance(value, (bool, np.bool_)) else None
        if isinstance(value, (bool, np.bool_)):
            return None  # True is an int to Python, never a count or a size to us
        if self.type is int:
            return int(value) if isinstance(value, (int, np.integer)) else None
        if self.type is float:
            if not isinstance(value, (int, float, np.integer, np.floating)):
                return None
            try:
                number = float(value)
            except OverflowError:  # an int beyond float range
                return None
            return number if math.isfinite(number) else None
        if not isinstance(value, str):
            return None
        return value.lower() if self.choices else value

    def _in_range(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if self.type not in (int, float):
            return True
        if self.low is not None and value < self.low:
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)


#: Random seeds: a 32-bit unsigned integer (what every RNG in the stack accepts).
SEED = Option(int, 0, 0, 2 ** 32 - 1)


def check_option_names(options: Mapping[str, Any]) -> None:
    """Refuse option names that are parameters of ``make_index`` / ``create_collection``."""
    clash = [name for name in options if name in RESERVED]
    if clash:
        raise InvalidSpecError(f"index option(s) {shorten(clash)} clash with parameters of the same name "
                               f"({', '.join(RESERVED)}); give those as parameters, not as index options")


def check_options(owner: str, table: Mapping[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``table``: the given value checked (all of them, before any is used) or the default."""
    unknown = [name for name in given if name not in table]
    if unknown:
        known = ", ".join(f"{n} ({o.allowed()})" for n, o in table.items()) or "none"
        raise InvalidSpecError(f"unknown option(s) {shorten(unknown)} for {owner}; its options are: {known}")
    return {name: opt.check(owner, name, given.get(name, opt.default)) for name, opt in table.items()}
