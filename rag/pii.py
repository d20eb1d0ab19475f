"""Optional PII scrubbing before text is embedded and stored: e-mail addresses and phone numbers.

Phone matching is deliberately conservative: 7-15 digits in groups separated
by spaces, dots or dashes (optionally ``+country`` and an ``(area)`` group);
ISO dates, dotted version numbers and IPv4 addresses are left alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ScrubResult", "scrub_pii", "EMAIL_TOKEN", "PHONE_TOKEN"]

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_PHONE = re.compile(r"(?<![\w+.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,8}){0,4}(?![\w.-]*\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_DOTTED = re.compile(r"\d{1,3}(?:\.\d{1,3}){2,3}")


@dataclass(frozen=True)
class ScrubResult:
    text: str
    emails: int
    phones: int


def _is_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not 7 <= digits <= 15:
        return False
    return not (_DATE.fullmatch(candidate) or _DOTTED.fullmatch(candidate))


def scrub_pii(text: str) -> ScrubResult:
    """Replace e-mail addresses with ``[EMAIL]`` and phone numbers with ``[PHONE]``."""
    text, emails = _EMAIL.subn(EMAIL_TOKEN, text)
    phones = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal phones
        if not _is_phone(m.group(0)):
            return m.group(0)
        phones += 1
        return PHONE_TOKEN

    text = _PHONE.sub(repl, text)
    return ScrubResult(text, emails, phones)
