"""The JSON API: /api/v1/… in Treestatus's wrapping, /api/v2/scheduled-maintenances/… in Statuspage's shape.

**/api/v1/downtimes** ``?state=&from=&to=&page=&page_size=``: a page of public downtimes, the
latest start first, as ``{"result": [...], "page", "page_size", "pages", "total"}``.
``state``: one or several states, comma-separated (or the parameter repeated); ``from``/``to``:
RFC 3339 (``2026-12-05T14:00:00Z``, ``…+01:00``) or a UTC date (``2026-12-05``; as ``to`` it
means the end of that day): the downtimes overlapping [from, to); ``page`` from 1;
``page_size`` 1 to 100 (50). An empty value is no value. A value that cannot be read is a 400
problem naming the parameter; a parameter this API does not know is ignored (as Treestatus and
most HTTP APIs do: a cache-busting ``_=`` is no error).

**/api/v1/downtimes/<id>**: one public downtime with its public history, ``{"result": {...}}``;
a missing, non-public or malformed id is the same 404.

**/api/v1/trees**: each configured tree as Treestatus's ``GET /trees`` has it (by name), and the
public downtime that closed it.

**/api/v2/scheduled-maintenances/upcoming.json** and **active.json**: Statuspage's public API
(``{"page": {...}, "scheduled_maintenances": [...]}``): the public downtimes still to start
(status ``scheduled``) and those in progress (``in_progress``), with their told history as
incident updates, newest first. Ids are strings, as Statuspage's.

Times are RFC 3339 in UTC; bugs are told as a channel is told them (a security bug's text is
null and it is marked ``"restricted": true``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from adapters.web.answers import Answer, minute
from adapters.web.feeds import headline, said
from adapters.web.problems import BadParameter, NotFound
from adapters.web.site import Site, downtime_id_of, rfc3339
from models.confidential import ToldBug
from models.lifecycle import State
from models.public import MAX_PAGE_SIZE, PublicDowntime, PublicEvent, PublicReader

UTC = dt.timezone.utc
PAGE_SIZE = 50
MAX_PAGE = 1_000_000
MAX_VALUE = 200  # characters of a query value read at all
LISTING = ("state", "from", "to", "page", "page_size")  # the parameters of /api/v1/downtimes
STATES = tuple(s.value for s in State)
# Ids and numbers: ASCII digits, no longer than SQLite's integers hold.
_NUMBER = re.compile(r"[0-9]{1,18}")
# RFC 3339 (seconds optional), or a bare date; linear, and checked for real dates after.
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?([Zz]|[+-]\d{2}:\d{2})?)?"
)
_NOT_FOUND = "There is no public downtime with this id."
# Statuspage's statuses of a scheduled maintenance, from the downtime's state.
_STATUSPAGE = {State.IN_PROGRESS.value: "in_progress", State.FINISHED.value: "completed",
               State.CANCELLED.value: "completed"}


def routes(site: Site) -> list[web.RouteDef]:
    async def downtimes(request: web.Request) -> web.Response:
        query = request.query
        return await site.answer(request, lambda reader: listing_answer(site, reader, query), params=LISTING)

    async def downtime(request: web.Request) -> web.Response:
        number = request.match_info["id"]
        return await site.answer(request, lambda reader: downtime_answer(site, reader, number), params=())

    async def trees(request: web.Request) -> web.Response:
        return await site.answer(request, lambda reader: trees_answer(site, reader), params=())

    async def upcoming(request: web.Request) -> web.Response:
        return await site.answer(request, lambda reader: maintenances_answer(site, reader, reader.upcoming()),
                                 bucket=minute, params=())

    async def active(request: web.Request) -> web.Response:
        return await site.answer(request, lambda reader: maintenances_answer(site, reader, reader.running()),
                                 bucket=minute, params=())

    return [
        web.get("/api/v1/downtimes", downtimes),
        web.get("/api/v1/downtimes/{id}", downtime),
        web.get("/api/v1/trees", trees),
        web.get("/api/v2/scheduled-maintenances/upcoming.json", upcoming),
        web.get("/api/v2/scheduled-maintenances/active.json", active),
    ]


def json_answer(data: Any, last_modified: dt.datetime | None) -> Answer:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Answer(body, "application/json", last_modified, headers=(("X-Content-Type-Options", "nosniff"),))


# ----- reading the query ----------------------------------------------------------------------


def _values(query: MultiMapping[str], name: str) -> list[str]:
    """The non-empty values of `name`, each checked for length."""
    values = [v.strip() for v in query.getall(name, []) if v.strip()]
    for v in values:
        if len(v) > MAX_VALUE:
            raise BadParameter(name, f"too long (at most {MAX_VALUE} characters)")
    return values


def _one(query: MultiMapping[str], name: str) -> str | None:
    values = _values(query, name)
    if len(values) > 1:
        raise BadParameter(name, "given more than once")
    return values[0] if values else None


def read_states(query: MultiMapping[str]) -> list[str]:
    wanted = [s.strip().lower() for v in _values(query, "state") for s in v.split(",") if s.strip()]
    for s in wanted:
        if s not in STATES:
            raise BadParameter("state", f"{s[:40]!r} is not a state; the states are {', '.join(STATES)}")
    return list(dict.fromkeys(wanted))


def read_time(query: MultiMapping[str], name: str, *, end_of_day: bool = False) -> dt.datetime | None:
    """`name` as an aware UTC time: RFC 3339, or a date at 00:00 UTC (with `end_of_day`, the next 00:00)."""
    raw = _one(query, name)
    if raw is None:
        return None
    found = _TIME.fullmatch(raw)
    if found is None:
        raise BadParameter(name, "expected an RFC 3339 time (2026-12-05T14:00:00Z) or a date (2026-12-05, UTC)")
    year, month, day, hour, minutes, seconds, fraction, zone = found.groups()
    if hour is not None and zone is None:
        raise BadParameter(name, "a time needs its zone: Z or ±hh:mm (2026-12-05T14:00:00Z)")
    try:
        if hour is None:
            date = dt.datetime(int(year), int(month), int(day), tzinfo=UTC)
            return date + dt.timedelta(days=1) if end_of_day else date
        offset = UTC if zone in ("Z", "z") else dt.timezone(
            (-1 if zone[0] == "-" else 1) * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        )
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        at = dt.datetime(int(year), int(month), int(day), int(hour), int(minutes), int(seconds or 0), micro,
                         tzinfo=offset)
        return at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadParameter(name, f"{raw[:40]!r} is not a real date and time") from None


def read_number(query: MultiMapping[str], name: str, default: int, most: int) -> int:
    raw = _one(query, name)
    if raw is None:
        return default
    if not _NUMBER.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise BadParameter(name, f"expected a whole number from 1 to {most}")
    return int(raw)


# ----- downtimes --------------------------------------------------------------------------------


def bug_json(b: ToldBug) -> dict[str, Any]:
    return {
        "number": b.bug,
        "status": b.status,
        "text": None if b.hidden else b.text,
        "restricted": b.hidden,
        "note": b.note or None,
    }


def downtime_json(site: Site, d: PublicDowntime, bugs: Sequence[ToldBug]) -> dict[str, Any]:
    return {
        "id": d.id,
        "state": d.state,
        "summary": d.summary,
        "start": rfc3339(d.start_at),
        "end": rfc3339(d.end_at),
        "started": rfc3339(d.started_at),
        "ended": rfc3339(d.ended_at),
        "verified": rfc3339(d.verified_at),
        "announced": rfc3339(d.announced_at),
        "updated": rfc3339(d.updated_at),
        "trees": list(d.trees or site.trees),  # none named: every configured tree
        "systems": list(d.systems),
        "bugs": [bug_json(b) for b in bugs],
        "url": site.link(f"/downtimes/{d.id}"),
    }


def listing_answer(site: Site, reader: PublicReader, query: MultiMapping[str]) -> Answer:
    states = read_states(query)
    since = read_time(query, "from")
    until = read_time(query, "to", end_of_day=True)
    if since is not None and until is not None and until <= since:
        raise BadParameter("to", "must be after from")
    page = read_number(query, "page", 1, MAX_PAGE)
    size = read_number(query, "page_size", PAGE_SIZE, MAX_PAGE_SIZE)
    rows, total = reader.listing(states=states, since=since, until=until, page=page, size=size)
    bugs = reader.bugs_of(rows)
    return json_answer(
        {
            "result": [downtime_json(site, d, bugs.get(d.id, ())) for d in rows],
            "page": page, "page_size": size, "pages": math.ceil(total / size), "total": total,
        },
        reader.changed_at(),
    )


def downtime_answer(site: Site, reader: PublicReader, number: str) -> Answer:
    downtime_id = downtime_id_of(number)
    d = reader.get(downtime_id) if downtime_id is not None else None
    if d is None:
        raise NotFound(_NOT_FOUND)
    data = downtime_json(site, d, d.bugs)
    data["history"] = [
        {"at": rfc3339(e.at), "action": e.action, "from": e.from_state or None, "to": e.to_state or None,
         "detail": e.detail}
        for e in d.history
    ]
    return json_answer({"result": data}, reader.changed_at())


def trees_answer(site: Site, reader: PublicReader) -> Answer:
    trees = reader.trees(site.trees, kept_here=site.tree_backend == "builtin")
    return json_answer(
        {
            "result": {
                t.name: {
                    "tree": t.name,
                    "status": t.status,
                    "reason": t.reason,
                    "message_of_the_day": "",
                    "tags": ["planned"] if t.downtime_id is not None and t.status != "open" else [],
                    "downtime": t.downtime_id,
                    "downtime_url": site.link(f"/downtimes/{t.downtime_id}") if t.downtime_id is not None else None,
                    "since": rfc3339(t.since),
                }
                for t in trees
            }
        },
        reader.changed_at(),
    )


# ----- Statuspage -------------------------------------------------------------------------------


def page_id(site: Site) -> str:
    """A stable id of this status page, Statuspage-like (12 characters)."""
    return hashlib.blake2b(f"{site.mail_domain} {site.base_url}".encode(), digest_size=6).hexdigest()


def update_json(d: PublicDowntime, e: PublicEvent) -> dict[str, Any]:
    at = rfc3339(e.at)
    return {
        "id": str(e.id), "status": _STATUSPAGE.get(e.to_state, "scheduled"), "body": said(e),
        "created_at": at, "updated_at": at, "display_at": at, "incident_id": str(d.id),
    }


def maintenances_answer(site: Site, reader: PublicReader, downtimes: Sequence[PublicDowntime]) -> Answer:
    changed = reader.changed_at()
    pid = page_id(site)
    events = reader.events_of(d.id for d in downtimes)
    return json_answer(
        {
            "page": {"id": pid, "name": site.name, "url": site.link("/"), "time_zone": "Etc/UTC",
                     "updated_at": rfc3339(changed)},
            "scheduled_maintenances": [
                {
                    "id": str(d.id),
                    "name": f"Tree-closing downtime #{d.id}: {headline(d.summary)}",
                    "status": _STATUSPAGE.get(d.state, "scheduled"),
                    "created_at": rfc3339(d.created_at),
                    "updated_at": rfc3339(d.updated_at),
                    "monitoring_at": None,
                    "resolved_at": rfc3339(d.ended_at),
                    "impact": "maintenance",
                    "shortlink": site.link(f"/downtimes/{d.id}"),
                    "started_at": rfc3339(d.started_at or d.start_at),
                    "page_id": pid,
                    "incident_updates": [update_json(d, e) for e in reversed(events.get(d.id, []))],
                    "components": [],
                    "scheduled_for": rfc3339(d.start_at),
                    "scheduled_until": rfc3339(d.end_at),
                }
                for d in downtimes
            ],
        },
        changed,
    )
