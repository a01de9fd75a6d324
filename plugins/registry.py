"""Chat commands: the decorator that declares them and the dispatcher that runs them.

A command is a plain async function ``(ctx, args) -> None`` in a plugin module,
declared with `@command`. Its docstring's first line is its usage and feeds
``!downtime help``; the rest is its help text. A space in the name makes a
subcommand (``"downtime propose"``).
"""
from __future__ import annotations

import difflib
import inspect
import logging
import re
import types
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError

from models.ports import Incoming
from models.lifecycle import DomainError
from models.wording import INVISIBLE

log = logging.getLogger(__name__)

# A handler takes the application's context (see `Context`) and the arguments after the name.
Handler = Callable[[Any, str], Awaitable[None]]
# A command's outside look-ups, run before the dispatcher's lock with no session open: it takes
# the preflight (see plugins/context.py `Preflight`) and the arguments, and leaves what it found there.
Prepare = Callable[[Any, str], Awaitable[None]]
H = TypeVar("H", bound=Handler)


class UsageError(Exception):
    """The command line cannot be understood: `reason` names the template
    (``templates/usage/<reason>.txt``) and the reply adds the command's usage."""

    def __init__(self, reason: str, **facts: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.facts = facts


@dataclass(frozen=True)
class Command:
    name: str
    func: Handler
    usage: str
    help: str
    examples: tuple[str, ...]
    role: str  # who may use it, for the help text; the core enforces it
    cacheable: bool = False  # its answer depends only on the arguments and the database
    read_only: bool = False  # it never commits a change (cacheable implies it)
    prepare: Prepare | None = None  # its outside look-ups, run before the lock
    admins_too: bool = True  # admins may use it whatever `role` says (not: a worker's confirmation)


def command(
    name: str,
    *,
    examples: Iterable[str] = (),
    role: str = "anyone",
    cacheable: bool = False,
    read_only: bool = False,
    prepare: Prepare | None = None,
    admins_too: bool = True,
) -> Callable[[H], H]:
    """Declare a chat command. Only records; the dispatcher collects.

    `cacheable`: the answer depends on nothing but the arguments and the database (not on the
    time, the asker or an outside system), so it may be reused until the next commit.
    `read_only`: a question; it never commits a change (so its message is never recorded as
    handled, and the dispatcher does not look for it among the handled ones).
    `prepare`: what the command must ask outside services (Bugzilla), asked before the
    dispatcher's lock is taken and with no database session open, so a slow service holds up
    nobody else; the handler then reads ``ctx.prepared``.
    """

    def decorate(func: H) -> H:
        doc = inspect.cleandoc(func.__doc__ or name)
        usage, _, rest = doc.partition("\n")
        func.__command__ = Command(  # type: ignore[attr-defined]
            name, func, usage.strip(), rest.strip(), tuple(examples), role, cacheable, read_only or cacheable,
            prepare, admins_too,
        )
        return func

    return decorate


def collect(*modules: types.ModuleType) -> dict[str, Command]:
    found: dict[str, Command] = {}
    for module in modules:
        for value in vars(module).values():
            cmd = getattr(value, "__command__", None)
            if isinstance(cmd, Command):
                found[cmd.name] = cmd
    return found


class Context(Protocol):
    """What a handler sees (built by the application for each command)."""

    message: Incoming
    prefix: str
    commands: dict[str, Command]

    def reply(self, text: str) -> None: ...

    def say(self, template: str, **context: Any) -> None: ...

    def fail(self) -> None: ...

    def refuse(self, err: DomainError) -> None: ...


# C0 and C1 control characters (IRC formatting codes included); a tab is only white space.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class Parsed:
    command: Command | None
    args: str
    error: DomainError | None = None  # why the line names no command (with `command` None)
    words: list[str] = field(default_factory=list)


def tops_of(commands: dict[str, Command]) -> frozenset[str]:
    """The first words of the commands ("downtime", "trees", "canipush")."""
    return frozenset(name.split()[0] for name in commands)


def parse_line(
    text: str, prefix: str, commands: dict[str, Command], tops: frozenset[str] | None = None
) -> Parsed | None:
    """Find the command a chat line asks for; None when the line is not for the bot.

    `tops`: `tops_of(commands)`, when the caller keeps it (every chat line is parsed).
    """
    if not text.startswith(prefix):
        return None
    body = text[len(prefix) :]
    words = body.split()
    if not words or body[:1].isspace():
        return None
    top = words[0].lower()
    if top not in (tops if tops is not None else tops_of(commands)):
        return None  # not one of ours: other bots share the prefix
    if CONTROL.search(text):
        return Parsed(None, "", DomainError("control_characters"))
    if INVISIBLE.search(body):
        # Bidirectional-override and zero-width characters are dropped, not refused: they are
        # pasted along with text from web pages and bugs, and show nothing. Without them no
        # argument (an id, a tree name) looks like another, and no reply repeats them.
        body = INVISIBLE.sub("", body)
        words = body.split()
    for length in (3, 2, 1):
        name = " ".join(w.lower() for w in words[:length])
        if len(words) >= length and name in commands:
            rest = body.split(None, length)
            return Parsed(commands[name], rest[length] if len(rest) > length else "", words=words)
    sub = words[1] if len(words) > 1 else ""
    helper = commands.get(f"{top} help")
    if not sub and helper is not None:
        return Parsed(helper, "", words=words)
    group = f"{top} {sub.lower()}"
    if helper is not None and next_words(commands, group):
        if len(words) == 2:  # "!downtime bug": the group's subcommands
            return Parsed(helper, sub.lower(), words=words)
        unknown, within = words[2], group  # "!downtime bug ad 1 2"
    else:
        unknown, within = sub, top
    close = close_match(unknown, next_words(commands, within))
    return Parsed(None, "", DomainError("unknown_subcommand", sub=unknown[:30], top=within,
                                        close=f"{within} {close}" if close else ""), words=words)


def next_words(commands: Iterable[str], head: str) -> list[str]:
    """The words that follow `head` in command names ("downtime bug" → ["add", "drop"])."""
    start = f"{head} "
    return list(dict.fromkeys(name[len(start):].split()[0] for name in commands if name.startswith(start)))


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` was most likely meant to be (a typo: "lsit" → "list"), or None.
    Only the first 30 characters are compared, so a long word costs no more than a short one."""
    found = difflib.get_close_matches(word.lower()[:30], list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


# PostgreSQL's answers that mean "this transaction lost a race; run it again": a deadlock
# (40P01) or a serialization failure (40001). Nothing of it was kept, so running again is safe.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def transient(err: BaseException) -> bool:
    """Whether `err` is the database aborting a transaction that may simply be run again."""
    return isinstance(err, DBAPIError) and getattr(err.orig, "sqlstate", None) in TRANSIENT_SQLSTATES


async def run(ctx: Any, parsed: Parsed) -> None:
    """Run one parsed command; every failure becomes one line in `ctx.reply`.

    `ctx.fail()` is called on any refusal so the caller can roll back; the refusal is said
    with its template (``templates/refusals/<reason>.txt``, ``templates/usage/<reason>.txt``).
    """
    if parsed.command is None:
        ctx.refuse(parsed.error or DomainError("unknown_subcommand", sub="", top=""))
        return
    cmd = parsed.command
    try:
        await cmd.func(ctx, parsed.args.strip())
    except UsageError as err:
        ctx.fail()
        ctx.failure = "usage"
        ctx.say("usage.txt", refusal=err.reason, usage=cmd.usage, **err.facts)
    except DomainError as err:
        ctx.refuse(err)
    except Exception as err:
        if transient(err):  # the dispatcher runs the whole command again (plugins/dispatcher.py)
            raise
        ref = uuid.uuid4().hex[:8]
        log.exception("command %r failed (ref %s)", cmd.name, ref)
        ctx.refuse(DomainError("internal_error", ref=ref))
        ctx.failure = "error"
