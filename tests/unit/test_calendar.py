"""The calendar invitation builder (RFC 5545 / RFC 5546)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from adapters.calendar import downtime_invitation

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
START = datetime(2026, 12, 5, 14, 0, tzinfo=timezone.utc)
UID = "downtime-7@downtimebot.example"


def build(**changes: object) -> bytes:
    arguments: dict[str, object] = {
        "uid": UID,
        "sequence": 0,
        "start": START,
        "end": START + timedelta(hours=2),
        "summary": "Tree closure: downtime 7",
        "description": "Trees closed for a database upgrade (bug 1234567).",
        "organizer": "Downtime bot <downtimebot@example.org>",
        "now": NOW,
    }
    arguments.update(changes)
    return downtime_invitation(**arguments)  # type: ignore[arg-type]


def parse(ics: bytes) -> tuple[Calendar, Calendar]:
    calendar = Calendar.from_ical(ics)
    (event,) = calendar.walk("VEVENT")
    return calendar, event


def lines(ics: bytes) -> list[bytes]:
    return ics.split(b"\r\n")


def test_the_calendar_has_prodid_version_and_method() -> None:
    calendar, _ = parse(build())

    assert str(calendar["PRODID"]) == "-//downtime-bot//downtime-bot//EN"
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["METHOD"]) == "REQUEST"


def test_the_event_carries_the_given_uid_and_sequence() -> None:
    _, event = parse(build(sequence=3))

    assert str(event["UID"]) == UID
    assert int(event["SEQUENCE"]) == 3


def test_the_uid_is_stable_across_reschedules_while_the_sequence_grows() -> None:
    _, first = parse(build(sequence=0))
    _, moved = parse(build(sequence=1, start=START + timedelta(days=1), end=START + timedelta(days=1, hours=2)))

    assert moved["UID"] == first["UID"]
    assert int(moved["SEQUENCE"]) > int(first["SEQUENCE"])


def test_the_same_inputs_give_the_same_bytes() -> None:
    assert build() == build()


def test_times_are_written_in_utc_whatever_zone_they_were_given_in() -> None:
    pacific = ZoneInfo("America/Los_Angeles")
    start = datetime(2026, 12, 5, 6, 0, tzinfo=pacific)  # 14:00 UTC
    now = datetime(2026, 12, 1, 1, 30, tzinfo=pacific)  # 09:30 UTC

    ics = build(start=start, end=start + timedelta(hours=2), now=now)

    assert b"DTSTART:20261205T140000Z" in lines(ics)
    assert b"DTEND:20261205T160000Z" in lines(ics)
    assert b"DTSTAMP:20261201T093000Z" in lines(ics)
    assert b"VTIMEZONE" not in ics
    _, event = parse(ics)
    assert event.decoded("DTSTART") == START
    assert event.decoded("DTSTART").utcoffset() == timedelta(0)


def test_a_confirmed_invitation_has_status_confirmed_and_is_transparent() -> None:
    _, event = parse(build())

    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["TRANSP"]) == "TRANSPARENT"
    assert str(event["SUMMARY"]) == "Tree closure: downtime 7"
    assert str(event["DESCRIPTION"]) == "Trees closed for a database upgrade (bug 1234567)."


def test_a_cancellation_has_method_cancel_and_status_cancelled() -> None:
    calendar, event = parse(build(sequence=2, status="CANCELLED", method="CANCEL"))

    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert int(event["SEQUENCE"]) == 2
    assert str(event["UID"]) == UID


@pytest.mark.parametrize(("status", "method"), [("CANCELLED", "REQUEST"), ("CONFIRMED", "CANCEL")])
def test_a_method_that_does_not_match_the_status_is_refused(status: str, method: str) -> None:
    with pytest.raises(ValueError, match="does not go with"):
        build(status=status, method=method)


def test_the_organizer_and_attendees_are_mailto_addresses_with_names() -> None:
    _, event = parse(build(attendees=("dev-planning@lists.example.org", "Sheriffs <sheriffs@example.org>")))

    assert str(event["ORGANIZER"]) == "mailto:downtimebot@example.org"
    assert event["ORGANIZER"].params["CN"] == "Downtime bot"
    attendees = event["ATTENDEE"]
    assert [str(a) for a in attendees] == ["mailto:dev-planning@lists.example.org", "mailto:sheriffs@example.org"]
    assert attendees[1].params["CN"] == "Sheriffs"
    assert attendees[0].params["RSVP"] == "FALSE"


def test_without_attendees_there_is_no_attendee_line() -> None:
    assert b"ATTENDEE" not in build()


def test_a_url_is_included_when_given() -> None:
    _, event = parse(build(url="https://downtimebot.example/downtime/7"))

    assert str(event["URL"]) == "https://downtimebot.example/downtime/7"


def test_long_and_multi_line_text_is_folded_and_escaped() -> None:
    description = "Bugs: " + ", ".join(f"bug {n} — überarbeitet" for n in range(1000000, 1000020)) + "\nsecond line"

    ics = build(description=description)

    assert all(len(line) <= 75 for line in lines(ics))
    assert b"\\n" in ics  # the newline is escaped, not a new content line
    _, event = parse(ics)
    assert str(event["DESCRIPTION"]) == description


@pytest.mark.parametrize(
    "changes",
    [
        {"start": datetime(2026, 12, 5, 14, 0)},
        {"now": datetime(2026, 12, 1, 9, 30)},
        {"end": START},
        {"end": START - timedelta(hours=1)},
        {"sequence": -1},
        {"uid": "downtime-7\r\nSTATUS:CANCELLED"},
        {"organizer": "not an address"},
        {"method": "PUBLISHX"},
    ],
    ids=["naive-start", "naive-now", "empty", "backwards", "negative-sequence", "multi-line-uid",
         "bad-organizer", "unknown-method"],
)
def test_bad_arguments_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build(**changes)
