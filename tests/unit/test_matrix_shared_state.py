"""What a Matrix transport takes from the database at start, and what it writes there.

No homeserver: the transport is started against a closed port (its sync loop only backs off)
and stopped; what it decided is read from its state file, written at start.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.db import make_engine, migrate, session_factory
from adapters.leadership import Lease
from adapters.matrix import (
    DEVICE_KEY,
    NEXT_BATCH_KEY,
    STATE_FILE,
    STATE_KEY,
    DatabaseState,
    Fenced,
    MatrixConfig,
    MatrixTransport,
    SharedState,
)
from bot import Bot
from models.ports import Outgoing, TransportUnavailable
from tests.conftest import make_config
from tests.fakes import FakeMailer
from tests.servers.ircd import free_port

ME = "@bot:example.org"


class FakeShared:
    """A `SharedState` that records what was saved; `fail` makes saving raise."""

    def __init__(self, values: Mapping[str, str] | None = None, fail: bool = False) -> None:
        self.values = dict(values or {})
        self.saved: list[dict[str, str]] = []
        self.fail = fail

    def load(self) -> Mapping[str, str]:
        return dict(self.values)

    def save(self, values: Mapping[str, str]) -> None:
        if self.fail:
            raise ConnectionError("the database is down")
        self.saved.append(dict(values))
        self.values.update(values)


def config(store: Path, **overrides: object) -> MatrixConfig:
    values: dict[str, object] = dict(homeserver=f"http://127.0.0.1:{free_port()}", user_id=ME,
                                     password="pw", store_path=str(store), backoff_min=5, backoff_max=5)
    values.update(overrides)
    return MatrixConfig(**values)  # type: ignore[arg-type]


def write_file(store: Path, **values: object) -> None:
    store.mkdir(parents=True, exist_ok=True)
    state = {"first_start_ms": 1000, "user_id": ME, "device_id": "MINE", "access_token": "file-token",
             "next_batch": "s_file", "seen_events": [], "known_rooms": ["!old:example.org"],
             "dm_rooms": {}, "encrypted_notified": []}
    state.update(values)
    (store / STATE_FILE).write_text(json.dumps(state))


def started_and_stopped(transport: MatrixTransport) -> dict[str, object]:
    async def scenario() -> None:
        await transport.start(lambda incoming: asyncio.sleep(0))
        await transport.stop()

    asyncio.run(scenario())
    state: dict[str, object] = json.loads((Path(transport.config.store_path) / STATE_FILE).read_text())
    return state


def shared_state(**values: object) -> str:
    state = {"user_id": ME, "first_start_ms": 5, "known_rooms": ["!ci:example.org"],
             "dm_rooms": {"@carol:example.org": "!dm:example.org"}, "encrypted_notified": []}
    state.update(values)
    return json.dumps(state)


def test_the_database_position_rooms_and_device_replace_the_files_and_its_token_for_another_device_is_dropped(
    tmp_path: Path,
) -> None:
    write_file(tmp_path)
    shared = FakeShared({NEXT_BATCH_KEY: "s_db", DEVICE_KEY: "SHARED", STATE_KEY: shared_state()})
    transport = MatrixTransport(config(tmp_path))
    transport.keep_state_in(shared)
    state = started_and_stopped(transport)
    assert (state["next_batch"], state["device_id"], state["access_token"]) == ("s_db", "SHARED", None)
    assert state["known_rooms"] == ["!ci:example.org"]
    assert state["dm_rooms"] == {"@carol:example.org": "!dm:example.org"}
    assert state["first_start_ms"] == 5
    assert shared.saved == []  # nothing changed: nothing written back


def test_an_existing_installs_file_position_is_written_to_an_empty_database_without_the_token(tmp_path: Path) -> None:
    write_file(tmp_path)
    shared = FakeShared()
    transport = MatrixTransport(config(tmp_path))
    transport.keep_state_in(shared)
    state = started_and_stopped(transport)
    assert state["next_batch"] == "s_file"
    assert shared.values[NEXT_BATCH_KEY] == "s_file"
    assert shared.values[DEVICE_KEY] == "MINE"
    assert json.loads(shared.values[STATE_KEY])["known_rooms"] == ["!old:example.org"]
    assert "file-token" not in json.dumps(shared.saved)


def test_the_position_of_another_account_in_the_database_is_not_used(tmp_path: Path) -> None:
    write_file(tmp_path)
    shared = FakeShared({NEXT_BATCH_KEY: "s_other", DEVICE_KEY: "OTHER",
                         STATE_KEY: shared_state(user_id="@old-bot:example.org")})
    transport = MatrixTransport(config(tmp_path))
    transport.keep_state_in(shared)
    state = started_and_stopped(transport)
    assert (state["next_batch"], state["device_id"]) == ("s_file", "MINE")
    assert shared.values[NEXT_BATCH_KEY] == "s_file"  # now this account's


def test_a_database_that_cannot_be_written_is_logged_and_the_transport_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_file(tmp_path)
    transport = MatrixTransport(config(tmp_path))
    transport.keep_state_in(FakeShared(fail=True))
    state = started_and_stopped(transport)
    assert state["next_batch"] == "s_file"  # the file is still written
    assert "cannot save the sync position in the database" in caplog.text


def test_the_database_state_reads_back_what_it_saved_in_bot_meta(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    migrate(engine)
    shared = DatabaseState(session_factory(engine))
    assert shared.load() == {}
    shared.save({NEXT_BATCH_KEY: "s1", DEVICE_KEY: "DEV"})
    shared.save({NEXT_BATCH_KEY: "s2"})
    assert shared.load() == {NEXT_BATCH_KEY: "s2", DEVICE_KEY: "DEV"}


def test_a_fenced_database_state_writes_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    DatabaseState(sessions).save({NEXT_BATCH_KEY: "s_new_leader"})
    old_leader = DatabaseState(sessions, may_write=lambda session: False)
    with pytest.raises(Fenced):
        old_leader.save({NEXT_BATCH_KEY: "s_old_leader"})
    assert old_leader.load() == {NEXT_BATCH_KEY: "s_new_leader"}


def test_keep_state_in_after_start_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        transport = MatrixTransport(config(tmp_path))
        await transport.start(lambda incoming: asyncio.sleep(0))
        try:
            with pytest.raises(RuntimeError):
                transport.keep_state_in(FakeShared())
        finally:
            await transport.stop()

    asyncio.run(scenario())


def test_a_write_refused_while_the_transport_runs_tells_the_bot_and_one_at_stop_does_not(tmp_path: Path) -> None:
    class Refusing(FakeShared):
        def save(self, values: Mapping[str, str]) -> None:
            raise Fenced("another instance leads")

    told: list[str] = []
    write_file(tmp_path, next_batch="")
    transport = MatrixTransport(config(tmp_path))
    transport.keep_state_in(Refusing(), on_fenced=lambda: told.append("fenced"))

    async def scenario() -> None:
        await transport.start(lambda incoming: asyncio.sleep(0))  # its first save is refused
        assert told == ["fenced"]
        await transport.stop()  # a deposed instance's last save: refused, nobody told again

    asyncio.run(scenario())
    assert told == ["fenced"]


class Recording(MatrixTransport):
    """The Matrix transport, keeping what the bot gave it to keep its position in."""

    shared: SharedState | None = None
    on_fenced: Callable[[], None] | None = None
    stops = 0

    def keep_state_in(self, shared: SharedState, *, on_fenced: Callable[[], None] | None = None) -> None:
        super().keep_state_in(shared, on_fenced=on_fenced)
        self.shared, self.on_fenced = shared, on_fenced

    async def stop(self) -> None:
        self.stops += 1
        await super().stop()


@pytest.mark.every_database
def test_an_old_leader_cannot_put_its_sync_position_over_the_new_leaders(tmp_path: Path, database: str) -> None:
    """The old leader's loop has not noticed yet (a paused process, woken): it still believes it
    leads, but the lease moved on in the database, and its write is refused."""
    transport = Recording(config(tmp_path / "a"))
    bot = Bot(make_config(tmp_path, ha={"enabled": "on", "instance": "a", "lease_seconds": "3"}, web={"listen": ""}),
              transports={"matrix": transport}, mailer=FakeMailer())
    assert bot.leadership is not None and transport.shared is not None
    old_leader = transport.shared

    async def scenario() -> None:
        assert bot.leadership is not None
        bot.leadership.start()
        try:
            await until(bot.fence.check)
            old_leader.save({NEXT_BATCH_KEY: "s_a"})  # while it leads: written
            assert old_leader.load()[NEXT_BATCH_KEY] == "s_a"
            # The lease moves on (it expired; b takes it) before a's loop runs again.
            with bot.engine.begin() as connection:
                connection.execute(text("UPDATE leader_lease SET expires_at = 0"))
            assert Lease(bot.engine).acquire("b", 3) is not None
            DatabaseState(bot.sessions).save({NEXT_BATCH_KEY: "s_b"})
            with pytest.raises(Fenced):
                old_leader.save({NEXT_BATCH_KEY: "s_a_older"})
            assert old_leader.load()[NEXT_BATCH_KEY] == "s_b"
            # Told so by the transport, the instance stops leading and leaves Matrix at once.
            assert transport.on_fenced is not None and transport.stops == 0
            transport.on_fenced()
            assert not bot.fence.check()
            await until(lambda: transport.stops == 1)
        finally:
            await bot.stop()

    asyncio.run(scenario())
    assert DatabaseState(bot.sessions).load()[NEXT_BATCH_KEY] == "s_b"  # its stop wrote nothing either


async def until(condition: Callable[[], bool], within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.02)


class PostsRecorded:
    """Stands for nio's client: records what would be posted."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    async def room_send(self, room_id: str, message_type: str, content: dict[str, object], **_: object) -> object:
        self.posted.append(str(content.get("body")))
        raise AssertionError("posted to Matrix")


def test_a_deposed_instance_posts_nothing_to_matrix_not_even_a_direct_answer(tmp_path: Path) -> None:
    """With [ha] the transport asks the leader's fence before it posts: an instance that lost the
    lead while it was still handling a question does not answer it (the new leader reads it again)."""
    transport = MatrixTransport(config(tmp_path / "a"))
    bot = Bot(make_config(tmp_path, ha={"enabled": "on", "instance": "a", "lease_seconds": "3"}, web={"listen": ""}),
              transports={"matrix": transport}, mailer=FakeMailer())
    client = PostsRecorded()
    transport._client, transport._connected = client, True  # type: ignore[assignment]
    assert not bot.fence.check()  # it has not led yet: its fence is shut

    async def send() -> None:
        await transport.send(Outgoing(target="#ci", text="#1 [proposed] an answer to a question"))

    with pytest.raises(TransportUnavailable, match="no longer leads"):
        asyncio.run(send())
    assert client.posted == []
