"""The operations endpoints of a real bot core: /__version__, the heartbeats and /metrics."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from adapters.web.ops import VersionInfo, git_commit
from models.orm import OutboxMessage
from tests.conftest import make_config
from tests.fakes import FakeClock
from tests.web.conftest import WebChat

COMMANDS_RUN = [
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org"),
    ("carol", "!downtime approve 1"),
    ("pat", "!downtime preapprove 1"),
    ("carol", "!downtime announce 1"),
    ("alice", "!downtime propose 2026-12-09 14:00 UTC for 1h -- Move the build database"),
    ("alice", "!downtime approve 2"),  # refused: alice is not CiDuty
    ("alice", "!downtime show"),  # usage: no id
    ("bob", "!downtime show 1"),
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def script_a_downtime(web: WebChat) -> None:
    for n, (who, line) in enumerate(COMMANDS_RUN):
        web.clock.advance(dt.timedelta(seconds=10))  # everyone within [bot] rate_limit
        assert web.say(who, line), line


def start_reminders(web: WebChat) -> None:
    web.loop.run_until_complete(web.bot.reminders.start())


# ---- /__version__ ------------------------------------------------------------------------------

def test_version_names_the_bot_its_version_and_its_commit(web: WebChat) -> None:
    reply = web.get("/__version__")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    assert body["name"] == "downtime-bot"
    assert body["version"] == importlib.metadata.version("downtime-bot")
    assert "commit" in body and (body["commit"] is None or len(body["commit"]) == 40)


def test_the_commit_comes_from_the_environment_first(tmp_path: Path) -> None:
    (tmp_path / "version.json").write_text(json.dumps({"commit": "b" * 40, "source": "https://x", "build": "7"}))
    info = VersionInfo.read(tmp_path, {"DOWNTIMEBOT_COMMIT": "a" * 40})
    assert info.commit == "a" * 40
    assert info.as_json()["source"] == "https://x" and info.as_json()["build"] == "7"


def test_the_commit_comes_from_dockerflows_version_json_without_the_environment(tmp_path: Path) -> None:
    (tmp_path / "version.json").write_text(json.dumps({"commit": "b" * 40, "version": "9.9"}))
    assert VersionInfo.read(tmp_path, {}).commit == "b" * 40


def test_the_commit_is_read_from_git_files_loose_or_packed_and_through_a_worktree(tmp_path: Path) -> None:
    git = tmp_path / "main" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("c" * 40 + "\n")
    assert git_commit(tmp_path / "main") == "c" * 40
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text("# pack-refs with: peeled\n" + "d" * 40 + " refs/heads/main\n")
    assert git_commit(tmp_path / "main") == "d" * 40
    worktree_git = git / "worktrees" / "side"
    worktree_git.mkdir(parents=True)
    (worktree_git / "HEAD").write_text("ref: refs/heads/side\n")
    (worktree_git / "commondir").write_text("../..\n")
    (git / "refs" / "heads" / "side").write_text("e" * 40 + "\n")
    (tmp_path / "side").mkdir()
    (tmp_path / "side" / ".git").write_text(f"gitdir: {worktree_git}\n")
    assert git_commit(tmp_path / "side") == "e" * 40


def test_no_git_and_no_stamp_means_the_commit_is_unknown(tmp_path: Path) -> None:
    info = VersionInfo.read(tmp_path, {})
    assert info.commit is None and info.as_json()["commit"] is None
    assert info.version  # the installed distribution's, or setup.cfg's


# ---- the heartbeats ----------------------------------------------------------------------------

def test_lbheartbeat_and_livez_answer_200_while_the_loop_runs(web: WebChat) -> None:
    web.transports["irc"].up = False  # nothing else is checked
    for path in ("/__lbheartbeat__", "/livez"):
        reply = web.get(path)
        assert reply.status == 200, path
        assert reply.headers["Cache-Control"] == "no-store"


def test_heartbeat_is_200_with_every_check_ok(web: WebChat) -> None:
    start_reminders(web)
    reply = web.get("/__heartbeat__")
    assert reply.status == 200, reply.text
    body = reply.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "irc": "ok", "scheduler": "ok", "outbox": "ok"}
    assert body["details"] == {}
    assert reply.headers["Cache-Control"] == "no-store"


def test_heartbeat_turns_500_when_a_chat_network_is_disconnected_and_says_which(web: WebChat) -> None:
    start_reminders(web)
    assert web.get("/__heartbeat__").status == 200
    web.transports["irc"].up = False
    for path in ("/__heartbeat__", "/readyz"):
        reply = web.get(path)
        assert reply.status == 500, path
        body = reply.json()
        assert body["status"] == "error" and body["checks"]["irc"] == "error"
        assert body["details"]["irc"]["level"] == 40
        assert "not connected" in body["details"]["irc"]["messages"][0]
    web.transports["irc"].up = True
    assert web.get("/readyz").status == 200  # live: never a cached answer


def test_heartbeat_is_500_while_the_reminder_scheduler_is_not_running(web: WebChat) -> None:
    reply = web.get("/__heartbeat__")
    assert reply.status == 500
    assert reply.json()["checks"]["scheduler"] == "error"


def test_a_database_that_cannot_be_read_turns_the_heartbeat_500_without_a_traceback(web: WebChat) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    start_reminders(web)
    assert web.bot.operations is not None
    web.bot.operations.sessions = sessionmaker(create_engine("sqlite:////no/such/folder/bot.db"))
    reply = web.get("/__heartbeat__")
    assert reply.status == 500
    body = reply.json()
    assert body["checks"]["database"] == "error" and body["checks"]["outbox"] == "warning"
    assert body["details"]["database"]["messages"] == ["cannot read the database (OperationalError)"]
    assert "Traceback" not in reply.text and "/no/such/folder" not in reply.text
    assert web.get("/metrics").status == 200  # the counters still answer


def queue(web: WebChat, kind: str, age: dt.timedelta) -> None:
    with web.bot.sessions() as session, session.begin():
        session.add(OutboxMessage(
            key=f"test:{kind}:{age}", kind=kind, network="irc" if kind == "chat" else "", target="#ci", body="hi",
            payload={}, created_at=web.clock.now() - age,
        ))


def test_a_chat_line_waiting_longer_than_the_limit_turns_the_heartbeat_500(web: WebChat) -> None:
    start_reminders(web)
    queue(web, "chat", dt.timedelta(minutes=5))
    assert web.get("/__heartbeat__").status == 200  # waiting, but not for long
    web.clock.advance(dt.timedelta(minutes=20))
    reply = web.get("/__heartbeat__")
    assert reply.status == 500
    body = reply.json()
    assert body["checks"]["outbox"] == "error"
    assert body["details"]["outbox"]["messages"] == ["chat: 1 waiting, the oldest for 25 min (limit 15 min)"]


def test_a_mail_waiting_longer_than_the_limit_is_a_warning_only(web: WebChat) -> None:
    start_reminders(web)
    queue(web, "mail", dt.timedelta(hours=1))
    reply = web.get("/__heartbeat__")
    assert reply.status == 200
    assert reply.json()["status"] == "warning" and reply.json()["checks"]["outbox"] == "warning"


def test_an_smtp_server_that_failed_last_time_is_a_warning_not_an_error(tmp_path: Path, clock: FakeClock) -> None:
    harness = WebChat(make_config(tmp_path, mail={"host": "smtp.example.org", "from": "bot@example.org"}), clock)
    try:
        start_reminders(harness)
        assert harness.get("/__heartbeat__").json()["checks"]["smtp"] == "ok"
        harness.bot.mail.last_error = "ConnectionRefusedError: [Errno 111] Connection refused"
        reply = harness.get("/__heartbeat__")
        assert reply.status == 200
        body = reply.json()
        assert body["status"] == "warning" and body["checks"]["smtp"] == "warning"
        assert "Connection refused" in body["details"]["smtp"]["messages"][0]
    finally:
        harness.close()


def test_bugzilla_marked_unavailable_is_a_warning_that_asks_bugzilla_nothing(tmp_path: Path, clock: FakeClock) -> None:
    from models.ports import BugzillaUnavailable
    from tests.fakes.bugzilla import FakeBugzilla

    fake = FakeBugzilla()
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    harness = WebChat(config, clock, bugzilla=fake)
    try:
        start_reminders(harness)
        assert harness.get("/__heartbeat__").json()["checks"]["bugzilla"] == "ok"
        fake.failures.append(BugzillaUnavailable("HTTP 503"))
        assert harness.bot.bugzilla is not None
        harness.loop.run_until_complete(harness.bot.bugzilla.check())
        asked = len(fake.calls)
        reply = harness.get("/__heartbeat__")
        assert reply.status == 200 and reply.json()["checks"]["bugzilla"] == "warning"
        assert "HTTP 503" in reply.json()["details"]["bugzilla"]["messages"][0]
        assert len(fake.calls) == asked  # judged from what the bot last saw
    finally:
        harness.close()


# ---- /metrics ----------------------------------------------------------------------------------

def test_metrics_count_the_commands_the_downtimes_and_the_outbox_after_a_scripted_downtime(web: WebChat) -> None:
    start_reminders(web)
    script_a_downtime(web)
    web.transports["irc"].up = False
    web.say("bob", "!downtime show 2")  # answered directly: lost while irc is down, nothing queued
    web.say("carol", "!downtime cancel 2 -- not needed")  # its answer waits in the outbox
    reply = web.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert reply.headers["Cache-Control"] == "no-store"
    found = samples(reply.text)
    assert value(found, "downtimebot_commands_total", command="downtime propose", result="ok") == 2
    assert value(found, "downtimebot_commands_total", command="downtime approve", result="ok") == 1
    assert value(found, "downtimebot_commands_total", command="downtime approve", result="refused") == 1
    assert value(found, "downtimebot_commands_total", command="downtime show", result="usage") == 1
    assert value(found, "downtimebot_commands_total", command="downtime show", result="ok") == 2
    assert value(found, "downtimebot_commands_total", command="downtime cancel", result="ok") == 1
    assert value(found, "downtimebot_command_duration_seconds_count") == len(COMMANDS_RUN) + 2
    assert value(found, "downtimebot_downtimes", state="announced") == 1
    assert value(found, "downtimebot_downtimes", state="cancelled") == 1
    assert value(found, "downtimebot_downtimes", state="proposed") == 0
    assert value(found, "downtimebot_outbox_pending", kind="chat") >= 1
    assert value(found, "downtimebot_outbox_pending", kind="mail") == 0
    assert value(found, "downtimebot_messages_sent_total", network="irc", result="ok") > 0
    assert value(found, "downtimebot_messages_sent_total", network="mail", result="ok") > 0
    assert value(found, "downtimebot_transport_connected", network="irc") == 0
    web.clock.advance(dt.timedelta(minutes=3))
    later = samples(web.get("/metrics").text)
    assert value(later, "downtimebot_outbox_oldest_age_seconds", kind="chat") >= 180
    info = [k for k in later if k[0] == "downtimebot_build_info"]
    assert len(info) == 1 and dict(info[0][1])["version"] == importlib.metadata.version("downtime-bot")
    web.transports["irc"].up = True
    web.deliver()
    after = samples(web.get("/metrics").text)
    assert value(after, "downtimebot_transport_connected", network="irc") == 1
    assert value(after, "downtimebot_outbox_pending", kind="chat") == 0
    assert value(after, "downtimebot_outbox_oldest_age_seconds", kind="chat") == 0


def test_a_rate_limited_line_is_counted_as_such(tmp_path: Path, clock: FakeClock) -> None:
    harness = WebChat(make_config(tmp_path, bot={"rate_limit": "1/1m", "rate_burst": "1"}), clock)
    try:
        harness.say("bob", "!downtime list")
        harness.say("bob", "!downtime list")
        found = samples(harness.get("/metrics").text)
        assert value(found, "downtimebot_commands_total", command="downtime list", result="ok") == 1
        assert value(found, "downtimebot_commands_total", command="downtime list", result="ratelimited") == 1
    finally:
        harness.close()


WEIRD = [
    "!downtime propose 2026-12-07 14:00 UTC for 1h -- <script>alert(1)</script> \"quoted\" {braces} # x=1",
    "!downtime frobnicate <b>1</b> \"x\"",
    "!downtime show 1\" } evil{label=\"x",
    "!downtime bug add 1 99999999999999999999",
    "!downtime " + "x" * 3000,
    "!trees close nosuchtree -- \n\r",
]


def test_no_label_value_is_ever_an_id_an_account_or_free_text(web: WebChat) -> None:
    script_a_downtime(web)
    for line in WEIRD:
        web.clock.advance(dt.timedelta(seconds=10))
        web.say("mallory-\"account\"", line)
    from plugins.dispatcher import all_commands
    from models.lifecycle import State

    allowed = {
        "command": {c.name for c in all_commands().values()} | {"unknown"},
        "result": {"ok", "refused", "usage", "error", "ratelimited", "retry", "failed"},
        "state": {s.value for s in State},
        "kind": {"chat", "mail", "bugzilla", "trees"},
        "network": {"irc", "chat", "mail", "bugzilla", "trees"},
        "service": {"bugzilla", "treestatus", "smtp"},
        "le": None,  # histogram buckets: numbers
        "version": {importlib.metadata.version("downtime-bot")},
        "commit": None,  # a hexadecimal sha or "unknown"
    }
    found = samples(web.get("/metrics").text)
    assert value(found, "downtimebot_commands_total", command="unknown", result="refused") >= 1
    for name, labels in found:
        for label, text in labels:
            assert label in allowed, (name, label)
            known = allowed[label]
            if label == "le":
                float(text)
            elif label == "commit":
                assert text == "unknown" or all(c in "0123456789abcdef" for c in text)
            else:
                assert known is not None and text in known, (name, label, text)


@pytest.mark.parametrize("path", ["/__version__", "/__lbheartbeat__", "/__heartbeat__", "/livez", "/readyz", "/metrics"])
def test_the_operations_endpoints_are_read_only(web: WebChat, path: str) -> None:
    reply = web.request("POST", path)
    assert reply.status == 405
