"""The HTML pages (/, /downtimes/<id>, /trees) of a bot whose downtime is scripted in chat."""
from __future__ import annotations

import datetime as dt
import re
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.fakes import FakeClock
from tests.web.conftest import WebChat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
BROWSER = {"Accept": "text/html,application/xhtml+xml"}
SCRIPT = "<script>alert(1)</script>"
PAGES = ("/", "/downtimes/1", "/trees")


def propose(web: WebChat, wording: str = "Upgrade hg.mozilla.org", when: str = "2026-12-05 14:00 UTC",
            bug: int = 123456) -> None:
    out = web.say("alice", f"!downtime propose {when} for 2h bug {bug} -- {wording}")
    assert "proposed" in out[0], out


def announce(web: WebChat, downtime: int = 1) -> None:
    assert "approved" in web.say("carol", f"!downtime approve {downtime}")[0]
    assert any(f"Downtime #{downtime} announced" in line for line in web.say("carol", f"!downtime announce {downtime}"))


def start(web: WebChat, downtime: int = 1) -> None:
    web.clock.set(dt.datetime(2026, 12, 5, 13, 58, 30, tzinfo=UTC))
    assert web.say("carol", f"!downtime start {downtime}")[0] == f"#ci Downtime #{downtime} started; sheriffs notified."


def bars(page: str) -> list[str]:
    """The downtimes drawn on the timeline (one per piece of a bar)."""
    return re.findall(r'<rect class="bar[^"]*" data-downtime="(\d+)"', page)


def section(page: str, name: str) -> str:
    found = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert found, name
    return found.group(1)


def test_a_proposed_downtime_is_nowhere_on_the_pages(web: WebChat) -> None:
    propose(web)
    page = web.get("/").text
    assert bars(page) == []
    assert "Upgrade hg.mozilla.org" not in page
    assert "No downtime is announced." in section(page, "upcoming")
    assert web.get("/downtimes/1").status == 404


def test_an_announced_downtime_is_a_bar_on_the_timeline_and_in_the_upcoming_list(web: WebChat) -> None:
    propose(web)
    announce(web)
    page = web.get("/").text
    assert bars(page) == ["1"]
    assert '<a class="bar-link" href="/downtimes/1">' in page
    assert re.search(r'<text class="bar-label" data-downtime="1"[^>]*>#1 Upgrade hg.mozilla.org</text>', page)
    upcoming = section(page, "upcoming")
    assert '<a href="/downtimes/1">#1</a>' in upcoming and "Upgrade hg.mozilla.org" in upcoming
    assert '<time datetime="2026-12-05T14:00:00Z">2026-12-05 14:00 UTC (06:00 America/Los_Angeles)</time>' in upcoming
    assert "No downtime is in progress." in section(page, "now")
    assert "The trees are open" in section(page, "now")
    detail = web.get("/downtimes/1").text
    assert "Downtime #1: Upgrade hg.mozilla.org" in detail
    assert '<span class="state state-announced" id="state">announced</span>' in detail
    assert "every tree: autoland, mozilla-central, mozilla-beta, try" in detail
    assert re.search(r"<tr data-bug=\"123456\"><td>123456</td><td>approved</td><td>Upgrade hg.mozilla.org</td>", detail)


def test_the_timeline_shades_the_low_impact_times_ciduty_hours_and_blackouts_with_their_labels(
        tmp_path: Path, clock: FakeClock) -> None:
    web = WebChat(make_config(tmp_path, policy={"blackouts": f"2026-12-10 Firefox 147 {SCRIPT}"}), clock)
    try:
        page = web.get("/").text
    finally:
        web.close()
    timeline = section(page, "timeline")
    assert timeline.count('class="day') == 14
    assert 'data-day="2026-12-01"' in timeline and 'data-day="2026-12-14"' in timeline
    assert 'class="low-impact"' in timeline and 'class="ciduty"' in timeline
    assert re.search(r'<text class="blackout-label"[^>]*>Firefox 147 &lt;script&gt;alert\(1\)&lt;/script&gt;</text>',
                     timeline)
    assert 'class="now-line"' in timeline
    assert 'viewBox="0 0 960.0 ' in timeline
    assert "low-impact times</span>" in timeline and "blackout</span>" in timeline  # the legend


def test_a_running_downtime_is_in_the_now_section_with_its_time_left_and_its_closed_trees(web: WebChat) -> None:
    propose(web)
    announce(web)
    start(web)
    now = section(web.get("/").text, "now")
    assert '<p class="running" data-downtime="1">' in now
    assert '<strong class="time-left">2h1m left</strong>' in now  # started 13:58:30, planned end 16:00
    assert "<strong>autoland, mozilla-central, mozilla-beta, try</strong> closed" in now
    assert '(downtime <a href="/downtimes/1">#1</a>)' in now
    detail = web.get("/downtimes/1").text
    assert '<span class="state state-in_progress" id="state">in progress</span>' in detail
    assert "2h1m left" in detail and "<dt>Started</dt>" in detail
    web.clock.set(dt.datetime(2026, 12, 5, 16, 30, 59, tzinfo=UTC))
    assert '<strong class="time-left">overrunning by 30m</strong>' in web.get("/").text
    trees = web.get("/trees").text
    assert re.search(r'<tr data-tree="autoland" class="tree-closed"><td>autoland</td><td>closed</td>.*?'
                     r'<a href="/downtimes/1">downtime #1</a>', trees)


def test_a_finished_downtime_is_among_the_finished_ones_with_its_outcomes(web: WebChat) -> None:
    propose(web)
    web.say("alice", "!downtime bug add 1 654321 -- Move the build database")
    announce(web)
    start(web)
    web.say("carol", "!downtime done 1 123456 landed")
    web.say("carol", "!downtime done 1 654321 rolled-back -- replication lag")
    web.clock.set(dt.datetime(2026, 12, 5, 15, 30, tzinfo=UTC))
    web.say("carol", "!downtime end 1")
    page = web.get("/").text
    finished = section(page, "finished")
    assert '<li class="finished" data-downtime="1"><a href="/downtimes/1">#1</a>' in finished
    assert "for 1h31m: Upgrade hg.mozilla.org" in finished
    assert section(page, "upcoming").count("data-downtime") == 0
    assert "The trees are open" in section(page, "now")
    detail = web.get("/downtimes/1").text
    assert '<p id="outcomes">Outcome: landed: 123456; rolled-back: 654321.</p>' in detail
    assert "Move the build database (replication lag)" in detail
    history = re.findall(r"<td>(propose|add bug|announce|start|done|end)\b", detail)
    assert history[:3] == ["propose", "add bug", "announce"] and history[-1] == "end"
    assert "approve" not in re.findall(r"<td>([a-z ]+?)[ <(]", detail)  # the review is not public
    assert "alice" not in detail and "carol" not in detail  # nor who requested and who reviewed it


def test_a_security_bug_is_told_vaguely_on_the_pages(web: WebChat) -> None:
    propose(web)
    web.say("alice", "!downtime bug add 1 654321 --security -- Patch the secret thing")
    announce(web)
    detail = web.get("/downtimes/1").text
    assert re.search(r'<tr data-bug="654321" class="restricted"><td>654321</td><td>approved</td>'
                     r'<td>security-sensitive work \(details restricted\)</td>', detail)
    for path in PAGES:
        assert "Patch the secret thing" not in web.get(path).text, path


def test_a_wording_with_markup_shows_as_text_on_every_page_and_in_the_timeline(web: WebChat) -> None:
    propose(web, wording=f"Upgrade {SCRIPT}")
    announce(web)
    start(web)  # its trees' reason carries the wording too: /trees shows it
    for path in PAGES:
        page = web.get(path).text
        assert SCRIPT not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
    page = web.get("/").text
    assert re.search(r'<text class="bar-label" data-downtime="1"[^>]*>'
                     r'#1 Upgrade &lt;script&gt;alert\(1\)&lt;/script&gt;</text>', page)
    assert re.search(r"<title>#1 \(in progress\)[^<]*: Upgrade &lt;script&gt;alert\(1\)&lt;/script&gt;</title>", page)
    assert page.count("<script>") == 1  # the page's own local-time script, nothing else


@pytest.mark.parametrize("path", ["/downtimes/99", "/downtimes/abc", "/downtimes/-1", "/downtimes/\uff11",
                                  "/downtimes/1", "/downtimes/" + "9" * 40])
def test_a_missing_malformed_or_not_public_downtime_is_a_404_and_a_browser_gets_a_page(
        web: WebChat, path: str) -> None:
    propose(web)  # #1 exists but is not public
    reply = web.get(path)
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    page = web.get(path, **BROWSER)
    assert page.status == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "Not found" in page.text and "Traceback" not in page.text


def test_a_conditional_get_with_the_etag_is_answered_304(web: WebChat) -> None:
    propose(web)
    announce(web)
    for path in PAGES:
        first = web.get(path)
        assert first.status == 200 and first.headers["ETag"].startswith('"'), path
        again = web.get(path, **{"If-None-Match": first.headers["ETag"]})
        assert again.status == 304 and again.body == b"", path
        assert web.get(path, **{"If-None-Match": '"other"'}).status == 200, path


def test_the_etag_changes_with_a_public_fact_and_not_with_a_new_proposal(web: WebChat) -> None:
    propose(web)
    announce(web)
    before = {path: web.get(path).headers["ETag"] for path in PAGES}
    propose(web, wording="A secret plan", when="2026-12-09 05:00 UTC", bug=222)
    assert {path: web.get(path).headers["ETag"] for path in PAGES} == before
    announce(web, 2)
    after = web.get("/")
    assert after.headers["ETag"] != before["/"]
    assert bars(after.text) == ["1", "2"]


def test_the_last_modified_is_the_last_public_change_and_no_later_than_this_minute(web: WebChat) -> None:
    propose(web)
    announce(web)
    web.clock.set(dt.datetime(2026, 12, 2, 9, 30, 45, tzinfo=UTC))
    for path in PAGES:
        modified = parsedate_to_datetime(web.get(path).headers["Last-Modified"])
        assert modified == dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC), path
    start(web)  # 13:58:30: the trees change, and with them the page's facts
    modified = parsedate_to_datetime(web.get("/").headers["Last-Modified"])
    assert modified == dt.datetime(2026, 12, 5, 13, 58, tzinfo=UTC)  # the minute, not the second after it


def test_every_page_fits_a_phone_and_reads_without_javascript(web: WebChat) -> None:
    propose(web)
    announce(web)
    for path in PAGES:
        page = web.get(path).text
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page, path
        if path != "/trees":  # open trees have no time to show
            assert re.search(r"<time datetime=\"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\">\d", page), path
    timeline = section(web.get("/").text, "timeline")
    assert re.search(r'<svg class="timeline" viewBox="0 0 [\d.]+ [\d.]+"', timeline)
    assert "width=" not in timeline.split("<svg", 1)[1].split(">", 1)[0]  # scales with the page


def test_the_calendar_link_is_webcal_from_the_base_url(tmp_path: Path, clock: FakeClock) -> None:
    web = WebChat(make_config(tmp_path, web={"base_url": "https://downtimes.example.org"}), clock)
    try:
        page = web.get("/").text
    finally:
        web.close()
    assert 'href="webcal://downtimes.example.org/calendar.ics"' in page
    assert 'href="https://downtimes.example.org/feed.atom"' in page
    assert 'href="https://downtimes.example.org/trees"' in page


def test_without_a_base_url_no_page_holds_the_requests_host(web: WebChat) -> None:
    propose(web)
    announce(web)
    for path in PAGES:
        page = web.get(path, Host="evil.example").text
        assert "evil.example" not in page, path
        assert 'href="/calendar.ics" data-webcal="/calendar.ics"' in page, path  # made webcal:// in the browser


def test_a_downtime_cancelled_after_its_announcement_stays_on_the_timeline_marked_cancelled(web: WebChat) -> None:
    propose(web)
    announce(web)
    web.say("carol", "!downtime cancel 1 -- chemspill")
    page = web.get("/").text
    assert re.search(r'<rect class="bar state-cancelled" data-downtime="1"', page)
    assert "#1 Upgrade hg.mozilla.org (cancelled)</text>" in page
    assert section(page, "upcoming").count("data-downtime") == 0
    assert '<span class="state state-cancelled" id="state">cancelled</span>' in web.get("/downtimes/1").text


def test_a_rescheduled_downtime_is_shown_as_to_be_announced_again(web: WebChat) -> None:
    propose(web)
    announce(web)
    web.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    upcoming = section(web.get("/").text, "upcoming")
    assert "rescheduled, to be announced again" in upcoming
    assert '<time datetime="2026-12-06T14:00:00Z">' in upcoming


def test_a_head_request_gets_the_headers_without_the_page(web: WebChat) -> None:
    propose(web)
    announce(web)
    for path in PAGES:
        got = web.get(path)
        head = web.request("HEAD", path)
        assert head.status == 200 and head.body == b"", path
        assert head.headers["ETag"] == got.headers["ETag"], path


def test_with_treestatus_keeping_the_trees_the_pages_say_so(tmp_path: Path, clock: FakeClock) -> None:
    web = WebChat(make_config(tmp_path, trees={"backend": "advisory"}), clock)
    try:
        now = section(web.get("/").text, "now")
        trees = web.get("/trees").text
    finally:
        web.close()
    assert "Treestatus keeps the trees' state" in now and "The trees are open" not in now
    assert "Treestatus keeps the trees' state" in trees
    assert '<tr data-tree="autoland" class="tree-unknown"><td>autoland</td><td>unknown</td>' in trees


def test_a_query_string_is_ignored_and_builds_no_new_page(web: WebChat) -> None:
    propose(web)
    announce(web)
    for path in PAGES:
        first = web.get(path)
        cached = len(web.bot.web.site.cache)  # type: ignore[union-attr]
        for n in range(3):
            assert web.get(f"{path}?junk={n}").headers["ETag"] == first.headers["ETag"], path
        assert len(web.bot.web.site.cache) == cached, path  # type: ignore[union-attr]
