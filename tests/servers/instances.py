"""Real `bot.py` processes as [ha] instances, for the failover drills and the failover benchmark.

`Instance` writes one instance's configuration (IRC by default; `transports` and `extra` add the
rest, e.g. a [matrix] or [treestatus] section; `roles` is the [roles] section's body, `irc` more
lines of [irc]), starts it, and reads its log. `queue` leaves chat
lines in the outbox as a command would, for the leader to deliver.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from adapters.db import make_engine, session_factory
from models.outbox import Outbox
from tests.servers.ircd import Line, RawClient

ROOT = Path(__file__).resolve().parents[2]
LEASE = 3  # the smallest lease_seconds the configuration takes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Instance:
    """`python bot.py --config <file>` as one [ha] instance."""

    def __init__(self, tmp: Path, name: str, *, port: int, tag: str, database: str, env: dict[str, str],
                 transports: str = "irc", extra: str = "", lease: int = LEASE,
                 roles: str = "ciduty = nobody\n", irc: str = ""):
        self.name = name
        self.web = free_port()
        self.log = tmp / f"{name}.log"
        self.config = tmp / f"{name}.ini"
        password_key = f"database_password_env = {next(iter(env))}\n" if env else ""
        self.config.write_text(
            "[bot]\n"
            f"nick = dtbot{tag}\n"
            f"database = {database}\n{password_key}"
            f"transports = {transports}\n"
            "[channels]\n"
            f"requests = #ci-{tag}\nannounce = #dev-{tag}\n"
            f"[roles]\n{roles}"
            "[irc]\n"
            f"host = 127.0.0.1\nport = {port}\nidentity = nick\n{irc}"
            "[web]\n"
            f"listen = 127.0.0.1:{self.web}\n"
            "[ha]\n"
            f"enabled = on\ninstance = {name}\nlease_seconds = {lease}\n"
            + extra
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


def queue(database: str, env: dict[str, str], channel: str, bodies: list[str],
          networks: Sequence[str] = ("irc",)) -> None:
    """Chat lines in the outbox, as a command would leave them for the leader to deliver
    (on `networks`; the first of `env`'s values is the database's password)."""
    from tests.conftest import NOW

    engine = make_engine(database, password=next(iter(env.values()), None))
    try:

        with session_factory(engine)() as session, session.begin():
            outbox = Outbox(session, now=NOW, networks=networks)
            for body in bodies:
                outbox.chat(f"drill:{body}", channel, body)
            outbox.write()
    finally:
        engine.dispose()


def lines_from_bot(watcher: RawClient, tag: str, since: int = 0) -> list[Line]:
    return [line for line in watcher.lines[since:]
            if line.command == "PRIVMSG" and line.nick.lower().startswith(f"dtbot{tag}")]


async def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)
