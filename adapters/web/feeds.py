"""/calendar.ics and /feed.atom: the public downtimes for calendars and feed readers.

**/calendar.ics** (RFC 5545, ``METHOD:PUBLISH``): every public downtime of the last 90 days and
the future, one VEVENT each, with the UID of its mailed invitations (models/instance.py
`event_uid`) and their SEQUENCE (`PublicDowntime.calendar_sequence`), so a calendar holding the
invitations and the feed shows one entry. A cancelled downtime stays, STATUS:CANCELLED. Each
event's DTSTAMP is its last change, so the bytes (and the ETag) change only when a downtime does.

**/feed.atom** (RFC 4287): the last 50 announcements, changes, starts, ends and cancellations of
public downtimes (models/public.py `recent_events`), newest first. Each entry's id comes from its
audit row, so it never changes; its text is the downtime as it is now. Built with ElementTree,
which escapes every text it writes: a wording ``<script>`` is text in the feed, never markup.

Both tell bugs as a channel is told them: a security bug vaguely (models/confidential.py).
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

from aiohttp import web

from adapters.web.answers import Answer, day
from adapters.web.problems import NotFound, problem
from adapters.web.site import Site, downtime_id_of, rfc3339
from models.confidential import ToldBug
from models.instance import event_uid, id_suffix
from models.public import PublicDowntime, PublicEvent, PublicReader
from models.timeparse import format_duration, format_time

# The calendar feed: the last 90 days, and the future as far as anything is planned.
CALENDAR_PAST = dt.timedelta(days=90)
CALENDAR_FUTURE = dt.timedelta(days=3653)
FEED_ENTRIES = 50
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)  # the updated time of an empty feed
ATOM = "http://www.w3.org/2005/Atom"
# How a security bug is told in public: as templates/_macros.txt `bugtext` says it in chat and mail.
VAGUE = "security-sensitive work (details restricted)"
HEADLINE = 80  # characters of the wording in a title
# What each told event did, in a title: "Downtime #7 announced: …".
DID = {
    "announce": "announced",
    "reschedule": "rescheduled",
    "extend": "extended",
    "edit": "notice edited",
    "add bug": "bug added",
    "drop bug": "bug dropped",
    "start": "started",
    "end": "ended",
    "cancel": "cancelled",
    "merge": "merged with another downtime",
    "merge away": "cancelled (merged)",
}
# Characters neither XML 1.0 nor iCalendar text can carry (the wording is cleaned of them
# already; a Bugzilla summary might not be): left out rather than making a feed unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class EventCache:
    """The calendar feed's VEVENTs, by all that each says (the downtime as it is, its bugs as
    told). The feed is built again after every commit, and icalendar writes about 3,000 events a
    second: with this, a change costs the changed downtime's event, the others are looked up.
    At most `size` events, the least recently used dropped; builds run in worker threads, hence
    the lock."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._events: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            found = self._events.get(key)
            if found is not None:
                self._events.move_to_end(key)
                return found
        made = make()
        with self._lock:
            self._events[key] = made
            while len(self._events) > self.size:
                self._events.popitem(last=False)
        return made

    def __len__(self) -> int:
        return len(self._events)


def routes(site: Site) -> list[web.RouteDef]:
    made = EventCache()

    async def calendar(request: web.Request) -> web.Response:
        return await site.answer(request, lambda reader: calendar_answer(site, reader, made), bucket=day, params=())

    async def atom(request: web.Request) -> web.Response:
        return await site.answer(request, lambda reader: atom_answer(site, reader), params=())

    async def one(request: web.Request) -> web.Response:
        downtime_id = downtime_id_of(request.match_info["id"])
        if downtime_id is None:
            return problem(request, 404, "Not found", f"'{request.match_info['id']}' is not a downtime id.")
        return await site.answer(request, lambda reader: one_calendar_answer(site, reader, downtime_id), params=())

    return [web.get("/calendar.ics", calendar), web.get("/feed.atom", atom), web.get("/downtimes/{id}.ics", one)]


def headline(text: str) -> str:
    """The wording's first line, cut to a title's length."""
    first = text.strip().split("\n", 1)[0]
    return first if len(first) <= HEADLINE else first[: HEADLINE - 1].rstrip() + "…"


def bug_text(b: ToldBug) -> str:
    return VAGUE if b.hidden else b.text


def describe(site: Site, d: PublicDowntime, bugs: Sequence[ToldBug]) -> str:
    """A downtime as plain text, as anyone may read it: the calendar's DESCRIPTION, the feed's content."""
    zones = tuple(site.zones)
    lines = [d.summary, "", f"State: {d.state.replace('_', ' ')}",
             f"Planned: {format_time(d.start_at, zones)} for {format_duration(d.duration)}"]
    if d.started_at is not None:
        lines.append(f"Started: {format_time(d.started_at, zones)}")
    if d.ended_at is not None:
        lines.append(f"Ended: {format_time(d.ended_at, zones)}")
    lines.append(f"Trees: {', '.join(d.trees or tuple(site.trees)) or 'all'}")
    if d.systems:
        lines.append(f"Systems: {', '.join(d.systems)}")
    if bugs:
        lines.append("Bugs:")
        lines += [f"- Bug {b.bug} [{b.status}]: {bug_text(b)}" + (f" ({b.note})" if b.note else "") for b in bugs]
    if site.base_url:
        lines += ["", site.link(f"/downtimes/{d.id}")]
    return _NOT_XML.sub("", "\n".join(lines))


# ----- /calendar.ics ------------------------------------------------------------------------


def calendar_event(site: Site, d: PublicDowntime, told: Sequence[ToldBug]) -> bytes:
    """One downtime's VEVENT, as the feed and the one-downtime calendar carry it."""
    from adapters.calendar import FeedEvent, feed_event  # icalendar only when a calendar is asked for

    return feed_event(FeedEvent(
        uid=event_uid(d.id, d.id_token, site.mail_domain),
        sequence=d.calendar_sequence,
        start=d.start_at,
        end=d.end_at,
        summary=_NOT_XML.sub("", f"Tree-closing downtime #{d.id}: {headline(d.summary)}"),
        description=describe(site, d, told),
        # Announced as the invitations said it; public without an announcement: not final yet.
        status="CANCELLED" if d.cancelled else "CONFIRMED" if d.was_announced else "TENTATIVE",
        stamp=d.updated_at,
        created=d.created_at,
        url=site.link(f"/downtimes/{d.id}") if site.base_url else None,
    ))


def calendar_answer(site: Site, reader: PublicReader, made: EventCache | None = None) -> Answer:
    """The calendar feed; each downtime's VEVENT from `made` when nothing it says has changed."""
    from adapters.calendar import downtime_feed  # icalendar only when the feed is asked for

    made = made if made is not None else EventCache()
    downtimes = reader.between(reader.now - CALENDAR_PAST, reader.now + CALENDAR_FUTURE)
    bugs = reader.bugs_of(downtimes)
    event = functools.partial(calendar_event, site)
    events = []
    for d in downtimes:
        told = bugs.get(d.id, ())
        # The key: the id and a 64-bit hash of everything the event says (the downtime and its
        # bugs as told), not the objects themselves: a third of the memory.
        events.append(made.get((d.id, hash((d, told))), functools.partial(event, d, told)))
    body = downtime_feed(
        events, name=f"{site.name}: tree-closing downtimes",
        source=site.link("/calendar.ics") if site.base_url else None,
    )
    return Answer(body, "text/calendar; charset=utf-8", reader.changed_at())


def one_calendar_answer(site: Site, reader: PublicReader, downtime_id: int) -> Answer:
    """/downtimes/<id>.ics: one public downtime as a calendar to add (the same event as in the
    feed, so adding both shows one entry)."""
    from adapters.calendar import downtime_feed

    d = reader.get(downtime_id)
    if d is None:
        raise NotFound(f"There is no public downtime #{downtime_id}.")
    body = downtime_feed(
        [calendar_event(site, d, d.bugs)],
        name=f"{site.name}: tree-closing downtime #{d.id}",
        source=site.link(f"/downtimes/{d.id}.ics") if site.base_url else None,
    )
    return Answer(body, "text/calendar; charset=utf-8", d.updated_at,
                  headers=(("Content-Disposition", f'inline; filename="downtime-{d.id}.ics"'),))


# ----- /feed.atom ---------------------------------------------------------------------------


def _tag(site: Site, token: str, what: str) -> str:
    """A tag URI (RFC 4151) under the bot's mail domain, with the database's id token as the
    calendar UIDs have it: two bots on one domain never share one. (The year is part of the
    scheme: the domain's owner names things as of then; it never changes.)"""
    return f"tag:{site.mail_domain},2026:downtimebot{id_suffix(token)}:{what}"


def _add(parent: ET.Element, name: str, text: str | None = None, **attributes: str) -> ET.Element:
    """A child element; its text escaped by ElementTree when written."""
    element = ET.SubElement(parent, name, attributes)
    if text is not None:
        element.text = _NOT_XML.sub("", text)
    return element


def entry_title(e: PublicEvent) -> str:
    return f"Downtime #{e.downtime.id} {DID.get(e.action, e.action)}: {headline(e.downtime.summary)}"


def said(e: PublicEvent) -> str:
    """What happened, with the history's detail: "Downtime #7 extended: end 16:00 → 17:00 UTC"."""
    return f"Downtime #{e.downtime.id} {DID.get(e.action, e.action)}" + (f": {e.detail}" if e.detail else ".")


def entry_text(site: Site, e: PublicEvent, bugs: Sequence[ToldBug]) -> str:
    """What happened, then the downtime as it is now."""
    return f"{said(e)}\n\n{describe(site, e.downtime, bugs)}"


def atom_answer(site: Site, reader: PublicReader) -> Answer:
    events = reader.recent_events(FEED_ENTRIES)
    bugs = reader.bugs_of(e.downtime for e in events)
    changed = reader.changed_at()
    feed = ET.Element("feed", xmlns=ATOM)  # Atom as the default namespace: the elements need no prefix
    _add(feed, "id", _tag(site, "", "feed"))
    _add(feed, "title", f"{site.name}: tree-closing downtimes")
    _add(feed, "subtitle", "Announcements, changes, starts, ends and cancellations of the tree-closing downtimes.")
    # The newest entry's time: a change that no entry tells (a tree, a bug's outcome) leaves it.
    _add(feed, "updated", rfc3339(events[0].at if events else changed or EPOCH))
    _add(feed, "link", rel="self", type="application/atom+xml", href=site.link("/feed.atom"))
    _add(feed, "link", rel="alternate", type="text/html", href=site.link("/"))
    _add(_add(feed, "author"), "name", site.name)
    _add(feed, "generator", "downtime-bot")
    for e in events:
        entry = _add(feed, "entry")
        _add(entry, "id", _tag(site, e.downtime.id_token, f"event-{e.id}"))
        _add(entry, "title", entry_title(e), type="text")
        _add(entry, "updated", rfc3339(e.at))
        _add(entry, "published", rfc3339(e.at))
        _add(entry, "link", rel="alternate", type="text/html", href=site.link(f"/downtimes/{e.downtime.id}"))
        _add(entry, "category", term=e.action)
        _add(entry, "content", entry_text(site, e, bugs.get(e.downtime.id, ())), type="text")
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Answer(body, "application/atom+xml; charset=utf-8", changed)
