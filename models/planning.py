"""The planning rules of the process, and the search for slots that pass them all.

Pure: every function takes the time ("now") and the other downtimes as
arguments. Each rule that fails yields a `RuleFailure` with the facts of the failure
(the ``rule`` macro of ``templates/_macros.txt`` words it).
Hard rules (notice, overlap, blackout) refuse an announcement unless forced;
the others are warnings.
"""
from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.timezone.utc
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_DURATION = dt.timedelta(days=7)
# The largest [policy] max_horizon: ten years, far from datetime's year 9999 whatever is added.
MAX_HORIZON_LIMIT = dt.timedelta(days=3660)
# How many start times `suggest` examines at most (90 days of half hours is 4,320).
MAX_CANDIDATES = 5000


class PolicyError(ValueError):
    """A policy value in the configuration that cannot be understood."""


@dataclass(frozen=True)
class Window:
    """A weekly recurring time range, e.g. ``mon-fri 05:00-09:00 UTC``."""

    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end_minutes: int  # minutes after midnight; 1440 means the end of the day
    zone: str

    def occurrences(self, since: dt.datetime, until: dt.datetime) -> Iterable[tuple[dt.datetime, dt.datetime]]:
        """Each (start, end) of this window that touches [since, until), in UTC."""
        tz = ZoneInfo(self.zone)
        day = since.astimezone(tz).date() - dt.timedelta(days=1)
        last = until.astimezone(tz).date()
        while day <= last:
            if day.weekday() in self.days:
                begin = dt.datetime.combine(day, self.start, tz)
                end = dt.datetime.combine(day, dt.time(), tz) + dt.timedelta(minutes=self.end_minutes)
                # Adding to an aware datetime moves the wall clock; astimezone then
                # applies the offset in force at that wall time, so DST days come out right.
                begin_utc, end_utc = begin.astimezone(UTC), end.astimezone(UTC)
                if end_utc > since and begin_utc < until:
                    yield begin_utc, end_utc
            day += dt.timedelta(days=1)

    def __str__(self) -> str:
        hours = f"{self.end_minutes // 60:02d}:{self.end_minutes % 60:02d}"
        return f"{_days_text(self.days)} {self.start:%H:%M}-{hours} {self.zone}"


@dataclass(frozen=True)
class Blackout:
    """A period with no downtimes (a release, a freeze), in UTC."""

    start: dt.datetime
    end: dt.datetime
    label: str


@dataclass(frozen=True)
class Policy:
    min_notice: dt.timedelta = dt.timedelta(hours=24)
    min_gap: dt.timedelta = dt.timedelta(hours=24)
    low_impact: tuple[Window, ...] = ()
    blackouts: tuple[Blackout, ...] = ()
    ciduty_hours: tuple[Window, ...] = ()
    reminders: tuple[dt.timedelta, ...] = (dt.timedelta(hours=24), dt.timedelta(hours=1))
    auto_start: bool = False
    # How far ahead a downtime may start: beyond it a start time is refused.
    max_horizon: dt.timedelta = dt.timedelta(days=365)


@dataclass(frozen=True)
class Slot:
    """Another downtime, as the rules see it."""

    id: int
    start: dt.datetime
    end: dt.datetime
    summary: str = ""


@dataclass(frozen=True)
class RuleFailure:
    rule: str  # notice | overlap | near | low_impact | blackout | ciduty_hours
    hard: bool
    other_ids: tuple[int, ...] = ()  # overlap, near: the other downtimes
    start: dt.datetime | None = None  # notice: the start; blackout: its first moment
    until: dt.datetime | None = None  # blackout: its end
    notice: dt.timedelta | None = None  # notice: the notice there is
    required: dt.timedelta | None = None  # notice: the notice asked for; near: the gap asked for
    windows: tuple[str, ...] = ()  # low_impact, ciduty_hours: the windows, as configured
    label: str = ""  # blackout: what it is for
    mergeable: bool = True  # near: one of the two can be merged into the other now


HARD_RULES = frozenset({"notice", "overlap", "blackout"})


def check(
    start: dt.datetime,
    end: dt.datetime,
    *,
    now: dt.datetime,
    policy: Policy,
    others: Sequence[Slot] = (),
) -> list[RuleFailure]:
    """Every rule that [start, end) breaks, in a stable order.

    `now` is when it would be announced: min_notice counts to the announcement.
    `others` are the active downtimes near this one (the caller leaves itself out).
    """
    failures: list[RuleFailure] = []
    notice = start - now
    if notice < policy.min_notice:
        failures.append(RuleFailure("notice", True, start=start, notice=notice, required=policy.min_notice))
    overlapping = [o for o in others if o.start < end and start < o.end]
    if overlapping:
        failures.append(RuleFailure("overlap", True, tuple(o.id for o in overlapping)))
    near = [
        o
        for o in others
        if o not in overlapping and o.start < end + policy.min_gap and start - policy.min_gap < o.end
    ]
    if near:
        failures.append(RuleFailure("near", False, tuple(o.id for o in near), required=policy.min_gap))
    if policy.low_impact and not covered(start, end, policy.low_impact):
        failures.append(RuleFailure("low_impact", False, windows=tuple(str(w) for w in policy.low_impact)))
    for blackout in policy.blackouts:
        if blackout.start < end and start < blackout.end:
            failures.append(
                RuleFailure("blackout", True, start=blackout.start, until=blackout.end, label=blackout.label)
            )
            break
    if policy.ciduty_hours and not covered(start, end, policy.ciduty_hours):
        failures.append(RuleFailure("ciduty_hours", False, windows=tuple(str(w) for w in policy.ciduty_hours)))
    return failures


def covered(start: dt.datetime, end: dt.datetime, windows: Sequence[Window]) -> bool:
    """Whether the union of the windows' occurrences covers all of [start, end)."""
    spans = sorted(s for w in windows for s in w.occurrences(start, end))
    reached = start
    for s, e in spans:
        if s > reached:
            return False
        reached = max(reached, e)
        if reached >= end:
            return True
    return reached >= end


@dataclass
class Search:
    """The work one `suggest` did: how many start times it checked against the rules."""

    examined: int = 0


def suggest(
    duration: dt.timedelta,
    *,
    now: dt.datetime,
    policy: Policy,
    others: Sequence[Slot],
    count: int = 3,
    step: dt.timedelta = dt.timedelta(minutes=30),
    horizon: dt.timedelta = dt.timedelta(days=90),
    search: Search | None = None,
) -> list[dt.datetime]:
    """The next `count` start times that pass every rule, at most one per day.

    Candidates are the `step` boundaries from the first moment that gives
    enough notice; `others` must hold every active downtime up to the horizon.
    The weekly windows (low impact, CiDuty's hours) are laid out once over the whole search as
    merged spans, and the search jumps from a start time they do not cover to the next span:
    checking every half hour's days anew cost 0.5 s for a 7-day duration that no window covers.
    At most MAX_CANDIDATES start times are checked against the other rules.
    """
    search = search if search is not None else Search()
    limit = now + horizon
    candidate = _step_at_or_after(now + policy.min_notice, step)
    layouts = [merged_spans(ws, candidate, limit + duration) for ws in (policy.low_impact, policy.ciduty_hours) if ws]
    rest = replace(policy, low_impact=(), ciduty_hours=())  # the windows are checked here, once
    found: list[dt.datetime] = []
    ordered = sorted(others, key=lambda o: o.start)
    while len(found) < count and candidate < limit and search.examined < MAX_CANDIDATES:
        end = candidate + duration
        misses = [t for t in (_next_cover(spans, candidate, end, limit) for spans in layouts) if t is not None]
        if misses:
            candidate = _step_at_or_after(max(misses), step)
            continue
        search.examined += 1
        lo, hi = candidate - policy.min_gap - MAX_DURATION, end + policy.min_gap
        nearby = [o for o in ordered if lo <= o.start < hi]
        if not check(candidate, end, now=now, policy=rest, others=nearby):
            found.append(candidate)
            candidate = dt.datetime.combine(candidate.date() + dt.timedelta(days=1), dt.time(), UTC)
            continue
        candidate += step
    return found


def _step_at_or_after(moment: dt.datetime, step: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + -(-(moment - epoch) // step) * step  # ceiling


def merged_spans(windows: Sequence[Window], since: dt.datetime, until: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The windows' occurrences over [since, until), merged where they touch or overlap."""
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for s, e in sorted(o for w in windows for o in w.occurrences(since, until)):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _next_cover(
    spans: Sequence[tuple[dt.datetime, dt.datetime]], start: dt.datetime, end: dt.datetime, limit: dt.datetime
) -> dt.datetime | None:
    """None when one span covers [start, end); else the next start that one might (`limit`: none).

    Any later start inside the same span ends later still, so only the next span can cover it."""
    i = bisect.bisect_right(spans, start, key=lambda span: span[0]) - 1
    if i >= 0 and spans[i][1] >= end:
        return None
    return spans[i + 1][0] if i + 1 < len(spans) else limit


def hours(d: dt.timedelta) -> str:
    """A notice period as the process document says it: "24h", "1h30m", "45m"; "no" below zero."""
    minutes = int(d.total_seconds() // 60)
    if minutes < 0:
        return "no"
    h, m = divmod(minutes, 60)
    if h and m:
        return f"{h}h{m:02d}m"
    return f"{h}h" if h else f"{m}m"


def _days_text(days: frozenset[int]) -> str:
    ordered = sorted(days)
    if ordered == list(range(7)):
        return "daily"
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 1:
        return f"{DAYS[ordered[0]]}-{DAYS[ordered[-1]]}"
    return ",".join(DAYS[d] for d in ordered)


WINDOW_RE = re.compile(
    r"^(?P<days>[A-Za-z,\-]+)\s+(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})\s+(?P<zone>\S+)$"
)


def parse_days(text: str) -> frozenset[int]:
    if text in ("daily", "mon-sun"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise PolicyError(f"unknown day in '{text}': use mon..sun, ranges like mon-fri, or daily")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def parse_windows(text: str) -> tuple[Window, ...]:
    """``mon-fri 05:00-09:00 UTC, sat-sun 00:00-24:00 UTC`` → windows.

    Entries are separated by commas or new lines, so several days in one entry
    are written as a range (``sat-sun``), never as a list.
    """
    windows = []
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        m = WINDOW_RE.match(part)
        if not m:
            raise PolicyError(f"cannot read the time window '{part}': expected e.g. 'mon-fri 05:00-09:00 UTC'")
        h1, m1, h2, m2 = (int(m[g]) for g in ("h1", "m1", "h2", "m2"))
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2) or h2 * 60 + m2 <= h1 * 60 + m1:
            raise PolicyError(f"bad hours in the time window '{part}'")
        zone = m["zone"]
        zone = "UTC" if zone.upper() == "UTC" else zone
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyError(f"unknown time zone '{zone}' in the time window '{part}'") from None
        windows.append(Window(parse_days(m["days"].lower()), dt.time(h1, m1), h2 * 60 + m2, zone))
    return tuple(windows)


def parse_blackouts(text: str) -> tuple[Blackout, ...]:
    """One per line or ';': ``2026-12-08/2026-12-09 Firefox 147 release`` (whole UTC days)."""
    result = []
    for part in filter(None, (p.strip() for p in re.split(r"[;\n]", text))):
        dates, _, label = part.partition(" ")
        first, _, last = dates.partition("/")
        try:
            a = dt.date.fromisoformat(first)
            b = dt.date.fromisoformat(last) if last else a
        except ValueError:
            raise PolicyError(
                f"cannot read the blackout '{part}': expected e.g. '2026-12-08/2026-12-09 Firefox release'"
            ) from None
        if b < a:
            raise PolicyError(f"the blackout '{part}' ends before it starts")
        start = dt.datetime.combine(a, dt.time(), UTC)
        end = dt.datetime.combine(b + dt.timedelta(days=1), dt.time(), UTC)
        result.append(Blackout(start, end, label.strip() or dates))
    return tuple(result)
