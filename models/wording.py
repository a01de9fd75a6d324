"""Text people typed (notice wording, reasons), made safe to store and to repeat anywhere."""
from __future__ import annotations

import re

from models.lifecycle import DomainError

MAX_WORDING = 2000
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Characters that change how the text around them is shown without being seen themselves:
# bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069, U+061C), and
# zero-width spaces, joiners and marks (U+200B-U+200F, U+2060-U+2064, U+FEFF). A reason ending in
# U+202E would reverse the rest of the line it is repeated in; a zero-width space makes two
# different texts look the same. They are removed, not replaced by a space.
INVISIBLE = re.compile(r"[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# How many items a reply lists when it repeats what someone typed (unknown tree names, bugs):
# the rest are counted, so a line with thousands of names gets a short answer.
SHOWN = 5


def strip_invisible(text: str) -> str:
    """`text` without bidirectional-override and zero-width characters."""
    return INVISIBLE.sub("", text)


def tidy(text: str, most: int = MAX_WORDING) -> str:
    """Text from outside (a Bugzilla summary, an assignee), stored and repeated like wording but
    never refused: cleaned the same way and cut at `most` characters."""
    return " ".join(CONTROL.sub(" ", strip_invisible(text)).split())[:most]


def clean_wording(text: str) -> str:
    """Notice wording, made safe to store and repeat (see `clean`)."""
    return clean(text, empty="wording_empty", too_long="wording_too_long")


def clean_reason(text: str) -> str:
    """A reason or a note (reject, object, cancel, force, done, trees), cleaned like wording."""
    return clean(text, empty="reason_empty", too_long="reason_too_long")


def clean(text: str, *, empty: str, too_long: str) -> str:
    """Text people typed, made safe to store and repeat: no control, bidirectional-override
    or zero-width characters, white space folded, at most MAX_WORDING characters. `empty` and
    `too_long` name the refusals (``templates/refusals/``)."""
    cleaned = " ".join(CONTROL.sub(" ", strip_invisible(text)).split())
    if not cleaned:
        raise DomainError(empty)
    if len(cleaned) > MAX_WORDING:
        raise DomainError(too_long, length=len(cleaned), most=MAX_WORDING)
    return cleaned
