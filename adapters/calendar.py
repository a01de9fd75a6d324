"""Calendar invitations (RFC 5545 iCalendar, iTIP methods of RFC 5546) for downtimes, and the
calendar feed of them all.

`downtime_invitation` builds the ``.ics`` that goes with an announcement
(``method="REQUEST"``), a reschedule (the same UID with a higher SEQUENCE) or a
cancellation (``method="CANCEL"``, ``status="CANCELLED"``). Calendar clients match
updates to the entry they already hold by UID, and apply one only when its SEQUENCE
is higher than the last one they saw, so the caller keeps the UID stable per
downtime (``downtime-7@downtimebot.example``) and bumps SEQUENCE on every change.

`downtime_feed` builds the subscribed calendar (``/calendar.ics``, ``method="PUBLISH"``): one
VEVENT per downtime, each with the UID and SEQUENCE its invitations were mailed with, so a
calendar holding both shows one entry. Both build their VEVENT with `_event`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr

from icalendar import Calendar, Event, vCalAddress, vDuration, vText

log = logging.getLogger(__name__)

PRODID = "-//downtime-bot//downtime-bot//EN"
METHODS = frozenset({"REQUEST", "CANCEL", "PUBLISH"})
STATUSES = frozenset({"CONFIRMED", "TENTATIVE", "CANCELLED"})
_END = b"END:VCALENDAR\r\n"


def downtime_invitation(
    *,
    uid: str,
    sequence: int,
    start: datetime,
    end: datetime,
    summary: str,
    description: str,
    organizer: str,
    attendees: Sequence[str] = (),
    status: str = "CONFIRMED",
    method: str = "REQUEST",
    url: str | None = None,
    now: datetime,
) -> bytes:
    """Return one VCALENDAR holding one VEVENT for a downtime, as iCalendar bytes.

    Times must be timezone-aware; they are written in UTC (``...Z``), so no VTIMEZONE
    is needed. ``organizer`` and ``attendees`` are mail addresses, optionally with a
    display name (``"Downtime bot <downtimebot@example.org>"``).
    """
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, not {method!r}")
    # RFC 5546 3.2.5: a CANCEL of a whole event carries STATUS:CANCELLED, and a
    # cancelled event sent as a REQUEST would be shown as a live invitation.
    if (method == "CANCEL") != (status.upper() == "CANCELLED"):
        raise ValueError(f"method {method} does not go with status {status.upper()}")
    event = _event(uid=uid, sequence=sequence, start=start, end=end, summary=summary, description=description,
                   status=status, url=url, stamp=now)
    event.add("organizer", _address(organizer))
    for attendee in attendees:
        address = _address(attendee)
        # The bot reads no replies: RSVP=FALSE keeps clients from sending any.
        address.params["ROLE"] = vText("OPT-PARTICIPANT")
        address.params["PARTSTAT"] = vText("NEEDS-ACTION")
        address.params["RSVP"] = vText("FALSE")
        event.add("attendee", address, encode=False)
    calendar = _calendar(method)
    calendar.add_component(event)
    return calendar.to_ical()


@dataclass(frozen=True)
class FeedEvent:
    """One downtime in the calendar feed (see `downtime_invitation` for the fields)."""

    uid: str
    sequence: int
    start: datetime
    end: datetime
    summary: str
    description: str
    status: str  # CONFIRMED | TENTATIVE | CANCELLED
    stamp: datetime  # when it last changed: DTSTAMP and LAST-MODIFIED
    created: datetime | None = None
    url: str | None = None


def downtime_feed(
    events: Iterable[FeedEvent | bytes], *, name: str, refresh: timedelta = timedelta(hours=1),
    source: str | None = None,
) -> bytes:
    """Return the subscribed calendar (``METHOD:PUBLISH``) of these events, as iCalendar bytes.

    Each event is a `FeedEvent`, or the bytes `feed_event` made of one (kept from an earlier
    feed: icalendar writes about 3,000 events a second). `name` is the calendar's name (RFC 7986
    NAME, and X-WR-CALNAME for the clients that read only that); `refresh` how often clients
    should fetch it again (REFRESH-INTERVAL, and X-PUBLISHED-TTL likewise); `source` the feed's
    own address, when known.
    """
    calendar = _calendar("PUBLISH")
    calendar.add("name", name)
    calendar.add("x-wr-calname", name)
    calendar.add("refresh-interval", vDuration(refresh), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(refresh))
    if source:
        calendar.add("source", source, parameters={"VALUE": "URI"})
    head = calendar.to_ical()
    assert head.endswith(_END), head[-40:]
    body = b"".join(e if isinstance(e, bytes) else feed_event(e) for e in events)
    return head[: -len(_END)] + body + _END


def feed_event(e: FeedEvent) -> bytes:
    """One VEVENT of the feed as iCalendar bytes (lines folded, each ending in CRLF). DTSTAMP is
    the event's last change, not the time of the request: the same downtime gives the same bytes."""
    event = _event(uid=e.uid, sequence=e.sequence, start=e.start, end=e.end, summary=e.summary,
                   description=e.description, status=e.status, url=e.url, stamp=e.stamp)
    if e.created is not None:
        event.add("created", _utc(e.created))
    event.add("last-modified", _utc(e.stamp))
    return event.to_ical()


def _calendar(method: str) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    return calendar


def _event(
    *, uid: str, sequence: int, start: datetime, end: datetime, summary: str, description: str, status: str,
    url: str | None, stamp: datetime,
) -> Event:
    """The VEVENT of one downtime: checked, times in UTC, text escaped by icalendar (RFC 5545 3.3.11)."""
    status = status.upper()
    if status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status!r}")
    for label, value in (("start", start), ("end", end), ("now", stamp)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{label} must be timezone-aware, got {value.isoformat()}")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    if sequence < 0:
        raise ValueError(f"sequence must be >= 0, not {sequence}")
    if not uid or any(c in uid for c in "\r\n"):
        raise ValueError("uid must be a non-empty single line")
    event = Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    event.add("dtstamp", _utc(stamp))
    event.add("dtstart", _utc(start))
    event.add("dtend", _utc(end))
    event.add("summary", summary)
    event.add("description", description)
    event.add("status", status)
    # A tree closure does not make anyone busy: TRANSPARENT keeps it out of
    # free/busy lookups, so it never blocks other meetings being booked.
    event.add("transp", "TRANSPARENT")
    event.add("class", "PUBLIC")
    if url:
        event.add("url", url)
    return event


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _address(text: str) -> vCalAddress:
    name, addr = parseaddr(text.replace("\r", " ").replace("\n", " "))
    if "@" not in addr:
        raise ValueError(f"not a mail address: {text!r}")
    address = vCalAddress(f"mailto:{addr}")
    if name:
        address.params["CN"] = vText(name)
    return address
