"""Reading the arguments of chat commands. Every failure is a `UsageError` with one line."""
from __future__ import annotations

import datetime as dt
import re

from models.timeparse import TimeParseError, format_duration, parse_duration, parse_start
from plugins.registry import UsageError

FORCE = "--force"
__all__ = ["format_duration"]


def split_wording(args: str) -> tuple[str, str | None]:
    """``head -- text`` → (head, text); no ``--`` → (args, None)."""
    if args.startswith("--") and (len(args) == 2 or args[2].isspace()):
        return "", args[2:].strip()
    head, sep, tail = args.partition(" -- ")
    if sep:
        return head.strip(), tail.strip()
    if args.endswith(" --"):
        return args[:-3].strip(), ""
    return args.strip(), None


def number(text: str, most_digits: int = 9) -> int | None:
    """`text` read as a whole number, or None: ASCII digits only (str.isdigit() also accepts "¹"
    and "٣", which int() refuses or reads as another number), at most `most_digits` of them."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= most_digits else None


def downtime_id(token: str) -> int:
    found = number(token.lstrip("#"))
    if not found:
        raise UsageError("not_a_downtime_id", token=token[:20])
    return found


def bug_number(token: str) -> int:
    found = number(token.lower().removeprefix("bug").lstrip("#"))
    if not found:
        raise UsageError("not_a_bug_number", token=token[:20])
    return found


def bug_numbers(text: str) -> list[int]:
    return [bug_number(t) for t in text.split(",") if t.strip()]


def start_time(text: str, now: dt.datetime) -> dt.datetime:
    if not text:
        raise UsageError("start_missing")
    try:
        return parse_start(text, now)
    except TimeParseError as err:
        raise UsageError("time", error=str(err)) from None


def duration(text: str) -> dt.timedelta:
    if not text:
        raise UsageError("duration_missing")
    try:
        return parse_duration(text)
    except TimeParseError as err:
        raise UsageError("time", error=str(err)) from None


def id_and_duration(args: str) -> tuple[int, dt.timedelta]:
    """``<id> <duration>``, the duration in any form `duration` reads (``2 hours``, ``1h 30m``)."""
    words = args.split()
    if len(words) < 2:
        raise UsageError("missing", what="id_duration")
    return downtime_id(words[0]), duration(" ".join(words[1:]))


def exactly(words: list[str], count: int, what: str) -> list[str]:
    """`words`, when there are `count` of them; else a refusal naming what is missing
    (`what`: a name that ``templates/usage/missing.txt`` words, such as "id" or "id_bug")."""
    if len(words) < count:
        raise UsageError("missing", what=what)
    if len(words) > count:
        raise UsageError("unexpected", extra=" ".join(words[count:])[:40])
    return words


# The words of a proposal's head, read one by one (no regular expression over the whole line, so
# the time taken grows with the length of the line and nothing else; see tests/plugins/test_long_lines.py).
_BUG_WORD = re.compile(r"[\w#,]+")
_TREE_WORD = re.compile(r"[\w,\-.]+")
_BUG_KEYWORDS = ("bug", "bugs")
_TREE_KEYWORDS = ("tree", "trees")


def proposal(head: str, now: dt.datetime) -> tuple[dt.datetime, dt.timedelta, list[int], list[str]]:
    """``<start> for <duration> [bug <n>[,<n>…]] [trees <tree>[,<tree>…]]``."""
    words = head.split()
    folded = [w.lower() for w in words]
    at = folded.index("for", 1) if "for" in folded[1:] else -1
    if at < 0:
        raise UsageError("cannot_read" if "for" in folded else "no_for", text=head[:60])
    start, rest = " ".join(words[:at]), words[at + 1 :]
    if not rest:
        raise UsageError("cannot_read", text=head[:60])
    # The duration runs to the bug or trees section, so "for 2 hours" and "for 1h 30m" read too.
    ends = next((i for i, w in enumerate(rest) if w.lower() in _BUG_KEYWORDS + _TREE_KEYWORDS), len(rest))
    if ends == 0:
        raise UsageError("cannot_read", text=head[:60])
    when, rest = " ".join(rest[:ends]), rest[ends:]
    bug_words, rest = _section(rest, _BUG_KEYWORDS, _BUG_WORD, head)
    tree_words, rest = _section(rest, _TREE_KEYWORDS, _TREE_WORD, head)
    if rest:
        raise UsageError("cannot_read", text=head[:60])
    bugs = bug_numbers(",".join(bug_words))
    trees = [t for w in tree_words for t in w.split(",") if t]
    return start_time(start, now), duration(when), bugs, trees


def _section(words: list[str], keywords: tuple[str, ...], allowed: re.Pattern[str],
             head: str) -> tuple[list[str], list[str]]:
    """``<keyword> <word>…`` at the front of `words`: (its words, the words after it). It ends
    at the first word that is not `allowed` or is the next section's keyword."""
    if not words or words[0].lower() not in keywords:
        return [], words
    taken = 1
    while taken < len(words) and allowed.fullmatch(words[taken]) and words[taken].lower() not in _TREE_KEYWORDS:
        taken += 1
    if taken == 1:
        raise UsageError("cannot_read", text=head[:60])
    return words[1:taken], words[taken:]


def id_and_reason(args: str) -> tuple[int, str]:
    """``<id> -- <reason>``, the reason required."""
    head, reason = split_wording(args)
    (token,) = exactly(head.split(), 1, "id")
    if not reason:
        raise UsageError("no_reason")
    return downtime_id(token), reason
