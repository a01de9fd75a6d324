"""Per-sender ordering: one sender's lines in order, other senders not held up by them."""
from __future__ import annotations

import asyncio

from models.ports import Incoming
from plugins.senders import PerSender


def line(who: str | None, text: str, nick: str = "anon") -> Incoming:
    return Incoming(network="irc", room="#ci", account=who, nick=who or nick, text=text)


def test_a_slow_line_holds_up_only_the_next_lines_of_the_same_sender() -> None:
    done: list[str] = []
    release = asyncio.Event()

    async def handle(message: Incoming) -> None:
        if message.text == "slow":
            await release.wait()
        done.append(f"{message.account}:{message.text}")

    async def scenario() -> None:
        senders = PerSender(handle)
        await senders(line("alice", "slow"))
        await senders(line("alice", "after"))
        await senders(line("bob", "list"))
        await asyncio.sleep(0.01)
        assert done == ["bob:list"]
        release.set()
        await senders.idle()
        assert done == ["bob:list", "alice:slow", "alice:after"]

    asyncio.run(scenario())


def test_lines_that_wait_on_nothing_keep_the_order_they_came_in_across_senders() -> None:
    done: list[str] = []

    async def handle(message: Incoming) -> None:
        done.append(message.text)

    async def scenario() -> None:
        senders = PerSender(handle)
        for n in range(20):
            await senders(line(["alice", "bob", None][n % 3], str(n), nick=f"n{n % 2}"))
        await senders.idle()

    asyncio.run(scenario())
    assert done == [str(n) for n in range(20)]


def test_a_failing_line_is_logged_and_the_next_one_still_runs() -> None:
    done: list[str] = []

    async def handle(message: Incoming) -> None:
        if message.text == "boom":
            raise RuntimeError("boom")
        done.append(message.text)

    async def scenario() -> None:
        senders = PerSender(handle)
        await senders(line("alice", "boom"))
        await senders.in_turn(line("alice", "next"))
        assert done == ["next"]

    asyncio.run(scenario())
