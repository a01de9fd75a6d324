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
        raise UsageError(f"'{token[:20]}' is not a downtime id (a number such as 7)")
    return int(text)


def bug_number(token: str) -> int:
    text = token.lower().removeprefix("bug").lstrip("#")
    if not text.isdigit() or len(text) > 9 or int(text) == 0:
        raise UsageError(f"'{token[:20]}' is not a bug number (such as 1234567)")
    return int(text)


def bug_numbers(text: str) -> list[int]:
    return [bug_number(t) for t in text.split(",") if t.strip()]


def start_time(text: str, now: dt.datetime) -> dt.datetime:
    if not text:
        raise UsageError("the start time is missing, e.g. '2026-12-05 14:00 UTC'")
    try:
        return parse_start(text, now)
    except TimeParseError as err:
        raise UsageError(str(err)) from None


def duration(text: str) -> dt.timedelta:
    if not text:
        raise UsageError("the duration is missing, e.g. 2h or 1h30m")
    try:
        return parse_duration(text)
    except TimeParseError as err:
        raise UsageError(str(err)) from None


def exactly(words: list[str], count: int, what: str) -> list[str]:
    if len(words) < count:
        raise UsageError(f"missing {what}")
    if len(words) > count:
        raise UsageError(f"unexpected '{' '.join(words[count:])[:40]}'")
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
            raise UsageError("say how long with 'for <duration>', e.g. '2026-12-05 14:00 UTC for 2h'")
        raise UsageError(f"cannot read '{head[:60]}'")
    bugs = bug_numbers(re.sub(r"\s+", ",", m["bugs"])) if m["bugs"] else []
    trees = [t for t in re.split(r"[,\s]+", m["trees"] or "") if t]
    return start_time(m["start"], now), duration(m["duration"]), bugs, trees


def id_and_reason(args: str) -> tuple[int, str]:
    """``<id> -- <reason>``, the reason required."""
    head, reason = split_wording(args)
    (token,) = exactly(head.split(), 1, "the downtime id")
    if not reason:
        raise UsageError("say why after ' -- '")
    return downtime_id(token), reason
