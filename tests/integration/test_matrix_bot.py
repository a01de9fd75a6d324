"""The whole bot on Matrix (and on IRC at the same time) against a real Synapse and ngircd.

One Synapse per module (raised rate limits) plus one with Synapse's default limits for the
test that needs them; one ngircd. Tests that kill and restart the bot run ``python bot.py
--config <file>`` as a subprocess; the others run `Bot` in-process.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters import config as configuration
from adapters.matrix import STATE_FILE, MatrixTransport
from bot import Bot, build_transports
from tests.servers.ircd import Ngircd, RawClient, ServerUnavailable, ensure_installed
from tests.servers.synapse import (
    CountingProxy,
    MatrixTestUser,
    Synapse,
    running_synapse,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse"
PASSWORD_ENV = "DTB_TEST_MATRIX_PASSWORD"
HTML_INJECTION = '<a href="https://evil.example/">click</a> <script>alert(1)</script> & more'


# -- servers -------------------------------------------------------------------------------




@pytest.fixture(scope="module")
def synapse() -> Iterator[Synapse]:
    yield from running_synapse("raised")


@pytest.fixture(scope="module")
def synapse_default_limits() -> Iterator[Synapse]:
    yield from running_synapse("default")


@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    try:
        ensure_installed("ngircd")
    except ServerUnavailable as missing:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(missing))
    with Ngircd(penalties=False) as server:
        yield server


# -- a scene: the bot's account, three people, two rooms ------------------------------------


@dataclass
class Scene:
    hs: Synapse
    tmp: Path
    tag: str
    bot_id: str
    engineer: str  # eve: asks for downtimes
    ciduty: str  # carol
    sheriff: str  # sam
    homeserver: str = ""  # the bot's homeserver URL (Synapse, or a proxy in front of it)
    irc_port: int | None = None
    extra: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def ci_alias(self) -> str:
        return f"#ci-{self.tag}:{self.hs.server_name}"

    @property
    def dev_alias(self) -> str:
        return f"#dev-{self.tag}:{self.hs.server_name}"

    @property
    def db(self) -> Path:
        return self.tmp / "bot.db"

    @property
    def store(self) -> Path:
        return self.tmp / "matrix-store"

    def irc_nick(self, who: str) -> str:
        return f"{who}{self.tag[:4]}"

    def write_config(self) -> Path:
        transports = "irc,matrix" if self.irc_port else "matrix"
        sections: dict[str, dict[str, str]] = {
            "bot": {"nick": f"dtb{self.tag[:5]}", "database": f"sqlite:///{self.db}", "transports": transports},
            "channels": {"requests": "#ci", "announce": "#developers"},
            "roles": {"ciduty": self.ciduty, "sheriffs": self.sheriff},
            "policy": {"min_notice": "1h", "low_impact": "daily 00:00-24:00 UTC",
                       "ciduty_hours": "daily 00:00-24:00 UTC"},
            "matrix": {
                "homeserver": self.homeserver or self.hs.url, "user_id": self.bot_id,
                "password_env": PASSWORD_ENV, "device_name": "downtime-bot test",
                "requests_room": self.ci_alias, "announce_room": self.dev_alias,
                "store_path": str(self.store), "sync_timeout_ms": "5000",
                "backoff_min": "0.5", "backoff_max": "4",
            },
        }
        if self.irc_port:
            # One person, two accounts: the role holds on both networks.
            sections["people"] = {
                "carol": f"{self.irc_nick('carol')}, {self.ciduty}",
                "sam": f"{self.irc_nick('sam')}, {self.sheriff}",
            }
            sections["roles"] = {"ciduty": "carol", "sheriffs": "sam"}
            sections["irc"] = {"host": "127.0.0.1", "port": str(self.irc_port), "identity": "nick",
                               "pacing": "off", "nick": f"dtb{self.tag[:5]}"}
        for name, values in self.extra.items():
            sections.setdefault(name, {}).update(values)
        path = self.tmp / "config.ini"
        path.write_text("".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
            for name, values in sections.items()
        ))
        return path

    def config(self) -> configuration.Config:
        os.environ[PASSWORD_ENV] = PASSWORD
        return configuration.load(self.write_config())

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db, timeout=10)) as db:
            return db.execute(query, args).fetchall()

    def audit(self, action: str) -> int:
        return int(self.sql("SELECT count(*) FROM audit_events WHERE action = ?", action)[0][0])


def make_scene(hs: Synapse, tmp: Path) -> Scene:
    tag = secrets.token_hex(4)
    return Scene(
        hs=hs, tmp=tmp, tag=tag,
        bot_id=hs.register(f"dtbot-{tag}", PASSWORD),
        engineer=hs.register(f"eve-{tag}", PASSWORD),
        ciduty=hs.register(f"carol-{tag}", PASSWORD),
        sheriff=hs.register(f"sam-{tag}", PASSWORD),
    )


@dataclass
class People:
    eve: MatrixTestUser
    carol: MatrixTestUser
    sam: MatrixTestUser
    ci: str  # room ids
    dev: str


@contextlib.asynccontextmanager
async def people(scene: Scene) -> AsyncIterator[People]:
    """The three people logged in, #ci and #developers created by carol and joined by all."""
    users = [MatrixTestUser(scene.hs.url, mxid, PASSWORD)
             for mxid in (scene.engineer, scene.ciduty, scene.sheriff)]
    for user in users:
        await user.__aenter__()
    try:
        eve, carol, sam = users
        ci = await carol.create_room(alias=f"ci-{scene.tag}")
        dev = await carol.create_room(alias=f"dev-{scene.tag}")
        for user in (eve, sam):
            await user.join(ci)
            await user.join(dev)
        yield People(eve, carol, sam, ci, dev)
    finally:
        for user in users:
            await user.__aexit__()


def start_time(days: int = 3, hour: int = 14) -> str:
    day = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=days)
    return f"{day:%Y-%m-%d} {hour:02d}:00 UTC"


def from_bot(scene: Scene, predicate: Callable[[Any], bool] = lambda e: True) -> Callable[[Any], bool]:
    return lambda e: (e.sender == scene.bot_id and e.source.get("type") == "m.room.message"
                      and predicate(e))


def starting(prefix: str) -> Callable[[Any], bool]:
    return lambda e: str(e.source["content"].get("body", "")).startswith(prefix)


def containing(text: str) -> Callable[[Any], bool]:
    return lambda e: text in str(e.source["content"].get("body", ""))


async def bot_joined(scene: Scene, user: MatrixTestUser, *rooms: str) -> None:
    for room in rooms:
        await user.wait_for(lambda e: getattr(e, "state_key", None) == scene.bot_id
                            and getattr(e, "membership", None) == "join", room, timeout=30)


async def say(user: MatrixTestUser, room: str, scene: Scene, text: str,
              answer: Callable[[Any], bool], timeout: float = 20) -> Any:
    """Send a command and wait for the bot's matching answer in that room (a new event)."""
    old = {e.event_id for _room, e in user.events}
    await user.send(room, text)
    return await user.wait_for(from_bot(scene, lambda e: e.event_id not in old and answer(e)), room,
                               timeout=timeout)


def bodies(user: MatrixTestUser, scene: Scene, room: str) -> list[str]:
    return [e.source["content"]["body"] for e in user.messages_from(scene.bot_id, room)]


@contextlib.asynccontextmanager
async def running_bot(scene: Scene) -> AsyncIterator[Bot]:
    config = scene.config()
    bot = Bot(config, transports=build_transports(config, io.StringIO()), stdout=io.StringIO())
    await bot.start()
    try:
        matrix = bot.transports["matrix"]
        assert isinstance(matrix, MatrixTransport)
        assert await matrix.wait_until_synced(30), "the bot never completed a Matrix sync"
        yield bot
    finally:
        await bot.stop()


class BotProcess:
    """``python bot.py --config <file>`` as a subprocess, killed with SIGKILL when asked."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        path = self.scene.write_config()
        env = dict(os.environ, **{PASSWORD_ENV: PASSWORD, "DOWNTIMEBOT_LOG_LEVEL": "INFO"})
        self.starts += 1
        log = open(self.scene.tmp / f"bot-{self.starts}.log", "wb")  # noqa: SIM115 (closed below)
        with log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "bot.py"), "--config", str(path)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.scene.tmp.glob("bot-*.log")))


async def until(condition: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.1)


def run(coro: Any) -> None:
    asyncio.run(coro)


# -- a whole downtime from Matrix ---------------------------------------------------------


def test_a_whole_downtime_driven_from_matrix_by_engineer_ciduty_and_sheriff(synapse: Synapse, tmp_path: Path) -> None:
    scene = make_scene(synapse, tmp_path)

    async def scenario() -> None:
        async with people(scene) as p, running_bot(scene):
            await bot_joined(scene, p.carol, p.ci, p.dev)
            when = start_time()
            proposed = await say(p.eve, p.ci, scene,
                                 f"!downtime propose {when} for 2h bug 123456 -- Upgrade hg.mozilla.org",
                                 starting("Downtime #1 proposed"))
            assert proposed.source["content"]["body"].startswith(
                f"Downtime #1 proposed by {scene.engineer}: {when}")
            await say(p.carol, p.ci, scene, "!downtime approve 1", starting("Downtime #1 approved"))
            await say(p.carol, p.ci, scene, "!downtime announce 1", starting("Downtime #1 announced for"))
            announced = await p.sam.wait_for(from_bot(scene, starting("Downtime #1 announced:")), p.dev)
            assert "Upgrade hg.mozilla.org (bug 123456)" in announced.source["content"]["body"]

            await say(p.carol, p.ci, scene, "!downtime start 1 --force", starting("Downtime #1 started;"))
            ping = (await p.sam.wait_for(from_bot(scene, containing("Downtime #1 starts now")), p.dev)).source["content"]
            assert ping["body"].startswith(f"{scene.sheriff}: Downtime #1 starts now: closing ")
            assert ping["formatted_body"].startswith(
                f'<a href="https://matrix.to/#/{scene.sheriff}">{scene.sheriff}</a>: Downtime #1 starts now')
            assert ping["m.mentions"] == {"user_ids": [scene.sheriff]}
            started = (await p.carol.wait_for(from_bot(scene, containing("started by")), p.ci)).source["content"]
            # CiDuty is named in the text, so the pill is put where the name is.
            assert started["body"].startswith(f"Downtime #1 started by {scene.ciduty}; trees closed until about ")
            assert started["m.mentions"] == {"user_ids": [scene.ciduty]}
            assert f'<a href="https://matrix.to/#/{scene.ciduty}">' in started["formatted_body"]

            await say(p.carol, p.ci, scene, "!downtime done 1 123456 landed", starting("Bug 123456 in downtime #1: landed"))
            await say(p.carol, p.ci, scene, "!downtime end 1", starting("Downtime #1 ended: TREE OPEN sent"))
            tree_open = (await p.sam.wait_for(from_bot(scene, containing("TREE OPEN")), p.dev)).source["content"]
            assert tree_open["body"].startswith(f"{scene.sheriff}: TREE OPEN: downtime #1 is over")
            assert "Done: 123456; not done: nothing" in tree_open["body"]
            assert tree_open["m.mentions"] == {"user_ids": [scene.sheriff]}
            verified = await say(p.sam, p.dev, scene, "!downtime verify 1", starting("Downtime #1 verified"))
            assert verified.source["content"]["body"] == f"Downtime #1 verified by {scene.sheriff}. Thanks!"
            # Every announcement in #developers arrived once, in order.
            dev = bodies(p.sam, scene, p.dev)
            assert [b.split(" ", 2)[:2] for b in dev] == [
                ["Downtime", "#1"], [scene.sheriff + ":", "Downtime"], [scene.sheriff + ":", "TREE"],
                ["Downtime", "#1"],
            ]
        assert [scene.audit(a) for a in ("propose", "approve", "announce", "start", "end", "verify")] == [1] * 6

    run(scenario())


def test_html_in_a_notice_wording_arrives_as_text(synapse: Synapse, tmp_path: Path) -> None:
    scene = make_scene(synapse, tmp_path)

    async def scenario() -> None:
        async with people(scene) as p, running_bot(scene):
            await bot_joined(scene, p.carol, p.ci)
            await say(p.eve, p.ci, scene, f"!downtime propose {start_time()} for 1h -- {HTML_INJECTION}",
                      starting("Downtime #1 proposed"))
            reply = await say(p.eve, p.ci, scene, "!downtime show 1", containing(HTML_INJECTION))
            notice = await say(p.eve, p.ci, scene, "!downtime notice 1", containing("Tree-closing downtime #1"))
            assert notice.event_id != reply.event_id
            for event in (reply, notice):
                content = event.source["content"]
                assert HTML_INJECTION in content["body"]
                formatted = content["formatted_body"]
                assert "<script" not in formatted and "<a href=\"https://evil" not in formatted
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in formatted
                assert "&lt;a href=&quot;https://evil.example/&quot;&gt;click&lt;/a&gt;" in formatted
                assert "&amp; more" in formatted

    run(scenario())


# -- IRC and Matrix from one process ------------------------------------------------------


def test_proposed_on_irc_approved_on_matrix_started_on_irc_pings_sheriffs_once_on_each_network(
    synapse: Synapse, ngircd: Ngircd, tmp_path: Path
) -> None:
    scene = make_scene(synapse, tmp_path)
    scene.irc_port = ngircd.port

    async def scenario() -> None:
        async with people(scene) as p, contextlib.AsyncExitStack() as stack:
            irc = {}
            for who in ("eve", "carol", "sam"):
                irc[who] = await stack.enter_async_context(RawClient(ngircd.port, scene.irc_nick(who)))
                await irc[who].join("#ci")
                await irc[who].join("#developers")
            bot = await stack.enter_async_context(running_bot(scene))
            botnick = bot.config.irc.nick
            await bot_joined(scene, p.carol, p.ci, p.dev)
            for channel in ("#ci", "#developers"):
                await irc["carol"].wait_for(lambda l: l.command == "JOIN" and l.nick == botnick
                                            and l.params[:1] == (channel,), timeout=30, since=0)

            def said(channel: str, text: str) -> Callable[[Any], bool]:
                return lambda l: (l.command == "PRIVMSG" and l.nick == botnick
                                  and l.params[:1] == (channel,) and text in l.text)

            when = start_time()
            await irc["eve"].privmsg("#ci", f"!downtime propose {when} for 2h bug 123456 -- Upgrade hg.mozilla.org")
            await irc["eve"].wait_for(said("#ci", "Downtime #1 proposed by " + scene.irc_nick("eve")))
            # CiDuty on Matrix hears of it, as a mention.
            ping = await p.carol.wait_for(from_bot(scene, containing("New downtime request #1")), p.ci)
            assert ping.source["content"]["m.mentions"] == {"user_ids": [scene.ciduty]}

            await say(p.carol, p.ci, scene, "!downtime approve 1", starting("Downtime #1 approved"))
            await say(p.carol, p.ci, scene, "!downtime announce 1", starting("Downtime #1 announced for"))
            await irc["carol"].privmsg("#ci", "!downtime start 1 --force")
            await irc["carol"].wait_for(said("#ci", "Downtime #1 started; sheriffs notified."))

            irc_ping = await irc["sam"].wait_for(said("#developers", "Downtime #1 starts now"), timeout=20)
            assert irc_ping.text.startswith(f"{scene.irc_nick('sam')}: Downtime #1 starts now")
            mx_ping = (await p.sam.wait_for(from_bot(scene, containing("Downtime #1 starts now")), p.dev)).source["content"]
            assert mx_ping["body"].startswith(f"{scene.sheriff}: Downtime #1 starts now")
            assert mx_ping["m.mentions"] == {"user_ids": [scene.sheriff]}

            # The TREE OPEN comes after the ping in each network's outbox order: once it is
            # there, a doubled ping would be there too.
            await irc["carol"].privmsg("#ci", "!downtime end 1")
            await irc["sam"].wait_for(said("#developers", "TREE OPEN"), timeout=20)
            await p.sam.wait_for(from_bot(scene, containing("TREE OPEN")), p.dev)
            irc_pings = [l for l in irc["sam"].lines if said("#developers", "Downtime #1 starts now")(l)]
            mx_pings = [b for b in bodies(p.sam, scene, p.dev) if "Downtime #1 starts now" in b]
            assert (len(irc_pings), len(mx_pings)) == (1, 1)
            audit = scene.sql("SELECT action, network FROM audit_events ORDER BY id")
            assert [a for a in audit if a[0] in ("propose", "approve", "announce", "start", "end")] == [
                ("propose", "irc"), ("approve", "matrix"), ("announce", "matrix"), ("start", "irc"), ("end", "irc")]

    run(scenario())


# -- killed and restarted ----------------------------------------------------------------


@pytest.mark.slow
def test_a_bot_killed_with_a_command_in_flight_and_messages_queued_runs_nothing_twice_and_loses_nothing(
    synapse: Synapse, tmp_path: Path
) -> None:
    scene = make_scene(synapse, tmp_path)
    proxy = synapse.proxy()
    scene.homeserver = proxy.url
    bot = BotProcess(scene)

    async def scenario() -> None:
        async with people(scene) as p:
            bot.start()
            try:
                await bot_joined(scene, p.carol, p.ci, p.dev)
                await say(p.eve, p.ci, scene, f"!downtime propose {start_time()} for 2h bug 123456 -- Upgrade hg",
                          starting("Downtime #1 proposed"))
                await say(p.carol, p.ci, scene, "!downtime approve 1", starting("Downtime #1 approved"))
                # The bot's state as it is now: what a kill before the next save leaves behind.
                await until(lambda: (scene.store / STATE_FILE).exists())
                before = json.loads((scene.store / STATE_FILE).read_text())

                # Sends reach Synapse but the answers are lost: the bot cannot know they arrived.
                proxy.fault("/send/", "lose_reply")
                await p.carol.send(p.ci, "!downtime announce 1")
                await until(lambda: scene.audit("announce") == 1, what="the announce committed")
                await until(lambda: proxy.count("/send/", status=0) >= 1, what="a send whose reply was lost")
                pending = scene.sql("SELECT count(*) FROM outbox WHERE status = 'pending' AND kind = 'chat'")[0][0]
                assert pending >= 3  # the reply and the two announcements
                bot.kill()

                # As if killed after Synapse delivered the command but before next_batch was saved.
                state = json.loads((scene.store / STATE_FILE).read_text())
                state["next_batch"], state["seen_events"] = before["next_batch"], before["seen_events"]
                (scene.store / STATE_FILE).write_text(json.dumps(state))
                with contextlib.closing(sqlite3.connect(scene.db, timeout=10)) as db, db:
                    # The position the bot resumes from is the database's (saved with the file's).
                    rolled_back = db.execute("UPDATE bot_meta SET value = ? WHERE key = 'matrix.next_batch'",
                                             (before["next_batch"],))
                    assert rolled_back.rowcount == 1
                proxy.fault("/send/", None)
                bot.start()

                await say(p.eve, p.ci, scene, "!downtime show 1", starting("#1 ["))
                await p.sam.wait_for(from_bot(scene, starting("Downtime #1 announced:")), p.dev)
                await p.carol.wait_for(from_bot(scene, starting("Downtime #1 announced:")), p.ci)
                await until(lambda: not scene.sql("SELECT 1 FROM outbox WHERE status != 'sent'"),
                            what="the outbox to be delivered")
                ci = bodies(p.carol, scene, p.ci)
                assert sum(b.startswith("Downtime #1 announced for") for b in ci) == 1
                assert sum(b.startswith("Downtime #1 announced:") for b in ci) == 1
                assert sum(b.startswith("Downtime #1 approved") for b in ci) == 1
                assert sum(b.startswith("Downtime #1 proposed") for b in ci) == 1
                assert sum(b.startswith("Downtime #1 announced:") for b in bodies(p.sam, scene, p.dev)) == 1
                assert [scene.audit(a) for a in ("propose", "approve", "announce")] == [1, 1, 1]
                assert not any("already approved" in b or "cannot" in b for b in ci)
                # The restarted bot really was given the announce again, and ignored it.
                assert "already handled" in (scene.tmp / "bot-2.log").read_text()
            except BaseException:
                print(bot.log())
                raise
            finally:
                bot.stop()

    run(scenario())


# -- taking over: a new leader on another machine ---------------------------------------


def test_a_new_leader_with_an_empty_matrix_store_answers_what_was_said_while_no_bot_ran_and_nothing_twice(
    synapse: Synapse, tmp_path: Path
) -> None:
    scene = make_scene(synapse, tmp_path)

    async def scenario() -> None:
        async with people(scene) as p:
            async with running_bot(scene):
                await bot_joined(scene, p.carol, p.ci, p.dev)
                await say(p.eve, p.ci, scene, f"!downtime propose {start_time()} for 2h bug 123456 -- Upgrade hg",
                          starting("Downtime #1 proposed"))
            await p.carol.send(p.ci, "!downtime approve 1")  # while no instance runs
            # The other machine: the same database, a Matrix store of its own, empty.
            scene.extra["matrix"] = {"store_path": str(scene.tmp / "another-machine")}
            async with running_bot(scene):
                await p.carol.wait_for(from_bot(scene, starting("Downtime #1 approved")), p.ci, timeout=30)
                await say(p.eve, p.ci, scene, "!downtime show 1", starting("#1 ["))
            ci = bodies(p.carol, scene, p.ci)
            assert sum(b.startswith("Downtime #1 proposed") for b in ci) == 1
            assert sum(b.startswith("Downtime #1 approved") for b in ci) == 1
            assert [scene.audit(a) for a in ("propose", "approve")] == [1, 1]
            assert scene.sql("SELECT value FROM bot_meta WHERE key = 'matrix.next_batch'")

    run(scenario())


# -- Synapse down for 30 s ---------------------------------------------------------------


@pytest.mark.slow
def test_synapse_down_for_30_seconds_the_bot_backs_off_then_delivers_what_was_queued(
    synapse: Synapse, ngircd: Ngircd, tmp_path: Path
) -> None:
    scene = make_scene(synapse, tmp_path)
    proxy: CountingProxy = synapse.proxy()
    scene.homeserver = proxy.url
    scene.irc_port = ngircd.port

    async def scenario() -> None:
        async with people(scene) as p, RawClient(ngircd.port, scene.irc_nick("eve")) as eve_irc:
            await eve_irc.join("#ci")
            async with running_bot(scene) as bot:
                await bot_joined(scene, p.carol, p.ci, p.dev)
                proxy.reset()
                await asyncio.to_thread(synapse.stop)
                try:
                    await until(lambda: not bot.transports["matrix"].connected, what="the bot to notice")
                    # Asked on IRC while Matrix is down: CiDuty's ping on Matrix waits in the outbox.
                    await eve_irc.privmsg("#ci", f"!downtime propose {start_time()} for 1h -- During the outage")
                    await eve_irc.wait_for(lambda l: l.command == "PRIVMSG" and "Downtime #1 proposed" in l.text)
                    await asyncio.sleep(30)
                    during = len(proxy.requests)
                finally:
                    await asyncio.to_thread(synapse.start)
                ping = await p.carol.wait_for(from_bot(scene, containing("New downtime request #1")), p.ci, timeout=30)
                assert "During the outage" in ping.source["content"]["body"]
                await say(p.carol, p.ci, scene, "!downtime show 1", starting("#1 ["))
                # Backoff 0.5 s doubling to 4 s: about ten attempts in 30 s; a tight loop makes thousands.
                assert 3 <= during <= 25, proxy.requests
                assert sum("New downtime request #1" in b for b in bodies(p.carol, scene, p.ci)) == 1

    run(scenario())


# -- Synapse's default rate limits --------------------------------------------------------


@pytest.mark.slow
def test_under_synapse_default_rate_limits_every_announcement_arrives(
    synapse_default_limits: Synapse, tmp_path: Path
) -> None:
    hs = synapse_default_limits
    scene = make_scene(hs, tmp_path)
    proxy = hs.proxy()
    scene.homeserver = proxy.url
    for person in (scene.engineer, scene.ciduty, scene.sheriff):
        hs.exempt_from_rate_limits(person)  # the bot alone is limited

    async def scenario() -> None:
        async with people(scene) as p, running_bot(scene):
            await bot_joined(scene, p.carol, p.ci, p.dev)
            for n in (1, 2, 3):
                await p.eve.send(p.ci, f"!downtime propose {start_time(days=2 + 2 * n)} for 1h bug {100 + n} -- Work {n}")
                await p.carol.send(p.ci, f"!downtime approve {n}")
                await p.carol.send(p.ci, f"!downtime announce {n}")
            await p.sam.wait_for(from_bot(scene, starting("Downtime #3 announced:")), p.dev, timeout=120)
            assert [b.split(":")[0] for b in bodies(p.sam, scene, p.dev)] == [
                f"Downtime #{n} announced" for n in (1, 2, 3)]
            await p.carol.wait_for(from_bot(scene, starting("Downtime #3 announced:")), p.ci, timeout=60)
            ci = bodies(p.carol, scene, p.ci)
            for n in (1, 2, 3):
                assert sum(b.startswith(f"Downtime #{n} announced:") for b in ci) == 1
                assert sum(b.startswith(f"Downtime #{n} announced for") for b in ci) == 1
            assert proxy.count("/send/", status=429) >= 1  # the limit was really hit

    run(scenario())
