"""From a chat line to a reply: parse, run the command in one transaction, answer.

A command that changed something has its replies written to the outbox in the
same transaction as the change, so the answer is never lost once the change is
made. A command that changed nothing (a question, a refusal) is answered
directly: asking again gives the same answer.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models.ports import BugLookup, Clock, Incoming, Outgoing
from models.handled import already_handled, mark_handled
from models.service import Actor, Core, Settings
from plugins import downtime, trees
from plugins.context import CommandContext, NoBugzilla
from plugins.registry import Command, collect, parse_line, run

log = logging.getLogger(__name__)

SendDirect = Callable[[str, Outgoing, str], Awaitable[None]]
RolesOf = Callable[[str | None], frozenset]


def all_commands() -> dict[str, Command]:
    return collect(downtime, trees)


@dataclass
class Dispatcher:
    sessions: sessionmaker[Session]
    clock: Clock
    settings: Settings
    render: Callable[..., str]
    roles_of: RolesOf
    send_direct: SendDirect
    prefix: str = "!"
    bugzilla: BugLookup = field(default_factory=NoBugzilla)
    push: Mapping[str, dt.timedelta] = field(default_factory=dict)
    systems: Mapping[str, str] = field(default_factory=dict)
    trees_remote: Callable[[], Awaitable[Mapping[str, Any]]] | None = None
    on_change: Callable[[], None] = lambda: None
    commands: dict[str, Command] = field(default_factory=all_commands)
    # The database's commit count (see adapters.db.CommitCounter); None turns the answer cache off.
    generation: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        # One command at a time: SQLite has one writer, and order matters to people.
        self._lock = asyncio.Lock()
        self.handled = 0
        self.refused = 0  # bad input, missing rights, wrong state: answered with one line
        # Answers of questions that depend only on the database (!downtime show, notice, history),
        # valid until the next commit: asked again and again while a downtime runs.
        self._answers: dict[tuple[str, str], list[str]] = {}
        self._answers_generation = -1
        self._last_ok = False

    async def handle(self, message: Incoming) -> list[str]:
        """Answer one chat line; returns the reply texts (for tests and benchmarks)."""
        parsed = parse_line(message.text, self.prefix, self.commands)
        if parsed is None:
            return []
        cache_key = None
        if self.generation is not None and parsed.command is not None and parsed.command.cacheable:
            cache_key = (parsed.command.name, " ".join(parsed.args.split()))
            generation = self.generation()
            if generation != self._answers_generation:
                self._answers, self._answers_generation = {}, generation
        cached = self._answers.get(cache_key) if cache_key else None
        if cached is not None:
            replies, queued = cached, False
        else:
            async with self._lock:
                replies, queued = await self._run(message, parsed)
            if cache_key and not queued and self._last_ok and self.generation() == self._answers_generation:
                self._answers[cache_key] = replies
        if queued:
            self.on_change()
        else:
            for text in replies:
                await self.send_direct(message.network, Outgoing(message.reply_target, text), message.account or "")
        return replies

    async def _run(self, message: Incoming, parsed) -> tuple[list[str], bool]:  # type: ignore[no-untyped-def]
        now = self.clock.now()
        self._last_ok = False
        actor = Actor(
            account=message.account,
            network=message.network,
            nick=message.nick,
            roles=self.roles_of(message.account),
            reply_target=message.reply_target,
        )
        with self.sessions() as session:
            if message.msgid and already_handled(session, message.network, message.msgid):
                # A replay (e.g. Matrix after a crash before its sync token was saved): the
                # change and its queued replies were committed the first time.
                log.info("ignoring %s message %s: already handled", message.network, message.msgid)
                return [], False
            core = Core(session, now=now, settings=self.settings, render=self.render, actor=actor)
            ctx = CommandContext(
                message=message,
                actor=actor,
                core=core,
                now=now,
                prefix=self.prefix,
                commands=self.commands,
                render=self.render,
                bugzilla=self.bugzilla,
                push=self.push,
                systems=self.systems,
                requests_channel=self.settings.requests_channel,
                trees_remote=self.trees_remote,
            )
            await run(ctx, parsed)
            self.handled += 1
            self._last_ok = not ctx.failed
            if ctx.failed or not core.changed:
                self.refused += ctx.failed
                session.rollback()
                return ctx.replies, False
            key = f"reply:{message.network}:{message.msgid or uuid.uuid4().hex}"
            for n, text in enumerate(ctx.replies):
                core.outbox.chat(f"{key}:{n}", message.reply_target, text, networks=[message.network], first=True)
            core.outbox.write()
            if message.msgid:
                mark_handled(session, message.network, message.msgid, now)
            try:
                session.commit()
            except Exception:
                ref = uuid.uuid4().hex[:8]
                log.exception("commit failed (ref %s)", ref)
                session.rollback()
                return [f"sorry, the change could not be saved (ref {ref}); nothing was changed"], False
            log.info("%s@%s: %s", actor.who, actor.network, message.text[:200])
            return ctx.replies, True
