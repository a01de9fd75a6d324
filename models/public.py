"""What anyone may read about the downtimes: the public rule, and the read model that the web
page, the feeds and the API (adapters/web/) are made from. Nothing here changes a row.

**Which downtimes are public** (`Visibility`, from ``[web] public_states``): a downtime once
announced stays public whatever happens to it next (a reschedule sends it back to approved until
it is announced again; a cancellation keeps it, marked cancelled), since everyone was told of it.
A downtime never announced is public when its state is listed, except a cancelled one, which is
public only when the states it could have been cancelled from before an announcement (proposed
or approved) are listed too. So with the default (announced, in_progress, finished, cancelled)
nothing is public before CiDuty announces it, and a proposal cancelled before its announcement
never is.

**What is public about one**: its wording, times (planned and actual), state, trees, systems,
its bugs as a channel is told them (models/confidential.py: a security bug's words and assignee
left out), outcomes, and the history of what happened to it in public (`PUBLIC_ACTIONS`: the
review before the announcement, pre-approvals, objections and confirmations are not). Who
requested it, who reviewed it and the pending outside jobs are not shown.

Every read is bounded: lists are paged or limited, and the time ranges read through the
``start_at`` index with the longest possible downtime as the lower bound (as models/queries.py).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from models import confidential, planning
from models.confidential import ToldBug
from models.lifecycle import State
from models.orm import AuditEvent, Downtime, DowntimeBug, Tree, TreeChange, TreeChangeItem

# The audit actions told on the page (models/work.py `audit`). The review before the
# announcement (approve, reject, preapprove, object, confirm) stays among the people doing it.
PUBLIC_ACTIONS = frozenset({
    "propose", "announce", "reschedule", "extend", "edit", "add bug", "drop bug", "cancel", "merge",
    "merge away", "start", "done", "end", "verify", "trees close", "trees open", "trees confirm",
    "trees restore",
})
# Actions told without their detail: the proposal's first wording may never have been announced,
# and a forced announcement's detail names the objections overridden (the review is not public).
WITHOUT_DETAIL = frozenset({"propose", "announce"})
BEFORE_ANNOUNCEMENT = frozenset({State.PROPOSED.value, State.APPROVED.value})
MAX_PAGE_SIZE = 100
# The history events the feeds tell (the Atom feed's entries, Statuspage's incident updates):
# announcements, changes, starts, ends and cancellations.
TOLD_ACTIONS = frozenset({
    "announce", "reschedule", "extend", "edit", "add bug", "drop bug", "start", "end", "cancel", "merge",
    "merge away",
})
# Bugs read at once by `bugs_of` (SQLite takes at most 32766 bound values in one statement).
_CHUNK = 500


@dataclass(frozen=True)
class Visibility:
    """Which downtimes are public, from ``[web] public_states`` (see the module's docstring)."""

    states: frozenset[str]

    @property
    def _listed(self) -> list[str]:
        """The listed states that make a never-announced downtime public by themselves."""
        listed = [s for s in self.states if s != State.CANCELLED.value]
        if State.CANCELLED.value in self.states and self.states & BEFORE_ANNOUNCEMENT:
            listed.append(State.CANCELLED.value)
        return sorted(listed)

    def clause(self) -> ColumnElement[bool]:
        """The SQL condition: the downtime row is public."""
        listed = self._listed
        return or_(Downtime.was_announced.is_(True), Downtime.state.in_(listed) if listed else false())

    def shows(self, state: str, was_announced: bool) -> bool:
        return was_announced or state in self._listed


@dataclass(frozen=True)
class PublicEntry:
    """One line of a downtime's public history."""

    at: dt.datetime
    action: str
    from_state: str
    to_state: str
    detail: str


@dataclass(frozen=True)
class PublicDowntime:
    id: int
    state: str
    summary: str
    start_at: dt.datetime  # as planned (a forced early start moves it)
    end_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    verified_at: dt.datetime | None
    announced_at: dt.datetime | None
    updated_at: dt.datetime
    created_at: dt.datetime
    trees: tuple[str, ...]  # empty: every configured tree
    systems: tuple[str, ...]
    was_announced: bool
    sequence: int  # the calendar SEQUENCE of the invitations mailed so far
    id_token: str  # models/instance.py: the UID of its calendar entry carries it
    bugs: tuple[ToldBug, ...] = ()  # only when read one at a time (`PublicReader.get`)
    history: tuple[PublicEntry, ...] = ()  # likewise

    @property
    def duration(self) -> dt.timedelta:
        return self.end_at - self.start_at

    @property
    def tree_names(self) -> list[str]:
        return list(self.trees)

    @property
    def system_names(self) -> list[str]:
        return list(self.systems)

    @property
    def cancelled(self) -> bool:
        return self.state == State.CANCELLED.value

    @property
    def calendar_sequence(self) -> int:
        """The SEQUENCE of its calendar entry: the last mailed invitation's. A cancellation is
        mailed one higher than the invitation before it (models/reactions.py `mail_lists`), so
        that calendars apply it."""
        return self.sequence + (1 if self.cancelled else 0)

    def shown_end(self, now: dt.datetime) -> dt.datetime:
        """Where it ends as far as is known: its actual end, else its planned end (a running one
        past its planned end: now)."""
        if self.ended_at is not None:
            return self.ended_at
        if self.state == State.IN_PROGRESS.value:
            return max(self.end_at, now)
        return self.end_at


@dataclass(frozen=True)
class PublicEvent:
    """One event of a public downtime's history, as the feeds tell it (`PublicReader.recent_events`)."""

    id: int  # the audit row's: stable, the Atom entry's id is made from it
    at: dt.datetime
    action: str
    from_state: str
    to_state: str
    detail: str
    downtime: PublicDowntime  # as it is now


@dataclass(frozen=True)
class PublicTree:
    name: str
    status: str  # open | closed | approval required | motd | unknown (kept in Treestatus, not here)
    reason: str
    downtime_id: int | None  # the public downtime whose change set it, if any
    since: dt.datetime | None


_COLUMNS = (
    Downtime.id, Downtime.state, Downtime.summary, Downtime.start_at, Downtime.end_at, Downtime.started_at,
    Downtime.ended_at, Downtime.verified_at, Downtime.announced_at, Downtime.updated_at, Downtime.created_at,
    Downtime.trees, Downtime.systems, Downtime.was_announced, Downtime.revision, Downtime.notice_updates,
    Downtime.id_token,
)


def _told_detail(action: str, detail: str) -> str:
    """An audit row's detail as the public history tells it (none for `WITHOUT_DETAIL`)."""
    return "" if action in WITHOUT_DETAIL else detail


def _public(row: Any) -> PublicDowntime:
    return PublicDowntime(
        id=row.id, state=row.state, summary=row.summary, start_at=row.start_at, end_at=row.end_at,
        started_at=row.started_at, ended_at=row.ended_at, verified_at=row.verified_at,
        announced_at=row.announced_at, updated_at=row.updated_at, created_at=row.created_at,
        trees=tuple(t for t in row.trees.split(",") if t), systems=tuple(s for s in row.systems.split(",") if s),
        was_announced=bool(row.was_announced), sequence=row.revision + row.notice_updates, id_token=row.id_token,
    )


class PublicReader:
    """The public read model over one (short) session."""

    def __init__(self, session: Session, visibility: Visibility, *, now: dt.datetime):
        self.session = session
        self.visibility = visibility
        self.now = now
        self._public = visibility.clause()

    def _rows(self, *where: Any, order: Sequence[Any] = (Downtime.start_at, Downtime.id), limit: int | None = None,
              offset: int = 0) -> list[PublicDowntime]:
        query = select(*_COLUMNS).where(self._public, *where).order_by(*order).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return [_public(row) for row in self.session.execute(query)]

    def get(self, downtime_id: int) -> PublicDowntime | None:
        """One public downtime with its bugs (as a channel is told them) and public history;
        None when there is none or it is not public (the same answer for both)."""
        found = self._rows(Downtime.id == downtime_id)
        if not found:
            return None
        history = self.session.scalars(
            select(AuditEvent).where(AuditEvent.downtime_id == downtime_id, AuditEvent.action.in_(PUBLIC_ACTIONS))
            .order_by(AuditEvent.id)
        ).all()
        return dataclasses.replace(
            found[0],
            bugs=self.bugs_of(found).get(downtime_id, ()),
            history=tuple(
                PublicEntry(e.at, e.action, e.from_state, e.to_state, _told_detail(e.action, e.detail))
                for e in history
            ),
        )

    def bugs_of(self, downtimes: Iterable[PublicDowntime]) -> dict[int, tuple[ToldBug, ...]]:
        """The bugs of each of these (public) downtimes as the notice tells them: a security bug
        vaguely, a bug with no words of its own by the downtime's wording; by downtime id and bug
        number. The caller passes a bounded list (a page, a feed's worth)."""
        wording = {d.id: d.summary for d in downtimes}
        ids = sorted(wording)
        found: dict[int, list[Any]] = {}
        for at in range(0, len(ids), _CHUNK):
            rows = self.session.execute(
                select(DowntimeBug.downtime_id, DowntimeBug.bug, DowntimeBug.status, DowntimeBug.security,
                       DowntimeBug.wording, DowntimeBug.summary, DowntimeBug.assignee, DowntimeBug.note)
                .where(DowntimeBug.downtime_id.in_(ids[at:at + _CHUNK]), DowntimeBug.pending != "add")
                .order_by(DowntimeBug.downtime_id, DowntimeBug.bug)
            )
            for row in rows:
                found.setdefault(row.downtime_id, []).append(row)
        return {i: tuple(confidential.told(bugs, full=False, fallback=wording[i])) for i, bugs in found.items()}

    def recent_events(self, limit: int = 50, actions: Iterable[str] = TOLD_ACTIONS) -> list[PublicEvent]:
        """The latest `actions` events of public downtimes, newest first, at most `limit`.

        An announced downtime's events from before its first announcement are left out: nobody
        was told of them then, and a feed telling them at the announcement would say old news
        (a downtime public without an announcement, by ``[web] public_states``, tells them all).
        Read newest first through the audit table's key: the read stops after `limit` rows."""
        event = aliased(AuditEvent)
        first_told = exists().where(
            AuditEvent.downtime_id == event.downtime_id, AuditEvent.action == "announce", AuditEvent.id <= event.id
        )
        rows = self.session.execute(
            select(event.id.label("event_id"), event.at.label("event_at"), event.action.label("event_action"),
                   event.from_state.label("event_from"), event.to_state.label("event_to"),
                   event.detail.label("event_detail"), *_COLUMNS)
            .join(Downtime, Downtime.id == event.downtime_id)
            .where(self._public, event.action.in_(sorted(set(actions))),
                   or_(Downtime.was_announced.is_(False), first_told))
            .order_by(event.id.desc())
            .limit(max(0, limit))
        )
        return [
            PublicEvent(r.event_id, _aware(r.event_at), r.event_action, r.event_from, r.event_to,
                        _told_detail(r.event_action, r.event_detail), _public(r))
            for r in rows
        ]

    def events_of(self, downtime_ids: Iterable[int], actions: Iterable[str] = TOLD_ACTIONS) -> dict[int, list[PublicEvent]]:
        """The `actions` events of each of these public downtimes, oldest first, with the same
        rule as `recent_events` (from the first announcement on); the caller passes a bounded
        list of public ids (Statuspage's incident updates)."""
        ids = sorted(set(downtime_ids))
        found: dict[int, list[PublicEvent]] = {}
        wanted = sorted(set(actions))
        for at in range(0, len(ids), _CHUNK):
            chunk = ids[at:at + _CHUNK]
            downtimes = {d.id: d for d in self._rows(Downtime.id.in_(chunk))}
            rows = self.session.execute(
                select(AuditEvent.id, AuditEvent.downtime_id, AuditEvent.at, AuditEvent.action, AuditEvent.from_state,
                       AuditEvent.to_state, AuditEvent.detail)
                .where(AuditEvent.downtime_id.in_(list(downtimes)), AuditEvent.action.in_(wanted + ["announce"]))
                .order_by(AuditEvent.downtime_id, AuditEvent.id)
            )
            told: set[int] = set()
            for r in rows:
                d = downtimes[r.downtime_id]
                if r.action == "announce":
                    told.add(d.id)
                if d.was_announced and d.id not in told or r.action not in wanted:
                    continue
                found.setdefault(d.id, []).append(PublicEvent(
                    r.id, _aware(r.at), r.action, r.from_state, r.to_state,
                    _told_detail(r.action, r.detail), d,
                ))
        return found

    def listing(
        self, *, states: Iterable[str] = (), since: dt.datetime | None = None, until: dt.datetime | None = None,
        page: int = 1, size: int = 50,
    ) -> tuple[list[PublicDowntime], int]:
        """A page of public downtimes, newest start first, and how many there are in all.
        `since`/`until`: only those overlapping [since, until)."""
        where: list[Any] = []
        wanted = list(states)
        if wanted:
            where.append(Downtime.state.in_(wanted))
        where += self._overlapping(since, until)
        total = self.session.scalar(select(func.count(Downtime.id)).where(self._public, *where)) or 0
        size = max(1, min(size, MAX_PAGE_SIZE))
        rows = self._rows(*where, order=(Downtime.start_at.desc(), Downtime.id.desc()), limit=size,
                          offset=(page - 1) * size)
        return rows, total

    @staticmethod
    def _overlapping(since: dt.datetime | None, until: dt.datetime | None) -> list[Any]:
        where: list[Any] = []
        if since is not None:
            # A running downtime can overrun its planned end: it overlaps every later range.
            where.append(or_(Downtime.end_at > since, Downtime.state == State.IN_PROGRESS.value))
            where.append(or_(Downtime.start_at >= since - planning.MAX_DURATION,
                             Downtime.state == State.IN_PROGRESS.value))
        if until is not None:
            where.append(Downtime.start_at < until)
        return where

    def between(self, since: dt.datetime, until: dt.datetime) -> list[PublicDowntime]:
        """Every public downtime overlapping [since, until), by start (the timeline, the calendar feed)."""
        return self._rows(*self._overlapping(since, until))

    def running(self) -> list[PublicDowntime]:
        """The public downtimes in progress, by start."""
        return self._rows(Downtime.state == State.IN_PROGRESS.value,
                          Downtime.start_at >= self.now - planning.MAX_DURATION * 2)

    def upcoming(self, limit: int = 50) -> list[PublicDowntime]:
        """The public downtimes still to start (announced, or rescheduled after an announcement and
        not yet announced again), by start."""
        return self._rows(
            Downtime.state.in_([State.ANNOUNCED.value, State.APPROVED.value, State.PROPOSED.value]),
            Downtime.end_at >= self.now, Downtime.start_at >= self.now - planning.MAX_DURATION, limit=limit,
        )

    def finished(self, limit: int = 10) -> list[PublicDowntime]:
        """The last public downtimes that finished, the latest first."""
        return self._rows(
            Downtime.state == State.FINISHED.value, order=(Downtime.start_at.desc(), Downtime.id.desc()), limit=limit
        )

    def changed_at(self) -> dt.datetime | None:
        """When a public downtime or a tree last changed (Last-Modified of the lists and feeds)."""
        # Newest first through ix_downtimes_updated_at, stopping at the first public row (max()
        # with a condition would read every row).
        downtimes = self.session.scalar(
            select(Downtime.updated_at).where(self._public).order_by(Downtime.updated_at.desc()).limit(1)
        )
        trees = self.session.scalar(select(func.max(Tree.updated_at)))
        changes = self.session.scalar(select(func.max(TreeChange.at)))
        known = [_aware(t) for t in (downtimes, trees, changes) if t is not None]
        return max(known) if known else None

    def trees(self, names: Sequence[str], *, kept_here: bool) -> list[PublicTree]:
        """Each configured tree's state, reason and the public downtime whose change set it.

        `kept_here`: the bot keeps the trees ([trees] backend = builtin); otherwise Treestatus
        does, and only the trees that the bot's own changes still hold are known here."""
        holders: dict[str, tuple[int | None, dt.datetime, str, str]] = {}
        changes = self.session.execute(
            select(TreeChangeItem.tree, TreeChange.downtime_id, TreeChange.at, TreeChangeItem.current_status,
                   TreeChangeItem.current_reason)
            .join(TreeChange).where(TreeChange.state.in_(["active", "pending", "requested", "restoring"]))
            .order_by(TreeChange.id)
        ).all()
        public_ids = self._public_ids({c.downtime_id for c in changes if c.downtime_id is not None})
        for tree, downtime_id, at, status, reason in changes:  # the newest change of a tree wins
            holders[tree] = (downtime_id if downtime_id in public_ids else None, _aware(at), status, reason)
        kept = {t.name: t for t in self.session.scalars(select(Tree))} if kept_here else {}
        found = []
        for name in names:
            held = holders.get(name)
            tree = kept.get(name)
            if tree is not None:
                found.append(PublicTree(name, tree.status, tree.reason, held[0] if held else None, tree.updated_at))
            elif held is not None:
                found.append(PublicTree(name, held[2], held[3], held[0], held[1]))
            else:
                found.append(PublicTree(name, "open" if kept_here else "unknown", "", None, None))
        return found

    def _public_ids(self, ids: set[int]) -> set[int]:
        if not ids:
            return set()
        return set(self.session.scalars(select(Downtime.id).where(Downtime.id.in_(sorted(ids)), self._public)))


def _aware(t: dt.datetime) -> dt.datetime:
    """Aggregates (max) come back without the column type: naive UTC from SQLite."""
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def window_spans(
    windows: Sequence[planning.Window], since: dt.datetime, until: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The weekly windows' occurrences within [since, until), merged where they touch (the
    timeline's shading of the low-impact times and CiDuty's hours)."""
    return [(max(s, since), min(e, until)) for s, e in planning.merged_spans(windows, since, until)]


def blackout_spans(
    blackouts: Sequence[planning.Blackout], since: dt.datetime, until: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime, str]]:
    """The blackouts overlapping [since, until), clipped to it, with their labels."""
    return [
        (max(b.start, since), min(b.end, until), b.label)
        for b in blackouts if b.start < until and b.end > since
    ]
