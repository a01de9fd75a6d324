"""Whole downtimes with [bugzilla] on: the bot core, the real python-bugzilla client over HTTP,
and the local BMO-contract server, read like chat transcripts."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.bugzilla import BugzillaClient
from tests.fakes import FakeClock
from tests.fakes import FakeMailer
from tests.fakes import FakeTransport
from bot import Bot
from models.ports import Incoming
from tests.conftest import Chat, make_config
from tests.servers.bugzilla import BugzillaServer

pytestmark = pytest.mark.integration

KEY = "bot-key-0123456789abcdef"
BOT = "downtime-bot@example.org"
FLAG = "needs-treeclosure"
PRODUCT = "Infrastructure & Operations"
TAG = "[tree-closure 2026-12-05 14:00 UTC]"
UTC = dt.timezone.utc


class BugzillaChat(Chat):
    """The Chat harness with [bugzilla] on, given the client (retries without sleeping)."""

    def __init__(self, tmp_path: Path, clock: FakeClock, server: BugzillaServer, **bugzilla: str):
        config = make_config(tmp_path, bugzilla={"url": server.url, "enabled": "on", "product": PRODUCT,
                                                 **bugzilla})
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.clock = clock
        self.transports = {"irc": FakeTransport("irc")}
        self.mailer = FakeMailer()
        client = BugzillaClient(server.url, KEY, flag=bugzilla.get("flag", FLAG), timeout=5, retries=1, sleep=lambda s: None)
        self.bot = Bot(config, transports=dict(self.transports), clock=clock, mailer=self.mailer,
                       bugzilla=client)
        self._seen = {"irc": 0}

    def requests_during(self, who: str, text: str) -> tuple[list[str], dict[str, int]]:
        """Say `text`, deliver, and count the Bugzilla requests it cost (by method)."""
        before = len(self.server.requests)
        out = self.say(who, text)
        sent = [r for r in self.server.requests[before:] if r.path != "/rest/version"]
        return out, {m: sum(r.method == m for r in sent) for m in ("GET", "PUT")}

    def health(self) -> bool:
        """The periodic health check (the bot runs it every minute while Bugzilla is unavailable)."""
        assert self.bot.bugzilla is not None
        return self.loop.run_until_complete(self.bot.bugzilla.health())

    def check(self) -> bool:
        assert self.bot.bugzilla is not None
        ok = self.loop.run_until_complete(self.bot.bugzilla.check())
        self.deliver()
        return ok


@pytest.fixture
def server() -> Iterator[BugzillaServer]:
    with BugzillaServer() as srv:
        srv.add_account(BOT, KEY, groups=["infra"])
        srv.add_product(PRODUCT, ["RelOps: General"])
        yield srv


@pytest.fixture
def bz(tmp_path: Path, clock: FakeClock, server: BugzillaServer) -> Iterator[BugzillaChat]:
    harness = BugzillaChat(tmp_path, clock, server)
    yield harness
    harness.close()


def twenty_bugs(server: BugzillaServer) -> list[int]:
    """Bugs 101..120: three kinds of whiteboard, so approving needs three whiteboard updates."""
    ids = list(range(101, 121))
    for n, bug_id in enumerate(ids):
        whiteboard = "[infra]" if n < 5 else "[hg] [tree-closure 2026-11-01 10:00 UTC]" if n < 8 else ""
        server.add_bug(bug_id, f"Work item {n}", f"eng{n}@example.org", whiteboard=whiteboard)
    return ids


def comments(server: BugzillaServer, bug_id: int) -> list[str]:
    return [c["text"] for c in server.bugs[bug_id].comments]


def test_a_whole_downtime_with_twenty_bugs_keeps_bugzilla_in_step(bz, server):
    ids = twenty_bugs(server)
    server.add_bug(500, "Waiting for a slot", "dana@example.org", flags=[(FLAG, "?")])
    counts: dict[str, dict[str, int]] = {}

    out = bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug "
                 + ",".join(map(str, ids)) + " -- Upgrade hg.mozilla.org")
    assert out[0].startswith("#ci Downtime #1 proposed by alice")
    assert all(server.bugs[i].flags[0].status == "?" for i in ids)
    assert server.bugs[101].flags[0].setter == BOT

    out, counts["queue"] = bz.requests_during("carol", "!downtime queue")
    assert out == ["#ci Bug 500 (dana@example.org): Waiting for a slot"]

    out, counts["approve"] = bz.requests_during("carol", "!downtime approve 1")
    assert out[0].startswith(f"#ci Downtime #1 approved ({TAG})")
    assert all(server.bugs[i].flags[0].status == "+" for i in ids)
    assert server.bugs[101].whiteboard == f"[infra] {TAG}"
    assert server.bugs[106].whiteboard == f"[hg] {TAG}"
    assert server.bugs[120].whiteboard == TAG

    bz.say("pat", "!downtime preapprove 1")
    out = bz.say("carol", "!downtime announce 1")
    assert "#ci Downtime #1 announced for 2026-12-05 14:00 UTC (06:00 America/Los_Angeles)." in out
    bz.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    bz.say("carol", "!downtime start 1")
    for bug_id in ids[:15]:
        bz.say("carol", f"!downtime done 1 {bug_id} landed")
    for bug_id in ids[15:18]:
        bz.say("carol", f"!downtime done 1 {bug_id} rolled-back -- replication lag")
    bz.clock.set(dt.datetime(2026, 12, 5, 15, 40, tzinfo=UTC))

    out, counts["end"] = bz.requests_during("carol", "!downtime end 1")
    assert out[0] == "#ci Downtime #1 ended: TREE OPEN sent; sheriffs, please verify."

    assert comments(server, 101) == [
        "Downtime #1 ran from 2026-12-05 13:55 to 2026-12-05 15:40 UTC.\nOutcome: landed.\n\n"
        "(downtime-bot dt1:bz-outcomes)"]
    assert "Outcome: rolled back." in comments(server, 116)[0]
    assert "Note: replication lag" in comments(server, 116)[0]
    assert "Outcome: not done in this downtime." in comments(server, 119)[0]
    assert all(len(comments(server, i)) == 1 for i in ids)
    assert [f.status for f in server.bugs[101].flags] == ["+"]  # landed: kept
    assert server.bugs[116].flags == [] and server.bugs[120].flags == []  # cleared
    assert server.bugs[106].whiteboard.count("[tree-closure") == 1
    assert "Pending bugzilla" not in "\n".join(bz.say("alice", "!downtime show 1"))

    figures = f"Bugzilla requests for a downtime with {len(ids)} bugs: " + "; ".join(
        f"{what} {c['GET']} read(s) + {c['PUT']} update(s)" for what, c in counts.items())
    print("\n" + figures)
    assert counts["queue"] == {"GET": 1, "PUT": 0}
    # 1 read + 1 update per distinct new whiteboard (3), each carrying the flag: fewer than
    # the bound of 1 read + 1 update for the flags + 1 per distinct whiteboard.
    assert counts["approve"] == {"GET": 1, "PUT": 3}
    # 1 read + 1 update per distinct outcome: landed, rolled-back (same note), not-done.
    assert counts["end"] == {"GET": 1, "PUT": 3}
    assert "approve 1 read(s) + 3 update(s)" in figures


def test_approving_bugs_that_all_get_the_same_whiteboard_takes_one_read_and_one_update(bz, server):
    for bug_id in (1, 2, 3):
        server.add_bug(bug_id, "work", "eng@example.org")
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 1,2,3 -- Upgrade hg.mozilla.org")

    _, count = bz.requests_during("carol", "!downtime approve 1")

    assert count == {"GET": 1, "PUT": 1}
    assert all(server.bugs[i].whiteboard == TAG for i in (1, 2, 3))


def test_bugzilla_failing_for_a_while_loses_nothing_and_doubles_nothing(bz, server):
    ids = twenty_bugs(server)
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug "
           + ",".join(map(str, ids)) + " -- Upgrade hg.mozilla.org")
    server.fail_with(500)

    out = bz.say("carol", "!downtime approve 1")
    assert out[0].startswith("#ci Downtime #1 approved")
    show = bz.say("alice", "!downtime show 1")
    assert any(line.startswith("#ci Pending bugzilla: set needs-treeclosure+ and whiteboard") and
               "(pending, 1 attempt(s): Bugzilla is unavailable (HTTP 500)" in line for line in show)

    bz.clock.advance(dt.timedelta(minutes=31))  # past [bugzilla] report_after (30m)
    bz.deliver()
    bz.deliver()
    reports = [line for line in bz.new_lines() if "still not made" in line]
    assert reports == [
        "#ci carol: Downtime #1: a Bugzilla change is still not made after 31m (set needs-treeclosure+ and "
        f"whiteboard {TAG} on bug " + ", ".join(map(str, ids)) + "): Bugzilla is unavailable (HTTP 500) while "
        "reading 20 bugs; gave up after 2 attempts. The bot keeps trying; see !downtime show 1."]
    bz.clock.advance(dt.timedelta(minutes=30))
    bz.deliver()
    bz.deliver()
    assert not [line for line in bz.new_lines() if "still not made" in line]  # reported once

    server.clear_faults()
    assert bz.health()
    bz.deliver()
    assert all(server.bugs[i].flags[0].status == "+" for i in ids)
    assert all(server.bugs[i].whiteboard.count("[tree-closure") == 1 for i in ids)

    bz.say("pat", "!downtime preapprove 1")
    bz.say("carol", "!downtime announce 1")
    bz.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    bz.say("carol", "!downtime start 1")
    # The worst case: the comment update goes through but the answer is a 500.
    server.fail_with(500, count=1, apply=True, methods=["PUT"])
    bz.say("carol", "!downtime end 1")
    assert all(len(comments(server, i)) == 1 for i in ids)  # made, but the bot could not know
    assert bz.health()
    bz.deliver()

    assert all(len(comments(server, i)) == 1 for i in ids)
    assert not any(line.startswith("#ci Pending bugzilla") for line in bz.say("alice", "!downtime show 1"))


def test_bugzilla_down_at_start_up_the_bot_runs_and_catches_up(bz, server):
    server.add_bug(7, "Move the build database", "eng@example.org")
    server.fail_with(503)

    assert bz.check() is False
    assert bz.new_lines() == [
        "#ci carol: Bugzilla is unavailable to the bot: Bugzilla is unavailable (HTTP 503) while checking the "
        "API key; gave up after 2 attempts. Bugzilla changes stay queued and are retried; see the log."]
    out = bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    assert out[0].startswith("#ci Downtime #1 proposed")
    out = bz.say("alice", "!downtime bug add 1 7")
    assert out == ["#ci Bug 7 is in downtime #1.",
                   "#ci Note: Bugzilla did not answer: bug 7 gets needs-treeclosure? when it does "
                   "(see !downtime show 1)"]
    assert server.bugs[7].flags == []

    server.clear_faults()
    before = len(server.requests)
    bz.deliver()
    assert len(server.requests) == before  # the queued change waits for the health check
    assert bz.health()
    bz.deliver()  # the worker catches up: nominated, and the bug's assignee is now known

    assert [(f.name, f.status) for f in server.bugs[7].flags] == [(FLAG, "?")]
    out = bz.say("carol", "!downtime approve 1")
    assert out[0].startswith("#ci Downtime #1 approved")
    assert server.bugs[7].flags[0].status == "+"
    assert "Bug 7 [approved] eng@example.org: Move the build database" in "\n".join(
        bz.say("alice", "!downtime show 1"))


def test_start_up_check_passes_with_the_key_from_the_environment(tmp_path, clock, server, monkeypatch):
    monkeypatch.setenv("TEST_BZ_KEY", KEY)
    config = make_config(tmp_path, bugzilla={"url": server.url, "enabled": "on", "product": PRODUCT,
                                             "api_key_env": "TEST_BZ_KEY"})
    bot = Bot(config, transports={"irc": FakeTransport("irc")}, clock=clock, mailer=FakeMailer())
    try:
        assert bot.bugzilla is not None
        assert asyncio.run(bot.bugzilla.check()) is True
    finally:
        asyncio.run(bot.stop())

    assert {r.login for r in server.requests} == {BOT}
    assert all(KEY not in r.target for r in server.requests)


def test_start_up_check_names_a_missing_flag(tmp_path, clock, server):
    harness = BugzillaChat(tmp_path, clock, server, flag="needs-closure")
    try:
        assert harness.check() is False
        assert harness.new_lines() == [
            f"#ci carol: Bugzilla is unavailable to the bot: Bugzilla product {PRODUCT!r} has no active flag "
            "'needs-closure'; check [bugzilla] flag. Bugzilla changes stay queued and are retried; see the log."]
    finally:
        harness.close()


def test_a_restricted_bug_the_bot_cannot_see_gets_the_process_advice(bz, server):
    server.add_bug(42, "Secret infra work", "eng@example.org", groups=["infra-only"])
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")

    out = bz.say("alice", "!downtime bug add 1 42")

    assert out == ["#ci bug 42 is not visible to the bot (restricted or missing): file a separate tracking bug "
                   "that CiDuty can see, and track it closely"]
    assert "Bug 42" not in "\n".join(bz.say("alice", "!downtime show 1"))


def test_a_missing_bug_gets_the_same_advice_and_changes_nothing(bz, server):
    out = bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 999999 -- Upgrade hg.mozilla.org")

    assert out == ["#ci bug 999999 is not visible to the bot (restricted or missing): file a separate tracking "
                   "bug that CiDuty can see, and track it closely"]
    assert bz.say("alice", "!downtime show 1") == ["#ci there is no downtime #1 (see !downtime list)"]


def test_a_restricted_bug_the_bot_can_see_is_described_vaguely(bz, server):
    server.add_bug(43, "Rotate the signing keys", "eng@example.org", groups=["infra"])
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")

    out = bz.say("alice", "!downtime bug add 1 43")

    assert out == ["#ci Bug 43 is in downtime #1 (security-sensitive: described vaguely)."]
    assert "Rotate the signing keys" not in "\n".join(bz.say("alice", "!downtime notice 1"))


def test_approving_a_bug_with_nobody_assigned_is_refused_and_names_it(bz, server):
    server.add_bug(1, "Assigned", "eng@example.org")
    server.add_bug(2, "Unassigned", "nobody@mozilla.org")
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 1,2 -- Upgrade hg.mozilla.org")

    out = bz.say("carol", "!downtime approve 1")

    assert out == ["#ci bug 2 has nobody assigned: assign the person doing the work first"]
    assert server.bugs[1].flags[0].status == "?"


def test_a_flag_permission_error_is_reported_to_ciduty_and_the_other_bugs_are_approved(bz, server):
    server.add_bug(1, "Allowed", "eng@example.org")
    server.add_bug(2, "Guarded", "eng@example.org")
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 1,2 -- Upgrade hg.mozilla.org")
    server.deny_flag(FLAG, 2)

    out = bz.say("carol", "!downtime approve 1")
    bz.deliver()
    out += bz.new_lines()

    report = [line for line in out if "refused" in line]
    assert report == [
        "#ci carol: Downtime #1: Bugzilla refused part of a change (set needs-treeclosure+ and whiteboard "
        f"{TAG} on bug 1, 2): Bugzilla refused the needs-treeclosure change on bug 2: You tried to set "
        "needs-treeclosure+ on bug 2, but you are not allowed to modify this flag."]
    assert server.bugs[1].flags[0].status == "+" and server.bugs[2].flags[0].status == "?"
    show = "\n".join(bz.say("alice", "!downtime show 1"))
    assert "Pending bugzilla: set needs-treeclosure+" in show and "(failed, 1 attempt(s): " in show


# ---- who may cause a Bugzilla write, and what a command costs in requests ---------------------------

def test_an_unidentified_sender_proposing_with_a_thousand_bugs_causes_no_bugzilla_request(bz, server):
    bz.bot.dispatcher.max_line = 10_000  # [bot] max_line would refuse the line unread
    bugs = ",".join(str(n) for n in range(200001, 201001))
    out = bz.say(None, f"!downtime propose 2026-12-05 14:00 UTC for 2h bug {bugs} -- Nominate them all")
    assert out == ["#ci identify with services first: anon is not logged in to an account, "
                   "and changes are made by account"]
    assert [r for r in server.requests if r.path != "/rest/version"] == []


def test_the_bugs_of_a_proposal_are_looked_up_in_one_request(bz, server):
    for bug_id in (301, 302, 303):
        server.add_bug(bug_id, f"Work item {bug_id}", "eng@example.org")
    before = len(server.requests)
    out = bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 301,302,303 -- Upgrade the hg servers")
    assert out[0].startswith("#ci Downtime #1 proposed by alice")
    reads = [r for r in server.requests[before:] if r.method == "GET" and r.path.startswith("/rest/bug")]
    # One read for the command, one for the nomination job (which reads before it writes).
    assert len(reads) == 2, [r.path for r in reads]


def test_with_nominate_roles_only_those_roles_may_have_bugs_nominated(tmp_path, clock, server):
    server.add_bug(401, "Move the build database", "eng@example.org")
    chat = BugzillaChat(tmp_path, clock, server, nominate_roles="ciduty, sheriffs")
    try:
        before = len(server.requests)
        out = chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 401 -- Move the build database")
        assert out == ["#ci only CiDuty or a sheriff may have bugs nominated (needs-treeclosure?) here: propose "
                       "without bug numbers and ask one of them to add the bugs (!downtime bug add)"]
        assert [r for r in server.requests[before:] if r.path != "/rest/version"] == []
        out = chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Move the build database")
        assert out[0].startswith("#ci Downtime #1 proposed by alice")
        assert chat.say("alice", "!downtime bug add 1 401")[0].startswith("#ci only CiDuty or a sheriff")
        assert not server.requests_to("PUT", "/rest/bug/401")
        out = chat.say("carol", "!downtime bug add 1 401")
        assert server.requests_to("PUT", "/rest/bug/401"), out
    finally:
        chat.close()


def test_commands_do_not_ask_a_bugzilla_marked_unavailable_until_its_check_passes(bz, server):
    server.add_bug(501, "Move the build database", "eng@example.org")
    server.add_bug(502, "Move the build database again", "eng@example.org")
    server.fail_with(503)
    assert not bz.check()  # marked unavailable
    server.clear_faults()

    def command_requests(who: str, text: str) -> list[str]:
        """What the command alone asked (the outbox workers are not run)."""
        before = len(server.requests)
        bz.loop.run_until_complete(bz.bot.dispatcher.answer(
            Incoming(network="irc", room="#ci", account=who, nick=who, text=text)))
        return [r.path for r in server.requests[before:]]

    assert command_requests("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 501 -- Move it") == []
    assert command_requests("alice", "!downtime bug add 1 501") == []
    assert bz.check()  # the health check passes: commands ask again
    # (another bug: one bug is worked on in one downtime)
    assert command_requests("alice", "!downtime propose 2026-12-06 14:00 UTC for 2h bug 502 -- Again") == [
        "/rest/bug/502"]


def test_an_outcome_recorded_after_the_end_is_commented_on_that_bug_only_and_gives_its_flag_back(bz, server):
    server.add_bug(101, "Upgrade hg", "eng@example.org")
    server.add_bug(102, "Move the build database", "eng2@example.org")
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 101,102 -- Upgrade hg.mozilla.org")
    bz.say("carol", "!downtime approve 1")
    bz.say("pat", "!downtime preapprove 1")
    bz.say("carol", "!downtime announce 1")
    bz.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    bz.say("carol", "!downtime start 1")
    bz.say("carol", "!downtime done 1 101 landed")
    bz.clock.set(dt.datetime(2026, 12, 5, 15, 40, tzinfo=UTC))
    out = bz.say("carol", "!downtime end 1")
    assert any("(no outcome recorded: 102)" in line for line in out)
    assert "Outcome: not done in this downtime." in comments(server, 102)[0]
    assert server.bugs[102].flags == []

    bz.say("carol", "!downtime done 1 102 landed -- landed at 15:50")

    assert len(comments(server, 101)) == 1
    assert len(comments(server, 102)) == 2
    assert comments(server, 102)[1].startswith(
        "Correction: the outcome of this bug in downtime #1 (ran from 2026-12-05 13:55 to 2026-12-05 15:40 UTC) was "
        "recorded after its end.\nOutcome: landed. Note: landed at 15:50")
    assert [f.status for f in server.bugs[102].flags] == ["+"]


def test_a_bug_bugzilla_later_says_is_restricted_turns_vague_on_the_page_and_moves_its_last_modified(bz, server):
    """What a Bugzilla job reads of a bug is kept (BugzillaSync._remember); when that changes what
    the public page says, the page's ETag and Last-Modified move with it."""
    from aiohttp.test_utils import TestClient, TestServer

    from models.ports import BugInfo

    server.add_bug(7, "Move the build database", "eng@example.org")
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 7 -- Upgrade hg.mozilla.org")
    bz.say("carol", "!downtime approve 1")
    bz.say("carol", "!downtime announce 1")
    assert bz.bot.web is not None and bz.bot.bugzilla is not None
    client = TestClient(TestServer(bz.bot.web.app), loop=bz.loop)
    bz.loop.run_until_complete(client.start_server())

    def page() -> tuple[str, str, str]:
        async def fetch() -> tuple[str, str, str]:
            async with client.get("/downtimes/1") as response:
                return response.headers["ETag"], response.headers["Last-Modified"], await response.text()
        return bz.loop.run_until_complete(fetch())

    try:
        etag, modified, text = page()
        assert "Move the build database" in text
        bz.clock.advance(dt.timedelta(hours=1))
        found = BugInfo(7, "Move the build database", "eng@example.org", "ASSIGNED", "", "", groups=("infra",))
        bz.bot.bugzilla._remember(1, {7: found})
        etag_after, modified_after, text_after = page()
        assert "Move the build database" not in text_after.split("<h2")[2]  # the bugs' section
        assert "security-sensitive work (details restricted)" in text_after
        assert etag_after != etag and modified_after != modified
    finally:
        bz.loop.run_until_complete(client.close())
