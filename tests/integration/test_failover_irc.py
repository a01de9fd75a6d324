"""[ha] failover drills: two real `bot.py` processes on one database and a real ngircd.

A watcher (a RawClient in the requests channel) counts every line the bot says, whichever
instance says it. The database is a parameter (`ha_database`): a SQLite file shared by the two
processes (WAL), and PostgreSQL when the session's server fixture exists (tests/conftest.py
`postgres`). lease_seconds is 3 (the smallest the configuration takes).

- both start together: exactly one joins the channels, the other stands by (and says so at
  /__heartbeat__);
- the leader is SIGKILLed while it delivers 20 queued lines: the other takes over within
  lease_seconds + 5 s and every line arrives, at most one of them twice (the line being written
  when the leader died: IRC cannot confirm it); the repeated lines are counted and printed;
- the leader is SIGSTOPped for 3 × lease_seconds: the standby takes over; after SIGCONT the old
  leader finds it no longer leads and says nothing more.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.db import make_engine
from models.outbox import Outbox
from tests.integration.test_irc_transport import _require
from tests.servers.ircd import Line, Ngircd, RawClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LEASE = 3
_names = itertools.count(1)


@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    _require("ngircd")
    with Ngircd(penalties=True) as server:  # default flood rules
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def ha_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(the database URL both instances use, what their configuration and environment add)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.db'}", {}
        return
    try:
        server = request.getfixturevalue("postgres")
    except pytest.FixtureLookupError:
        pytest.skip("this branch has no PostgreSQL test server fixture yet (tests/conftest.py `postgres`)")
    from tests.servers.postgres import PASSWORD_ENV  # type: ignore[import-not-found,unused-ignore]

    name = f"failover_{os.getpid()}_{next(_names)}"
    yield server.create_database(name), {PASSWORD_ENV: os.environ[PASSWORD_ENV]}
    server.drop_database(name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Instance:
    """`python bot.py --config <file>` as one [ha] instance."""

    def __init__(self, tmp: Path, name: str, *, port: int, tag: str, database: str, env: dict[str, str]):
        self.name = name
        self.web = free_port()
        self.log = tmp / f"{name}.log"
        self.config = tmp / f"{name}.ini"
        password_key = f"database_password_env = {next(iter(env))}\n" if env else ""
        self.config.write_text(
            "[bot]\n"
            f"nick = dtbot{tag}\n"
            f"database = {database}\n{password_key}"
            "transports = irc\n"
            "[channels]\n"
            f"requests = #ci-{tag}\nannounce = #dev-{tag}\n"
            "[roles]\nciduty = nobody\n"
            "[irc]\n"
            f"host = 127.0.0.1\nport = {port}\nidentity = nick\n"
            "[web]\n"
            f"listen = 127.0.0.1:{self.web}\n"
            "[ha]\n"
            f"enabled = on\ninstance = {name}\nlease_seconds = {LEASE}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNTIMEBOT_")}
        self.env.update(DOWNTIMEBOT_LOG_LEVEL="INFO", **env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bot.py"), "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env, cwd=self.log.parent,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    async def wait_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(pattern) < count:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited:\n{self.text()[-3000:]}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {pattern!r} seen {self.count(pattern)}/{count} times:\n"
                                     f"{self.text()[-3000:]}")
            await asyncio.sleep(0.05)

    def heartbeat(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web}/__heartbeat__", timeout=10) as reply:
            body: dict[str, object] = json.loads(reply.read())
            return body

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def queue(database: str, env: dict[str, str], channel: str, bodies: list[str]) -> None:
    """Chat lines in the outbox, as a command would leave them for the leader to deliver."""
    engine = make_engine(database, password=next(iter(env.values()), None))
    try:
        from adapters.db import session_factory
        from tests.conftest import NOW

        with session_factory(engine)() as session, session.begin():
            outbox = Outbox(session, now=NOW, networks=["irc"])
            for body in bodies:
                outbox.chat(f"drill:{body}", channel, body)
            outbox.write()
    finally:
        engine.dispose()


def lines_from_bot(watcher: RawClient, tag: str, since: int = 0) -> list[Line]:
    return [line for line in watcher.lines[since:]
            if line.command == "PRIVMSG" and line.nick.lower().startswith(f"dtbot{tag}")]


async def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


def test_two_instances_one_voice_through_a_kill_and_a_pause(
    ngircd: Ngircd, tmp_path: Path, ha_database: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str],
) -> None:
    database, env = ha_database
    t = uuid.uuid4().hex[:6]
    channel = f"#ci-{t}"
    a, b = (Instance(tmp_path, n, port=ngircd.port, tag=t, database=database, env=env) for n in ("a", "b"))
    instances = {"a": a, "b": b}
    report: list[str] = []

    async def scenario() -> None:
        watcher = RawClient(ngircd.port, f"watch{t}")
        await watcher.connect()
        await watcher.join(channel)
        try:
            # Both start together: exactly one leads and joins, the other stands by.
            a.start()
            b.start()
            await wait_until(lambda: a.count(r"instance a leads") + b.count(r"instance b leads") == 1, 30, "a leader")
            await asyncio.sleep(LEASE)  # the standby has tried a few times meanwhile
            leader, standby = (a, b) if a.count(r"instance a leads") else (b, a)
            await leader.wait_log(rf"IRC joined #ci-{t}\b")
            await standby.wait_log(rf"instance {standby.name} stands by \(leader: {leader.name}\)")
            assert standby.count("IRC joined") == 0 and standby.count(r"leads \(epoch") == 0
            beat = standby.heartbeat()
            assert (beat["status"], beat["role"], beat["leader"]) == ("ok", "standby", leader.name), beat
            assert leader.heartbeat()["role"] == "leader"

            # SIGKILL the leader while it delivers 20 queued lines.
            bodies = [f"drill {t} line {n:02d}" for n in range(20)]
            mark = len(watcher.lines)
            queue(database, env, channel, bodies)
            await wait_until(lambda: len(lines_from_bot(watcher, t, mark)) >= 1, 3 * LEASE + 10, "the first line")
            leader.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            before = len(lines_from_bot(watcher, t, mark))
            await standby.wait_log(rf"instance {standby.name} leads", timeout=LEASE + 5)
            await wait_until(lambda: len(lines_from_bot(watcher, t, mark)) > before or
                             len({l.text for l in lines_from_bot(watcher, t, mark)}) == 20,
                             LEASE + 5, "the first line from the new leader")
            first_from_new = time.monotonic() - killed_at
            await wait_until(lambda: {l.text for l in lines_from_bot(watcher, t, mark)} >= set(bodies), 60,
                             "every queued line")
            await asyncio.sleep(2)  # anything said twice would come now
            said = [l.text for l in lines_from_bot(watcher, t, mark)]
            repeated = sorted({s for s in said if said.count(s) > 1})
            report.append(f"SIGKILL: {len(said)} lines seen for 20 queued; repeated: {len(repeated)} {repeated}; "
                          f"{before} before the kill; kill -> first line from the new leader {first_from_new:.1f} s")
            assert sorted(set(said)) == bodies
            assert len(repeated) <= 1 and all(said.count(s) == 2 for s in repeated), said

            # The killed one comes back as a standby; the survivor leads on.
            survivor, back = standby, leader
            leads, joins = back.count(rf"instance {back.name} leads"), back.count(rf"IRC joined #ci-{t}\b")
            back.start()
            await back.wait_log(rf"instance {back.name} stands by \(leader: {survivor.name}\)")

            # SIGSTOP the leader for 3 x lease_seconds; the other takes over; SIGCONT: nothing more from it.
            survivor.signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            # Queued while the leader is stopped: the old leader would find them pending when it wakes.
            paused = [f"drill {t} pause {n:02d}" for n in range(5)]
            mark2 = len(watcher.lines)
            queue(database, env, channel, paused)
            await back.wait_log(rf"instance {back.name} leads", count=leads + 1, timeout=LEASE + 5)
            await back.wait_log(rf"IRC joined #ci-{t}\b", count=joins + 1)
            await asyncio.sleep(max(0.0, 3 * LEASE - (time.monotonic() - stopped_at)))
            survivor.signal(signal.SIGCONT)
            resumed = len(watcher.lines)
            await survivor.wait_log(rf"instance {survivor.name} lost the lead", timeout=LEASE + 5)
            await wait_until(lambda: {l.text for l in lines_from_bot(watcher, t, mark2)} >= set(paused), 60,
                             "the lines queued during the pause")
            await asyncio.sleep(2)
            said2 = [l.text for l in lines_from_bot(watcher, t, mark2)]
            after = [l.text for l in lines_from_bot(watcher, t, resumed)]
            report.append(f"SIGSTOP: {len(said2)} lines seen for 5 queued, {len(after)} of them after SIGCONT")
            # Each once: the old leader, waking with them pending, sent none of them again.
            assert sorted(said2) == paused, said2
            for instance in (a, b):  # (a migration that raced the other's prints its child's traceback)
                running = instance.text().split("downtime-bot running as instance", 1)[-1]
                assert "Traceback" not in running, running[-3000:]
        finally:
            await watcher.quit()

    try:
        asyncio.run(scenario())
    finally:
        for instance in instances.values():
            instance.stop()
        with capsys.disabled():
            for line in report:
                print(f"\n[failover drill, {database.split(':')[0]}] {line}")
