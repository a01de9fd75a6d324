"""The answer cache is kept until something public changes (adapters/web/changes.py), never longer:
after every step of a whole process, each cached answer is the one a fresh build gives, and a
step that changes nothing public builds nothing again."""
from __future__ import annotations

import datetime as dt

from pathlib import Path

import pytest
from sqlalchemy import select

from models.orm import DowntimeBug
from tests.conftest import make_config
from tests.fakes import FakeClock
from tests.web.conftest import WebChat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

PATHS = (
    "/", "/trees", "/downtimes/1", "/downtimes/2", "/downtimes/3", "/downtimes/1.ics", "/calendar.ics",
    "/feed.atom", "/api/v1/downtimes", "/api/v1/downtimes?state=announced", "/api/v1/downtimes/1",
    "/api/v1/trees", "/api/v2/scheduled-maintenances/upcoming.json", "/api/v2/scheduled-maintenances/active.json",
)
# (who, line, room): a whole process, with what is public and what is not mixed in.
STEPS = [
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org", "#ci"),
    ("carol", "!downtime approve 1", "#ci"),
    ("alice", "!downtime confirm 1", "#ci"),
    ("pat", "!downtime preapprove 1", "#ci"),
    ("carol", "!downtime announce 1", "#ci"),
    ("bob", "!downtime propose 2026-12-08 14:00 UTC for 1h bug 777 -- Rotate keys", "#ci"),
    ("alice", "!downtime bug add 1 654321 --security -- the secret fix", "#ci"),
    ("carol", "!downtime approve 1", "#ci"),
    ("carol", "!downtime bug add 1 999", "#ci"),  # no words of its own: Bugzilla's summary, once known
    ("carol", "!downtime approve 1", "#ci"),
    ("carol", "!downtime edit 1 -- Upgrade hg.mozilla.org to 6.9", "#ci"),
    ("pat", "!downtime object 1 -- too close to the release", "#ci"),
    ("pat", "!downtime preapprove 1", "#ci"),
    ("carol", "!downtime reschedule 1 2026-12-05 15:00 UTC", "#ci"),
    ("carol", "!downtime announce 1", "#ci"),
    ("sam", "!trees close try -- infra trouble", "#ci"),
    ("sam", "!trees open try", "#ci"),
    ("carol", "!downtime approve 2", "#ci"),
    ("carol", "!downtime announce 2", "#ci"),
    ("carol", "!downtime start 1 --force", "#ci"),
    ("carol", "!downtime done 1 123456 landed", "#ci"),
    ("carol", "!downtime extend 1 1h", "#ci"),
    ("carol", "!downtime end 1", "#ci"),
    ("sam", "!downtime verify 1", "#developers"),
    ("carol", "!downtime cancel 2 -- not needed after all", "#ci"),
    ("alice", "!downtime propose 2026-12-10 05:00 UTC for 1h bug 888 -- Never announced", "#ci"),
    ("carol", "!downtime cancel 3 -- withdrawn", "#ci"),
]


def test_every_cached_answer_is_the_fresh_one_after_every_step_of_a_whole_process(web: WebChat) -> None:
    assert web.bot.web is not None
    cache = web.bot.web.site.cache
    for who, line, room in STEPS + [("bugzilla", "(a Bugzilla look-up fills in a summary)", "")]:
        if who == "bugzilla":  # as adapters/bugzilla_jobs.py does in the background
            with web.bot.sessions() as session, session.begin():
                row = session.scalars(select(DowntimeBug).where(DowntimeBug.bug == 999)).one()
                assert not row.wording and not row.summary
                row.summary, row.assignee = "Move the build symbols to the new store", "dev@example.org"
        else:
            web.say(who, line, room=room)
        # (the clock stands still: the pages of the minute are kept by the change count alone)
        served = {path: web.get(path).body for path in PATHS}  # from the cache where it holds them
        assert len(cache) > 0
        cache._answers.clear()
        for path in PATHS:
            assert served[path] == web.get(path).body, f"{path} was stale after {line!r}"
    assert b"Move the build symbols to the new store" in web.get("/downtimes/1").body


def test_a_downtime_that_stops_being_public_leaves_every_cached_answer(tmp_path: Path, clock: FakeClock) -> None:
    """With approved downtimes public and cancelled ones not, cancelling an approved downtime
    takes it off the site: the change is public although the downtime is not, after it."""
    web = WebChat(make_config(tmp_path, web={"public_states": "approved, announced"}), clock)
    try:
        web.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
        web.say("carol", "!downtime approve 1")
        assert web.get("/downtimes/1").status == 200 and b"Upgrade hg" in web.get("/calendar.ics").body
        web.say("carol", "!downtime cancel 1 -- not needed")
        assert web.get("/downtimes/1").status == 404
        assert b"Upgrade hg" not in web.get("/calendar.ics").body
        assert web.get("/api/v1/downtimes").json()["total"] == 0
    finally:
        web.close()


def test_a_step_that_changes_nothing_public_builds_nothing_again(web: WebChat) -> None:
    assert web.bot.web is not None
    cache = web.bot.web.site.cache
    web.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    web.say("carol", "!downtime approve 1")
    web.say("carol", "!downtime announce 1")
    shown = [path for path in PATHS if web.get(path).status == 200]  # (a 404 is not kept)
    assert "/downtimes/1" in shown and "/calendar.ics" in shown
    built = cache.misses
    commits = web.bot.commits()
    web.say("bob", "!downtime propose 2026-12-08 14:00 UTC for 1h bug 777 -- Rotate keys")  # not public
    web.say("carol", "!downtime approve 2")  # still not public
    web.say("bob", "!downtime confirm 2")
    assert web.bot.commits() > commits  # the database did change
    for path in shown:
        assert web.get(path).status == 200
    assert cache.misses == built  # ... but nothing public: every answer came from the cache
    web.say("carol", "!downtime announce 2")  # now it is public
    web.get("/calendar.ics")
    assert cache.misses == built + 1
