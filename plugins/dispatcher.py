"""From a chat line to a reply: parse, run the command in one transaction, answer.

A command that changed something has its replies written to the outbox in the same
transaction as the change, next to what the reactions queued, so the answer is never lost
once the change is made. A command that changed nothing (a question, a refusal) is answered
directly: asking again gives the same answer. Both go through `addressed`, so an answer too
long for a channel goes to the asker privately, with a pointer in the channel, either way.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from models.handled import already_handled, mark_handled
from models.lifecycle import Role
from models.orm import ACCOUNT_LENGTH
from models.outbox import Outbox
from models.ports import (
    BugLookup, Clock, CommandObserver, Incoming, Outgoing, Transport, TransportUnavailable, TreeState, Undeliverable,
)
from models.reactions import Reactions, Told
from models.service import Downtimes
from models.work import Actor, Settings, Work
from plugins import downtime, trees
from plugins import help as help_commands
from plugins.answers import AnswerCache
from plugins.context import CommandContext, NoBugzilla, Preflight, Render
from plugins.ratelimit import RateLimiter, Verdict
from plugins.registry import Command, Parsed, collect, parse_line, run, tops_of, transient

log = logging.getLogger(__name__)

# (account, network) -> roles: an account holds roles only on the network it was identified on.
RolesOf = Callable[[str | None, str], frozenset[Role]]


@dataclass
class _Noted:
    """What one line came to, for `on_command`: a registered command's name (never the line's
    own words) and one of ok | refused | usage | error | ratelimited."""

    command: str = "unknown"
    result: str = "ok"
    counted: bool = False  # False: the line was not for the bot


def all_commands() -> dict[str, Command]:
    return collect(downtime, trees, help_commands)


@dataclass
class Dispatcher:
    sessions: sessionmaker[Session]
    clock: Clock
    settings: Settings
    render: Render
    reactions: Reactions
    roles_of: RolesOf
    transports: Mapping[str, Transport]
    prefix: str = "!"
    bugzilla: BugLookup = field(default_factory=NoBugzilla)
    push: Mapping[str, dt.timedelta] = field(default_factory=dict)
    systems: Mapping[str, str] = field(default_factory=dict)
    trees_remote: Callable[[], Awaitable[Mapping[str, TreeState]]] | None = None
    on_change: Callable[[], None] = lambda: None
    commands: dict[str, Command] = field(default_factory=all_commands)
    # The database's commit count (see adapters.db.CommitCounter); None turns the answer cache off.
    generation: Callable[[], int] | None = None
    # [bot] rate_limit, per sender (plugins/ratelimit.py); None: no limit.
    rate_limiter: RateLimiter | None = None
    # [bot] max_line: longer lines for the bot are refused before they are parsed.
    max_line: int = 2000
    # Told of every line for the bot: its command, result and seconds (the metrics); None: nobody.
    on_command: CommandObserver | None = None

    def __post_init__(self) -> None:
        # One command at a time: SQLite has one writer, and order matters to people.
        self._lock = asyncio.Lock()
        self.handled = 0
        self.refused = 0  # bad input, missing rights, wrong state: answered with one line
        self.answers = AnswerCache(self.generation) if self.generation is not None else None
        self._tops, self._tops_for = tops_of(self.commands), len(self.commands)
        self._last_ok = False

    async def handle(self, message: Incoming) -> None:
        """The transports' message handler."""
        await self.answer(message)

    async def answer(self, message: Incoming) -> list[str]:
        """Answer one chat line; returns the reply texts (for tests and benchmarks)."""
        if self.on_command is None:
            return await self._answer(message, _Noted())
        started = time.perf_counter()
        noted = _Noted()
        try:
            return await self._answer(message, noted)
        except BaseException:
            noted.result = "error"
            raise
        finally:
            if noted.counted:
                self.on_command(noted.command, noted.result, time.perf_counter() - started)

    async def _answer(self, message: Incoming, noted: _Noted) -> list[str]:
        if len(self.commands) != self._tops_for:
            self._tops, self._tops_for = tops_of(self.commands), len(self.commands)
        too_long = len(message.text) > self.max_line
        parsed = None if too_long else parse_line(message.text, self.prefix, self.commands, self._tops)
        if (parsed is None and not too_long) or (too_long and not self._for_bot(message.text)):
            return []
        noted.counted = True
        if parsed is not None and parsed.command is not None:
            noted.command = parsed.command.name
        # A sender over the limit is not answered, not even that a line is too long.
        if self.rate_limiter is not None and await self._over_limit(self.rate_limiter, message):
            noted.result = "ratelimited"
            return []
        if parsed is None:
            noted.result = "refused"
            return await self._too_long(message)
        key = None
        if self.answers is not None and parsed.command is not None and parsed.command.cacheable:
            key = AnswerCache.key(parsed.command.name, parsed.args, message)
        cached = self.answers.get(key) if self.answers is not None and key else None
        if cached is not None:
            replies, queued = cached, False
        else:
            prepared = await self._prepare(message, parsed)  # outside look-ups: before the lock
            async with self._lock:
                replies, queued = await self._run_again_if_aborted(message, parsed, prepared, noted)
            if self.answers is not None and key and not queued and self._last_ok:
                self.answers.put(key, replies)
        if queued:
            self.on_change()
        else:
            for text in replies:
                for target, line in self.addressed(message, text):
                    await self._send(message.network, Outgoing(target, line))
        return replies

    async def _over_limit(self, limiter: RateLimiter, message: Incoming) -> bool:
        """Whether the sender is over [bot] rate_limit: told once to slow down, then ignored."""
        verdict = limiter.check(
            message.network, message.account, message.nick,
            exempt=lambda: bool(self.roles_of(message.account, message.network) & {Role.CIDUTY, Role.ADMIN}),
        )
        if verdict is Verdict.ALLOW:
            return False
        if verdict is Verdict.SLOW_DOWN:
            log.warning("%s on %s is over the rate limit: ignored for a while", message.account or "~" + message.nick,
                        message.network)
            limit = limiter.limit
            wait = limiter.wait(message.network, message.account, message.nick)
            text = self.render(
                "slow_down.txt", who=message.nick, commands=limit.commands, period=limit.period,
                seconds=math.ceil(wait.total_seconds()),
            ).strip()
            await self._send(message.network, Outgoing(message.reply_target, text))
        return True

    def _for_bot(self, text: str) -> bool:
        """Whether a line names one of the bot's commands, from its first few characters only."""
        head = text[: len(self.prefix) + 40]
        if not head.startswith(self.prefix) or head[len(self.prefix) : len(self.prefix) + 1].isspace():
            return False
        words = head[len(self.prefix) :].split(None, 1)
        return bool(words) and words[0].lower() in self._tops

    async def _too_long(self, message: Incoming) -> list[str]:
        """Refuse a line for the bot that is over [bot] max_line, with one line, unread."""
        self.refused += 1
        text = self.render("refusal.txt", refusal="line_too_long", length=len(message.text), limit=self.max_line)
        for target, line in self.addressed(message, text.strip()):
            await self._send(message.network, Outgoing(target, line))
        return [text.strip()]

    def addressed(self, message: Incoming, text: str) -> list[tuple[str, str]]:
        """Where an answer goes: its channel, or, when longer than the network allows in a
        channel ([irc]: 4 lines), to the asker privately with a one-line pointer in the channel."""
        target = message.reply_target
        transport = self.transports.get(message.network)
        limit = transport.max_channel_lines if transport is not None else None
        lines = text.count("\n") + 1
        if limit and lines > limit and target.startswith("#") and message.account:
            pointer = self.render("long_answer.txt", asker=message.account, lines=lines).strip()
            return [("@" + message.account, text), (target, pointer)]
        return [(target, text)]

    async def _send(self, network: str, message: Outgoing) -> None:
        try:
            await self.transports[network].send(message)
        except TransportUnavailable:
            log.warning("reply to %s on %s lost: not connected (asking again answers again)", message.target, network)
        except Undeliverable as err:
            log.warning("reply to %s on %s dropped: %s", message.target, network, err)

    def _actor(self, message: Incoming) -> Actor:
        account = message.account
        if account is not None and len(account) > ACCOUNT_LENGTH:
            # No network gives such an account (the console would): it could not be stored.
            log.warning("an account of %d characters on %s taken for not identified", len(account), message.network)
            account = None
        return Actor(
            account=account,
            network=message.network,
            nick=message.nick,
            roles=self.roles_of(account, message.network),
            reply_target=message.reply_target,
        )

    async def _prepare(self, message: Incoming, parsed: Parsed) -> Preflight | None:
        """Run the command's outside look-ups (`@command(prepare=…)`) with no lock held and no
        session open; its rights checks each run in a short session of their own."""
        if parsed.command is None or parsed.command.prepare is None:
            return None
        now, actor = self.clock.now(), self._actor(message)

        def rights(check: Callable[[Downtimes], None]) -> None:
            with self.sessions() as session:
                check(Downtimes(Work(session, now=now, settings=self.settings, actor=actor)))

        pre = Preflight(actor=actor, now=now, bugzilla=self.bugzilla, rights=rights, trees_remote=self.trees_remote)
        try:
            await parsed.command.prepare(pre, parsed.args.strip())
        except Exception:
            log.exception("the look-ups of %r failed; the command runs without them", parsed.command.name)
        return pre

    async def _run_again_if_aborted(
        self, message: Incoming, parsed: Parsed, prepared: Preflight | None, noted: _Noted
    ) -> tuple[list[str], bool]:
        """`_run`, and once more if PostgreSQL aborted its transaction as the loser of a race (a
        deadlock, a serialization failure: `registry.transient`). Nothing of the first run was kept;
        the second one reads what the winner committed. A second abort is refused in one line."""
        try:
            return await self._run(message, parsed, prepared, noted)
        except DBAPIError as err:
            if not transient(err):
                raise
            log.warning("the database aborted %r (%s, lost a race with another change): running it again",
                        noted.command, getattr(err.orig, "sqlstate", "?"))
        try:
            return await self._run(message, parsed, prepared, noted)
        except DBAPIError as err:
            if not transient(err):
                raise
            ref = uuid.uuid4().hex[:8]
            log.warning("the database aborted %r twice (ref %s): %s", noted.command, ref, str(err).splitlines()[0])
            noted.result = "error"
            return [self.render("refusal.txt", refusal="not_saved", ref=ref).strip()], False

    async def _run(
        self, message: Incoming, parsed: Parsed, prepared: Preflight | None = None, noted: _Noted | None = None
    ) -> tuple[list[str], bool]:
        noted = noted or _Noted()
        now = self.clock.now()
        self._last_ok = False
        actor = self._actor(message)
        with self.sessions() as session:
            # A replay (e.g. Matrix after a crash before its sync token was saved) is ignored: the
            # change and its queued replies were committed the first time. A question (a read-only
            # command, or a line that names no command) never commits, so it is never recorded as
            # handled: it is looked up only if it changes something after all, before the commit.
            lookup = bool(message.msgid) and parsed.command is not None and not parsed.command.read_only
            if lookup and self._replayed(session, message):
                noted.counted = False  # counted the first time
                return [], False
            work = Work(session, now=now, settings=self.settings, actor=actor)
            ctx = CommandContext(
                message=message,
                actor=actor,
                work=work,
                now=now,
                prefix=self.prefix,
                commands=self.commands,
                render=self.render,
                bugzilla=self.bugzilla,
                push=self.push,
                systems=self.systems,
                requests_channel=self.settings.requests_channel,
                trees_remote=self.trees_remote,
                prepared=prepared,
            )
            await run(ctx, parsed)
            self.handled += 1
            self._last_ok = not ctx.failed
            noted.result = ctx.failure or ("refused" if ctx.failed else "ok")
            if ctx.failed or not work.changed:
                self.refused += ctx.failed
                session.rollback()
                if not ctx.failed:
                    ctx.finish(Told())
                return ctx.replies, False
            if message.msgid and not lookup and self._replayed(session, message):
                session.rollback()
                noted.counted = False
                return [], False
            outbox = Outbox(session, now=now, networks=self.settings.networks)
            ctx.finish(self.reactions.react(work.events, outbox))
            key = f"reply:{message.network}:{message.msgid or uuid.uuid4().hex}"
            for n, text in enumerate(ctx.replies):
                for target, line in self.addressed(message, text):
                    outbox.chat(f"{key}:{n}", target, line, networks=[message.network], first=True)
            outbox.write()
            if message.msgid:
                mark_handled(session, message.network, message.msgid, now)
            try:
                session.commit()
            except Exception as err:
                if transient(err):
                    raise
                ref = uuid.uuid4().hex[:8]
                log.exception("commit failed (ref %s)", ref)
                session.rollback()
                noted.result = "error"
                return [self.render("refusal.txt", refusal="not_saved", ref=ref).strip()], False
            log.info("%s@%s: %s", actor.who, actor.network, message.text[:200])
            return ctx.replies, True

    @staticmethod
    def _replayed(session: Session, message: Incoming) -> bool:
        if not already_handled(session, message.network, message.msgid or ""):
            return False
        log.info("ignoring %s message %s: already handled", message.network, message.msgid)
        return True
