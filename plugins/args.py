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


def downtime_id(token: str) -> int:
    text = token.lstrip("#")
    if not text.isdigit() or len(text) > 9 or int(text) == 0:
        raise UsageError("not_a_downtime_id", token=token[:20])
    return int(text)


def bug_number(token: str) -> int:
    text = token.lower().removeprefix("bug").lstrip("#")
    if not text.isdigit() or len(text) > 9 or int(text) == 0:
        raise UsageError("not_a_bug_number", token=token[:20])
    return int(text)


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


def exactly(words: list[str], count: int, what: str) -> list[str]:
    """`words`, when there are `count` of them; else a refusal naming what is missing
    (`what`: a name that ``templates/usage/missing.txt`` words, such as "id" or "id_bug")."""
    if len(words) < count:
        raise UsageError("missing", what=what)
    if len(words) > count:
        raise UsageError("unexpected", extra=" ".join(words[count:])[:40])
    return words


PROPOSE = re.compile(
    r"^(?P<start>.+?)\s+for\s+(?P<duration>\S+)"
    r"(?:\s+bugs?\s+(?P<bugs>[\w#,\s]+?))?"
    r"(?:\s+trees?\s+(?P<trees>[\w,\-.\s]+?))?\s*$",
    re.IGNORECASE,
)


def proposal(head: str, now: dt.datetime) -> tuple[dt.datetime, dt.timedelta, list[int], list[str]]:
    """``<start> for <duration> [bug <n>[,<n>…]] [trees <tree>[,<tree>…]]``."""
    m = PROPOSE.match(head)
    if not m:
        if " for " not in f" {head} ".lower():
            raise UsageError("no_for")
        raise UsageError("cannot_read", text=head[:60])
    bugs = bug_numbers(re.sub(r"\s+", ",", m["bugs"])) if m["bugs"] else []
    trees = [t for t in re.split(r"[,\s]+", m["trees"] or "") if t]
    return start_time(m["start"], now), duration(m["duration"]), bugs, trees


def id_and_reason(args: str) -> tuple[int, str]:
    """``<id> -- <reason>``, the reason required."""
    head, reason = split_wording(args)
    (token,) = exactly(head.split(), 1, "id")
    if not reason:
        raise UsageError("no_reason")
    return downtime_id(token), reason
