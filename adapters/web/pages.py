"""The HTML pages: `/` (now, the 14-day timeline, upcoming and finished downtimes),
`/downtimes/<id>` (everything public about one) and `/trees`.

Each page is built by a function of the public read model (models/public.py) and answered
through `Site.answer`, so it is built off the loop and cached until the database (or, for the
pages that show "now", the minute) changes. The templates are templates/web/*.html (Jinja2,
autoescaped); the timeline's geometry is models/timeline.py.

No page holds the request's Host: a page is cached and served to everyone, so a forged Host
would otherwise end up in every reader's links. Without [web] base_url, the `webcal://` link is
made in the reader's browser from the page's own address (the link works as plain http without
JavaScript).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from adapters.web.answers import Answer, minute, text_answer
from adapters.web.problems import NotFound, problem
from adapters.web.site import Site, downtime_id_of
from models import timeline
from models.lifecycle import State
from models.public import PublicDowntime, PublicReader, PublicTree, blackout_spans, window_spans

DAYS = 14
UPCOMING = 50
FINISHED = 10
HTML = "text/html"


def state_words(d: PublicDowntime) -> str:
    """A downtime's state as a reader says it."""
    if d.state in (State.PROPOSED.value, State.APPROVED.value) and d.was_announced:
        return "rescheduled, to be announced again"
    return d.state.replace("_", " ")


def whole(d: dt.timedelta) -> dt.timedelta:
    """A duration to the whole minute below ("1h29m", not "1h29m30s")."""
    return dt.timedelta(minutes=d // dt.timedelta(minutes=1))


def _capped(changed: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """Last-Modified of a page that shows "now": the last change, at most this minute."""
    this_minute = now.replace(second=0, microsecond=0)
    return this_minute if changed is None else min(changed, this_minute)


def _calendar(site: Site) -> dict[str, str]:
    """The calendar links: webcal:// from [web] base_url when set, else made in the browser."""
    feed = site.link("/calendar.ics")
    scheme, sep, rest = site.base_url.partition("://")
    webcal = f"webcal://{rest}/calendar.ics" if sep and scheme in ("http", "https") else ""
    return {"calendar_url": feed, "webcal_url": webcal, "atom_url": site.link("/feed.atom")}


def _page(site: Site, name: str, last_modified: dt.datetime | None, **context: Any) -> Answer:
    body = site.html(name, link=site.link, state_words=state_words, whole=whole, zones=list(site.zones),
                     trees_all=list(site.trees), **_calendar(site), **context)
    return text_answer(body, HTML, last_modified)


def index(site: Site, reader: PublicReader) -> Answer:
    now = reader.now
    since = dt.datetime.combine(now.astimezone(dt.timezone.utc).date(), dt.time(), dt.timezone.utc)
    until = since + dt.timedelta(days=DAYS)
    drawn = timeline.build(
        now, reader.between(since, until),
        low_impact=window_spans(site.policy.low_impact, since, until),
        ciduty_hours=window_spans(site.policy.ciduty_hours, since, until),
        blackouts=blackout_spans(site.policy.blackouts, since, until),
        days=DAYS,
    )
    trees = reader.trees(site.trees, kept_here=site.tree_backend == "builtin")
    return _page(
        site, "index.html", _capped(reader.changed_at(), now),
        now=now, timeline=drawn, running=reader.running(), upcoming=reader.upcoming(UPCOMING),
        finished=reader.finished(FINISHED), trees=trees,
        closed=_grouped([t for t in trees if t.status not in ("open", "unknown")]),
        unknown=all(t.status == "unknown" for t in trees) and bool(trees),
        has_low_impact=bool(site.policy.low_impact), has_ciduty=bool(site.policy.ciduty_hours),
        has_blackouts=any(s.kind == "blackout" for s in drawn.shades),
    )


def _grouped(trees: list[PublicTree]) -> list[tuple[list[str], PublicTree]]:
    """Trees closed alike (state, reason, downtime) as one line: their names and one of them."""
    groups: dict[tuple[str, str, int | None], tuple[list[str], PublicTree]] = {}
    for t in trees:
        groups.setdefault((t.status, t.reason, t.downtime_id), ([], t))[0].append(t.name)
    return list(groups.values())


def detail(site: Site, reader: PublicReader, downtime_id: int) -> Answer:
    d = reader.get(downtime_id)
    if d is None:
        raise NotFound(f"There is no public downtime #{downtime_id}.")
    outcomes: dict[str, list[int]] = {}
    for b in d.bugs:
        outcomes.setdefault(b.status, []).append(b.bug)
    return _page(site, "downtime.html", _capped(d.updated_at, reader.now), now=reader.now, d=d, outcomes=outcomes)


def trees(site: Site, reader: PublicReader) -> Answer:
    return _page(site, "trees.html", reader.changed_at(), now=reader.now,
                 trees=reader.trees(site.trees, kept_here=site.tree_backend == "builtin"),
                 backend=site.tree_backend)


# The pages read no query parameter: `params=()` keeps a query string out of the answer cache.
def routes(site: Site) -> list[web.RouteDef]:
    async def index_page(request: web.Request) -> web.Response:
        return await site.answer(request, lambda reader: index(site, reader), bucket=minute, params=())

    async def downtime_page(request: web.Request) -> web.Response:
        downtime_id = downtime_id_of(request.match_info["id"])
        if downtime_id is None:
            return problem(request, 404, "Not found", f"'{request.match_info['id']}' is not a downtime id.")
        return await site.answer(request, lambda reader: detail(site, reader, downtime_id), bucket=minute, params=())

    async def trees_page(request: web.Request) -> web.Response:
        return await site.answer(request, lambda reader: trees(site, reader), params=())

    return [
        web.get("/", index_page),
        # Not "/downtimes/<id>.ics": that one is the calendar entry's, another route's.
        web.get("/downtimes/{id:[^{}/.]+}", downtime_page),
        web.get("/trees", trees_page),
    ]
