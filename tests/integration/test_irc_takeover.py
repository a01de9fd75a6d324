"""Taking over on IRC: the bot's nick is still held by an old connection (a leader whose machine
died), against real servers.

ngircd has no services and no MONITOR: the bot works as the alternate nick and takes its own
back when the holder quits (seen in a shared channel) or when an ISON no longer finds it.
InspIRCd + Anope: NickServ RECOVER disconnects an old connection logged in to the bot's account;
without services, InspIRCd's MONITOR says when the nick is free.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator

import pytest

from adapters.irc import Fenced, IrcConfig, IrcTransport
from models.ports import Outgoing
from tests.integration.test_irc_transport import (
    PASSWORDS,
    SASL_CAPS,
    Recorder,
    _require,
    account_config,
    echo_through,
    eventually,
    from_bot,
    nick_config,
    running_bot,
    tag,
)
from tests.servers.ircd import InspircdAnope, Ngircd, RawClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    _require("ngircd")
    with Ngircd(penalties=True) as server:
        yield server


@pytest.fixture(scope="module")
def services() -> Iterator[InspircdAnope]:
    _require("inspircd", "anope")
    with InspircdAnope(monitor=True) as server:
        for account, password in PASSWORDS.items():
            server.register(account, password)
        yield server


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "adapters.irc"]


# --- ngircd: no services -----------------------------------------------------------------------


def test_on_a_held_nick_the_bot_answers_as_the_alternate_nick_and_takes_its_own_when_the_holder_quits(
    ngircd: Ngircd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.irc")

    async def scenario() -> None:
        t = tag()
        wanted = f"bot{t}"
        async with RawClient(ngircd.port, wanted) as old, RawClient(ngircd.port, f"alice{t}") as alice:
            await old.join(f"#ci-{t}")  # the old leader's connection, still in the channel
            await alice.join(f"#ci-{t}")
            box: list[IrcTransport] = []
            # regain_interval far away: what takes the nick back here is the holder's QUIT
            config = nick_config(ngircd.port, t, regain_interval=3600)
            async with running_bot(config, Recorder(echo_through(box))) as bot:
                box.append(bot)
                assert bot.nick == f"{wanted}_"
                await alice.privmsg(f"#ci-{t}", "!echo while on the other nick")
                answer = await alice.wait_for(from_bot(f"{wanted}_", f"#ci-{t}"), timeout=20)
                assert answer.text == "echo: while on the other nick"

                await old.quit("ping timeout")
                await eventually(lambda: bot.nick == wanted)
                await alice.privmsg(f"#ci-{t}", "!echo back on my nick")
                answer = await alice.wait_for(from_bot(wanted, f"#ci-{t}"), timeout=20)
                assert answer.text == "echo: back on my nick"
        lines = log_lines(caplog)
        assert any(f"nick {wanted} is held by another connection" in line for line in lines)
        assert f"IRC took back the nick {wanted}" in lines

    asyncio.run(scenario())


def test_a_holder_in_no_shared_channel_is_found_gone_by_ison_and_the_nick_taken(ngircd: Ngircd) -> None:
    async def scenario() -> None:
        t = tag()
        wanted = f"bot{t}"
        old = RawClient(ngircd.port, wanted)
        await old.connect()
        try:
            config = nick_config(ngircd.port, t, regain_interval=0.5)
            async with running_bot(config, Recorder()) as bot:
                assert bot.nick == f"{wanted}_"
                await asyncio.sleep(1.5)  # a few ISONs that find the nick still held
                assert bot.nick == f"{wanted}_"
                await old.quit()
                await eventually(lambda: bot.nick == wanted)
                async with RawClient(ngircd.port, f"obs{t}") as obs:
                    await obs.join(f"#ci-{t}")
                    await bot.send(Outgoing("#ci", "still here"))
                    assert (await obs.wait_for(from_bot(wanted, f"#ci-{t}"), timeout=20)).text == "still here"
        finally:
            await old.quit()

    asyncio.run(scenario())


class Gate:
    """The leader's fence as the transport asks it (adapters/leadership.py Fence.check)."""

    def __init__(self) -> None:
        self.open = True

    def check(self) -> bool:
        return self.open


def test_the_line_after_the_lease_ends_mid_message_never_reaches_the_channel(ngircd: Ngircd) -> None:
    async def scenario() -> None:
        t = tag()
        gate = Gate()
        config = nick_config(ngircd.port, t, line_burst=1, line_rate=2.0)
        async with running_bot(config, Recorder()) as bot, RawClient(ngircd.port, f"alice{t}") as alice:
            bot.may_send = gate.check
            await alice.join(f"#ci-{t}")
            sending = asyncio.create_task(bot.send(Outgoing("#ci", "one\ntwo\nthree")))
            await alice.wait_for(lambda line: from_bot(f"bot{t}", f"#ci-{t}")(line) and line.text == "one", timeout=20)
            gate.open = False  # the lease ends while the pacer holds "two"
            with pytest.raises(Fenced):
                await sending
            gate.open = True  # a later line on the same connection: it arrives after anything written before
            await bot.send(Outgoing("#ci", "later"))
            await alice.wait_for(lambda line: from_bot(f"bot{t}", f"#ci-{t}")(line) and line.text == "later", timeout=20)
            said = [line.text for line in alice.lines if from_bot(f"bot{t}", f"#ci-{t}")(line)]
        assert said == ["one", "later"]

    asyncio.run(scenario())


def test_a_deposed_instance_on_the_alternate_nick_leaves_the_freed_nick_to_the_new_leader(ngircd: Ngircd) -> None:
    async def scenario() -> None:
        t = tag()
        wanted = f"bot{t}"
        gate = Gate()
        async with RawClient(ngircd.port, wanted) as old, RawClient(ngircd.port, f"new{t}") as new:
            await old.join(f"#ci-{t}")  # the holder's QUIT is seen in a shared channel
            # What would take the nick back here is the holder's QUIT (no ISON to add penalties).
            config = nick_config(ngircd.port, t, regain_interval=3600)
            async with running_bot(config, Recorder()) as bot:
                bot.may_send = gate.check
                assert bot.nick == f"{wanted}_"
                gate.open = False  # its lease ended: another instance leads now
                await old.quit("ping timeout")
                # Longer than ngircd holds a client's lines after its refused NICK (2 s): an
                # instance that still regained would have its nick back by now.
                await asyncio.sleep(3.0)
                assert bot.nick == f"{wanted}_"
                await new.change_nick(wanted)  # the new leader's connection takes it, unopposed
                assert new.nick == wanted
                await asyncio.sleep(0.5)
                assert bot.nick == f"{wanted}_"

    asyncio.run(scenario())


# --- InspIRCd + Anope ----------------------------------------------------------------------------


def test_a_dead_connection_of_the_bots_account_is_recovered_through_nickserv(
    services: InspircdAnope, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.irc")

    async def scenario() -> None:
        t = tag()
        # The old leader: logged in to the bot's account, holding its nick, in its channels;
        # then its machine dies: nothing reads its socket, the server keeps it open.
        old = RawClient(services.port, "downtimebot", caps=SASL_CAPS, sasl=("downtimebot", PASSWORDS["downtimebot"]))
        await old.connect()
        assert old.nick == "downtimebot"
        await old.join(f"#ci-{t}")
        old.play_dead()
        alice = RawClient(services.port, "alice", caps=SASL_CAPS, sasl=("alice", PASSWORDS["alice"]))
        await alice.connect()
        try:
            await alice.join(f"#ci-{t}")
            box: list[IrcTransport] = []
            config = dataclasses.replace(account_config(services.port, t), regain_interval=3600)
            async with running_bot(config, Recorder(echo_through(box))) as bot:
                box.append(bot)
                assert bot.account == "downtimebot"
                await eventually(lambda: bot.nick == "downtimebot")
                await alice.privmsg(f"#ci-{t}", "!echo the new leader")
                answer = await alice.wait_for(from_bot("downtimebot", f"#ci-{t}"), timeout=20)
                assert answer.text == "echo: the new leader"
                assert answer.tags.get("account") == "downtimebot"
            lines = log_lines(caplog)
            assert any("nick downtimebot is held by another connection" in line
                       and "recovering it through NickServ" in line for line in lines)
            assert "IRC took back the nick downtimebot" in lines
            assert PASSWORDS["downtimebot"] not in "\n".join(caplog.messages)
        finally:
            await alice.quit()
            await old.quit()

    asyncio.run(scenario())


def test_without_services_monitor_says_when_the_nick_is_free(services: InspircdAnope) -> None:
    async def scenario() -> None:
        t = tag()
        wanted = f"keeper{t}"
        old = RawClient(services.port, wanted)  # no shared channel: its QUIT is not seen
        await old.connect()
        try:
            config = IrcConfig(host="127.0.0.1", port=services.port, nick=wanted, identity="nick",
                               channels={"#ci": f"#ci-{t}", "#developers": f"#dev-{t}"}, regain_interval=3600)
            async with running_bot(config, Recorder()) as bot:
                assert bot.nick == f"{wanted}_"
                await old.quit()
                await eventually(lambda: bot.nick == wanted)
        finally:
            await old.quit()

    asyncio.run(scenario())
