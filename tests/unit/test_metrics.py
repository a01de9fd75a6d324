"""The metrics and the observers that feed them: each part says what happened, nothing more."""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from adapters.bugzilla import BugzillaClient
from adapters.mail import MailConfig, SmtpMailer
from adapters.metrics import Metrics
from adapters.outbox import OutboxWorker, Permanent, Retry
from adapters.treestatus import TreestatusClient
from models.orm import OutboxMessage
from models.ports import Mail, MailUnavailable, TreestatusUnavailable
from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeClock

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc


def metrics(**options: Any) -> Metrics:
    return Metrics(**{"version": "1.0", "commit": None, "commands": ["downtime list"], "networks": ["irc"], **options})


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


# ---- the metric objects ----------------------------------------------------------------------

def test_two_bots_in_one_process_count_apart_and_never_in_the_global_registry() -> None:
    first, second = metrics(), metrics()
    first.command("downtime list", "ok", 0.01)
    assert sample(first, "downtimebot_commands_total", command="downtime list", result="ok") == 1
    assert sample(second, "downtimebot_commands_total", command="downtime list", result="ok") is None
    assert REGISTRY.get_sample_value("downtimebot_commands_total", {"command": "downtime list", "result": "ok"}) is None


def test_a_name_or_result_outside_the_known_sets_never_becomes_a_label() -> None:
    m = metrics()
    m.command("downtime <script>", "ok", 0.1)
    m.command("downtime list", "whatever alice typed", 0.1)
    m.delivery("#ci", "ok")
    m.delivery("irc", "sent to bob")
    assert sample(m, "downtimebot_commands_total", command="unknown", result="ok") == 1
    assert sample(m, "downtimebot_commands_total", command="downtime list", result="error") == 1
    assert "#ci" not in m.exposition().decode() and "bob" not in m.exposition().decode()
    with pytest.raises(ValueError):
        m.request("http://evil")


def test_the_build_info_says_unknown_for_a_commit_nobody_knows() -> None:
    assert sample(metrics(), "downtimebot_build_info", version="1.0", commit="unknown") == 1


def test_refresh_sets_every_state_and_kind_and_zero_for_the_missing_ones() -> None:
    m = metrics()
    m.refresh({"announced": 2}, {"chat": (3, 120.0)}, {"irc": False})
    assert sample(m, "downtimebot_downtimes", state="announced") == 2
    assert sample(m, "downtimebot_downtimes", state="finished") == 0
    assert sample(m, "downtimebot_outbox_pending", kind="chat") == 3
    assert sample(m, "downtimebot_outbox_oldest_age_seconds", kind="chat") == 120
    assert sample(m, "downtimebot_outbox_pending", kind="mail") == 0
    assert sample(m, "downtimebot_transport_connected", network="irc") == 0


# ---- the dispatcher's on_command ---------------------------------------------------------------

@pytest.fixture
def noted(tmp_path: Path) -> Any:
    chat = Chat(make_config(tmp_path), FakeClock(NOW))
    seen: list[tuple[str, str]] = []
    chat.bot.dispatcher.on_command = lambda command, result, seconds: seen.append((command, result))
    chat.seen = seen  # type: ignore[attr-defined]
    yield chat
    chat.close()


def test_the_dispatcher_tells_each_command_with_its_registered_name_and_result(noted: Any) -> None:
    noted.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    noted.say("alice", "!downtime approve 1")
    noted.say("alice", "!downtime show")
    noted.say("alice", "!downtime frobnicate 1")
    noted.say("alice", "hello everyone")  # not for the bot: not told
    assert noted.seen == [
        ("downtime propose", "ok"), ("downtime approve", "refused"), ("downtime show", "usage"), ("unknown", "refused"),
    ]


def test_a_command_that_breaks_is_told_as_an_error(noted: Any) -> None:
    async def broken(ctx: Any, args: str) -> None:
        raise RuntimeError("a bug")

    commands = noted.bot.dispatcher.commands
    commands["downtime list"] = dataclasses.replace(commands["downtime list"], func=broken, cacheable=False)
    noted.say("alice", "!downtime list")
    assert noted.seen == [("downtime list", "error")]


# ---- the outbox workers' on_delivery ------------------------------------------------------------

def test_an_outbox_worker_tells_each_delivery_ok_retry_or_failed(tmp_path: Path, database: str) -> None:
    chat = Chat(make_config(tmp_path, database), FakeClock(NOW))
    told: list[tuple[str, str]] = []
    outcomes = iter([None, Permanent("no such room"), Retry("down")])

    async def deliver(row: OutboxMessage) -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    worker = OutboxWorker(chat.bot.sessions, chat.clock, kind="chat", network="irc", deliver=deliver,
                          on_delivery=lambda network, result: told.append((network, result)))
    try:
        with chat.bot.sessions() as session, session.begin():
            for n in range(3):
                session.add(OutboxMessage(key=f"k{n}", kind="chat", network="irc", target="#ci", body="hi",
                                          payload={}, created_at=NOW))
        assert chat.loop.run_until_complete(worker.deliver_pending()) is False
        assert told == [("irc", "ok"), ("irc", "failed"), ("irc", "retry")]
    finally:
        chat.close()


# ---- the reminder scheduler's on_reminder -------------------------------------------------------

def test_the_scheduler_tells_how_late_each_reminder_was_queued(tmp_path: Path, database: str) -> None:
    chat = Chat(make_config(tmp_path, database), FakeClock(NOW))
    lateness: list[float] = []
    chat.bot.reminders.on_reminder = lateness.append
    try:
        chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
        chat.say("carol", "!downtime approve 1")
        chat.say("pat", "!downtime preapprove 1")
        assert "Downtime #1 announced" in " ".join(chat.say("carol", "!downtime announce 1"))
        lateness.clear()  # the announcement's own reminder, if any
        chat.clock.set(dt.datetime(2026, 12, 4, 14, 10, tzinfo=UTC))  # 10 minutes after the 24h reminder
        chat.bot.reminders.send_due()
        assert lateness == [600.0]
    finally:
        chat.close()


# ---- the outside clients' on_request and what they last saw -------------------------------------

class FlakySession(requests.Session):
    """Refuses the first connection, then answers {"result": {}}."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.calls += 1
        if self.calls == 1:
            raise requests.ConnectionError("refused")
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"result": {}}'
        return response


def test_the_treestatus_client_times_every_request_and_remembers_why_it_last_failed() -> None:
    timed: list[float] = []
    client = TreestatusClient("http://treestatus.invalid", None, retries=0, session=FlakySession(), sleep=lambda s: None)
    client.on_request = timed.append
    with pytest.raises(TreestatusUnavailable):
        client.trees()
    assert "ConnectionError" in client.last_error
    assert client.trees() == {}
    assert client.last_error == ""
    assert len(timed) == 2 and all(t >= 0 for t in timed)


def test_the_bugzilla_client_times_every_http_request_even_a_refused_one() -> None:
    timed: list[float] = []
    client = BugzillaClient("http://127.0.0.1:9", None, retries=0, timeout=2)
    client.observe(timed.append)
    with pytest.raises(requests.ConnectionError):
        client._session.request("GET", "http://127.0.0.1:9/rest/version")
    assert len(timed) == 1


def test_the_smtp_mailer_times_each_attempt_without_its_backoff() -> None:
    timed: list[float] = []
    mailer = SmtpMailer(MailConfig(host="127.0.0.1", port=9, sender="bot@example.org"), retries=1,
                        sleep=lambda s: timed.append(-s))
    mailer.on_request = timed.append
    mail = Mail(to=("a@example.org",), cc=(), subject="s", body="b", message_id="<1@example.org>")
    with pytest.raises(MailUnavailable):
        mailer.send(mail, NOW)
    assert len([t for t in timed if t >= 0]) == 2 and len([t for t in timed if t < 0]) == 1
