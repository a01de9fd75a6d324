"""The interface every chat network sits behind (console, IRC, Matrix).

A transport turns its network's events into `Incoming` messages for the
dispatcher and delivers outgoing text to a *target*:

- ``"#ci"``, ``"#developers"``: a channel named as in ``[channels]``; each
  transport maps it to its own room (IRC channel, Matrix room id);
- ``"@<account>"``: a private message to the person holding that account
  (IRC services account, Matrix MXID); the transport finds their nick/room.

Transports never decide what to say. Outgoing chat comes from the outbox
(see ``adapters/outbox.py``), which calls `Transport.send` and marks the row
sent only after `send` returned, so a transport must raise
`TransportUnavailable` when it cannot deliver right now.
"""
from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field


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
        """Where an answer to this message goes: its channel, or the sender privately."""
        if self.room:
            return self.room
        return "@" + (self.account or self.nick)


@dataclass(frozen=True)
class Mention:
    """A person to ping: their account, resolved by each transport to a nick or a pill."""

    account: str
    display: str = ""


@dataclass
class Outgoing:
    """A message as the outbox hands it to a transport."""

    target: str
    text: str
    mentions: Sequence[str] = field(default_factory=tuple)  # accounts to ping
    html: str | None = None  # optional rich form (Matrix); text is always complete on its own
    key: str | None = None  # the outbox row's key: lets a network drop a retried duplicate


MessageHandler = Callable[[Incoming], Awaitable[None]]


class Transport(abc.ABC):
    """A chat network. Subclasses: ConsoleTransport, IrcTransport, MatrixTransport."""

    network: str = "abstract"
    # Longer direct answers go to the asker privately, with a pointer in the channel (None: no limit).
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


class FakeTransport(Transport):
    """A network for tests: records what it was asked to send; can be made to drop out."""

    def __init__(self, network: str = "fake"):
        self.network = network
        self.sent: list[Outgoing] = []
        self.up = True
        self.on_message: MessageHandler | None = None

    async def start(self, on_message: MessageHandler) -> None:
        self.on_message = on_message

    async def stop(self) -> None:
        self.up = False

    @property
    def connected(self) -> bool:
        return self.up

    async def send(self, message: Outgoing) -> None:
        if not self.up:
            raise TransportUnavailable(f"{self.network} is down")
        self.sent.append(message)
