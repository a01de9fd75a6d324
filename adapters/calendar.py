"""Calendar invitations (RFC 5545 iCalendar, iTIP methods of RFC 5546) for downtimes.

`downtime_invitation` builds the ``.ics`` that goes with an announcement
(``method="REQUEST"``), a reschedule (the same UID with a higher SEQUENCE) or a
cancellation (``method="CANCEL"``, ``status="CANCELLED"``). Calendar clients match
updates to the entry they already hold by UID, and apply one only when its SEQUENCE
is higher than the last one they saw, so the caller keeps the UID stable per
downtime (``downtime-7@downtimebot.example``) and bumps SEQUENCE on every change.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from email.utils import parseaddr

from icalendar import Calendar, Event, vCalAddress, vText

log = logging.getLogger(__name__)

PRODID = "-//downtime-bot//downtime-bot//EN"
METHODS = frozenset({"REQUEST", "CANCEL", "PUBLISH"})
STATUSES = frozenset({"CONFIRMED", "TENTATIVE", "CANCELLED"})


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
    status = status.upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, not {method!r}")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status!r}")
    # RFC 5546 3.2.5: a CANCEL of a whole event carries STATUS:CANCELLED, and a
    # cancelled event sent as a REQUEST would be shown as a live invitation.
    if (method == "CANCEL") != (status == "CANCELLED"):
        raise ValueError(f"method {method} does not go with status {status}")
    for name, value in (("start", start), ("end", end), ("now", now)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    if sequence < 0:
        raise ValueError(f"sequence must be >= 0, not {sequence}")
    if not uid or any(c in uid for c in "\r\n"):
        raise ValueError("uid must be a non-empty single line")

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)

    event = Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    event.add("dtstamp", _utc(now))
    event.add("dtstart", _utc(start))
    event.add("dtend", _utc(end))
    event.add("summary", summary)
    event.add("description", description)
    event.add("status", status)
    # A tree closure does not make anyone busy: TRANSPARENT keeps it out of
    # free/busy lookups, so it never blocks other meetings being booked.
    event.add("transp", "TRANSPARENT")
    event.add("class", "PUBLIC")
    event.add("organizer", _address(organizer))
    for attendee in attendees:
        address = _address(attendee)
        # The bot reads no replies: RSVP=FALSE keeps clients from sending any.
        address.params["ROLE"] = vText("OPT-PARTICIPANT")
        address.params["PARTSTAT"] = vText("NEEDS-ACTION")
        address.params["RSVP"] = vText("FALSE")
        event.add("attendee", address, encode=False)
    if url:
        event.add("url", url)
    calendar.add_component(event)
    return calendar.to_ical()


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
