"""MatrixTransport against a real Synapse (one per module, started by the test itself).

Synapse is installed by scripts/install-synapse.sh; under CI=true a missing Synapse is
installed on the spot, elsewhere these tests skip with the reason.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.db import make_engine, migrate, session_factory
from adapters.matrix import (
    DEVICE_KEY,
    NEXT_BATCH_KEY,
    STATE_FILE,
    STATE_KEY,
    DatabaseState,
    MatrixConfig,
    MatrixTransport,
    render_content,
)
from models.ports import Incoming, Outgoing, TransportUnavailable
from tests.servers.synapse import MatrixTestUser, Synapse, running_synapse

PASSWORD = "correct horse"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def synapse() -> Iterator[Synapse]:
    yield from running_synapse("raised")


@pytest.fixture(scope="module")
def synapse_default_limits() -> Iterator[Synapse]:
    yield from running_synapse("default")


class Inbox:
    """The on_message handler of the tests: records every Incoming."""

    def __init__(self) -> None:
        self.items: list[Incoming] = []
        self._changed = asyncio.Event()

    async def __call__(self, incoming: Incoming) -> None:
        self.items.append(incoming)
        self._changed.set()

    def texts(self) -> list[str]:
        return [item.text for item in self.items]

    async def wait_for(self, text: str, timeout: float = 20) -> Incoming:
        async def find() -> Incoming:
            while True:
                for item in self.items:
                    if item.text == text:
                        return item
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)


@dataclass
class Scene:
    """A bot account, a person (alice) and a room #ci that the bot is configured for."""

    hs: Synapse
    bot_id: str
    alice_id: str
    alias: str
    store: Path

    def config(self, homeserver: str | None = None, **overrides: Any) -> MatrixConfig:
        values: dict[str, Any] = dict(
            homeserver=homeserver or self.hs.url,
            user_id=self.bot_id,
            password=PASSWORD,
            store_path=str(self.store),
            rooms={"#ci": self.alias},
            allowed_inviters=frozenset({self.alice_id}),
            sync_timeout_ms=5000,
            backoff_min=0.5,
            backoff_max=2,
        )
        values.update(overrides)
        return MatrixConfig(**values)

    def state(self) -> dict[str, Any]:
        return json.loads((self.store / STATE_FILE).read_text())


@pytest.fixture
def scene(synapse: Synapse, tmp_path: Path) -> Scene:
    return _scene(synapse, tmp_path)


def _scene(hs: Synapse, tmp_path: Path) -> Scene:
    tag = secrets.token_hex(3)
    return Scene(
        hs=hs,
        bot_id=hs.register(f"bot-{tag}", PASSWORD),
        alice_id=hs.register(f"alice-{tag}", PASSWORD),
        alias=f"#ci-{tag}:{hs.server_name}",
        store=tmp_path / "matrix-store",
    )


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def started(config: MatrixConfig, inbox: Inbox) -> MatrixTransport:
    bot = MatrixTransport(config)
    await bot.start(inbox)
    assert await bot.wait_until_synced(30), "the transport never completed a sync"
    return bot


async def alice_with_room(scene: Scene, **room: Any) -> tuple[MatrixTestUser, str]:
    alice = MatrixTestUser(scene.hs.url, scene.alice_id, PASSWORD)
    await alice.__aenter__()
    room_id = await alice.create_room(alias=scene.alias.split(":")[0][1:], **room)
    return alice, room_id


def from_bot(scene: Scene, predicate: Callable[[Any], bool] = lambda e: True) -> Callable[[Any], bool]:
    """Matches the bot's m.room.message events that satisfy `predicate`."""
    return lambda event: (event.sender == scene.bot_id
                          and event.source.get("type") == "m.room.message" and predicate(event))


# -- pure rendering (no server) ------------------------------------------------------------


def test_a_mention_missing_from_the_text_is_put_in_front_as_a_pill() -> None:
    content = render_content(Outgoing("#ci", "trees close in 1h", mentions=["@sheriff:example.org"]))
    assert content["body"] == "@sheriff:example.org: trees close in 1h"
    assert content["formatted_body"].startswith(
        '<a href="https://matrix.to/#/@sheriff:example.org">@sheriff:example.org</a>: '
    )


def test_irc_accounts_in_mentions_are_not_pillified_and_given_html_is_kept() -> None:
    content = render_content(Outgoing("#ci", "hi sheriff", mentions=["sheriff"], html="<b>hi</b>"))
    assert content["body"] == "hi sheriff"
    assert content["formatted_body"] == "<b>hi</b>"
    assert content["m.mentions"] == {}


# -- against Synapse -----------------------------------------------------------------------


def test_a_password_login_is_stored_and_a_restart_reuses_the_same_device(scene: Scene) -> None:
    async def scenario() -> None:
        bot = await started(scene.config(), Inbox())
        await bot.stop()
        first_device = scene.state()["device_id"]
        devices = scene.hs.devices(scene.bot_id)  # the registration made one device too
        assert first_device in devices
        bot = await started(scene.config(), Inbox())
        await bot.stop()
        assert scene.state()["device_id"] == first_device
        assert scene.hs.devices(scene.bot_id) == devices
        mode = stat.S_IMODE((scene.store / STATE_FILE).stat().st_mode)
        assert mode == 0o600

    run(scenario())


def test_the_bot_joins_its_rooms_receives_a_message_with_the_sender_mxid_and_replies(
    scene: Scene,
) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        inbox = Inbox()
        bot = await started(scene.config(), inbox)
        try:
            await alice.wait_for(lambda e: getattr(e, "state_key", None) == scene.bot_id
                                 and getattr(e, "membership", None) == "join", room_id)
            event_id = await alice.send(room_id, "!downtime list")
            incoming = await inbox.wait_for("!downtime list")
            assert (incoming.network, incoming.room, incoming.account) == ("matrix", "#ci", scene.alice_id)
            assert incoming.msgid == event_id
            assert incoming.nick in (scene.alice_id, scene.alice_id[1:].split(":")[0])
            await bot.send(Outgoing(incoming.reply_target, "no downtimes"))
            reply = await alice.wait_for(from_bot(scene, lambda e: e.body == "no downtimes"), room_id)
            assert reply.source["content"]["msgtype"] == "m.text"
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_notices_and_the_bots_own_messages_are_not_passed_on(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        inbox = Inbox()
        bot = await started(scene.config(), inbox)
        try:
            await bot.send(Outgoing("#ci", "!downtime list"))
            await alice.send(room_id, "!from another bot", msgtype="m.notice")
            await alice.send(room_id, "marker")
            await inbox.wait_for("marker")
            assert inbox.texts() == ["marker"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_user_text_is_escaped_in_formatted_body(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        bot = await started(scene.config(), Inbox())
        text = 'wording: <script>alert(1)</script> <a href="https://evil.example">x</a>\nline 2'
        try:
            await bot.send(Outgoing("#ci", text))
            event = await alice.wait_for(from_bot(scene), room_id)
            content = event.source["content"]
            assert content["body"] == text
            assert "<script>" not in content["formatted_body"]
            assert "<a " not in content["formatted_body"]
            assert "&lt;script&gt;" in content["formatted_body"]
            assert content["formatted_body"].endswith("<br>line 2")
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_a_mention_becomes_a_pill_and_an_intentional_mention(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        bot = await started(scene.config(), Inbox())
        try:
            text = f"{scene.alice_id}, trees close in 1 hour"
            await bot.send(Outgoing("#ci", text, mentions=[scene.alice_id, "ircsheriff"]))
            content = (await alice.wait_for(from_bot(scene), room_id)).source["content"]
            assert content["body"] == text
            assert content["formatted_body"] == (
                f'<a href="https://matrix.to/#/{scene.alice_id}">{scene.alice_id}</a>'
                ", trees close in 1 hour"
            )
            assert content["m.mentions"] == {"user_ids": [scene.alice_id]}
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_a_3000_character_message_arrives_as_one_event(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        bot = await started(scene.config(), Inbox())
        text = ("downtime notice " * 200)[:3000]
        try:
            await bot.send(Outgoing("#ci", text))
            await bot.send(Outgoing("#ci", "end"))
            await alice.wait_for(from_bot(scene, lambda e: e.body == "end"), room_id)
            bodies = [e.body for e in alice.messages_from(scene.bot_id, room_id)]
            assert bodies == [text, "end"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_a_fresh_bot_ignores_commands_sent_before_it_joined(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        await alice.send(room_id, "!downtime cancel 1 -- old")
        inbox = Inbox()
        bot = await started(scene.config(), inbox)
        try:
            await alice.send(room_id, "!new")
            await inbox.wait_for("!new")
            assert inbox.texts() == ["!new"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_a_restart_replays_nothing_old_and_delivers_what_was_said_meanwhile_once(
    scene: Scene,
) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        inbox = Inbox()
        bot = await started(scene.config(), inbox)
        await alice.send(room_id, "one")
        await inbox.wait_for("one")
        await bot.stop()
        await alice.send(room_id, "two (while stopped)")
        bot = await started(scene.config(), inbox)
        try:
            await alice.send(room_id, "three")
            await inbox.wait_for("three")
            assert inbox.texts() == ["one", "two (while stopped)", "three"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_an_event_replayed_by_the_server_is_not_delivered_twice(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        inbox = Inbox()
        bot = await started(scene.config(), inbox)
        token_before = scene.state()["next_batch"]
        await alice.send(room_id, "!downtime approve 3")
        await inbox.wait_for("!downtime approve 3")
        await bot.stop()
        # As if the bot had crashed before saving next_batch: the server sends the event again.
        state = scene.state()
        assert state["next_batch"] != token_before
        state["next_batch"] = token_before
        (scene.store / STATE_FILE).write_text(json.dumps(state))
        bot = await started(scene.config(), inbox)
        try:
            await alice.send(room_id, "after")
            await inbox.wait_for("after")
            assert inbox.texts() == ["!downtime approve 3", "after"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_a_slow_command_holds_up_neither_the_sync_nor_others_and_its_batch_is_read_again_after_a_crash(
    scene: Scene,
) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        inbox, release, slow_started = Inbox(), asyncio.Event(), asyncio.Event()

        async def handler(incoming: Incoming) -> None:
            if incoming.text == "slow":  # as a command waiting on a slow Bugzilla
                slow_started.set()
                await release.wait()
            await inbox(incoming)

        bot = MatrixTransport(scene.config())
        await bot.start(handler)
        assert await bot.wait_until_synced(30)
        try:
            await alice.send(room_id, "slow")
            await asyncio.wait_for(slow_started.wait(), 20)
            await alice.send(room_id, "quick")
            quick = await inbox.wait_for("quick")  # answered while "slow" still waits
            for _ in range(100):  # until its answer is recorded in the store
                if quick.msgid in scene.state()["seen_events"]:
                    break
                await asyncio.sleep(0.05)
            crashed = scene.state()  # what a crash now would leave behind
            assert quick.msgid in crashed["seen_events"]
        finally:
            release.set()
            await bot.stop()
        assert inbox.texts() == ["quick", "slow"]
        # "slow" was not answered when the state was taken: its batch is read again, "quick" is not.
        (scene.store / STATE_FILE).write_text(json.dumps(crashed))
        again = Inbox()
        bot = await started(scene.config(), again)
        try:
            await again.wait_for("slow")
            await alice.send(room_id, "after")
            await again.wait_for("after")
            assert again.texts() == ["slow", "after"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_a_rejoined_room_does_not_replay_what_was_said_while_the_bot_was_out(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene, public=False, invite=(scene.bot_id,))
        inbox = Inbox()
        bot = await started(scene.config(), inbox)
        try:
            await alice.send(room_id, "before")
            await inbox.wait_for("before")
            await alice.kick(room_id, scene.bot_id)
            await alice.send(room_id, "!said while the bot was out")
            await alice.invite(room_id, scene.bot_id)  # accepted: a configured room
            await _wait_joins(alice, room_id, scene.bot_id, count=2)
            await alice.send(room_id, "after")
            await inbox.wait_for("after")
            assert inbox.texts() == ["before", "after"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_private_messages_go_to_one_direct_room_and_come_back_without_a_channel(
    scene: Scene,
) -> None:
    async def scenario() -> None:
        alice, _room = await alice_with_room(scene)
        inbox = Inbox()
        bot = await started(scene.config(), inbox)
        try:
            await bot.send(Outgoing("@" + scene.alice_id, "you have a downtime at 14:00"))
            invite_room = await _wait_invite(alice)
            await alice.join(invite_room)
            await bot.send(Outgoing("@" + scene.alice_id, "second"))
            await alice.wait_for(from_bot(scene, lambda e: e.body == "second"), invite_room)
            assert [e.body for e in alice.messages_from(scene.bot_id, invite_room)] == [
                "you have a downtime at 14:00", "second"]
            await alice.send(invite_room, "!downtime show 4")
            incoming = await inbox.wait_for("!downtime show 4")
            assert incoming.room is None
            assert incoming.reply_target == "@" + scene.alice_id
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


async def _wait_joins(user: MatrixTestUser, room_id: str, member: str, count: int) -> None:
    def joins() -> int:
        return sum(1 for r, e in user.events if r == room_id
                   and getattr(e, "state_key", None) == member
                   and getattr(e, "membership", None) == "join"
                   and getattr(e, "prev_membership", None) != "join")

    async def poll() -> None:
        while joins() < count:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), 15)


async def _wait_invite(user: MatrixTestUser, timeout: float = 15) -> str:
    async def poll() -> str:
        while not user.client.invited_rooms:
            await asyncio.sleep(0.1)
        return next(iter(user.client.invited_rooms))

    return await asyncio.wait_for(poll(), timeout)


def test_invites_to_rooms_that_are_not_configured_are_declined(scene: Scene) -> None:
    async def scenario() -> None:
        alice, _room = await alice_with_room(scene)
        bot = await started(scene.config(allowed_inviters=frozenset()), Inbox())
        try:
            other = await alice.create_room(invite=(scene.bot_id,))
            await alice.wait_for(lambda e: getattr(e, "state_key", None) == scene.bot_id
                                 and getattr(e, "membership", None) == "leave", other)
            joined = [e for _r, e in alice.events if _r == other
                      and getattr(e, "state_key", None) == scene.bot_id
                      and getattr(e, "membership", None) == "join"]
            assert joined == []
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_an_encrypted_room_gets_a_refusal_notice_and_nothing_is_sent_there(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene, encrypted=True)
        bot = await started(scene.config(), Inbox())
        try:
            notice = await alice.wait_for(from_bot(scene), room_id)
            assert notice.source["content"]["msgtype"] == "m.notice"
            assert "unencrypted rooms" in notice.source["content"]["body"]
            await bot.send(Outgoing("#ci", "should not be sent"))
            assert len(alice.messages_from(scene.bot_id, room_id)) == 1
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_send_raises_transport_unavailable_before_the_first_sync(scene: Scene) -> None:
    async def scenario() -> None:
        bot = MatrixTransport(scene.config())
        with pytest.raises(TransportUnavailable):
            await bot.send(Outgoing("#ci", "hello"))

    run(scenario())


def test_a_revoked_token_stops_the_sync_loop_instead_of_retrying(scene: Scene) -> None:
    async def scenario() -> None:
        proxy = scene.hs.proxy()
        bot = await started(scene.config(homeserver=proxy.url), Inbox())
        try:
            await asyncio.to_thread(scene.hs.delete_device, scene.bot_id, scene.state()["device_id"])
            for _ in range(100):
                if not bot.connected:
                    break
                await asyncio.sleep(0.1)
            assert not bot.connected
            rejected = proxy.count("/sync", status=401)
            await asyncio.sleep(3)
            assert rejected == 1
            assert proxy.count("/sync", status=401) == 1
        finally:
            await bot.stop()

    run(scenario())


@pytest.mark.slow
def test_sync_backs_off_while_synapse_is_down_and_resumes_after(scene: Scene) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        proxy = scene.hs.proxy()
        inbox = Inbox()
        bot = await started(scene.config(homeserver=proxy.url), inbox)
        try:
            proxy.reset()
            await asyncio.to_thread(scene.hs.stop)
            await asyncio.sleep(10)
            syncs_during_outage = proxy.count("/sync")
            assert not bot.connected
            await asyncio.to_thread(scene.hs.start)
            await alice.send(room_id, "!after the outage")
            await inbox.wait_for("!after the outage", timeout=30)
            assert bot.connected
            # backoff 0.5 s .. 2 s over 10 s: a handful of attempts; a tight loop makes thousands
            assert 2 <= syncs_during_outage <= 20
        finally:
            await bot.stop()
            await alice.__aexit__()
            if not scene.hs.running:
                scene.hs.start()

    run(scenario())


# -- Synapse's default rate limits ---------------------------------------------------------


@pytest.mark.slow
def test_fifteen_messages_all_arrive_under_default_rate_limits(
    synapse_default_limits: Synapse, tmp_path: Path
) -> None:
    scene = _scene(synapse_default_limits, tmp_path)

    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        proxy = scene.hs.proxy()
        bot = await started(scene.config(homeserver=proxy.url), Inbox())
        try:
            for i in range(15):
                await bot.send(Outgoing("#ci", f"reminder {i}"))
            await alice.wait_for(from_bot(scene, lambda e: e.body == "reminder 14"), room_id,
                                 timeout=30)
            assert [e.body for e in alice.messages_from(scene.bot_id, room_id)] == [
                f"reminder {i}" for i in range(15)]
            assert proxy.count("/send/", status=429) >= 1  # the limit was really hit
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


def test_after_the_429_retry_cap_send_raises_transport_unavailable(
    synapse_default_limits: Synapse, tmp_path: Path
) -> None:
    scene = _scene(synapse_default_limits, tmp_path)

    async def scenario() -> None:
        alice, _room_id = await alice_with_room(scene)
        bot = await started(scene.config(max_retries_429=0), Inbox())
        try:
            with pytest.raises(TransportUnavailable):
                for i in range(30):
                    await bot.send(Outgoing("#ci", f"burst {i}"), txn_id=f"burst-{i}")
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())


# -- taking over: another instance, on another machine, resumes from the database -----------


def shared_database(tmp_path: Path) -> DatabaseState:
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    migrate(engine)
    return DatabaseState(session_factory(engine))


async def started_sharing(config: MatrixConfig, inbox: Inbox, shared: DatabaseState) -> MatrixTransport:
    bot = MatrixTransport(config)
    bot.keep_state_in(shared)
    await bot.start(inbox)
    assert await bot.wait_until_synced(30), "the transport never completed a sync"
    return bot


def test_a_second_instance_with_an_empty_store_resumes_from_the_database_without_replaying_or_missing(
    scene: Scene, tmp_path: Path
) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        first_inbox, second_inbox = Inbox(), Inbox()
        first = await started_sharing(scene.config(), first_inbox, shared_database(tmp_path))
        await alice.send(room_id, "!downtime list")
        await first_inbox.wait_for("!downtime list")
        await first.stop()  # the leader is gone
        await alice.send(room_id, "!said while no instance ran")
        other_machine = tmp_path / "other-machine-store"
        second = await started_sharing(scene.config(store_path=str(other_machine)), second_inbox,
                                       shared_database(tmp_path))
        try:
            await alice.send(room_id, "!after the takeover")
            await second_inbox.wait_for("!after the takeover")
            assert second_inbox.texts() == ["!said while no instance ran", "!after the takeover"]
            assert first_inbox.texts() == ["!downtime list"]
        finally:
            await second.stop()
            await alice.__aexit__()
        # One device for both instances: the second logged in to the first one's.
        state = json.loads((other_machine / STATE_FILE).read_text())
        assert state["device_id"] == scene.state()["device_id"]

    run(scenario())


def test_the_sync_position_of_an_existing_install_moves_into_the_database(scene: Scene, tmp_path: Path) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        inbox = Inbox()
        bot = await started(scene.config(), inbox)  # as before [ha]: the position in the file only
        await alice.send(room_id, "one")
        await inbox.wait_for("one")
        await bot.stop()
        await alice.send(room_id, "two (while stopped)")
        shared = shared_database(tmp_path)
        assert shared.load() == {}
        bot = await started_sharing(scene.config(), inbox, shared)
        try:
            await alice.send(room_id, "three")
            await inbox.wait_for("three")
            assert inbox.texts() == ["one", "two (while stopped)", "three"]
        finally:
            await bot.stop()
            await alice.__aexit__()
        saved = shared.load()
        assert saved[NEXT_BATCH_KEY] == scene.state()["next_batch"]
        assert saved[DEVICE_KEY] == scene.state()["device_id"]
        assert "access_token" not in saved[STATE_KEY] and scene.state()["access_token"] not in saved.values()

    run(scenario())


def test_a_message_the_old_leader_sent_is_not_posted_again_when_the_new_one_resends_it(
    scene: Scene, tmp_path: Path
) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        first = await started_sharing(scene.config(), Inbox(), shared_database(tmp_path))
        # The old leader delivered this row, and died before marking it sent.
        await first.send(Outgoing("#ci", "Downtime #4 starts now", key="outbox:17"))
        await first.stop()
        second = await started_sharing(scene.config(store_path=str(tmp_path / "elsewhere")), Inbox(),
                                       shared_database(tmp_path))
        try:
            await second.send(Outgoing("#ci", "Downtime #4 starts now", key="outbox:17"))
            await second.send(Outgoing("#ci", "marker", key="outbox:18"))
            await alice.wait_for(from_bot(scene, lambda e: e.body == "marker"), room_id)
            assert [e.body for e in alice.messages_from(scene.bot_id, room_id)] == [
                "Downtime #4 starts now", "marker"]
        finally:
            await second.stop()
            await alice.__aexit__()

    run(scenario())


def test_a_transport_started_again_after_a_stop_answers_what_was_said_meanwhile(
    scene: Scene, tmp_path: Path
) -> None:
    async def scenario() -> None:
        alice, room_id = await alice_with_room(scene)
        inbox = Inbox()
        bot = await started_sharing(scene.config(), inbox, shared_database(tmp_path))
        await alice.send(room_id, "before")
        await inbox.wait_for("before")
        await bot.stop()  # leadership lost ...
        await alice.send(room_id, "meanwhile")
        await bot.start(inbox)  # ... and won again: the same object
        try:
            assert await bot.wait_until_synced(30)
            await alice.send(room_id, "after")
            await inbox.wait_for("after")
            assert inbox.texts() == ["before", "meanwhile", "after"]
        finally:
            await bot.stop()
            await alice.__aexit__()

    run(scenario())
