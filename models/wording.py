"""Text people typed (notice wording, reasons), made safe to store and to repeat anywhere."""
from __future__ import annotations

import re

from models.lifecycle import DomainError

MAX_WORDING = 2000
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_wording(text: str) -> str:
    """Text people typed, made safe to store and repeat: no control characters, bounded length."""
    cleaned = " ".join(CONTROL.sub(" ", text).split())
    if not cleaned:
        raise DomainError("wording_empty")
    if len(cleaned) > MAX_WORDING:
        raise DomainError("wording_too_long", length=len(cleaned), most=MAX_WORDING)
    return cleaned
