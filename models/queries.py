"""Reading the downtimes: lists, one downtime, its history, the rules it breaks, free slots.

Nothing here changes a row. Every range query is bounded below by the longest possible
downtime (`planning.MAX_DURATION`), so it reads through the ``start_at`` index and its cost
does not grow with the history.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, not_, or_, select
from sqlalchemy.orm import Session, selectinload

from models import lifecycle, planning, workers
from models.detail import DowntimeDetail, load_detail
from models.lifecycle import DomainError, State
from models.orm import AuditEvent, Downtime, DowntimeBug, TreeChange
from models.prebuilt import run, table_of
from models.work import Consolidation, Settings

PAGE_SIZE = 10
ACTIVE_STATES = sorted(s.value for s in lifecycle.ACTIVE)
# Where a draft is out and its confirmations are still asked for.
DRAFTED = frozenset({State.APPROVED.value, State.ANNOUNCED.value})

# Prebuilt statements on the path of every proposal (see models/prebuilt.py).
_DOWNTIMES = table_of(Downtime)
_ACTIVE = _DOWNTIMES.c.state.in_(ACTIVE_STATES)
_NEARBY = select(
    _DOWNTIMES.c.id, _DOWNTIMES.c.start_at, _DOWNTIMES.c.end_at, _DOWNTIMES.c.summary, _DOWNTIMES.c.state
).where(
    _DOWNTIMES.c.start_at >= bindparam("low"), _DOWNTIMES.c.start_at < bindparam("high"), _ACTIVE
)
_OTHERS = select(
    _DOWNTIMES.c.id, _DOWNTIMES.c.start_at, _DOWNTIMES.c.end_at, _DOWNTIMES.c.systems, _DOWNTIMES.c.state
).where(
    _DOWNTIMES.c.id != bindparam("id"), _ACTIVE, _DOWNTIMES.c.start_at >= bindparam("low")
)
_OVERLAPPING = _OTHERS.where(_DOWNTIMES.c.start_at < bindparam("end"), _DOWNTIMES.c.end_at > bindparam("start"))
_NAMING_HOSTS = _OTHERS.where(_DOWNTIMES.c.systems != "")


def _merge_of(mine: int, my_state: State, other: int, other_state: State) -> tuple[int, int] | None:
    """The merge (into, away) that consolidates two downtimes now: this one into the other as
    offered first, else the other into this one; None when neither is possible."""
    if lifecycle.may_merge(other_state, my_state):
        return (other, mine)
    if lifecycle.may_merge(my_state, other_state):
        return (mine, other)
    return None


class Queries:
    def __init__(self, session: Session, *, now: dt.datetime, settings: Settings):
        self.session = session
        self.now = now
        self.settings = settings

    def get(self, downtime_id: int, *, for_update: bool = False) -> Downtime:
        """The downtime, with its bugs and verdicts; refused if there is none.

        `for_update`: lock its row until the transaction ends (SELECT … FOR UPDATE; nothing on
        SQLite, whose single writer already serialises changes) so that two connections cannot
        both read a state and both change it: the second waits, then reads the first's change.
        """
        downtime = self.session.get(
            Downtime, downtime_id, options=[selectinload(Downtime.bugs), selectinload(Downtime.verdicts)],
            # Locked: read afresh, even if this session read it before the lock.
            with_for_update=True if for_update else None, populate_existing=for_update,
        )
        if downtime is None:
            raise DomainError("no_downtime", id=downtime_id)
        return downtime

    def listing(self, which: str = "upcoming", page: int = 1) -> tuple[list[Downtime], int]:
        """A page of downtimes and the number of pages, by state as well as by time.

        Upcoming: still to happen or running: active and not yet over, and every running
        downtime even past its planned end. Past: finished, and the others whose time has come
        and that are not upcoming (cancelled, rejected, or never started and past their end).
        """
        query = select(Downtime)
        counter = select(func.count(Downtime.id))
        running = Downtime.state == State.IN_PROGRESS.value
        # start_at bounds the index scan: no downtime lasts longer than MAX_DURATION (as planned;
        # a running one can overrun, and there are few of those).
        upcoming = or_(
            running,
            and_(
                Downtime.state.in_(ACTIVE_STATES),
                Downtime.start_at >= self.now - planning.MAX_DURATION,
                Downtime.end_at >= self.now,
            ),
        )
        if which == "upcoming":
            query, counter = query.where(upcoming).order_by(Downtime.start_at), counter.where(upcoming)
        elif which == "past":
            past = and_(
                not_(upcoming),
                or_(Downtime.state == State.FINISHED.value, Downtime.start_at < self.now),
            )
            query = query.where(past).order_by(Downtime.start_at.desc())
            counter = counter.where(past)
        else:
            query = query.order_by(Downtime.start_at.desc())
        total = self.session.scalar(counter) or 0
        pages = max(1, -(-total // PAGE_SIZE))
        rows = self.session.scalars(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
        return list(rows), pages

    def history(self, downtime_id: int) -> list[AuditEvent]:
        self.get(downtime_id)
        return list(
            self.session.scalars(
                select(AuditEvent).where(AuditEvent.downtime_id == downtime_id).order_by(AuditEvent.id)
            )
        )

    def detail(self, downtime_id: int) -> DowntimeDetail:
        """The downtime with its bugs, verdicts and pending jobs, read-only (see models/detail.py)."""
        return load_detail(self.session, downtime_id)

    def confirmations(self, downtime: DowntimeDetail | Downtime) -> tuple[list[str], list[str]] | None:
        """Who of the people working in the downtime confirmed its draft, and who has not yet;
        None before there is a draft (proposed, rejected, or cancelled before the approval)."""
        if downtime.state not in DRAFTED and not any(
            v.active and v.verdict == workers.CONFIRMED for v in downtime.verdicts
        ):
            return None  # no draft out, and nobody confirmed one: the workers need not be worked out
        confirmed, waiting = workers.confirmations(downtime, self.settings)
        return [w.name for w in confirmed], [w.name for w in waiting]

    def nearby(self, start: dt.datetime, end: dt.datetime, *, exclude: int | None = None) -> list[planning.Slot]:
        """Active downtimes that could overlap or be near [start, end) (indexed range)."""
        return [planning.Slot(i, s, e, t) for i, s, e, t, _ in self._nearby(start, end) if i != exclude]

    def _nearby(self, start: dt.datetime, end: dt.datetime) -> Any:
        """The rows (id, start, end, summary, state) `nearby` reads."""
        gap = self.settings.policy.min_gap
        return run(self.session, _NEARBY, {"low": start - gap - planning.MAX_DURATION, "high": end + gap})

    def suggest(self, duration: dt.timedelta) -> list[dt.datetime]:
        horizon = dt.timedelta(days=90)
        others = self.nearby(self.now, self.now + horizon)
        return planning.suggest(duration, now=self.now, policy=self.settings.policy, others=others, horizon=horizon)

    def rules(self, downtime: Downtime) -> list[planning.RuleFailure]:
        rows = [row for row in self._nearby(downtime.start_at, downtime.end_at) if row[0] != downtime.id]
        others = [planning.Slot(i, s, e, t) for i, s, e, t, _ in rows]
        failures = planning.check(
            downtime.start_at, downtime.end_at, now=self.now, policy=self.settings.policy, others=others
        )
        states = {i: State(state) for i, _, _, _, state in rows}
        return [self._mergeable(downtime, f, states) if f.rule == "near" else f for f in failures]

    @staticmethod
    def _mergeable(downtime: Downtime, near: planning.RuleFailure, states: dict[int, State]) -> planning.RuleFailure:
        """The "near" warning suggests a merge only when one of the two can be merged into the other."""
        mine = State(downtime.state)
        if any(_merge_of(downtime.id, mine, i, states[i]) for i in near.other_ids if i in states):
            return near
        return dataclasses.replace(near, mergeable=False)

    def consolidations(self, downtime: Downtime) -> list[Consolidation]:
        """Other active downtimes that work on the same hosts or overlap in time: offered for
        consolidation (a downtime merely near in time gets the planner's "near" warning instead)."""
        mine = set(downtime.system_names)
        # Two indexed reads instead of every active downtime: those overlapping in time, and
        # (only when this one names hosts) those not over yet that name any host.
        found = {
            row.id: row
            for row in run(self.session, _OVERLAPPING, {
                "id": downtime.id, "start": downtime.start_at, "end": downtime.end_at,
                "low": downtime.start_at - planning.MAX_DURATION,
            })
        }
        if mine:
            since = {"id": downtime.id, "low": self.now - planning.MAX_DURATION}
            found.update((row.id, row) for row in run(self.session, _NAMING_HOSTS, since))
        offers = []
        for other in sorted(found.values(), key=lambda row: (row.start_at, row.id)):
            shared = tuple(sorted(mine & {s for s in other.systems.split(",") if s}))
            overlaps = other.start_at < downtime.end_at and downtime.start_at < other.end_at
            if shared or overlaps:
                merge = _merge_of(downtime.id, State(downtime.state), other.id, State(other.state))
                offers.append(
                    Consolidation(other.id, shared, (other.start_at, other.end_at) if overlaps else None, merge)
                )
        return offers

    def holders(self, bugs: Sequence[int], *, exclude: int | None = None) -> dict[int, int]:
        """Which of these bugs another active downtime holds: bug -> that downtime's id (the
        oldest, if several do)."""
        if not bugs:
            return {}
        rows = self.session.execute(
            select(DowntimeBug.bug, Downtime.id)
            .join(Downtime)
            .where(DowntimeBug.bug.in_(list(bugs)), Downtime.state.in_(ACTIVE_STATES), Downtime.id != (exclude or 0))
            .order_by(Downtime.id.desc())
        ).all()
        return {bug: downtime_id for bug, downtime_id in rows}

    def next_downtime(self) -> Downtime | None:
        """The running downtime (even one running over its end), else the next announced one."""
        running = self.session.scalars(
            select(Downtime)
            .where(Downtime.state == State.IN_PROGRESS.value, Downtime.start_at >= self.now - planning.MAX_DURATION * 2)
            .order_by(Downtime.start_at)
            .limit(1)
        ).first()
        if running is not None:
            return running
        return self.session.scalars(
            select(Downtime)
            .where(
                Downtime.state == State.ANNOUNCED.value,
                Downtime.start_at >= self.now - planning.MAX_DURATION,
                Downtime.end_at >= self.now,
            )
            .order_by(Downtime.start_at)
            .limit(1)
        ).first()

    def tree_changes(self) -> list[TreeChange]:
        """The tree changes not yet undone (on the stack, or waiting for Treestatus), newest first."""
        return list(
            self.session.scalars(
                select(TreeChange)
                .where(TreeChange.state.in_(["active", "pending", "requested", "restoring"]))
                .order_by(TreeChange.id.desc())
                .limit(10)
            )
        )

