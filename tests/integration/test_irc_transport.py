"""The IRC transport against real servers: ngircd (default flood rules) and InspIRCd + Anope.

Each server starts once for this module on a free loopback port. A test builds its own
`IrcTransport` with a handler that records every `Incoming` and answers it, and plays the
people in the channels with `RawClient`s. The pure helpers (line splitting, sanitising,
buckets, backoff) are tested first, without a server.
"""
from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from adapters.irc import (
    LINE_LIMIT,
    AccountMap,
    Backoff,
    IrcConfig,
    IrcTransport,
    Pacer,
    TokenBucket,
    sanitize_lines,
    split_utf8,
)
from models.ports import Incoming, Outgoing, TransportUnavailable, Undeliverable
from tests.servers.ircd import (
    InspircdAnope,
    Line,
    Ngircd,
    RawClient,
    ServerUnavailable,
    binaries_present,
    ensure_installed,
)

CI = os.environ.get("CI") == "true"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "downtimebot": "bot-secret"}
SASL_CAPS = ("account-tag", "extended-join", "account-notify", "message-tags", "server-time")


# --- pure helpers ------------------------------------------------------------------------------


def test_sanitize_turns_line_breaks_into_separate_lines_and_drops_control_characters() -> None:
    text = "deploy\r\nQUIT :bye\x00 now\rthird\x01ACTION\x01\n\n\tlast\x7f"
    assert sanitize_lines(text) == ["deploy", "QUIT :bye now", "thirdACTION", " last"]


def test_split_utf8_cuts_at_spaces_and_never_inside_a_character() -> None:
    text = "ééé " * 40 + "x" * 50 + "€" * 100
    pieces = split_utf8(text, 61)
    assert all(len(piece.encode("utf-8")) <= 61 for piece in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    assert pieces[0] == " ".join(["ééé"] * 8)  # 8 words = 55 bytes; a 9th would not fit


def test_token_bucket_lets_a_burst_through_then_paces_to_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(capacity=100, rate=50, clock=lambda: now[0])
    assert bucket.delay(100) == 0
    bucket.take(100)
    assert bucket.delay(50) == pytest.approx(1.0)
    now[0] = 1.0
    assert bucket.delay(50) == 0
    bucket.take(300)  # a cost above the capacity is taken, the debt is paid in time
    assert bucket.delay(10) == pytest.approx((250 + 10) / 50)


def test_default_pacing_sends_three_lines_at_once_then_one_a_second() -> None:
    now = [0.0]
    pacer = Pacer(IrcConfig(host="irc.example.org"), clock=lambda: now[0])
    for _ in range(3):
        assert pacer.delay(60) == 0
        pacer.take(60)
    assert pacer.delay(60) == pytest.approx(1.0)
    now[0] = 1.0
    assert pacer.delay(60) == 0
    pacer.take(60)
    assert pacer.delay(400) == pytest.approx(1.0)  # the line bucket holds it, not the bytes
    now[0] = 2.0
    pacer.take(500)
    pacer.take(500)
    assert pacer.delay(100) > 1.0  # 1000 bytes in one second: the byte bucket holds it


def test_backoff_grows_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(1.0, 300.0, random.Random(7))
    delays = [backoff.next() for _ in range(12)]
    assert 0.5 <= delays[0] <= 1.0
    assert delays[4] > delays[1]
    assert all(150.0 <= delay <= 300.0 for delay in delays[10:])
    backoff.reset()
    assert backoff.next() <= 1.0


def test_account_map_keeps_the_account_across_a_nick_change_but_not_a_whois_answer() -> None:
    accounts = AccountMap()
    accounts.set("Alice", "alice", "join")
    accounts.set("bob", "bob", "whois")
    accounts.rename("alice", "carol")
    accounts.rename("bob", "bobby")
    assert accounts.nick_for("alice") == "carol"
    assert accounts.lookup("bobby") is None
    accounts.set("carol", None, "notify")
    assert accounts.nick_for("alice") is None


def test_a_nick_change_drops_what_was_known_of_the_new_nick() -> None:
    accounts = AccountMap()
    accounts.set("carol_w", "ciduty", "whois")  # carol_w left unseen; someone renames to it
    accounts.set("mallory", None, "join")
    accounts.rename("mallory", "carol_w")
    assert accounts.lookup("carol_w") is not None and accounts.lookup("carol_w").account is None  # type: ignore[union-attr]
    accounts.rename("dave", "carol_w")  # nothing known of dave: nothing of carol_w either
    assert accounts.lookup("carol_w") is None


def test_an_answer_learned_by_whois_grows_old_with_the_clock() -> None:
    now = [100.0]
    accounts = AccountMap(clock=lambda: now[0])
    accounts.set("carol_w", "ciduty", "whois")
    known = accounts.lookup("carol_w")
    assert known is not None
    now[0] = 161.0
    assert accounts.age(known) == pytest.approx(61.0)


def test_a_private_answer_to_someone_not_identified_is_addressed_to_their_nick() -> None:
    unidentified = Incoming(network="irc", room=None, account=None, nick="bob", text="!downtime list")
    identified = Incoming(network="irc", room=None, account="bob", nick="bobby", text="!downtime list")
    assert (unidentified.reply_target, identified.reply_target) == ("~bob", "@bob")


# --- harness -----------------------------------------------------------------------------------


def _require(*binaries: str) -> None:
    if binaries_present(*binaries):
        return
    if not CI:
        pytest.skip(f"{', '.join(binaries)} not installed: python -m tests.servers.ircd install")
    try:
        ensure_installed(*binaries)
    except ServerUnavailable as exc:  # under CI a missing server is a failure, never a skip
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    _require("ngircd")
    with Ngircd(penalties=True) as server:
        yield server


@pytest.fixture(scope="module")
def services() -> Iterator[InspircdAnope]:
    _require("inspircd", "anope")
    with InspircdAnope() as server:
        for account, password in PASSWORDS.items():
            server.register(account, password)
        yield server


def channels(tag: str) -> dict[str, str]:
    return {"#ci": f"#ci-{tag}", "#developers": f"#dev-{tag}"}


class Recorder:
    """The message handler for tests: records each Incoming and optionally answers it."""

    def __init__(self, answer: Callable[[Incoming], Awaitable[None]] | None = None) -> None:
        self.received: list[Incoming] = []
        self.answer = answer
        self._changed = asyncio.Event()

    async def __call__(self, incoming: Incoming) -> None:
        self.received.append(incoming)
        self._changed.set()
        if self.answer is not None:
            await self.answer(incoming)

    async def wait_for(self, predicate: Callable[[Incoming], bool], timeout: float = 15.0) -> Incoming:
        async def found() -> Incoming:
            while True:
                for incoming in self.received:
                    if predicate(incoming):
                        return incoming
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(found(), timeout)


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until the condition holds (never an assertion on how long it took)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running_bot(config: IrcConfig, recorder: Recorder) -> AsyncIterator[IrcTransport]:
    transport = IrcTransport(config, rng=random.Random(1))
    await transport.start(recorder)
    try:
        await eventually(lambda: transport.joined == {"#ci", "#developers"})
        yield transport
    finally:
        await transport.stop()


def echo_through(transport_box: list[IrcTransport]) -> Callable[[Incoming], Awaitable[None]]:
    async def answer(incoming: Incoming) -> None:
        if incoming.text.startswith("!echo "):
            await transport_box[0].send(Outgoing(incoming.reply_target, "echo: " + incoming.text[6:]))

    return answer


def from_bot(nick: str, target: str | None = None) -> Callable[[Line], bool]:
    def match(line: Line) -> bool:
        return (
            line.command == "PRIVMSG"
            and line.nick == nick
            and (target is None or line.params[0].lower() == target.lower())
        )

    return match


def tag() -> str:
    return uuid.uuid4().hex[:6]


def nick_config(port: int, tag_: str, **overrides: Any) -> IrcConfig:
    return IrcConfig(
        host="127.0.0.1", port=port, nick=f"bot{tag_}", identity="nick", channels=channels(tag_), **overrides
    )


# --- ngircd, default flood rules -------------------------------------------------------------

@pytest.mark.integration
def test_bot_joins_both_channels_and_answers_in_the_channel_and_privately(ngircd: Ngircd) -> None:
    async def scenario() -> None:
        t = tag()
        box: list[IrcTransport] = []
        recorder = Recorder(echo_through(box))
        async with running_bot(nick_config(ngircd.port, t), recorder) as bot, RawClient(ngircd.port, f"alice{t}") as alice:
            box.append(bot)
            await alice.join(f"#ci-{t}")
            await alice.privmsg(f"#ci-{t}", "!echo hello bot")
            got = await recorder.wait_for(lambda i: i.text == "!echo hello bot")
            assert (got.network, got.room, got.account, got.nick) == ("irc", "#ci", f"alice{t}", f"alice{t}")
            reply = await alice.wait_for(from_bot(bot.nick or "", f"#ci-{t}"))
            assert reply.text == "echo: hello bot"

            await alice.privmsg(bot.nick or "", "!echo psst")
            private = await recorder.wait_for(lambda i: i.text == "!echo psst")
            assert private.room is None and private.reply_target == f"@alice{t}"
            reply = await alice.wait_for(from_bot(bot.nick or "", f"alice{t}"))
            assert reply.text == "echo: psst"

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_3000_character_message_arrives_complete_in_order_with_no_line_over_512_bytes(ngircd: Ngircd) -> None:
    words = [f"wörd{i:04d}-ünïcødé" for i in range(200)]
    text = " ".join(words)
    assert len(text) > 3000

    async def scenario() -> None:
        t = tag()
        async with running_bot(nick_config(ngircd.port, t), Recorder()) as bot, RawClient(ngircd.port, f"obs{t}") as obs:
            await obs.join(f"#ci-{t}")
            await bot.send(Outgoing("#ci", text))
            lines: list[Line] = []
            while " ".join(line.text for line in lines) != text:
                lines.append(await obs.wait_for(from_bot(bot.nick or "", f"#ci-{t}"), timeout=60))
                assert len(lines) < 20, "more lines than the text needs"
            assert len(lines) > 1
            assert all(len(line.raw.encode("utf-8")) + 2 <= LINE_LIMIT for line in lines)

    asyncio.run(scenario())


@pytest.mark.integration
def test_line_breaks_and_nul_in_text_never_become_protocol_lines(ngircd: Ngircd) -> None:
    async def scenario() -> None:
        t = tag()
        async with running_bot(nick_config(ngircd.port, t), Recorder()) as bot, RawClient(ngircd.port, f"obs{t}") as obs:
            await obs.join(f"#ci-{t}")
            await bot.send(Outgoing("#ci", "status\r\nQUIT :bye\x00 and JOIN 0\nend"))
            said = await obs.wait_for_count(from_bot(bot.nick or "", f"#ci-{t}"), 3)
            assert [line.text for line in said] == ["status", "QUIT :bye and JOIN 0", "end"]
            await bot.send(Outgoing("#ci", "still here"))
            after = await obs.wait_for(from_bot(bot.nick or "", f"#ci-{t}"))
            assert after.text == "still here"
            assert bot.connected and bot.joined == {"#ci", "#developers"}
            assert not [line for line in obs.lines if line.nick == bot.nick and line.command in ("QUIT", "PART")]

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_latin1_byte_from_a_client_does_not_break_the_connection(ngircd: Ngircd) -> None:
    async def scenario() -> None:
        t = tag()
        recorder = Recorder()
        async with running_bot(nick_config(ngircd.port, t), recorder) as bot, RawClient(ngircd.port, f"eve{t}") as eve:
            await eve.join(f"#ci-{t}")
            await eve.send_bytes(f"PRIVMSG #ci-{t} :caf".encode() + b"\xe9 ol\xe9\r\n")
            await eve.privmsg(f"#ci-{t}", "after")
            latin = await recorder.wait_for(lambda i: i.text.startswith("caf"))
            assert latin.text == "café olé"
            await recorder.wait_for(lambda i: i.text == "after")
            assert bot.connected and bot.connections == 1

    asyncio.run(scenario())


@pytest.mark.integration
@pytest.mark.slow
def test_200_messages_from_3_clients_in_a_burst_all_get_answered_without_a_disconnect(ngircd: Ngircd) -> None:
    total = 200

    async def scenario() -> None:
        t = tag()
        box: list[IrcTransport] = []
        recorder = Recorder(echo_through(box))
        # ngircd with default rules takes 5 evenly spaced short lines a second without lag
        config = nick_config(ngircd.port, t, line_rate=5.0)
        async with running_bot(config, recorder) as bot:
            box.append(bot)
            clients = [RawClient(ngircd.port, f"c{n}{t}") for n in range(3)]
            for client in clients:
                await client.connect()
                await client.join(f"#ci-{t}")
            try:
                bursts = [
                    "".join(f"PRIVMSG #ci-{t} :!echo {i}\r\n" for i in range(total) if i % 3 == n)
                    for n in range(3)
                ]
                await asyncio.gather(*(c.send_bytes(b.encode()) for c, b in zip(clients, bursts)))
                replies = await clients[0].wait_for_count(from_bot(bot.nick or "", f"#ci-{t}"), total, timeout=240)
                assert sorted(int(line.text.split()[-1]) for line in replies) == list(range(total))
                assert len(recorder.received) == total
                assert bot.connected and bot.connections == 1
            finally:
                for client in clients:
                    await client.quit()

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_silent_server_is_declared_dead_and_the_bot_reconnects(ngircd: Ngircd) -> None:
    async def scenario() -> None:
        t = tag()
        config = nick_config(ngircd.port, t, ping_interval=1.0, ping_timeout=3.0)
        async with running_bot(config, Recorder()) as bot:
            ngircd.pause()
            try:
                await eventually(lambda: not bot.connected, timeout=30)
            finally:
                ngircd.resume()
            await eventually(lambda: bot.joined == {"#ci", "#developers"}, timeout=30)
            assert bot.connections == 2

    asyncio.run(scenario())


@pytest.mark.integration
def test_bot_reconnects_and_rejoins_after_the_server_restarts_and_refuses_to_send_meanwhile(ngircd: Ngircd) -> None:
    # last of the ngircd tests: it restarts the shared server
    async def scenario() -> None:
        t = tag()
        async with running_bot(nick_config(ngircd.port, t), Recorder()) as bot:
            ngircd.stop()
            await eventually(lambda: not bot.connected)
            with pytest.raises(TransportUnavailable):
                await bot.send(Outgoing("#ci", "nobody hears this"))
            ngircd.start()
            await eventually(lambda: bot.joined == {"#ci", "#developers"}, timeout=30)
            async with RawClient(ngircd.port, f"obs{t}") as obs:
                await obs.join(f"#ci-{t}")
                await bot.send(Outgoing("#ci", "back"))
                assert (await obs.wait_for(from_bot(bot.nick or "", f"#ci-{t}"))).text == "back"

    asyncio.run(scenario())


# --- InspIRCd + Anope: accounts ----------------------------------------------------------------


def account_config(port: int, tag_: str) -> IrcConfig:
    return IrcConfig(
        host="127.0.0.1",
        port=port,
        nick="downtimebot",
        sasl_username="downtimebot",
        sasl_password=PASSWORDS["downtimebot"],
        allow_plaintext_sasl=True,  # a local test server without TLS
        identity="account",
        channels=channels(tag_),
    )


async def alice_client(port: int) -> RawClient:
    client = RawClient(port, "alice", caps=SASL_CAPS, sasl=("alice", PASSWORDS["alice"]))
    await client.connect()
    return client


@pytest.mark.integration
def test_bot_logs_in_with_sasl_and_sees_the_account_of_a_registered_user(services: InspircdAnope) -> None:
    async def scenario() -> None:
        t = tag()
        recorder = Recorder()
        async with running_bot(account_config(services.port, t), recorder) as bot:
            assert bot.account == "downtimebot"
            alice = await alice_client(services.port)
            try:
                assert any(line.command == "903" for line in alice.lines)
                await alice.join(f"#ci-{t}")
                await alice.privmsg(f"#ci-{t}", "hello from alice")
                got = await recorder.wait_for(lambda i: i.text == "hello from alice")
                assert (got.account, got.nick, got.room) == ("alice", "alice", "#ci")
                assert got.msgid  # InspIRCd's msgid tag is passed on
                await bot.send(Outgoing("@alice", "a private word", mentions=("alice",)))
                private = await alice.wait_for(from_bot("downtimebot", "alice"))
                assert private.text == "alice: a private word"
            finally:
                await alice.quit()

    asyncio.run(scenario())


@pytest.mark.integration
def test_an_impostor_using_a_registered_nick_without_identifying_has_no_account(services: InspircdAnope) -> None:
    async def scenario() -> None:
        t = tag()
        recorder = Recorder()
        async with running_bot(account_config(services.port, t), recorder):
            async with RawClient(services.port, "bob", caps=SASL_CAPS) as impostor:
                assert impostor.nick == "bob"
                await impostor.join(f"#ci-{t}")
                await impostor.privmsg(f"#ci-{t}", "I am bob, close the trees")
                got = await recorder.wait_for(lambda i: i.text == "I am bob, close the trees")
                assert got.nick == "bob" and got.account is None

    asyncio.run(scenario())


@pytest.mark.integration
def test_the_account_stays_after_a_nick_change_and_goes_after_logout(services: InspircdAnope) -> None:
    async def scenario() -> None:
        t = tag()
        recorder = Recorder()
        async with running_bot(account_config(services.port, t), recorder) as bot:
            alice = await alice_client(services.port)
            try:
                await alice.join(f"#ci-{t}")
                await alice.change_nick("carol")
                await alice.privmsg(f"#ci-{t}", "renamed")
                renamed = await recorder.wait_for(lambda i: i.text == "renamed")
                assert (renamed.nick, renamed.account) == ("carol", "alice")
                assert bot.nick_for("alice") == "carol"
                await bot.send(Outgoing("@alice", "found you"))
                assert (await alice.wait_for(from_bot("downtimebot", "carol"))).text == "found you"

                await alice.privmsg("NickServ", "LOGOUT")
                await alice.wait_for(lambda line: line.command == "NOTICE" and line.nick == "NickServ")
                await eventually(lambda: bot.nick_for("alice") == "alice")  # account-notify: gone
                await alice.privmsg(f"#ci-{t}", "logged out")
                out = await recorder.wait_for(lambda i: i.text == "logged out")
                assert (out.nick, out.account) == ("carol", None)
                with pytest.raises(Undeliverable):  # permanent: the outbox marks it failed, no retry
                    await bot.send(Outgoing("@alice", "nobody holds this account now"))
            finally:
                await alice.quit()

    asyncio.run(scenario())
