"""Per-sender ordering: a transport hands each chat line on without waiting for the one before.

`PerSender` wraps the dispatcher's handler. Each sender's lines run in the order they came, one
after the other, in a task of their own; different senders run concurrently. So a command that
waits on an outside service (a slow Bugzilla) holds up only the next lines of the same sender,
never another person's `!downtime list`. When nothing waits on an outside service the lines
still reach the dispatcher's lock in the order they arrived (tasks start in the order they are
made and the lock is first come, first served), so a scripted transcript keeps its order.

`idle()` waits until every line handed on so far has been answered (the console waits for it
before it exits).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from models.ports import Incoming

log = logging.getLogger(__name__)


class PerSender:
    def __init__(self, handle: Callable[[Incoming], Awaitable[object]]) -> None:
        self._handle = handle
        self._last: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    @staticmethod
    def sender(message: Incoming) -> tuple[str, str]:
        """Who a line is from: the account, or the nick of someone not identified, per network."""
        return message.network, (message.account or "~" + message.nick).casefold()

    async def __call__(self, message: Incoming) -> None:
        """Hand the line on and return at once; it runs after the sender's previous lines."""
        self.submit(message)

    def submit(self, message: Incoming) -> asyncio.Task[None]:
        key = self.sender(message)
        task = asyncio.create_task(self._after(self._last.get(key), message), name=f"line-from-{key[1][:40]}")
        self._last[key] = task
        self._running.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._last.get(key) is task:
            del self._last[key]

    async def _after(self, previous: asyncio.Task[None] | None, message: Incoming) -> None:
        # Waiting on a line that is already answered would cost a turn of the loop, and let a
        # later line of another sender go first: only a line still running is waited for.
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        try:
            await self._handle(message)
        except Exception:
            log.exception("the message handler failed on a line from %s", message.nick)

    async def idle(self) -> None:
        """Wait until every line handed on so far (and any handed on meanwhile) is answered."""
        while self._running:
            await asyncio.wait(list(self._running))

    async def in_turn(self, message: Incoming) -> None:
        """Hand the line on and wait until it is answered: for a transport that must know when.
        Matrix calls it in a task per command and saves its sync token only once every command
        of a batch is answered (adapters/matrix.py `HandledUpTo`), so it never waits in line."""
        await asyncio.wait([self.submit(message)])
