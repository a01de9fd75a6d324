"""Reading and showing start times and durations typed in chat.

Pure: the current time is passed in and nothing here reads the clock or the configuration.
A time without a zone is refused with an example, never guessed; so are abbreviations such as
PST or CET, local times skipped by a daylight-saving change, and local times that happen twice.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from fractions import Fraction
from zoneinfo import ZoneInfo, available_timezones

__all__ = ["TimeParseError", "format_duration", "format_time", "parse_duration", "parse_start",
           "validate_zone"]

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_START_EXAMPLES = "e.g. '2026-12-05 14:00 UTC', 'tomorrow 14:00 Europe/Berlin' or 'in 2h'"

# Abbreviations name several zones (CST: Chicago or Shanghai) or get summer time wrong (EST is
# -05:00 all year), so they are refused even where the tz database has an entry for them.
_ABBREVIATIONS = {
    **dict.fromkeys(("PST", "PDT", "PT"), "America/Los_Angeles"),
    **dict.fromkeys(("MST", "MDT", "MT"), "America/Denver or America/Phoenix"),
    **dict.fromkeys(("CST", "CDT", "CT"), "America/Chicago or Asia/Shanghai"),
    **dict.fromkeys(("EST", "EDT", "ET"), "America/New_York or America/Toronto"),
    **dict.fromkeys(("AKST", "AKDT"), "America/Anchorage"),
    **dict.fromkeys(("HST", "HDT"), "Pacific/Honolulu"),
    **dict.fromkeys(("BST", "WET", "WEST"), "Europe/London or Europe/Lisbon"),
    **dict.fromkeys(("CET", "CEST", "MET", "MEST"), "Europe/Berlin or Europe/Paris"),
    **dict.fromkeys(("EET", "EEST"), "Europe/Helsinki or Europe/Athens"),
    "IST": "Asia/Kolkata, Europe/Dublin or Asia/Jerusalem",
    "MSK": "Europe/Moscow", "JST": "Asia/Tokyo", "KST": "Asia/Seoul",
    **dict.fromkeys(("AEST", "AEDT"), "Australia/Sydney"),
    **dict.fromkeys(("NZST", "NZDT"), "Pacific/Auckland"),
}
# Names of the tz database that mean UTC itself; format_time does not repeat them.
_UTC_KEYS = frozenset({
    "UTC", "UCT", "Zulu", "Universal", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich",
    "Etc/UTC", "Etc/UCT", "Etc/Zulu", "Etc/Universal", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0",
    "Etc/GMT-0", "Etc/Greenwich",
})
# Entries of the tz database that depend on the machine or mean "no zone".
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})

_IN_RE = re.compile(r"in (?P<duration>.+)", re.I | re.A)
_START_RE = re.compile(
    r"(?P<day>\d{4}-\d{1,2}-\d{1,2}|[a-z]+)(?: |(?<=\d)t)"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2}))?)? ?(?P<ampm>[ap]m\b)?"
    r"(?: ?(?P<zone>[^\s\d]\S*))?",
    re.I | re.A,
)
_OFFSET_RE = re.compile(
    r"(?:utc|gmt)?(?P<sign>[+-])(?P<h>\d\d|\d(?=:|$))(?::?(?P<m>\d\d))?", re.I | re.A)
_NUMBER = r"\d{1,9}(?:\.\d{1,9})?"
_DURATION_RE = re.compile(
    rf"(?:(?P<d>{_NUMBER}) ?d(?:ays?)?)? ?"
    rf"(?:(?P<h>{_NUMBER}) ?h(?:ours?|rs?)?)? ?"
    rf"(?:(?P<m>{_NUMBER}) ?m(?:in(?:ute)?s?)?)?",
    re.I | re.A,
)


class TimeParseError(ValueError):
    """Input that is not a time, zone or duration; str() is one line fit for chat."""


def parse_start(text: str, now: datetime) -> datetime:
    """Read a start time typed in chat and return it as an aware UTC datetime.

    Forms: `2026-12-05 14:00 UTC`, `2026-12-05T14:00Z`, `2026-12-05T14:00+01:00`,
    `2026-12-05 06:00 America/Los_Angeles`, `today|tomorrow 14:00 <zone>`,
    `sat|saturday 08:00 <zone>` (also `2pm`, `2:30pm`) and `in 2h` (1m to 366d from now, to the minute).
    Days are counted in the given zone; a weekday means the next such day strictly after today
    there ("sat" typed on a Saturday is a week later). A time in the past is returned as it is:
    whether it is acceptable is the caller's call.
    """
    _require_aware(now)
    clean = " ".join(text.split())
    try:
        if m := _IN_RE.fullmatch(clean):
            # To the minute, as every other form: "in 4d" typed twice within a minute is one
            # time (a reschedule to it again changes nothing), and no reply shows seconds.
            start = now.astimezone(UTC) + _duration(
                m["duration"], timedelta(minutes=1), timedelta(days=366), prefix="in ")
            return start.replace(second=0, microsecond=0)
        if not (m := _START_RE.fullmatch(clean)):
            raise TimeParseError(f"can't read {_quote(clean)} as a start time; {_START_EXAMPLES}")
        clock = _clock(m)
        resolve_day = _day_resolver(m["day"])
        if not m["zone"]:
            raise TimeParseError(
                f"no time zone in {_quote(clean)}: add one, e.g. '{clean} UTC' "
                f"or '{clean} America/Los_Angeles'")
        zone = _zone(m["zone"])
        day = resolve_day(now.astimezone(zone).date())
        return _to_utc(datetime.combine(day, clock), zone)
    except OverflowError:
        raise TimeParseError(f"{_quote(clean)} is out of range; {_START_EXAMPLES}") from None


def parse_duration(
    text: str, *, minimum: timedelta = timedelta(minutes=5), maximum: timedelta = timedelta(days=7)
) -> timedelta:
    """Read a duration such as `30m`, `2h`, `1h30m`, `1.5h`, `1d2h` or `2 hours`.

    Units are d, h and m (or day, hour, hr, min, minute, with plurals), each at most once and in
    that order, with or without spaces; the result must be a whole number of minutes.
    """
    return _duration(" ".join(text.split()), minimum, maximum, prefix="")


def format_duration(d: timedelta) -> str:
    """Show a duration the way parse_duration reads it: "1d2h", "1h30m", "45m"."""
    micros = d // timedelta(microseconds=1)
    seconds = abs(micros) // 1_000_000
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"),
                                         (seconds, "s")) if n]
    return ("-" if micros < 0 else "") + ("".join(parts) or "0m")


def format_time(t: datetime, zones: Sequence[str], *, now: datetime | None = None) -> str:
    """Show a time in UTC and then in each display zone.

    "2026-12-05 14:00 UTC (06:00 America/Los_Angeles, Sun 2026-12-06 00:30 Asia/Tokyo)": a zone's
    weekday and date are shown only where its date differs from the UTC date. Given `now`, a time
    on the same UTC day leaves out its UTC date: "14:00 UTC (06:00 America/Los_Angeles)".
    """
    _require_aware(t)
    utc = t.astimezone(UTC)
    shown = []
    for zone in _display_zones(tuple(zones)):
        local = utc.astimezone(zone)
        # The weekday comes from _WEEKDAYS, not %a, which follows the process's locale.
        weekday = _WEEKDAYS[local.weekday()][:3].title()
        day = "" if local.date() == utc.date() else f"{weekday} {local:%Y-%m-%d} "
        shown.append(f"{day}{local:%H:%M} {zone.key}")
    today = now is not None and now.astimezone(UTC).date() == utc.date()
    text = f"{utc:%H:%M} UTC" if today else f"{utc:%Y-%m-%d %H:%M} UTC"
    return f"{text} ({', '.join(shown)})" if shown else text


def validate_zone(name: str) -> ZoneInfo:
    """Return the IANA zone called `name` (case-insensitive), refusing abbreviations."""
    if suggestion := _ABBREVIATIONS.get(name.upper()):
        raise TimeParseError(
            f"'{name}' is ambiguous: use an IANA zone such as {suggestion}, "
            "or a UTC offset such as '+01:00'")
    key = _zone_keys().get(name.lower())
    if key is None:
        close = difflib.get_close_matches(name.lower(), _zone_keys(), n=1, cutoff=0.8)
        hint = f" (did you mean '{_zone_keys()[close[0]]}'?)" if close else ""
        raise TimeParseError(
            f"unknown time zone {_quote(name)}{hint}: use an IANA name such as "
            "'Europe/Berlin' or 'America/Los_Angeles', 'UTC', or an offset such as '+01:00'")
    return ZoneInfo(key)


@functools.cache
def _display_zones(names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
    """The display zones once each, UTC left out: resolved once per list of names, not for
    every time a reply shows (a list of ten downtimes shows twenty)."""
    return tuple(zone for zone in dict.fromkeys(validate_zone(name) for name in names) if zone.key not in _UTC_KEYS)


@functools.cache
def _zone_keys() -> dict[str, str]:
    """The tz database's names by their lower-case spelling (read from disk once)."""
    return {key.lower(): key for key in available_timezones() - _NOT_ZONES}


def _zone(token: str) -> tzinfo:
    if token.lower() in ("z", "utc", "gmt"):
        return UTC
    if m := _OFFSET_RE.fullmatch(token):
        offset = timedelta(hours=int(m["h"]), minutes=int(m["m"] or 0))
        if int(m["m"] or 0) <= 59 and offset <= timedelta(hours=14):
            return timezone(-offset if m["sign"] == "-" else offset)
    if token[0] in "+-":
        raise TimeParseError(f"invalid UTC offset {_quote(token)}: e.g. '+01:00' or '-0800'")
    return validate_zone(token)


def _clock(m: re.Match[str]) -> time:
    hour, minute, second = int(m["hour"]), int(m["minute"] or 0), int(m["second"] or 0)
    if m["ampm"]:
        valid = 1 <= hour <= 12
        hour = hour % 12 + (12 if m["ampm"].lower() == "pm" else 0)
    else:
        valid = m["minute"] is not None and hour <= 23
    if not valid or minute > 59 or second > 59:
        end = max(m.end(group) for group in ("hour", "minute", "second", "ampm"))
        shown = m.string[m.start("hour"):end]
        raise TimeParseError(
            f"invalid time of day {_quote(shown)}: use 24-hour HH:MM, e.g. '14:00' or '2:30pm'")
    return time(hour, minute, second)


def _day_resolver(word: str) -> Callable[[date], date]:
    """Check the day part now; return how to turn "today in the zone" into the day meant."""
    if word[0].isdigit():
        try:
            fixed = date(*map(int, word.split("-")))
        except ValueError as exc:
            raise TimeParseError(
                f"invalid date '{word}' ({exc}): e.g. '2026-12-05 14:00 UTC'") from None
        return lambda today: fixed
    word = word.lower()
    if word in ("today", "tomorrow"):
        days = 0 if word == "today" else 1
        return lambda today: today + timedelta(days=days)
    matches = [i for i, name in enumerate(_WEEKDAYS) if len(word) >= 3 and name.startswith(word)]
    if not matches:
        raise TimeParseError(
            f"unknown day {_quote(word)}: use a date, 'today', 'tomorrow' or a weekday, "
            "e.g. 'sat 08:00 Europe/Berlin'")
    weekday = matches[0]
    return lambda today: today + timedelta(days=(weekday - today.weekday()) % 7 or 7)


def _to_utc(local: datetime, zone: tzinfo) -> datetime:
    """Turn a wall-clock time in `zone` into UTC, refusing times skipped or repeated by DST."""
    early, late = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    name, shown = str(zone), f"{local:%Y-%m-%d %H:%M}"
    if early.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
        start, end = _gap(early, late, zone)
        raise TimeParseError(
            f"{shown} does not exist in {name}: clocks jump from {start:%H:%M} to {end:%H:%M}; "
            f"give another time or an offset, e.g. '{local + (end - start):%Y-%m-%d %H:%M} {name}'")
    if early.utcoffset() != late.utcoffset():
        raise TimeParseError(
            f"{shown} happens twice in {name} (clocks go back): say which with UTC or an offset, "
            f"e.g. '{shown} {early:%z}' or '{shown} {late:%z}'")
    return early.astimezone(UTC)


def _gap(early: datetime, late: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """The wall-clock times at which a spring-forward gap starts and ends (naive)."""
    before, after = early.utcoffset(), late.utcoffset()
    assert before is not None and after is not None
    instant = late.astimezone(UTC).replace(second=0, microsecond=0)  # just before the jump
    while instant.astimezone(zone).utcoffset() == before:
        instant += timedelta(minutes=1)
    return (instant + before).replace(tzinfo=None), (instant + after).replace(tzinfo=None)


def _duration(text: str, minimum: timedelta, maximum: timedelta, *, prefix: str) -> timedelta:
    example = f"e.g. '{prefix}{format_duration(min(max(timedelta(hours=2), minimum), maximum))}'"
    if text.startswith("-"):
        raise TimeParseError(f"a duration cannot be negative: {_quote(text)}; {example}")
    m = _DURATION_RE.fullmatch(text)
    if not m or not any(m.groups()):
        raise TimeParseError(
            f"can't read {_quote(text)} as a duration; use d, h and m, {example} or '1h30m'")
    minutes = sum(Fraction(m[unit] or 0) * n for unit, n in (("d", 1440), ("h", 60), ("m", 1)))
    if minutes.denominator != 1:
        raise TimeParseError(f"{_quote(text)} is not a whole number of minutes; {example}")
    if minutes == 0:
        raise TimeParseError(f"a duration must be longer than zero; {example}")
    if minutes < _minutes(minimum):
        raise TimeParseError(
            f"{_quote(text)} is too short: at least {format_duration(minimum)}; {example}")
    if minutes > _minutes(maximum):
        raise TimeParseError(
            f"{_quote(text)} is too long: at most {format_duration(maximum)}; {example}")
    return timedelta(minutes=int(minutes))


def _minutes(d: timedelta) -> Fraction:
    return Fraction(d // timedelta(microseconds=1), 60_000_000)


def _quote(text: str, limit: int = 40) -> str:
    """Quote user input for a one-line message, shortened if long."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _require_aware(t: datetime) -> None:
    if t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: pass an aware one")  # a caller's bug, not input
