"""`!downtime show`'s answer read in one query as plain rows: a read model, not ORM objects.

Why: `show` is asked of any downtime (answers to the same question are cached until the next
commit, so every uncached one is a random id). Loading it as ORM objects cost four queries'
worth of ORM machinery (`session.get` with `selectinload` for the bugs and the verdicts, each a
query of its own, and the pending jobs) for about 0.1 ms of SQLite work: ~2 ms of a 2.7 ms
command. Here one prebuilt Core statement (models/prebuilt.py) reads the downtime's row with
its bugs, verdicts and pending jobs, each gathered by a correlated subquery into a JSON array
(SQLite's json_group_array), and the template reads the ORM's names from the result. Four
prebuilt statements instead of one made `show` about 10% slower. A use case that changes a
downtime still loads it through the ORM (`Queries.get`).

The pending jobs are read through the outbox's (status, kind, id) index: "not sent" is written
`status IN ('pending', 'failed')` (the only other statuses), so the read is bounded by the work
still to do, not by every message ever sent.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Table, bindparam, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from models.lifecycle import DomainError
from models.orm import Downtime, DowntimeBug, OutboxMessage, Verdict
from models.prebuilt import run, table_of

PENDING_KINDS = ("bugzilla", "trees", "mail")


class BugLine(NamedTuple):
    bug: int
    status: str
    security: bool
    assignee: str
    wording: str
    summary: str
    note: str
    pending: str = ""  # a change waiting for CiDuty: "add" | "drop"


class VerdictLine(NamedTuple):
    account: str
    verdict: str
    reason: str
    active: bool


class PendingJob(NamedTuple):
    kind: str
    body: str
    payload: dict[str, Any]
    status: str
    attempts: int
    last_error: str


@dataclass(frozen=True)
class DowntimeDetail:
    """One downtime with its bugs, verdicts and pending outside changes, as `show.txt` reads it.

    The attribute names are the ORM model's (`Downtime`), so the template reads either.
    """

    id: int
    state: str
    summary: str
    start_at: dt.datetime
    end_at: dt.datetime
    requester: str
    requester_network: str
    created_at: dt.datetime
    trees: str
    systems: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    verified_by: str | None
    tree_change_id: int | None
    was_announced: bool
    bugs: tuple[BugLine, ...]  # by bug number
    verdicts: tuple[VerdictLine, ...]  # oldest first
    pending: tuple[PendingJob, ...]  # the Bugzilla, tree and mail jobs not yet done, oldest first

    @property
    def duration(self) -> dt.timedelta:
        return self.end_at - self.start_at

    @property
    def tree_names(self) -> list[str]:
        return [t for t in self.trees.split(",") if t]

    @property
    def system_names(self) -> list[str]:
        return [s for s in self.systems.split(",") if s]


_D, _B, _V, _O = (table_of(m) for m in (Downtime, DowntimeBug, Verdict, OutboxMessage))


class _JsonRows(FunctionElement[Any]):
    """The aggregate of rows as one JSON array of arrays: SQLite's json_group_array(json_array(…)),
    PostgreSQL's json_agg(json_build_array(…))."""

    name = "json_rows"
    inherit_cache = True


@compiles(_JsonRows)
def _json_rows_sqlite(element: _JsonRows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


@compiles(_JsonRows, "postgresql")
def _json_rows_postgresql(element: _JsonRows, compiler: Any, **kw: Any) -> str:
    return f"coalesce(json_agg(json_build_array({compiler.process(element.clauses, **kw)})), '[]'::json)"


def _gathered(table: Table, order: ColumnElement[Any], *columns: ColumnElement[Any], where: Any) -> Any:
    """The rows of `table` for the downtime as one JSON array of [order, *columns] arrays."""
    return select(_JsonRows(order, *columns)).select_from(table).where(*where).correlate(_D).scalar_subquery()


_DETAIL = select(
    _D.c.id, _D.c.state, _D.c.summary, _D.c.start_at, _D.c.end_at, _D.c.requester, _D.c.requester_network, _D.c.created_at, _D.c.trees,
    _D.c.systems, _D.c.started_at, _D.c.ended_at, _D.c.verified_by, _D.c.tree_change_id, _D.c.was_announced,
    _gathered(
        _B, _B.c.bug, _B.c.bug, _B.c.status, _B.c.security, _B.c.assignee, _B.c.wording, _B.c.summary, _B.c.note,
        _B.c.pending, where=[_B.c.downtime_id == _D.c.id],
    ).label("bugs"),
    _gathered(
        _V, _V.c.id, _V.c.account, _V.c.verdict, _V.c.reason, _V.c.active, where=[_V.c.downtime_id == _D.c.id]
    ).label("verdicts"),
    _gathered(
        _O, _O.c.id, _O.c.kind, _O.c.body, _O.c.payload, _O.c.status, _O.c.attempts, _O.c.last_error,
        where=[_O.c.status.in_(["pending", "failed"]), _O.c.kind.in_(PENDING_KINDS), _O.c.downtime_id == _D.c.id],
    ).label("pending"),
).where(_D.c.id == bindparam("id"))


def _lines(gathered: str | list[Any]) -> list[list[Any]]:
    """The gathered rows in their order, without the order column (PostgreSQL's driver parses
    the JSON itself, SQLite's hands over the text)."""
    rows = json.loads(gathered) if isinstance(gathered, str) else gathered
    return [row[1:] for row in sorted(rows, key=lambda row: row[0])]


def load_detail(session: Session, downtime_id: int) -> DowntimeDetail:
    """The downtime `downtime_id` as `!downtime show` tells it; a DomainError if there is none."""
    row = run(session, _DETAIL, {"id": downtime_id}).first()
    if row is None:
        raise DomainError("no_downtime", id=downtime_id)
    columns = row._asdict()
    bugs, verdicts, pending = (_lines(columns.pop(name)) for name in ("bugs", "verdicts", "pending"))
    columns["was_announced"] = bool(columns["was_announced"])
    return DowntimeDetail(
        **columns,
        bugs=tuple(BugLine(b, s, bool(sec), *rest) for b, s, sec, *rest in bugs),
        verdicts=tuple(VerdictLine(a, v, r, bool(active)) for a, v, r, active in verdicts),
        pending=tuple(
            PendingJob(kind, body, json.loads(payload) if isinstance(payload, str) else payload, *rest)
            for kind, body, payload, *rest in pending
        ),
    )
