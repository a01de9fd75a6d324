"""Fixtures shared by the tests: a fake clock, a config, and a chat harness that reads like a transcript."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters import config as configuration
from tests.fakes import FakeClock
from tests.fakes import FakeMailer
from models.ports import Incoming
from tests.fakes import FakeTransport

UTC = dt.timezone.utc
# A Tuesday morning: the usual test "now".
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

ROLES = {"ciduty": "carol", "sheriffs": "sam", "preapprovers": "pat", "admins": "root"}


def make_config(tmp_path: Path, **sections: Mapping[str, str]) -> configuration.Config:
    """A Config as if read from an INI file with these sections (plus roles and a database)."""
    raw: dict[str, dict[str, str]] = {
        "bot": {"database": f"sqlite:///{tmp_path / 'bot.db'}", "display_timezones": "America/Los_Angeles"},
        "roles": dict(ROLES),
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return configuration._build(raw, "test")


class Chat:
    """The real bot core behind fake transports: say things, read what the bot said."""

    def __init__(
        self, config: configuration.Config, clock: FakeClock, networks: tuple[str, ...] = ("irc",), **bot_options: Any
    ):
        from bot import Bot

        self.loop = asyncio.new_event_loop()
        self.clock = clock
        self.transports = {n: FakeTransport(n) for n in networks}
        self.mailer = FakeMailer()
        self.bot = Bot(config, transports=dict(self.transports), clock=clock, mailer=self.mailer, **bot_options)
        self._seen = {n: 0 for n in networks}

    def say(self, who: str | None, text: str, room: str | None = "#ci", network: str | None = None) -> list[str]:
        """One chat line from `who` (None: not identified); returns the lines the bot said since."""
        network = network or next(iter(self.transports))
        message = Incoming(network=network, room=room, account=who, nick=who or "anon", text=text)
        self.loop.run_until_complete(self.bot.dispatcher.answer(message))
        self.deliver()
        return self.new_lines()

    def deliver(self) -> None:
        for worker in self.bot.workers:
            self.loop.run_until_complete(worker.deliver_pending())

    def new_lines(self, network: str | None = None) -> list[str]:
        """Lines sent since the last call, as '<target> <text>' (first line of each message split)."""
        network = network or next(iter(self.transports))
        sent = self.transports[network].sent
        fresh = sent[self._seen[network] :]
        self._seen[network] = len(sent)
        lines = []
        for m in fresh:
            prefix = f"{', '.join(m.mentions)}: " if m.mentions else ""
            for i, line in enumerate(m.text.split("\n")):
                lines.append(f"{m.target} {prefix if i == 0 else ''}{line}")
        return lines

    def close(self) -> None:
        self.loop.run_until_complete(self.bot.stop())
        self.loop.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def config(tmp_path: Path) -> configuration.Config:
    return make_config(tmp_path)


@pytest.fixture
def chat(config: configuration.Config, clock: FakeClock) -> Iterator[Chat]:
    harness = Chat(config, clock)
    yield harness
    harness.close()
