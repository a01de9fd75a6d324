"""The ports: the small interfaces every outside system sits behind, with the data they carry.

The core (`models/`) and the commands (`plugins/`) speak only these; each adapter in
`adapters/` implements one, and each has a hand-written fake in `tests/fakes/`:

- `Clock`: the one clock (`adapters.clock.SystemClock`).
- `Transport`: a chat network (console, IRC, Matrix), with `Incoming` and `Outgoing`.
- `Mailer`: delivers a `Mail` (`adapters.mail.SmtpMailer`, `PrintMailer`).
- `BugTracker`: Bugzilla (`adapters.bugzilla.BugzillaClient`), with `BugInfo`;
  `BugLookup` is the read-only part a command may ask before it changes anything.
- `TreeService`: Treestatus (`adapters.treestatus.TreestatusClient`), with `TreeState`.

Each port's errors are part of its contract: they say what the caller may do next
(retry later, or give up and tell someone).
"""
from __future__ import annotations

import abc
import datetime as dt
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any, Protocol

# ---- the clock ---------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, aware, in UTC."""
        ...


# ---- chat networks -----------------------------------------------------------------------
#
# A transport turns its network's events into `Incoming` messages for the dispatcher and
# delivers outgoing text to a *target*:
#
# - "#ci", "#developers": a channel named as in [channels]; each transport maps it to its
#   own room (IRC channel, Matrix room id);
# - "@<account>": a private message to the person holding that account (IRC services
#   account, Matrix MXID); the transport finds their nick/room.
# - "~<nick>": a private message to the nick that wrote, someone not identified (IRC); never
#   to the holder of an account of that name.
#
# Transports never decide what to say. Outgoing chat comes from the outbox, which calls
# `Transport.send` and marks the row sent only after `send` returned, so a transport must
# raise `TransportUnavailable` when it cannot deliver right now.


class TransportUnavailable(Exception):
    """The network cannot take this message now; the outbox keeps it and retries."""


class Undeliverable(ValueError):
    """This message can never be delivered as addressed (e.g. nobody holds the account now).

    A ValueError, so the outbox marks the row failed (Permanent) instead of retrying it
    forever and holding up the messages queued after it.
    """


@dataclass(frozen=True)
class Incoming:
    """One chat line addressed to the bot (or said in one of its channels)."""

    network: str  # "console", "irc", "matrix"
    room: str | None  # channel name as in [channels] ("#ci"), None for a private message
    account: str | None  # services account or MXID; None when the sender is not identified
    nick: str  # how to address the sender on this network
    text: str
    msgid: str | None = None  # the network's id for the line, when it has one

    @property
    def reply_target(self) -> str:
        """Where an answer to this message goes: its channel, or the sender privately (by
        account, or by nick when they are not identified)."""
        if self.room:
            return self.room
        return "@" + self.account if self.account else "~" + self.nick


@dataclass
class Outgoing:
    """A message as the outbox hands it to a transport."""

    target: str
    text: str
    mentions: Sequence[str] = field(default_factory=tuple)  # accounts to ping
    html: str | None = None  # optional rich form (Matrix); text is always complete on its own
    key: str | None = None  # the outbox row's key: lets a network drop a retried duplicate


# What a handler returns is its own business (the dispatcher returns its replies, for tests
# and benchmarks); a transport awaits it and ignores the result.
MessageHandler = Callable[[Incoming], Awaitable[object]]


class Transport(abc.ABC):
    """A chat network. Adapters: ConsoleTransport, IrcTransport, MatrixTransport."""

    network: str = "abstract"
    # Longer answers go to the asker privately, with a pointer in the channel (None: no limit).
    max_channel_lines: int | None = None
    # Set by the bot: called when the network is back after an outage, so that what was queued
    # meanwhile goes out now rather than at the outbox worker's next backoff attempt.
    on_connected: Callable[[], None] | None = None

    @abc.abstractmethod
    async def start(self, on_message: MessageHandler) -> None:
        """Connect (and keep reconnecting) in the background; call on_message per line."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect and release everything."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True when `send` can be expected to deliver."""

    @abc.abstractmethod
    async def send(self, message: Outgoing) -> None:
        """Deliver one message, or raise TransportUnavailable."""

    def nick_for(self, account: str) -> str:
        """The name under which `account` is currently seen on this network."""
        return account


# ---- mail --------------------------------------------------------------------------------

_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_LINE_BREAKS = re.compile(r"[\r\n]+")
ICS_METHODS = frozenset({"REQUEST", "CANCEL", "PUBLISH"})


class MailError(Exception):
    """A mail could not be delivered."""


class MailUnavailable(MailError):
    """Transient: the server is unreachable or answered 4xx. Retry later."""


class MailRejected(MailError):
    """Permanent: the server answered 5xx, or cannot do what the configuration asks."""


def one_line(text: str) -> str:
    """A header value on one line: a CR or LF would start a new header (header injection)."""
    return _LINE_BREAKS.sub(" ", text).strip()


@dataclass(frozen=True)
class Mail:
    """One mail as the bot means it; `adapters.mail.build_message` makes the wire form."""

    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str  # plain text, already rendered
    message_id: str  # "<downtime-7-announce@downtimebot.example>", stable per notice
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    ics: bytes | None = None  # a text/calendar object whose METHOD is ics_method
    ics_method: str = "REQUEST"
    date: dt.datetime | None = None  # aware; None means "when the message is built"

    def __post_init__(self) -> None:
        # Lists sneak in easily from callers; tuples keep the dataclass hashable.
        for name in ("to", "cc", "references"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"Mail.{name} must be a sequence of strings, not a string")
            object.__setattr__(self, name, tuple(value))
        if not self.to and not self.cc:
            raise ValueError("a mail needs at least one recipient")
        for mid in (self.message_id, self.in_reply_to, *self.references):
            if mid is not None and not _MESSAGE_ID.match(mid):
                raise ValueError(f"not a message id (<left@right>): {mid!r}")
        if self.date is not None and self.date.utcoffset() is None:
            raise ValueError("Mail.date must be timezone-aware")
        if self.ics_method.upper() not in ICS_METHODS:
            raise ValueError(f"ics_method must be one of {sorted(ICS_METHODS)}")

    @property
    def recipients(self) -> tuple[str, ...]:
        """Bare addresses for the SMTP envelope: To then Cc, each once."""
        seen: dict[str, None] = {}
        for _, addr in getaddresses([one_line(a) for a in (*self.to, *self.cc)]):
            if addr and addr.lower() not in (s.lower() for s in seen):
                seen[addr] = None
        return tuple(seen)


class Mailer(Protocol):
    """Anything that delivers a `Mail` (blocking: called in a thread)."""

    def send(self, mail: Mail, now: dt.datetime) -> None: ...


# ---- Bugzilla ----------------------------------------------------------------------------


class BugzillaError(Exception):
    """Bugzilla refused or failed the request; the text is one line fit for chat."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class BugNotVisible(BugzillaError):
    """The bug does not exist (`reason` ``"missing"``) or the bot may not read it (``"no access"``)."""

    def __init__(self, bug_id: int | None, reason: str) -> None:
        self.bug_id, self.reason = bug_id, reason
        what = f"Bug {bug_id}" if bug_id is not None else "A bug"
        why = "does not exist" if reason == "missing" else "is restricted and the bot cannot read it"
        super().__init__(f"{what} {why}.")


class BugzillaUnavailable(BugzillaError):
    """Bugzilla is down, overloaded or rate-limiting after all retries: try again later."""


class InvalidApiKey(BugzillaError):
    """Bugzilla refused the API key, or needs one and none is configured."""


class FlagDenied(BugzillaError):
    """Bugzilla refused the flag change on these bugs."""

    def __init__(self, message: str, bug_ids: Sequence[int], code: int | None = None) -> None:
        self.bug_ids, self.code = tuple(bug_ids), code
        super().__init__(message)


@dataclass(frozen=True)
class BugInfo:
    """What the bot needs to know about one bug."""

    id: int
    summary: str
    assignee: str
    status: str
    resolution: str
    whiteboard: str
    flags: tuple[tuple[str, str], ...] = ()  # (name, status), only flags that are set
    groups: tuple[str, ...] = ()

    @property
    def restricted(self) -> bool:
        """In a security or confidential group: describe it vaguely in public notices."""
        return bool(self.groups)

    def flag_status(self, name: str) -> str | None:
        """The status ("?", "+", "-") of flag `name`, or None when it is not set."""
        return next((status for flag, status in self.flags if flag == name), None)

    @property
    def unassigned(self) -> bool:
        """Nobody is assigned: empty, or a ``nobody@…`` placeholder (nobody@mozilla.org)."""
        local, _, _ = self.assignee.strip().lower().partition("@")
        return local in ("", "nobody")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BugInfo:
        return cls(
            id=int(data["id"]), summary=data.get("summary", ""),
            assignee=data.get("assigned_to", "") or "", status=data.get("status", ""),
            resolution=data.get("resolution", "") or "",
            whiteboard=data.get("whiteboard", "") or "",
            flags=tuple((f["name"], f["status"]) for f in data.get("flags", [])),
            groups=tuple(data.get("groups", [])),
        )


class BugTracker(Protocol):
    """The bug tracker as the rest of the bot sees it (blocking: called in a thread).

    Raises `BugzillaUnavailable` (retry later), `InvalidApiKey` (stop asking),
    `BugNotVisible` or `FlagDenied` (this bug refuses; the others may go on).
    """

    def check(self, product: str | None = None) -> None: ...
    def get_bugs(self, ids: Sequence[int]) -> dict[int, BugInfo | None]: ...
    def search_nominated(self) -> list[BugInfo]: ...
    def comments(self, ids: Sequence[int]) -> dict[int, list[str]]: ...
    def update(self, ids: Sequence[int], *, flag_status: str | None = None,
               whiteboard: str | None = None, whiteboard_tag: str | None = None,
               comment: str | None = None) -> None: ...


class BugLookup(Protocol):
    """The read-only part of Bugzilla a command may ask before it changes anything."""

    enabled: bool

    async def lookup(self, bug: int) -> BugInfo | None:
        """The bug; None when Bugzilla is not configured or cannot answer now; a refusal
        (DomainError) when the bug is not visible."""
        ...

    async def lookup_many(self, bugs: Sequence[int]) -> dict[int, BugInfo]:
        """The bugs, in one batched request (``GET /rest/bug?id=1,2,3``); {} when Bugzilla is
        not configured or cannot answer now (or is marked unavailable: then only its health
        check asks it); a refusal (DomainError) naming the first bug that is not visible."""
        ...

    async def nominated(self) -> list[BugInfo]:
        """Open bugs with the flag requested (``needs-treeclosure?``)."""
        ...


# ---- Treestatus --------------------------------------------------------------------------


class TreestatusError(Exception):
    """Treestatus refused or failed a request; the message fits one chat line."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TreestatusUnavailable(TreestatusError):
    """Treestatus could not be reached after all retries; keep the change pending."""


@dataclass(frozen=True)
class TreeState:
    """A tree as Treestatus shows it."""

    name: str
    status: str
    reason: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did with each tree of a remembered change."""

    restored: tuple[str, ...] = ()
    # tree -> id of the later remembered change that still holds it; the tree
    # gets its state from before our change when that later change is restored.
    waiting: dict[str, int] = field(default_factory=dict)
    # trees someone changed since our change (not through the stack); left alone.
    changed: tuple[str, ...] = ()


class TreeService(Protocol):
    """The part of Treestatus the bot uses (blocking: called in a thread)."""

    def trees(self) -> dict[str, TreeState]: ...

    def stack(self) -> list[dict[str, Any]]: ...

    def close(self, names: Sequence[str], reason: str, tags: Sequence[str] = ("planned",), *,
              remember: bool = True) -> int | None: ...

    def restore(self, stack_id: int) -> RestoreReport: ...


# ---- observers (the bot's metrics) -------------------------------------------------------
#
# Plain callables, so that the commands and adapters can be watched without importing what
# watches them (adapters/metrics.py, built only with the web server). Each is optional (None:
# nobody watches) and must be cheap: it runs on the event loop, or in the thread of a request.

# (command, result, seconds): command is a registered command's name ("downtime propose") or
# "unknown"; result is ok | refused | usage | error | ratelimited.
CommandObserver = Callable[[str, str, float], None]
# (network or kind, result): one outbox delivery; result is ok | retry | failed.
DeliveryObserver = Callable[[str, str], None]
# The seconds one request to an outside service took (or one reminder was late).
DurationObserver = Callable[[float], None]
