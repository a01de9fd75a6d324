"""Fixtures shared by the tests: a fake clock, a config, and a chat harness that reads like a transcript."""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine

from adapters import config as configuration
from tests.fakes import FakeClock
from tests.fakes import FakeMailer
from models.ports import Incoming
from tests.fakes import FakeTransport

UTC = dt.timezone.utc
# A Tuesday morning: the usual test "now".
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

ROLES = {"ciduty": "carol", "sheriffs": "sam", "preapprovers": "pat", "admins": "root"}

if TYPE_CHECKING:
    from tests.servers.postgres import PostgresServer

# The database engines every database-touching test runs on (the `database` fixture's ids).
DATABASES = ("sqlite", "postgresql")
# The URL of the running test's database (set by the `database` fixture): make_config's default.
_current_database: list[str] = []
_names = itertools.count(1)
# Test databases are dropped in the background, while the next test runs (PostgreSQL does it).
_dropper = ThreadPoolExecutor(1, thread_name_prefix="drop-test-database")


def make_config(tmp_path: Path, database: str | None = None, **sections: Mapping[str, str]) -> configuration.Config:
    """A Config as if read from an INI file with these sections (plus roles and a database).

    `database`: a URL; default the running test's `database` fixture (SQLite or PostgreSQL), or
    a SQLite file in `tmp_path` for a test that does not use that fixture.
    """
    url = database or next(iter(_current_database), None) or f"sqlite:///{tmp_path / 'bot.db'}"
    bot = {"database": url, "display_timezones": "America/Los_Angeles"}
    if not url.startswith("sqlite"):
        from tests.servers.postgres import PASSWORD_ENV

        bot["database_password_env"] = PASSWORD_ENV
    raw: dict[str, dict[str, str]] = {"bot": bot, "roles": dict(ROLES)}
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
def config(tmp_path: Path, database: str) -> configuration.Config:
    return make_config(tmp_path, database)


def make_test_engine(url: str) -> Engine:
    """An engine for a test database URL (the PostgreSQL password from the environment)."""
    from adapters.db import make_engine
    from tests.servers.postgres import PASSWORD_ENV

    return make_engine(url, password=None if url.startswith("sqlite") else os.environ.get(PASSWORD_ENV))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL 15 for the whole session, started when a test first needs it;
    the test role's password is in the environment variable the test configurations name."""
    from tests.servers.postgres import PASSWORD_ENV, running_postgres

    for server in running_postgres():
        os.environ[PASSWORD_ENV] = server.role_password
        try:
            yield server
        finally:
            _dropper.shutdown(wait=True)
            os.environ.pop(PASSWORD_ENV, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that uses `database` runs on SQLite, and on PostgreSQL too when its module is
    marked ``every_database`` (or DOWNTIMEBOT_TEST_EVERY_DATABASE=1: every module on both).

    The marked modules are the ones that exercise the database: the queries and the lifecycle
    (commands, approvals, running and closing), the outbox and the reactions, the reminders, the
    web's read model, the transcripts, the migrations. Doubling the rest (parsing, rate limits,
    fuzzing the command line) would cost minutes and test SQLite's twin of what they test.
    """
    if "database" not in metafunc.fixturenames:
        return
    every = os.environ.get("DOWNTIMEBOT_TEST_EVERY_DATABASE") == "1"
    engines = DATABASES if every or metafunc.definition.get_closest_marker("every_database") else DATABASES[:1]
    metafunc.parametrize("database", engines, indirect=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def ha_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """For the [ha] drills: (the database URL every instance uses, the environment it adds).
    A SQLite file shared by the processes (WAL), or a new database on the session's PostgreSQL
    (the role's password in the environment variable `[bot] database_password_env` names)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.db'}", {}
        return
    from tests.servers.postgres import PASSWORD_ENV

    server = request.getfixturevalue("postgres")
    name = f"failover_{os.getpid()}_{next(_names)}"
    yield server.create_database(name), {PASSWORD_ENV: os.environ[PASSWORD_ENV]}
    server.drop_database(name)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for one test, its URL: a SQLite file in tmp_path, or on PostgreSQL a new
    database copied from a migrated template (about 30 ms), dropped afterwards (in the background)."""
    engine = getattr(request, "param", DATABASES[0])
    if engine == "sqlite":
        url, name, server = f"sqlite:///{tmp_path / 'bot.db'}", None, None
    else:
        server = request.getfixturevalue("postgres")
        name = f"test_{os.getpid()}_{next(_names)}"
        url = server.create_database(name)
    _current_database.insert(0, url)
    try:
        yield url
    finally:
        _current_database.remove(url)
        if server is not None and name is not None:
            _dropper.submit(server.drop_database, name)


@pytest.fixture
def chat(config: configuration.Config, clock: FakeClock) -> Iterator[Chat]:
    harness = Chat(config, clock)
    yield harness
    harness.close()
