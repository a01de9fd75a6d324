"""The JSON API of a real bot core: /api/v1/… (Treestatus's {"result": …}) and Statuspage's
/api/v2/scheduled-maintenances/…; script downtimes in chat, then read what the API says."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.web.conftest import WebChat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
SCRIPT = "<script>alert(1)</script>"


def propose(web: WebChat, when: str = "2026-12-05 14:00 UTC", bug: int = 100, wording: str = "Upgrade hg") -> None:
    web.say("alice", f"!downtime propose {when} for 2h bug {bug} -- {wording}")


def announce(web: WebChat, n: int, when: str = "2026-12-05 14:00 UTC", bug: int = 100, wording: str = "Upgrade hg") -> None:
    propose(web, when, bug, wording)
    web.say("carol", f"!downtime approve {n}")
    web.say("carol", f"!downtime announce {n}")


def start(web: WebChat, n: int, at: dt.datetime) -> None:
    web.clock.set(at)
    web.say("carol", f"!downtime start {n}")


def result(web: WebChat, path: str) -> Any:
    reply = web.get(path)
    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"] == "application/json"
    return reply.json()


def ids(web: WebChat, path: str) -> list[int]:
    return [d["id"] for d in result(web, path)["result"]]


# ----- /api/v1/downtimes ------------------------------------------------------------------------


def test_the_list_is_wrapped_in_result_with_the_page_counts(web: WebChat) -> None:
    announce(web, 1)
    announce(web, 2, "2026-12-08 14:00 UTC", bug=200)
    answer = result(web, "/api/v1/downtimes")
    assert [d["id"] for d in answer["result"]] == [2, 1]  # the latest start first
    assert (answer["page"], answer["pages"], answer["total"], answer["page_size"]) == (1, 1, 2, 50)


def test_each_downtime_says_its_times_in_utc_and_its_bugs_as_a_channel_is_told(web: WebChat) -> None:
    announce(web, 1, "2026-12-05 06:00 America/Los_Angeles", wording=f"Upgrade hg {SCRIPT}")
    web.say("carol", "!downtime bug add 1 200 --security -- Rotate the leaked signing key")
    web.say("carol", "!downtime approve 1")
    (d,) = result(web, "/api/v1/downtimes")["result"]
    assert d["state"] == "announced" and d["summary"] == f"Upgrade hg {SCRIPT}"
    assert (d["start"], d["end"], d["started"], d["ended"]) == ("2026-12-05T14:00:00Z", "2026-12-05T16:00:00Z", None, None)
    assert d["trees"] == ["autoland", "mozilla-central", "mozilla-beta", "try"] and d["systems"] == []
    assert d["bugs"] == [
        {"number": 100, "status": "approved", "text": f"Upgrade hg {SCRIPT}", "restricted": False, "note": None},
        {"number": 200, "status": "approved", "text": None, "restricted": True, "note": None},
    ]
    assert d["url"] == "/downtimes/1"
    assert b"leaked" not in web.get("/api/v1/downtimes").body + web.get("/api/v1/downtimes/1").body


def test_state_chooses_one_or_several_states(web: WebChat) -> None:
    announce(web, 1)
    announce(web, 2, "2026-12-08 14:00 UTC", bug=200)
    announce(web, 3, "2026-12-10 14:00 UTC", bug=300)
    web.say("carol", "!downtime cancel 3 -- not needed")
    start(web, 1, dt.datetime(2026, 12, 5, 13, 58, tzinfo=UTC))
    assert ids(web, "/api/v1/downtimes?state=announced") == [2]
    assert ids(web, "/api/v1/downtimes?state=in_progress,cancelled") == [3, 1]
    assert ids(web, "/api/v1/downtimes?state=in_progress&state=announced") == [2, 1]
    assert ids(web, "/api/v1/downtimes?state=proposed") == []
    assert ids(web, "/api/v1/downtimes?state=") == [3, 2, 1]  # an empty value is no value


def test_from_and_to_choose_the_downtimes_overlapping_them(web: WebChat) -> None:
    announce(web, 1)  # 2026-12-05 14:00-16:00
    announce(web, 2, "2026-12-08 14:00 UTC", bug=200)
    assert ids(web, "/api/v1/downtimes?from=2026-12-06") == [2]
    assert ids(web, "/api/v1/downtimes?to=2026-12-05") == [1]  # a date as `to`: until the end of that day
    assert ids(web, "/api/v1/downtimes?from=2026-12-05T15:59:00Z&to=2026-12-08T14:00:00Z") == [1]
    assert ids(web, "/api/v1/downtimes?from=2026-12-05T17:00:00%2B01:00") == [2]  # 16:00 UTC: #1 is over
    assert ids(web, "/api/v1/downtimes?from=2026-12-05&to=2026-12-08") == [2, 1]


def test_pages_split_the_list(web: WebChat) -> None:
    for n, day in enumerate(("05", "08", "10"), start=1):
        announce(web, n, f"2026-12-{day} 14:00 UTC", bug=100 * n)
    second = result(web, "/api/v1/downtimes?page=2&page_size=2")
    assert [d["id"] for d in second["result"]] == [1]
    assert (second["page"], second["pages"], second["total"], second["page_size"]) == (2, 2, 3, 2)
    assert result(web, "/api/v1/downtimes?page=3&page_size=2")["result"] == []


@pytest.mark.parametrize(("query", "parameter"), [
    ("state=bogus", "state"),
    ("state=announced,Bogus", "state"),
    ("from=yesterday", "from"),
    ("from=2026-13-01", "from"),
    ("from=2026-02-30T10:00:00Z", "from"),
    ("to=2026-12-05T14:00:00", "to"),  # no zone
    ("to=2026-12-05T14:00:00%2B25:00", "to"),
    ("from=2026-12-06&to=2026-12-05", "to"),
    ("from=2026-12-05T14:00:00Z&to=2026-12-05T14:00:00Z", "to"),
    ("page=0", "page"),
    ("page=two", "page"),
    ("page=1&page=2", "page"),
    ("page=%D9%A3", "page"),  # an Arabic-Indic three: not an ASCII digit
    ("page_size=101", "page_size"),
    ("from=" + "2" * 300, "from"),
])
def test_a_bad_value_is_a_400_problem_naming_the_parameter(web: WebChat, query: str, parameter: str) -> None:
    reply = web.get(f"/api/v1/downtimes?{query}")
    assert reply.status == 400
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["status"] == 400 and problem["parameter"] == parameter
    assert problem["title"] == f"Bad value of {parameter}" and problem["detail"]


def test_an_unknown_parameter_is_ignored(web: WebChat) -> None:
    announce(web, 1)
    assert ids(web, "/api/v1/downtimes?_=1733050000&sort=nothing") == [1]


# ----- /api/v1/downtimes/<id> -------------------------------------------------------------------


def test_one_downtime_has_its_public_history(web: WebChat) -> None:
    announce(web, 1)
    web.say("carol", "!downtime extend 1 30m")
    answer = result(web, "/api/v1/downtimes/1")["result"]
    assert answer["id"] == 1 and answer["end"] == "2026-12-05T16:30:00Z"
    history = answer["history"]
    assert [h["action"] for h in history] == ["propose", "announce", "extend"]  # the review is not public
    assert history[2] == {"at": "2026-12-01T10:00:00Z", "action": "extend", "from": "announced", "to": "announced",
                          "detail": "end 16:00 → 16:30 UTC"}
    assert history[0]["detail"] == ""  # the first wording may never have been announced


def test_an_objection_overridden_by_a_forced_announcement_stays_private(web: WebChat) -> None:
    propose(web)
    web.say("carol", "!downtime approve 1")
    web.say("pat", "!downtime object 1 -- the release is that day")
    web.say("carol", "!downtime announce 1 --force -- chemspill fix must land")
    answer = web.get("/api/v1/downtimes/1")
    announced = [h for h in answer.json()["result"]["history"] if h["action"] == "announce"]
    assert announced == [{"at": "2026-12-01T10:00:00Z", "action": "announce", "from": "approved", "to": "announced",
                          "detail": ""}]
    assert b"the release is that day" not in answer.body + web.get("/feed.atom").body


def test_missing_non_public_and_malformed_ids_are_the_same_404(web: WebChat) -> None:
    propose(web)  # 1: proposed
    propose(web, "2026-12-06 14:00 UTC", bug=200)
    web.say("alice", "!downtime cancel 2 -- not needed")  # 2: cancelled before its announcement
    announce(web, 3, "2026-12-08 14:00 UTC", bug=300)
    answers = [web.get(f"/api/v1/downtimes/{i}") for i in ("1", "2", "99", "abc", "1e3", "%D9%A3", "9" * 40)]
    assert {(r.status, r.text) for r in answers} == {(404, answers[0].text)}
    assert answers[0].json()["title"] == "Not found"
    assert web.get("/api/v1/downtimes/3").status == 200


def test_a_downtime_cancelled_after_its_announcement_stays_public(web: WebChat) -> None:
    propose(web)
    propose(web, "2026-12-06 14:00 UTC", bug=200)
    web.say("alice", "!downtime cancel 2 -- not needed")
    announce(web, 3, "2026-12-08 14:00 UTC", bug=300)
    web.say("carol", "!downtime cancel 3 -- done without a closure")
    assert ids(web, "/api/v1/downtimes") == [3]
    assert result(web, "/api/v1/downtimes/3")["result"]["state"] == "cancelled"


# ----- conditional GET and ETags ----------------------------------------------------------------


def test_an_unchanged_answer_is_304_to_either_condition(web: WebChat) -> None:
    announce(web, 1)
    for path in ("/api/v1/downtimes", "/api/v1/downtimes/1", "/api/v1/trees",
                 "/api/v2/scheduled-maintenances/upcoming.json"):
        first = web.get(path)
        assert web.get(path, **{"If-None-Match": first.headers["ETag"]}).status == 304, path
        assert web.get(path, **{"If-Modified-Since": first.headers["Last-Modified"]}).status == 304, path


def test_the_etag_changes_when_and_only_when_a_public_fact_changes(web: WebChat) -> None:
    def etags() -> tuple[str, str]:
        return str(web.get("/api/v1/downtimes").headers["ETag"]), str(web.get("/api/v1/downtimes/1").headers["ETag"])

    announce(web, 1)
    announced = etags()
    propose(web, "2026-12-09 14:00 UTC", bug=200)
    web.say("carol", "!downtime approve 2")
    assert etags() == announced
    web.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    rescheduled = etags()
    assert all(a != b for a, b in zip(rescheduled, announced))
    web.say("carol", "!downtime announce 1")
    again = etags()
    assert all(a != b for a, b in zip(again, rescheduled))
    web.say("carol", "!downtime bug add 1 300 -- Reboot ftp")
    web.say("carol", "!downtime approve 1")
    assert all(a != b for a, b in zip(etags(), again))


# ----- /api/v1/trees ----------------------------------------------------------------------------


def test_trees_are_told_as_treestatus_tells_them_with_the_downtime_that_closed_them(web: WebChat) -> None:
    announce(web, 1)
    before = result(web, "/api/v1/trees")["result"]
    assert set(before) == {"autoland", "mozilla-central", "mozilla-beta", "try"}
    assert before["try"]["status"] == "open" and before["try"]["downtime"] is None
    start(web, 1, dt.datetime(2026, 12, 5, 13, 58, tzinfo=UTC))
    tree = result(web, "/api/v1/trees")["result"]["autoland"]
    assert tree["tree"] == "autoland" and tree["status"] == "closed" and tree["reason"]
    assert tree["downtime"] == 1 and tree["downtime_url"] == "/downtimes/1" and tree["tags"] == ["planned"]


# ----- Statuspage ------------------------------------------------------------------------------


def test_upcoming_and_active_are_in_statuspages_shape(web: WebChat) -> None:
    announce(web, 1)
    propose(web, "2026-12-09 14:00 UTC", bug=200)  # not public: in neither
    upcoming = result(web, "/api/v2/scheduled-maintenances/upcoming.json")
    page = upcoming["page"]
    assert page["name"] == "downtime-bot" and page["time_zone"] == "Etc/UTC" and isinstance(page["id"], str)
    (m,) = upcoming["scheduled_maintenances"]
    assert m["id"] == "1" and m["status"] == "scheduled" and m["impact"] == "maintenance"
    assert (m["scheduled_for"], m["scheduled_until"]) == ("2026-12-05T14:00:00Z", "2026-12-05T16:00:00Z")
    assert m["name"] == "Tree-closing downtime #1: Upgrade hg" and m["shortlink"] == "/downtimes/1"
    assert m["page_id"] == page["id"] and m["resolved_at"] is None and m["components"] == []
    (update,) = m["incident_updates"]
    assert update["status"] == "scheduled" and update["incident_id"] == "1" and update["body"] == "Downtime #1 announced."
    assert result(web, "/api/v2/scheduled-maintenances/active.json")["scheduled_maintenances"] == []

    start(web, 1, dt.datetime(2026, 12, 5, 13, 58, tzinfo=UTC))
    assert result(web, "/api/v2/scheduled-maintenances/upcoming.json")["scheduled_maintenances"] == []
    (m,) = result(web, "/api/v2/scheduled-maintenances/active.json")["scheduled_maintenances"]
    assert m["status"] == "in_progress" and m["started_at"] == "2026-12-05T13:58:00Z"
    assert [u["status"] for u in m["incident_updates"]] == ["in_progress", "scheduled"]  # newest first
