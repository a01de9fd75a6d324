"""/calendar.ics and /feed.atom of a real bot core: script downtimes in chat, read the feeds back
with icalendar and ElementTree."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from adapters.web.feeds import FEED_ENTRIES, VAGUE, EventCache
from tests.conftest import make_config
from tests.fakes import FakeClock
from tests.web.conftest import WebChat

UTC = dt.timezone.utc
ATOM = "{http://www.w3.org/2005/Atom}"
PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h bug 100 -- Upgrade hg.mozilla.org"
SCRIPT = "<script>alert(1)</script> & a, b; c"


def announce(web: WebChat, n: int = 1, propose: str = PROPOSE) -> None:
    web.say("alice", propose)
    web.say("carol", f"!downtime approve {n}")
    web.say("carol", f"!downtime announce {n}")


def events(web: WebChat) -> dict[str, Any]:
    """The VEVENTs of /calendar.ics by UID."""
    reply = web.get("/calendar.ics")
    assert reply.status == 200
    return {str(e["UID"]): e for e in Calendar.from_ical(reply.body).walk("VEVENT")}


def mailed(web: WebChat) -> list[Any]:
    """The VEVENT of each mailed invitation, oldest first."""
    return [Calendar.from_ical(m.ics).walk("VEVENT")[0] for m in web.mailer.sent if m.ics]


def feed(web: WebChat) -> ET.Element:
    reply = web.get("/feed.atom")
    assert reply.status == 200
    return ET.fromstring(reply.body)


def entries(web: WebChat) -> list[ET.Element]:
    return feed(web).findall(f"{ATOM}entry")


def text(element: ET.Element, name: str) -> str:
    found = element.find(f"{ATOM}{name}")
    assert found is not None and found.text is not None, name
    return found.text


def category(entry: ET.Element) -> str | None:
    found = entry.find(f"{ATOM}category")
    return None if found is None else found.get("term")


# ----- /calendar.ics ----------------------------------------------------------------------------


def test_the_calendar_is_a_published_feed_refreshed_hourly(web: WebChat) -> None:
    announce(web)
    reply = web.get("/calendar.ics")
    assert reply.headers["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(reply.body)
    assert str(calendar["METHOD"]) == "PUBLISH"
    assert str(calendar["NAME"]) == str(calendar["X-WR-CALNAME"]) == "downtime-bot: tree-closing downtimes"
    assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n" in reply.body
    assert b"\r\nX-PUBLISHED-TTL:PT1H\r\n" in reply.body


def test_each_public_downtime_has_the_uid_and_sequence_of_its_mailed_invitation(web: WebChat) -> None:
    announce(web)
    (invitation,) = mailed(web)
    (uid, event), = events(web).items()
    assert uid == str(invitation["UID"]) and uid.startswith("downtime-1.")
    assert int(event["SEQUENCE"]) == int(invitation["SEQUENCE"])
    assert str(event["STATUS"]) == "CONFIRMED"
    assert event["DTSTART"].dt == dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
    assert event["DTEND"].dt == dt.datetime(2026, 12, 5, 16, 0, tzinfo=UTC)


def test_the_sequence_rises_on_a_reschedule_as_the_mailed_update_does(web: WebChat) -> None:
    announce(web)
    (before,) = events(web).values()
    web.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    web.say("carol", "!downtime announce 1")
    (after,) = events(web).values()
    assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])
    assert int(after["SEQUENCE"]) == int(mailed(web)[-1]["SEQUENCE"])
    assert after["DTSTART"].dt == dt.datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


def test_a_downtime_cancelled_after_its_announcement_stays_marked_cancelled(web: WebChat) -> None:
    announce(web)
    web.say("carol", "!downtime cancel 1 -- the hg servers are fine")
    (event,) = events(web).values()
    cancellation = mailed(web)[-1]
    assert str(cancellation["STATUS"]) == str(event["STATUS"]) == "CANCELLED"
    # At least the cancellation's SEQUENCE, or a calendar holding the invitations ignores it.
    assert int(event["SEQUENCE"]) == int(cancellation["SEQUENCE"])


def test_downtimes_never_announced_are_in_no_feed(web: WebChat) -> None:
    web.say("alice", PROPOSE)  # 1: proposed
    web.say("alice", "!downtime propose 2026-12-06 14:00 UTC for 2h -- Withdrawn")
    web.say("alice", "!downtime cancel 2 -- not needed")  # 2: cancelled before its announcement
    web.say("alice", "!downtime propose 2026-12-07 14:00 UTC for 2h -- Approved only")
    web.say("carol", "!downtime approve 3")  # 3: approved
    assert events(web) == {}
    assert entries(web) == []
    assert b"Withdrawn" not in web.get("/feed.atom").body + web.get("/calendar.ics").body


def test_the_wording_is_plain_text_in_the_calendar(web: WebChat) -> None:
    announce(web, propose=f"!downtime propose 2026-12-05 14:00 UTC for 2h bug 100 -- {SCRIPT}")
    reply = web.get("/calendar.ics")
    assert b"alert(1)</script> & a\\, b\\; c" in reply.body  # RFC 5545 escaping: commas and semicolons only
    (event,) = Calendar.from_ical(reply.body).walk("VEVENT")
    assert str(event["SUMMARY"]) == f"Tree-closing downtime #1: {SCRIPT}"
    assert str(event["DESCRIPTION"]).startswith(SCRIPT + "\n")


def test_a_security_bug_is_told_vaguely_in_the_calendar_and_the_feed(web: WebChat) -> None:
    announce(web)
    web.say("carol", "!downtime bug add 1 200 --security -- Rotate the leaked signing key")
    web.say("carol", "!downtime approve 1")
    calendar, atom = web.get("/calendar.ics"), web.get("/feed.atom")
    assert b"leaked" not in calendar.body and b"leaked" not in atom.body
    (event,) = Calendar.from_ical(calendar.body).walk("VEVENT")
    assert f"- Bug 200 [approved]: {VAGUE}" in str(event["DESCRIPTION"])
    assert f"- Bug 100 [approved]: Upgrade hg.mozilla.org" in str(event["DESCRIPTION"])
    assert any(f"Bug 200 [approved]: {VAGUE}" in text(e, "content") for e in entries(web))


def test_each_event_links_to_its_page_when_base_url_is_set(tmp_path: Path, clock: FakeClock) -> None:
    harness = WebChat(make_config(tmp_path, web={"base_url": "https://downtimes.example.org"}), clock)
    try:
        announce(harness)
        (event,) = events(harness).values()
        assert str(event["URL"]) == "https://downtimes.example.org/downtimes/1"
        assert str(event["DESCRIPTION"]).endswith("\n\nhttps://downtimes.example.org/downtimes/1")
        link = feed(harness).find(f"{ATOM}link[@rel='self']")
        assert link is not None and link.get("href") == "https://downtimes.example.org/feed.atom"
    finally:
        harness.close()


def test_the_calendar_leaves_out_downtimes_that_ended_over_90_days_ago(web: WebChat) -> None:
    announce(web)
    web.clock.set(dt.datetime(2026, 12, 5, 13, 58, tzinfo=UTC))
    web.say("carol", "!downtime start 1")
    web.say("carol", "!downtime end 1")
    web.clock.set(dt.datetime(2027, 3, 1, tzinfo=UTC))
    assert len(events(web)) == 1
    web.clock.set(dt.datetime(2027, 3, 10, tzinfo=UTC))
    assert events(web) == {}


def test_an_unchanged_calendar_answers_304_to_either_condition(web: WebChat) -> None:
    announce(web)
    first = web.get("/calendar.ics")
    again = web.get("/calendar.ics", **{"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    since = web.get("/calendar.ics", **{"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status == 304
    web.say("carol", "!downtime extend 1 1h")
    changed = web.get("/calendar.ics", **{"If-None-Match": first.headers["ETag"]})
    assert changed.status == 200 and changed.headers["ETag"] != first.headers["ETag"]


@pytest.mark.parametrize("path", ["/calendar.ics", "/feed.atom"])
def test_the_etag_changes_when_and_only_when_a_public_fact_changes(web: WebChat, path: str) -> None:
    def etag() -> str:
        return str(web.get(path).headers["ETag"])

    announce(web)
    announced = etag()
    web.say("alice", "!downtime propose 2026-12-09 14:00 UTC for 2h -- Not public yet")
    web.say("alice", "!downtime bug add 2 300 -- Still not public")
    assert etag() == announced
    web.say("carol", "!downtime approve 2")
    web.say("carol", "!downtime announce 2")
    second = etag()
    assert second != announced
    web.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    rescheduled = etag()
    assert rescheduled != second
    web.say("carol", "!downtime bug add 2 400 -- Reboot ftp")
    web.say("carol", "!downtime approve 2")
    assert etag() != rescheduled


# ----- /feed.atom -------------------------------------------------------------------------------


def test_the_feed_tells_announcements_changes_starts_ends_and_cancellations_newest_first(web: WebChat) -> None:
    announce(web)
    web.say("carol", "!downtime extend 1 30m")
    web.say("alice", "!downtime propose 2026-12-08 14:00 UTC for 1h bug 200 -- Move the build database")
    web.say("carol", "!downtime approve 2")
    web.say("carol", "!downtime announce 2")
    web.say("carol", "!downtime cancel 2 -- done without a closure")
    web.clock.set(dt.datetime(2026, 12, 5, 13, 58, tzinfo=UTC))
    web.say("carol", "!downtime start 1")
    web.say("carol", "!downtime end 1")
    reply = web.get("/feed.atom")
    assert reply.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    root = ET.fromstring(reply.body)
    assert root.tag == f"{ATOM}feed" and text(root, "updated") == "2026-12-05T13:58:00Z"
    found = root.findall(f"{ATOM}entry")
    titles = [text(e, "title") for e in found]
    assert titles == [
        "Downtime #1 ended: Upgrade hg.mozilla.org",
        "Downtime #1 started: Upgrade hg.mozilla.org",
        "Downtime #2 cancelled: Move the build database",
        "Downtime #2 announced: Move the build database",
        "Downtime #1 extended: Upgrade hg.mozilla.org",
        "Downtime #1 announced: Upgrade hg.mozilla.org",
    ]
    assert text(found[2], "content").startswith("Downtime #2 cancelled: done without a closure\n\n")
    ids = [text(e, "id") for e in found]
    assert len(set(ids)) == len(ids) and all(i.startswith("tag:") for i in ids)
    link = found[0].find(f"{ATOM}link")
    assert link is not None and link.get("href") == "/downtimes/1"
    assert text(found[0], "updated") == "2026-12-05T13:58:00Z"


def test_an_entry_keeps_its_id_when_newer_ones_come(web: WebChat) -> None:
    announce(web)
    (first,) = entries(web)
    web.say("carol", "!downtime extend 1 30m")
    later = entries(web)
    assert len(later) == 2 and text(later[1], "id") == text(first, "id")


def test_markup_in_a_wording_is_escaped_text_in_the_feed(web: WebChat) -> None:
    announce(web, propose=f"!downtime propose 2026-12-05 14:00 UTC for 2h bug 100 -- {SCRIPT}")
    body = web.get("/feed.atom").body
    assert b"<script>" not in body and b"&lt;script&gt;alert(1)&lt;/script&gt; &amp; a, b; c" in body
    (entry,) = ET.fromstring(body).findall(f"{ATOM}entry")
    assert text(entry, "title") == f"Downtime #1 announced: {SCRIPT}"
    assert f"\n\n{SCRIPT}\n" in text(entry, "content")


def test_what_happened_before_the_announcement_is_not_in_the_feed(web: WebChat) -> None:
    web.say("alice", PROPOSE)
    web.say("alice", "!downtime bug add 1 200 -- Move the build database")
    web.say("alice", "!downtime edit 1 -- Upgrade hg.mozilla.org and the build database")
    web.say("carol", "!downtime approve 1")
    web.say("carol", "!downtime announce 1")
    assert [category(e) for e in entries(web)] == ["announce"]


@pytest.fixture
def unlimited(tmp_path: Path, clock: FakeClock) -> Iterator[WebChat]:
    harness = WebChat(make_config(tmp_path, bot={"rate_limit": "off"}), clock)
    yield harness
    harness.close()


def test_the_feed_holds_the_latest_entries_only(unlimited: WebChat) -> None:
    announce(unlimited)
    for n in range(FEED_ENTRIES + 2):
        unlimited.say("carol", f"!downtime edit 1 -- Upgrade hg.mozilla.org, take {n}")
    found = entries(unlimited)
    assert len(found) == FEED_ENTRIES
    assert text(found[0], "title") == f"Downtime #1 notice edited: Upgrade hg.mozilla.org, take {FEED_ENTRIES + 1}"


def test_an_empty_feed_is_still_a_valid_atom_feed(web: WebChat) -> None:
    root = feed(web)
    assert root.findall(f"{ATOM}entry") == []
    assert text(root, "id").startswith("tag:") and text(root, "updated") and text(root, "title")


def test_the_event_cache_writes_each_event_once_and_keeps_the_latest_few() -> None:
    made: list[str] = []

    def make(key: str) -> bytes:
        made.append(key)
        return key.encode()

    cache = EventCache(size=2)
    assert [cache.get(k, lambda k=k: make(k)) for k in ("a", "b", "a", "c", "b")] == [b"a", b"b", b"a", b"c", b"b"]
    assert made == ["a", "b", "c", "b"]  # "b" was the least recently used when "c" came
    assert len(cache) == 2


def test_one_downtime_can_be_added_to_a_calendar_as_the_same_event_as_in_the_feed(web: WebChat) -> None:
    web.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    web.say("carol", "!downtime approve 1")
    web.say("carol", "!downtime announce 1")
    web.say("alice", "!downtime propose 2026-12-09 14:00 UTC for 2h bug 7 -- Not announced")
    one = web.get("/downtimes/1.ics")
    assert one.status == 200 and one.headers["Content-Type"].startswith("text/calendar")
    [event] = Calendar.from_ical(one.body).walk("VEVENT")
    [same] = [e for e in Calendar.from_ical(web.get("/calendar.ics").body).walk("VEVENT")]
    assert (str(event["UID"]), int(event["SEQUENCE"])) == (str(same["UID"]), int(same["SEQUENCE"]))
    assert "Upgrade hg.mozilla.org" in str(event["SUMMARY"])
    assert 'href="/downtimes/1.ics"' in web.get("/downtimes/1").text
    for missing in ("/downtimes/2.ics", "/downtimes/99.ics", "/downtimes/x.ics", "/downtimes/%D9%A1.ics"):
        reply = web.get(missing)
        assert reply.status == 404 and reply.headers["Content-Type"].startswith("application/problem+json"), missing
