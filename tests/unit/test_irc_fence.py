"""[ha] One voice at a time on IRC: the leader's fence is asked before each paced line.

A scripted server (tests/unit/test_irc_regain.py) records every line the transport writes; a
`Gate` stands for the leader's fence (adapters/leadership.py Fence.check) and is shut at a chosen
moment. What proves a line was never written: after the gate opens again, a later line through
the same connection arrives, and the lines of one connection arrive in the order written.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from adapters.irc import Fenced, IrcConfig, IrcTransport
from models.ports import Outgoing, TransportUnavailable
from tests.unit.test_irc_regain import ScriptedServer, no_handler

CHANNELS = {"#ci": "#ci", "#developers": "#developers"}


class Gate:
    """A fake fence: open until `shut()`; `checks` counts the questions."""

    def __init__(self) -> None:
        self.open = True
        self.checks = 0

    def check(self) -> bool:
        self.checks += 1
        return self.open


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `condition` holds (a failure bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.01)


def paced(port: int, **overrides: object) -> IrcConfig:
    """One line at once, then one each 0.2 s: a message of several lines is on its way a while."""
    settings: dict[str, object] = dict(host="127.0.0.1", port=port, nick="downtimebot", identity="nick",
                                       channels=CHANNELS, line_burst=1, line_rate=5.0, burst=4096, rate=100000.0)
    settings.update(overrides)
    return IrcConfig(**settings)  # type: ignore[arg-type]


async def joined(server: ScriptedServer, config: IrcConfig, gate: Gate) -> IrcTransport:
    server.held = False
    transport = IrcTransport(config)
    transport.may_send = gate.check
    await transport.start(no_handler)
    await until(lambda: transport.joined == {"#ci", "#developers"})
    return transport


def said(server: ScriptedServer) -> list[str]:
    return [line.removeprefix("PRIVMSG #ci :") for line in server.received if line.startswith("PRIVMSG #ci :")]


def test_the_line_after_the_lease_is_lost_never_reaches_the_socket_and_the_message_stays_undelivered() -> None:
    async def scenario() -> None:
        server = ScriptedServer()
        await server.start()
        gate = Gate()
        transport = await joined(server, paced(server.port), gate)
        try:
            sending = asyncio.create_task(transport.send(Outgoing("#ci", "one\ntwo\nthree")))
            await until(lambda: "one" in said(server))
            gate.open = False  # the lease ends while the pacer holds "two"
            with pytest.raises(Fenced):
                await sending
            gate.open = True
            await transport.send(Outgoing("#ci", "later"))
            await until(lambda: "later" in said(server))
        finally:
            await transport.stop()
            await server.stop()
        assert said(server) == ["one", "later"]

    asyncio.run(scenario())


def test_a_refused_line_fails_its_message_as_unavailable_so_the_outbox_keeps_the_row() -> None:
    assert issubclass(Fenced, TransportUnavailable)  # chat_delivery: TransportUnavailable -> Retry


def test_messages_queued_behind_a_refused_line_are_dropped_at_once_and_never_written() -> None:
    async def scenario() -> None:
        server = ScriptedServer()
        await server.start()
        gate = Gate()
        transport = await joined(server, paced(server.port), gate)
        try:
            first = asyncio.create_task(transport.send(Outgoing("#ci", "a1\na2\na3")))
            await until(lambda: "a1" in said(server))
            queued = [asyncio.create_task(transport.send(Outgoing("#ci", f"b{n}\nc{n}"))) for n in range(3)]
            await asyncio.sleep(0)  # each is in the writer's queue now
            gate.open = False
            results = await asyncio.wait_for(asyncio.gather(first, *queued, return_exceptions=True), 5)
            gate.open = True
            await transport.send(Outgoing("#ci", "later"))
            await until(lambda: "later" in said(server))
        finally:
            await transport.stop()
            await server.stop()
        assert [type(r) for r in results] == [Fenced] * 4
        assert said(server) == ["a1", "later"]

    asyncio.run(scenario())


def test_without_pacing_a_message_is_refused_whole_when_the_fence_is_shut() -> None:
    async def scenario() -> None:
        server = ScriptedServer()
        await server.start()
        gate = Gate()
        transport = await joined(server, paced(server.port, pacing=False), gate)
        try:
            gate.open = False
            with pytest.raises(Fenced):
                await transport.send(Outgoing("#ci", "one\ntwo"))
            gate.open = True
            await transport.send(Outgoing("#ci", "later"))
            await until(lambda: "later" in said(server))
        finally:
            await transport.stop()
            await server.stop()
        assert said(server) == ["later"]

    asyncio.run(scenario())


def test_a_deposed_instance_on_the_alternate_nick_stops_asking_for_its_nick_and_never_takes_it() -> None:
    async def scenario() -> None:
        server = ScriptedServer(monitor_full=True)  # no MONITOR: an ISON every regain_interval
        await server.start()
        gate = Gate()
        config = IrcConfig(host="127.0.0.1", port=server.port, nick="downtimebot", identity="nick",
                           channels=CHANNELS, regain_interval=0.05, pacing=False)
        transport = IrcTransport(config)
        transport.may_send = gate.check
        await transport.start(no_handler)
        try:
            await until(lambda: server.received.count("ISON downtimebot") >= 2)  # regaining
            gate.open = False  # deposed: the new leader's connection is about to take the nick
            mark = len(server.received)
            server.held = False  # the nick is free now: the old code would take it back
            checks = gate.checks
            # Twenty regain intervals: an ISON and a NICK would have gone out by now.
            await until(lambda: gate.checks > checks, within=5)
            await asyncio.sleep(1.0)
            after = server.received[mark:]
            nick = transport.nick
        finally:
            await transport.stop()
            await server.stop()
        assert "NICK downtimebot" not in after
        assert after.count("ISON downtimebot") <= 1  # at most one already on its way at the flip
        assert nick == "downtimebot_"

    asyncio.run(scenario())
