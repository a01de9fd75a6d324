"""[ha] two Bot objects on one database file, with fake chat networks: one voice at a time.

Each Bot is a whole instance (the real core, the real outbox workers, the real lease loop) in one
event loop; "killing" the leader is stopping its lease loop without releasing the lease (its parts
stop as a deposed leader's do), and its lease's end is forced in the table rather than waited for.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text

from adapters import config as configuration
from bot import Bot
from models.orm import OutboxMessage
from models.outbox import Outbox
from models.ports import Incoming, MessageHandler
from tests.conftest import NOW, make_config
from tests.fakes import FakeClock, FakeMailer, FakeTransport
from tests.web.conftest import WebChat

LEASE = "3"  # the smallest [ha] lease_seconds the configuration takes: a tick is 1 s
POLICY = {
    "min_notice": "1m", "min_gap": "1m", "reminders": "1h", "low_impact": "daily 00:00-24:00 UTC",
    "ciduty_hours": "daily 00:00-24:00 UTC",
}


class Network(FakeTransport):
    """A chat network that an instance joins (start) and leaves (stop), as often as it leads."""

    def __init__(self) -> None:
        super().__init__("irc")
        self.up = False
        self.joins = 0

    async def start(self, on_message: MessageHandler) -> None:
        await super().start(on_message)
        self.up = True
        self.joins += 1

    def bodies(self) -> list[str]:
        return [m.text for m in self.sent]


class Instance:
    def __init__(self, tmp_path: Path, name: str, clock: FakeClock):
        config = make_config(tmp_path, ha={"enabled": "on", "instance": name, "lease_seconds": LEASE}, policy=POLICY,
                             web={"listen": ""})
        self.name = name
        self.network = Network()
        self.bot = Bot(config, transports={"irc": self.network}, clock=clock, mailer=FakeMailer())

    @property
    def leads(self) -> bool:
        assert self.bot.leadership is not None
        return self.bot.leadership.fence.check()

    async def say(self, who: str, line: str, room: str = "#ci") -> None:
        await self.bot.dispatcher.answer(Incoming(network="irc", room=room, account=who, nick=who, text=line))

    async def die(self) -> None:
        """SIGKILL as the other instances see it: nothing more from it, its lease left to expire."""
        assert self.bot.leadership is not None
        await self.bot.leadership.stop(release=False)


async def until(condition: Callable[[], bool], within: float = 15.0) -> None:
    """Wait until `condition` holds (a failure bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.02)


def sql(bot: Bot, statement: str, **params: object) -> None:
    with bot.engine.begin() as connection:
        connection.execute(text(statement), params)


def expire_lease(bot: Bot) -> None:
    """As if lease_seconds had passed since the holder's last renew."""
    sql(bot, "UPDATE leader_lease SET expires_at = 0")


def lease_taken_by(bot: Bot, holder: str) -> None:
    """Another instance holds the lease now, and the old holder has not noticed yet."""
    sql(bot, "UPDATE leader_lease SET holder = :holder, epoch = epoch + 1, expires_at = expires_at + 1000",
        holder=holder)


def queue_lines(bot: Bot, *bodies: str) -> None:
    """Chat lines in the outbox, as a command would leave them (nobody is poked)."""
    with bot.sessions() as session, session.begin():
        outbox = Outbox(session, now=NOW, networks=["irc"])
        for body in bodies:
            outbox.chat(f"test:{body}", "#ci", body)
        outbox.write()


def outbox_rows(bot: Bot) -> dict[str, tuple[str, int | None]]:
    with bot.sessions() as session:
        return {r.body: (r.status, r.sent_epoch) for r in session.scalars(select(OutboxMessage))}


def run(scenario: Callable[[Instance, Instance], Awaitable[None]], tmp_path: Path) -> None:
    clock = FakeClock(NOW)

    async def main() -> None:
        a = Instance(tmp_path, "a", clock)
        await a.bot.start()
        await until(lambda: a.leads)
        b = Instance(tmp_path, "b", clock)
        await b.bot.start()
        try:
            await until(lambda: b.bot.leadership is not None and b.bot.leadership.leader == "a")
            await scenario(a, b)
        finally:
            await b.bot.stop()
            await a.bot.stop()

    asyncio.run(main())


def test_of_two_instances_exactly_one_leads_and_joins_chat_and_a_clean_stop_hands_over(tmp_path: Path) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        await asyncio.sleep(1.5)  # a standby's tick or more: it must not join meanwhile
        assert (a.network.joins, b.network.joins) == (1, 0)
        assert a.bot.reminders.running and not b.bot.reminders.running
        await a.bot.stop()  # SIGTERM: releases the lease
        await until(lambda: b.leads)
        assert not a.network.up and b.network.up and b.bot.reminders.running

    run(scenario, tmp_path)


def test_instances_on_a_sqlite_file_are_warned_that_they_must_share_one_machine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        warned = [r for r in caplog.records if r.levelname == "WARNING" and "[ha] on a SQLite file" in r.getMessage()]
        assert len(warned) == 2, [r.getMessage() for r in caplog.records]
        assert "use PostgreSQL for instances on several machines" in warned[0].getMessage()

    with caplog.at_level("WARNING", logger="downtimebot"):
        run(scenario, tmp_path)


def test_the_standby_takes_over_a_dead_leader_and_delivers_what_waited_once_with_the_missed_reminder_late(
    tmp_path: Path, clock: FakeClock,
) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        start = NOW + dt.timedelta(hours=3)
        await a.say("alice", f"!downtime propose {start:%Y-%m-%d %H:%M} UTC for 1h bug 4242 -- Move the build database")
        await a.say("carol", "!downtime approve 1")
        a.network.up = False  # the leader's network drops: what it says next waits in the outbox
        await a.say("carol", "!downtime announce 1")
        queue_lines(a.bot, *(f"queued line {n}" for n in range(20)))
        await a.die()
        # The 1h reminder falls due while nobody leads.
        a.bot.clock.advance(dt.timedelta(hours=2, minutes=5))  # type: ignore[attr-defined]
        expire_lease(b.bot)
        await until(lambda: b.leads)
        await until(lambda: all(status == "sent" for status, _ in outbox_rows(b.bot).values()))
        said = b.network.bodies()
        assert sorted(line for line in said if line.startswith("queued line")) == sorted(
            f"queued line {n}" for n in range(20))
        reminders = [line for line in said if "Reminder: downtime #1" in line]
        assert len(reminders) == 2 and all("(late" in line for line in reminders), reminders  # #ci, #developers
        assert any("Downtime #1 announced" in line for line in said)
        assert len(said) == len(set(zip(said, [m.target for m in b.network.sent]))), "a line was sent twice"
        assert not any("queued line" in line or "Reminder" in line for line in a.network.bodies())
        epoch = b.bot.leadership.epoch if b.bot.leadership else None
        assert {e for _, e in outbox_rows(b.bot).values() if e is not None} >= {epoch}

    run(scenario, tmp_path)


def test_a_leader_whose_lease_was_taken_sends_one_line_at_most_and_its_mark_is_refused(tmp_path: Path) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        chat = next(w for w in a.bot.workers if w.kind == "chat")
        queue_lines(a.bot, "first")
        lease_taken_by(a.bot, "c")  # before a's next renew: only the database knows
        await chat.deliver_pending()
        # The line went out (the one possible repeat), but the database refused to mark it sent.
        assert a.network.bodies() == ["first"]
        assert outbox_rows(a.bot)["first"] == ("pending", None)
        assert not a.leads
        await until(lambda: not a.network.up)
        queue_lines(a.bot, "second")
        a.bot.poke()
        await chat.deliver_pending()
        assert a.network.bodies() == ["first"], "a deposed leader sent again"
        expire_lease(b.bot)  # c is gone too
        await until(lambda: b.leads)
        await until(lambda: outbox_rows(b.bot)["second"][0] == "sent")
        assert sorted(b.network.bodies()) == ["first", "second"]

    run(scenario, tmp_path)


def test_a_leader_that_cannot_reach_the_database_leaves_chat_and_sends_nothing(tmp_path: Path) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        assert a.bot.leadership is not None

        def unreachable(*args: object, **kwargs: object) -> bool:
            raise ConnectionError("could not connect to the database")

        a.bot.leadership.lease.renew = unreachable  # type: ignore[method-assign]
        a.bot.leadership.lease.acquire = unreachable  # type: ignore[method-assign]
        await until(lambda: not a.network.up)
        assert not a.leads and not a.bot.reminders.running
        queue_lines(a.bot, "while a is cut off")
        a.bot.poke()
        for worker in a.bot.workers:
            await worker.deliver_pending()
        assert a.network.bodies() == []
        await until(lambda: b.leads)  # when the lease a could not renew ends
        await until(lambda: outbox_rows(b.bot)["while a is cut off"][0] == "sent")
        assert b.network.bodies() == ["while a is cut off"]

    run(scenario, tmp_path)


def test_a_paused_leader_finds_it_no_longer_leads_and_sends_nothing(tmp_path: Path) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        leadership = a.bot.leadership
        assert leadership is not None
        # SIGSTOP: a's lease queries stop answering (its loop cannot run while stopped) ...
        cont = threading.Event()
        for name in ("renew", "acquire", "read"):
            query = getattr(leadership.lease, name)
            setattr(leadership.lease, name, lambda *args, _q=query, **kw: (cont.wait(30), _q(*args, **kw))[1])
        await asyncio.sleep(1.2)  # a renew is on its way, and hangs
        # ... for 3 × lease_seconds: its lease ends meanwhile, and b takes it.
        real = leadership.clock
        leadership.clock = lambda: real() + 3 * 3.0
        expire_lease(b.bot)
        await until(lambda: b.leads)
        # SIGCONT: a's first thought is its fence, which is closed (no query needed).
        queue_lines(a.bot, "after the pause")
        a.bot.poke()
        for worker in a.bot.workers:
            await worker.deliver_pending()
        cont.set()
        await until(lambda: not a.network.up)
        await until(lambda: outbox_rows(b.bot)["after the pause"][0] == "sent")
        assert b.network.bodies() == ["after the pause"] and a.network.bodies() == []
        assert not a.leads

    run(scenario, tmp_path)


def test_a_line_reaching_an_instance_that_no_longer_leads_is_not_acted_on(tmp_path: Path) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        lease_taken_by(a.bot, "c")
        a.bot.fence.lost("taken")
        await a.bot.senders(Incoming(network="irc", room="#ci", account="alice", nick="alice",
                                     text="!downtime propose 2026-12-01 14:00 UTC for 1h -- Move the build database"))
        await a.bot.senders.idle()
        assert outbox_rows(a.bot) == {}

    run(scenario, tmp_path)


def test_an_instance_that_leads_again_joins_chat_again_and_forgets_the_answers_it_kept(tmp_path: Path) -> None:
    async def scenario(a: Instance, b: Instance) -> None:
        await b.bot.stop()
        before = a.bot.dispatcher.generation() if a.bot.dispatcher.generation else None
        lease_taken_by(a.bot, "c")
        a.bot.fence.lost("taken")
        await until(lambda: not a.network.up)
        expire_lease(a.bot)
        await until(lambda: a.leads and a.network.up)
        assert a.network.joins == 2 and a.bot.reminders.running
        assert a.bot.dispatcher.generation is not None and a.bot.dispatcher.generation() != before
        queue_lines(a.bot, "second term")
        a.bot.poke()
        await until(lambda: outbox_rows(a.bot)["second term"][0] == "sent")

    run(scenario, tmp_path)


# ---- the role, outside ------------------------------------------------------------------------

@pytest.fixture
def standby_web(tmp_path: Path, clock: FakeClock) -> WebChat:
    config: configuration.Config = make_config(
        tmp_path, ha={"enabled": "on", "instance": "b", "lease_seconds": LEASE}, web={"listen": "127.0.0.1:0"},
    )
    return WebChat(config, clock)


def test_the_heartbeat_says_a_standby_is_healthy_and_names_the_role_and_the_leader(standby_web: WebChat) -> None:
    web = standby_web
    try:
        web.transports["irc"].up = False  # a standby is not in chat
        reply = web.get("/__heartbeat__")
        body = reply.json()
        assert reply.status == 200 and body["status"] == "ok", body
        assert body["checks"]["irc"] == "standby" and body["checks"]["scheduler"] == "standby"
        assert (body["instance"], body["role"], body["leader"]) == ("b", "standby", None)
        assert "downtimebot_is_leader 0.0" in web.get("/metrics").text

        async def lead() -> None:
            web.transports["irc"].up = True  # joins when it leads (the fake does not connect by itself)
            await web.bot.start()
            await until(lambda: web.bot.fence.check())

        web.loop.run_until_complete(lead())
        body = web.get("/__heartbeat__").json()
        assert (body["role"], body["leader"]) == ("leader", "b") and body["checks"]["irc"] == "ok", body
        assert "downtimebot_is_leader 1.0" in web.get("/metrics").text
    finally:
        web.close()


def test_without_ha_the_heartbeat_has_no_role_and_the_instance_leads(tmp_path: Path, clock: FakeClock) -> None:
    web = WebChat(make_config(tmp_path, web={"listen": "127.0.0.1:0"}), clock)
    try:
        body = web.get("/__heartbeat__").json()
        assert "role" not in body and "leader" not in body
        assert "downtimebot_is_leader 1.0" in web.get("/metrics").text
    finally:
        web.close()


def test_an_instance_whose_migration_races_another_tries_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    import bot as composition

    calls: list[bool] = []

    def racing(engine: object, *, in_child: bool) -> None:
        calls.append(in_child)
        if len(calls) == 1:
            raise RuntimeError("table downtimes already exists")

    monkeypatch.setattr(composition, "migrate", racing)
    engine = composition.make_engine(f"sqlite:///{tmp_path / 'race.db'}")
    composition.migrate_beside_others(engine, in_child=True, pause=0.01)
    assert calls == [True, True]
    assert "another instance may be running them" in caplog.text


def test_a_leader_that_wakes_past_its_lease_writes_no_further_line_of_a_message_on_irc_and_quits(
    tmp_path: Path,
) -> None:
    """SIGCONT of a paused leader on the real IRC transport: the line the pacer was holding is not
    written (the fence is asked before each line), the row stays pending, and the instance quits."""
    from adapters.irc import IrcConfig, IrcTransport
    from tests.unit.test_irc_regain import ScriptedServer

    async def scenario() -> None:
        server = ScriptedServer()
        server.held = False
        await server.start()
        irc = IrcTransport(IrcConfig(host="127.0.0.1", port=server.port, nick="downtimebot", identity="nick",
                                     channels={"#ci": "#ci", "#developers": "#developers"},
                                     line_burst=1, line_rate=5.0, burst=4096, rate=100000.0))
        config = make_config(tmp_path, ha={"enabled": "on", "instance": "a", "lease_seconds": LEASE},
                             policy=POLICY, web={"listen": ""})
        bot = Bot(config, transports={"irc": irc}, clock=FakeClock(NOW), mailer=FakeMailer())
        leadership = bot.leadership
        assert leadership is not None
        await bot.start()
        try:
            await until(lambda: irc.joined == {"#ci", "#developers"})
            said = lambda: [l.split(" :", 1)[1] for l in server.received if l.startswith("PRIVMSG #ci :")]  # noqa: E731
            queue_lines(bot, "one\ntwo\nthree")
            bot.poke()
            await until(lambda: "one" in said())
            leadership.deadline = 0.0  # woken past its lease; its loop has not run yet
            await until(lambda: any(line.startswith("QUIT") for line in server.received))
            assert said() == ["one"]
            assert outbox_rows(bot)["one\ntwo\nthree"] == ("pending", None)
        finally:
            await bot.stop()
            await server.stop()

    asyncio.run(scenario())
