"""The reminder plan: which reminders a downtime should get, and when.

Pure: a function of the downtime's facts, the policy and the time ("now"); no
database, no scheduler, no clock. The scheduler adapter turns the plan into jobs
and the job into outbox rows.

Per state:

- proposed: "undecided" 24h after the request, if nobody approved or rejected it;
- approved: "unannounced" 2h before the last moment that still gives min_notice;
- announced: one reminder per [policy] reminders offset before the start, "start"
  at the start, "end" at the planned end;
- in_progress: "end" at the planned end, then "overrun" every 30 min after it;
- rejected, finished, cancelled: nothing.

Job ids carry the downtime and its revision (``downtime:7:r2:remind-24h``), so a
rescheduled or extended downtime gets new ids and the old ones are dropped.

A reminder is never planned for a time before the change that made it (the
cutoff): announcing 3h before the start plans no 24h reminder; an extension
(a new revision) does not bring back a reminder that the previous revision
already had. A reminder whose time has passed (the bot was not running, or the
plan is made just after it fell due) is *overdue*: it is sent now if it still
means something, else *dropped* with the reason (a reminder before the start,
once the downtime has started; a start reminder after the planned end; the end
reminder once the first overrun reminder is due; of several overdue offset
reminders only the nearest to the start is sent).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from models.lifecycle import State
from models.planning import Policy
from models.timeparse import format_duration

UNDECIDED_AFTER = dt.timedelta(hours=24)
UNANNOUNCED_BEFORE = dt.timedelta(hours=2)
OVERRUN_EVERY = dt.timedelta(minutes=30)
MIN_OFFSET = dt.timedelta(minutes=1)

# Kinds that are not an offset before the start.
START, END, OVERRUN, UNDECIDED, UNANNOUNCED = "start", "end", "overrun", "undecided", "unannounced"


@dataclass(frozen=True)
class DowntimeFacts:
    """What the plan needs to know of a downtime (all times aware UTC)."""

    id: int
    state: State
    start_at: dt.datetime
    end_at: dt.datetime
    revision: int
    created_at: dt.datetime
    approved_at: dt.datetime | None = None
    announced_at: dt.datetime | None = None
    revised_at: dt.datetime | None = None  # the last reschedule or extension


@dataclass(frozen=True)
class Reminder:
    job_id: str
    downtime_id: int
    kind: str  # an offset label ("24h", "1h", "2m"), or start, end, overrun, undecided, unannounced
    due: dt.datetime
    offset: dt.timedelta | None = None  # for offset reminders: how long before the start
    number: int = 0  # for overrun reminders: 1 for the first (30 min after the end), …

    @property
    def is_offset(self) -> bool:
        return self.offset is not None


@dataclass(frozen=True)
class Plan:
    upcoming: list[Reminder] = field(default_factory=list)  # due after now: schedule them
    overdue: list[Reminder] = field(default_factory=list)  # due, still meaningful: send now
    dropped: list[tuple[Reminder, str]] = field(default_factory=list)  # due, meaningless now: log why

    @property
    def reminders(self) -> list[Reminder]:
        return [*self.overdue, *self.upcoming]


def offset_label(offset: dt.timedelta) -> str:
    """24h → "24h", 90m → "1h30m", 2m → "2m" (hours are not folded into days: "24h" reads better)."""
    hours, rest = divmod(offset, dt.timedelta(hours=1))
    if not rest:
        return f"{hours}h"
    return (f"{hours}h" if hours else "") + format_duration(rest)


def job_prefix(downtime_id: int) -> str:
    return f"downtime:{downtime_id}:"


def job_id(downtime_id: int, revision: int, name: str) -> str:
    return f"downtime:{downtime_id}:r{revision}:{name}"


def plan(d: DowntimeFacts, policy: Policy, now: dt.datetime) -> Plan:
    """The reminders of downtime `d` under `policy`, as seen at `now`."""
    candidates: list[tuple[Reminder, dt.datetime, str | None]] = []  # (reminder, cutoff, stale reason)
    floor = max(t for t in (d.created_at, d.revised_at) if t is not None)

    def cutoff(*times: dt.datetime | None) -> dt.datetime:
        return max([floor, *(t for t in times if t is not None)])

    def make(name: str, kind: str, due: dt.datetime, *,
             offset: dt.timedelta | None = None, number: int = 0) -> Reminder:
        return Reminder(job_id(d.id, d.revision, name), d.id, kind, due, offset=offset, number=number)

    stale: str | None  # why a reminder that fell due is no longer worth sending
    if d.state is State.PROPOSED:
        stale = "its start has passed" if now >= d.start_at else None
        candidates.append((make(UNDECIDED, UNDECIDED, d.created_at + UNDECIDED_AFTER), cutoff(), stale))
    elif d.state is State.APPROVED:
        deadline = d.start_at - policy.min_notice
        stale = "the last moment that gave the notice period has passed" if now >= deadline else None
        candidates.append(
            (make(UNANNOUNCED, UNANNOUNCED, deadline - UNANNOUNCED_BEFORE), cutoff(d.approved_at), stale)
        )
    elif d.state is State.ANNOUNCED:
        offsets = sorted({o for o in policy.reminders if o >= MIN_OFFSET}, reverse=True)
        due_offsets = [o for o in offsets if d.start_at - o <= now]
        nearest = min(due_offsets) if due_offsets else None
        for offset in offsets:
            label = offset_label(offset)
            if now >= d.start_at:
                stale = "the downtime's start has passed"
            elif offset != nearest:
                stale = f"superseded by the {offset_label(nearest)} reminder" if nearest else None
            else:
                stale = None
            candidates.append(
                (make(f"remind-{label}", label, d.start_at - offset, offset=offset), cutoff(d.announced_at), stale)
            )
        stale = "the planned end has passed" if now >= d.end_at else None
        candidates.append((make(START, START, d.start_at), cutoff(), stale))
        candidates.append((make(END, END, d.end_at), cutoff(), _end_stale(d, now)))
    elif d.state is State.IN_PROGRESS:
        candidates.append((make(END, END, d.end_at), cutoff(), _end_stale(d, now)))
        last = (now - d.end_at) // OVERRUN_EVERY if now >= d.end_at else 0
        for number in (last, last + 1):
            if number >= 1:
                due = d.end_at + number * OVERRUN_EVERY
                candidates.append((make(f"overrun-{number}", OVERRUN, due, number=number), cutoff(), None))

    result = Plan()
    for reminder, not_before, stale in candidates:
        if reminder.due < not_before:
            continue  # belongs to an earlier state or revision: it was sent then, or never meant to be
        if reminder.due > now:
            result.upcoming.append(reminder)
        elif stale:
            result.dropped.append((reminder, stale))
        else:
            result.overdue.append(reminder)
    return result


def _end_stale(d: DowntimeFacts, now: dt.datetime) -> str | None:
    if d.state is State.IN_PROGRESS and now >= d.end_at + OVERRUN_EVERY:
        return "the overrun reminders took over"
    if d.state is State.ANNOUNCED and now >= d.end_at + OVERRUN_EVERY:
        return "the planned end is long past"
    return None
