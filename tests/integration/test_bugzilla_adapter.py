"""The Bugzilla adapter, through the real python-bugzilla, against a local BMO-like server."""
from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest
import requests

from adapters.bugzilla import BugzillaClient, whiteboard_with_tag, whiteboard_without_tag
from models.ports import BugInfo, BugNotVisible, BugzillaError, BugzillaUnavailable, FlagDenied, InvalidApiKey
from tests.fakes import FakeBugzilla
from tests.servers.bugzilla import BugzillaServer

pytestmark = pytest.mark.integration

KEY = "s3cret-bot-key-0123456789"
BOT = "downtime-bot@example.org"
FLAG = "needs-treeclosure"


@pytest.fixture
def server() -> Iterator[BugzillaServer]:
    with BugzillaServer() as srv:
        srv.add_account(BOT, KEY)
        srv.add_account("sheriff@example.org", "sheriff-key", groups=["infra"])
        yield srv


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(server: BugzillaServer, sleeps: Sleeps) -> BugzillaClient:
    return BugzillaClient(server.url, KEY, flag=FLAG, timeout=5, sleep=sleeps)


def bug_requests(server: BugzillaServer) -> list[str]:
    """Targets of every request other than python-bugzilla's one-off /rest/version."""
    return [r.target for r in server.requests if r.path != "/rest/version"]


def test_reads_a_bug_with_its_flags_assignee_and_whiteboard(server, client):
    server.add_bug(101, "Move the build masters", "alice@example.org",
                   whiteboard="[infra]", flags=[(FLAG, "?")])

    bug = client.get_bugs([101])[101]

    assert bug == BugInfo(101, "Move the build masters", "alice@example.org", "NEW", "",
                          "[infra]", ((FLAG, "?"),), ())
    assert bug.flag_status(FLAG) == "?" and not bug.unassigned and not bug.restricted


def test_reads_twenty_bugs_in_one_request(server, client):
    for n in range(1, 21):
        server.add_bug(100 + n, f"bug {n}", "alice@example.org")

    bugs = client.get_bugs([100 + n for n in range(1, 21)])

    assert sorted(bugs) == [100 + n for n in range(1, 21)]
    assert all(bug is not None for bug in bugs.values())
    assert len(bug_requests(server)) == 1


def test_reads_thousands_of_bugs_in_requests_under_8_kib(server, client):
    ids = list(range(1_000_000, 1_002_000))
    for bug_id in ids[:5]:
        server.add_bug(bug_id, "old bug", "alice@example.org")

    bugs = client.get_bugs(ids)

    assert len(bugs) == 2000 and sum(b is not None for b in bugs.values()) == 5
    targets = bug_requests(server)
    assert 1 < len(targets) < 10
    assert all(len(t) <= 8192 for t in targets)


def test_a_request_target_over_8_kib_gets_a_plain_414(server):
    response = requests.get(server.url + "/rest/bug", params={"id": ",".join(["1234567"] * 1200)})

    assert response.status_code == 414
    assert response.headers["Content-Type"] == "text/plain"


def test_search_finds_open_nominated_bugs_in_one_request_without_restricted_ones(server, client):
    server.add_bug(1, "nominated", "alice@example.org", flags=[(FLAG, "?")])
    server.add_bug(2, "already approved", "alice@example.org", flags=[(FLAG, "+")])
    server.add_bug(3, "fixed", "alice@example.org", status="RESOLVED", resolution="FIXED",
                   flags=[(FLAG, "?")])
    server.add_bug(4, "security", "alice@example.org", flags=[(FLAG, "?")], groups=["infra"])
    server.add_bug(5, "other flag", "alice@example.org", flags=[("x-" + FLAG, "?")])
    server.add_bug(6, "also nominated", "nobody@mozilla.org", flags=[(FLAG, "?")])

    found = client.search_nominated()

    assert [b.id for b in found] == [1, 6]
    assert found[1].unassigned
    assert len(bug_requests(server)) == 1


def test_server_search_understands_bmos_f1_o1_v1_form_as_well(server):
    server.add_bug(1, "nominated", "alice@example.org", flags=[(FLAG, "?")])
    server.add_bug(2, "approved", "alice@example.org", flags=[(FLAG, "+")])

    found = requests.get(server.url + "/rest/bug", params={
        "f1": "flagtypes.name", "o1": "equals", "v1": f"{FLAG}?", "resolution": "---",
        "include_fields": "id,flags"}, headers={"X-BUGZILLA-API-KEY": KEY}).json()

    assert [b["id"] for b in found["bugs"]] == [1]
    assert set(found["bugs"][0]) == {"id", "flags"}


def test_updates_the_flag_on_twenty_bugs_in_one_put(server, client):
    ids = [200 + n for n in range(20)]
    for bug_id in ids:
        server.add_bug(bug_id, "nominated", "alice@example.org", flags=[(FLAG, "?")])
    server.requests.clear()

    client.update(ids, flag_status="+", comment="Approved for the downtime on 2026-12-05.")

    puts = [r for r in server.requests if r.method == "PUT"]
    assert len(puts) == 1 and len(server.requests) == 2  # /rest/version, then the PUT
    assert puts[0].json["ids"] == ids
    assert all(server.bugs[i].flags[0].status == "+" for i in ids)
    assert all(c["text"] == "Approved for the downtime on 2026-12-05."
               for i in ids for c in server.bugs[i].comments)
    assert server.bugs[200].flags[0].setter == BOT


def test_clearing_the_flag_removes_it(server, client):
    server.add_bug(7, "declined", "alice@example.org", flags=[(FLAG, "?")])

    client.update([7], flag_status="X")

    assert client.get_bugs([7])[7].flags == ()


def test_whiteboard_tag_is_replaced_not_duplicated(server, client):
    server.add_bug(8, "a", "alice@example.org",
                   whiteboard="[infra] [tree-closure 2026-11-01 10:00 UTC]")
    server.add_bug(9, "b", "alice@example.org", whiteboard="[tree-closure 2026-11-01 10:00 UTC]")
    tag = "[tree-closure 2026-12-05 14:00 UTC]"

    bug = client.get_bugs([8])[8]
    client.update([8], whiteboard=whiteboard_with_tag(bug.whiteboard, tag))
    client.update([9], whiteboard_tag=tag)
    client.update([9], whiteboard_tag=tag)

    assert server.bugs[8].whiteboard == "[infra] [tree-closure 2026-12-05 14:00 UTC]"
    assert server.bugs[9].whiteboard == tag


def test_whiteboard_tag_on_many_bugs_keeps_each_bugs_own_whiteboard(server, client):
    server.add_bug(1, "a", "alice@example.org", whiteboard="[infra]")
    server.add_bug(2, "b", "alice@example.org")
    server.add_bug(3, "c", "alice@example.org")
    tag = "[tree-closure 2026-12-05 14:00 UTC]"
    server.requests.clear()

    client.update([1, 2, 3], flag_status="+", whiteboard_tag=tag, comment="Approved.")

    assert [server.bugs[i].whiteboard for i in (1, 2, 3)] == [f"[infra] {tag}", tag, tag]
    puts = [r.json for r in server.requests if r.method == "PUT"]
    assert [p["ids"] for p in puts] == [[1], [2, 3], [1, 2, 3]]
    assert [sorted(set(p) - {"ids"}) for p in puts] == [
        ["whiteboard"], ["whiteboard"], ["comment", "flags"]]
    assert all(len(server.bugs[i].comments) == 1 for i in (1, 2, 3))


def test_whiteboard_tag_on_bugs_with_the_same_whiteboard_takes_one_put(server, client):
    server.add_bug(1, "a", "alice@example.org")
    server.add_bug(2, "b", "alice@example.org")
    server.requests.clear()

    client.update([1, 2], flag_status="+", whiteboard_tag="[tree-closure 2026-12-05]")

    assert [r.json["ids"] for r in server.requests if r.method == "PUT"] == [[1, 2]]
    assert server.bugs[2].whiteboard == "[tree-closure 2026-12-05]"


def test_a_missing_bug_reads_as_none(server, client):
    server.add_bug(1, "exists", "alice@example.org")

    assert client.get_bugs([1, 999]) == {1: client.get_bugs([1])[1], 999: None}
    assert client.get_bugs([999]) == {999: None}


def test_a_restricted_bug_reads_as_none_and_a_direct_read_gets_401_code_102(server, client):
    server.add_bug(42, "secret", "alice@example.org", groups=["infra"])

    assert client.get_bugs([42]) == {42: None}
    direct = requests.get(f"{server.url}/rest/bug/42", headers={"X-BUGZILLA-API-KEY": KEY})
    assert direct.status_code == 401 and direct.json()["code"] == 102
    assert requests.get(f"{server.url}/rest/bug/42",
                        headers={"X-BUGZILLA-API-KEY": "sheriff-key"}).status_code == 200


def test_an_update_with_an_unreadable_bug_fails_whole_and_changes_nothing(server, client):
    server.add_bug(1, "public", "alice@example.org", flags=[(FLAG, "?")])
    server.add_bug(42, "secret", "alice@example.org", flags=[(FLAG, "?")], groups=["infra"])

    with pytest.raises(BugNotVisible) as caught:
        client.update([1, 42], flag_status="+")

    assert caught.value.bug_id == 42 and caught.value.reason == "no access"
    assert server.bugs[1].flags[0].status == "?"


def test_an_invalid_api_key_raises_at_once_without_retrying(server, sleeps):
    client = BugzillaClient(server.url, "revoked-key", sleep=sleeps)

    with pytest.raises(InvalidApiKey):
        client.get_bugs([1])

    assert len(server.requests) == 1 and sleeps == []


def test_check_accepts_a_working_key_and_an_existing_flag(server, client):
    server.add_bug(1, "a", "alice@example.org")

    client.check("Infrastructure & Operations")

    assert any(r.path == "/rest/whoami" and r.login == BOT for r in server.requests)


def test_check_rejects_an_invalid_key(server, sleeps):
    with pytest.raises(InvalidApiKey):
        BugzillaClient(server.url, "wrong", sleep=sleeps).check()


def test_check_reports_a_missing_flag_type_and_a_missing_product(server, sleeps):
    server.add_bug(1, "a", "alice@example.org")
    client = BugzillaClient(server.url, KEY, flag="needs-treeclosure-typo", sleep=sleeps)

    with pytest.raises(BugzillaError, match="no active flag 'needs-treeclosure-typo'"):
        client.check("Infrastructure & Operations")
    with pytest.raises(BugzillaError, match="no product 'Nope'"):
        client.check("Nope")


def test_three_server_errors_then_success_succeeds_after_backing_off(server, client, sleeps):
    server.add_bug(1, "a", "alice@example.org")
    server.fail_with(500, count=3)

    assert client.get_bugs([1])[1] is not None

    assert sleeps == [0.5, 1.0, 2.0]
    assert len(server.requests) == 5  # three failures, /rest/version, the read


def test_endless_server_errors_raise_unavailable_after_the_retries(server, client, sleeps):
    server.fail_with(503)

    with pytest.raises(BugzillaUnavailable, match="HTTP 503"):
        client.search_nominated()

    assert len(server.requests) == 4 and len(sleeps) == 3


def test_rate_limiting_honours_retry_after(server, client, sleeps):
    server.add_bug(1, "a", "alice@example.org")
    server.fail_with(429, count=1, retry_after="7")

    client.get_bugs([1])

    assert sleeps == [7.0]


def test_a_retry_after_of_an_hour_fails_at_once_so_the_caller_can_queue(server, client, sleeps):
    server.fail_with(429, retry_after="3600")

    with pytest.raises(BugzillaUnavailable, match="rate-limiting"):
        client.get_bugs([1])

    assert sleeps == [] and len(server.requests) == 1


def test_timeouts_count_as_unavailable(sleeps):
    with BugzillaServer(latency=1.0) as slow:
        client = BugzillaClient(slow.url, None, timeout=0.05, retries=1, sleep=sleeps)
        with pytest.raises(BugzillaUnavailable, match="Timeout"):
            client.get_bugs([1])
    assert len(sleeps) == 1


def test_a_refused_flag_change_names_the_bug(server, client):
    server.add_bug(1, "ok", "alice@example.org", flags=[(FLAG, "?")])
    server.add_bug(2, "guarded", "alice@example.org", flags=[(FLAG, "?")])
    server.deny_flag(FLAG, bug_id=2)

    with pytest.raises(FlagDenied) as caught:
        client.update([1, 2], flag_status="+")

    assert caught.value.bug_ids == (2,) and caught.value.code == 130
    assert "bug 2" in str(caught.value) and "\n" not in str(caught.value)
    assert server.bugs[1].flags[0].status == "?"  # nothing changed


@pytest.mark.parametrize("setup, code", [
    (lambda s: s.add_flag_type(FLAG), 133),
    (lambda s: s.bugs[1].flags.append(s.bugs[1].flags[0].__class__(9, FLAG, "?", BOT)), 132),
])
def test_ambiguous_flags_are_refused(server, client, setup, code):
    server.add_bug(1, "a", "alice@example.org", flags=[(FLAG, "?")])
    setup(server)

    with pytest.raises(FlagDenied) as caught:
        client.update([1], flag_status="+")

    assert caught.value.code == code and caught.value.bug_ids == (1,)


def test_the_api_key_travels_only_in_the_header_and_never_shows(server, client, caplog):
    caplog.set_level(logging.DEBUG)
    server.add_bug(1, "a", "alice@example.org", flags=[(FLAG, "?")])
    server.add_bug(2, "b", "alice@example.org", groups=["infra"])
    server.deny_flag(FLAG, bug_id=1)
    errors: list[BaseException] = []

    client.check("Infrastructure & Operations")
    client.get_bugs([1, 2])
    client.search_nominated()
    client.update([1], whiteboard="x", comment="hello")
    for failing in (lambda: client.update([1], flag_status="+"),
                    lambda: client.update([2], flag_status="+")):
        with pytest.raises(BugzillaError) as caught:
            failing()
        errors.append(caught.value)
    server.fail_with(500)
    with pytest.raises(BugzillaUnavailable) as caught:
        client.get_bugs([1])
    errors.append(caught.value)

    assert all(r.login == BOT for r in server.requests)
    assert not any(KEY in r.target for r in server.requests)
    assert not any(KEY in str(r.headers) for r in server.requests)
    assert caplog.records and not any(KEY in r.getMessage() for r in caplog.records)
    assert not any(KEY in "".join(traceback.format_exception(e)) for e in errors)
    assert KEY not in repr(client)


def test_comments_can_be_read_back_and_posted_directly(server, client):
    server.add_bug(1, "a", "alice@example.org")
    client.update([1], comment="Landed during the downtime.")

    posted = requests.post(f"{server.url}/rest/bug/1/comment", json={"comment": "by hand"},
                           headers={"X-BUGZILLA-API-KEY": KEY})
    comments = requests.get(f"{server.url}/rest/bug/1/comment").json()["bugs"]["1"]["comments"]

    assert posted.status_code == 201 and posted.json()["id"] == comments[1]["id"]
    assert [c["text"] for c in comments] == ["Landed during the downtime.", "by hand"]


def test_writing_without_a_key_says_a_login_is_needed(server, sleeps):
    server.add_bug(1, "a", "alice@example.org")
    client = BugzillaClient(server.url, None, sleep=sleeps)

    assert client.get_bugs([1])[1] is not None
    with pytest.raises(InvalidApiKey, match="no API key"):
        client.update([1], flag_status="?")


# ---- pure helpers and the fake (no server) --------------------------------------------

@pytest.mark.parametrize("before, after", [
    ("", "[tree-closure 2026-12-05]"),
    ("[infra]", "[infra] [tree-closure 2026-12-05]"),
    ("[tree-closure 2026-01-01] [infra]", "[tree-closure 2026-12-05] [infra]"),
    ("[a] [tree-closure] [b] [tree-closure 2026-01-01]", "[a] [tree-closure 2026-12-05] [b]"),
    ("[tree-closures-are-fun]", "[tree-closures-are-fun] [tree-closure 2026-12-05]"),
])
def test_whiteboard_with_tag_replaces_the_old_tag_and_keeps_the_rest(before, after):
    assert whiteboard_with_tag(before, "[tree-closure 2026-12-05]") == after


def test_whiteboard_without_tag_removes_every_tag_and_keeps_the_rest():
    assert whiteboard_without_tag("[a] [tree-closure x] [b] [tree-closure]") == "[a] [b]"


def test_whiteboard_with_tag_refuses_a_tag_of_another_kind():
    with pytest.raises(ValueError):
        whiteboard_with_tag("", "[infra]")


@pytest.mark.parametrize("assignee, unassigned", [
    ("", True), ("nobody@mozilla.org", True), ("Nobody@bugzilla.org", True),
    ("alice@example.org", False), ("nobodyelse@example.org", False),
])
def test_a_bug_assigned_to_nobody_counts_as_unassigned(assignee, unassigned):
    assert BugInfo(1, "s", assignee, "NEW", "", "").unassigned is unassigned


def test_the_fake_records_calls_and_applies_updates():
    fake = FakeBugzilla()
    fake.add_bug(1, flags=[(FLAG, "?")])
    fake.add_bug(2, hidden=True, flags=[(FLAG, "?")])

    assert [b.id for b in fake.search_nominated()] == [1]
    fake.update([1], flag_status="+", whiteboard_tag="[tree-closure 2026-12-05]", comment="ok")
    with pytest.raises(BugNotVisible):
        fake.update([2], flag_status="+")

    assert fake.get_bugs([1, 2, 3]) == {1: fake.bugs[1], 2: None, 3: None}
    assert fake.bugs[1].flag_status(FLAG) == "+"
    assert fake.bugs[1].whiteboard == "[tree-closure 2026-12-05]"
    assert fake.comments_on == {1: ["ok"]}
    assert [name for name, _ in fake.calls] == ["search_nominated", "update", "update", "get_bugs"]
