"""The IRC transport, on the `irc` library's asyncio client (``irc.client_aio``).

What it adds to the library, which has no reconnect, no SASL on asyncio, no async flood
control and a strict UTF-8 decoder:

- **Connection**: plain or TLS (hostname verified; optional client certificate);
  ``CAP LS 302`` requesting the IRCv3 capabilities that carry identity; SASL PLAIN with
  ``CAP END`` held until 903/904 (a failure is logged and falls back to NickServ IDENTIFY
  when a ``nickserv_password`` is set).
- **Its own nick, back from an old connection** (a leader that died with its connection still
  open, see `IrcTransport._start_regain`): a taken nick (433) moves to the alternate nick, on
  which the bot works as usual. With services credentials it asks NickServ to RECOVER the nick
  (GHOST where RECOVER is unknown); in any case it takes the nick as soon as it is free: when
  the holder quits or renames in a shared channel, when MONITOR (if the server has it) says it
  went offline, or when an ISON every ``regain_interval`` seconds no longer finds it.
- **Channels**: joined on every 001 and rejoined after KICK/PART/reconnect; join errors
  (437/471/473/474/477) are logged and retried with backoff.
- **Reconnect forever**: exponential backoff with jitter from 1 s to 5 min, reset once a
  connection has been up for ``stable_after`` seconds; a client-side PING when the link is
  idle for ``ping_interval`` and the server declared dead after ``ping_timeout`` of silence.
- **Output**: one queue per connection, drained by a writer task through a `Pacer` (a byte
  bucket and a line bucket, see `IrcConfig`); every line fits in 512 bytes with CRLF after
  the server adds ``:nick!user@host``; control characters never reach the wire.
- **One voice at a time** ([ha], `IrcTransport.may_send`, the leader's fence): asked right
  before EACH line that speaks or claims the nick (PRIVMSG, NOTICE, NICK) is written, after the
  pacer's wait, not once per message. A line refused is never written: its message fails with
  `Fenced` (its outbox row stays pending for the new leader) and so does every message still
  queued. While the fence is shut the nick regain is off (no RECOVER/GHOST, MONITOR, ISON or
  NICK): a deposed instance never pulls the nick back from the new leader.
- **Identity**: the services account of each sender from the ``account`` tag, else from
  extended-join/account-notify, else from a WHOIS 330 (at most ``whois_timeout`` seconds).
  What was learned without a tag is forgotten on QUIT, PART, KICK and NICK, replaced on
  account-notify, and checked again by WHOIS before a command once older than
  ``whois_max_age`` (see `IrcTransport._stale`). A private answer to someone not identified
  (target ``~nick``) goes to that nick, never to whoever holds an account of that name.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import irc.client
import irc.strings
from irc.client_aio import AioConnection, AioReactor
from jaraco.stream.buffer import LenientDecodingLineBuffer

from models.ports import Incoming, MessageHandler, Outgoing, Transport, TransportUnavailable, Undeliverable

log = logging.getLogger(__name__)

LINE_LIMIT = 512  # bytes per line, CRLF included (RFC 1459/2812)
DEFAULT_PREFIX_RESERVE = 100  # room for ":nick!user@host " until the bot has seen its own mask
WANTED_CAPS = (
    "account-tag",
    "extended-join",
    "account-notify",
    "server-time",
    "message-tags",
    "cap-notify",
    "sasl",
)
JOIN_ERRORS = {"437", "471", "473", "474", "477", "403", "405"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # C0 and DEL; \t handled apart, \n splits
_NEWLINES = re.compile(r"\r\n|\r|\n")
_MATRIX_ID = re.compile(r"^@[^:\s]+:\S+$")  # a Matrix user id (MXID): not an IRC account
NICKSERV = "NickServ"
# The services commands that take a nick back from another connection of the same account, in
# the order tried: Anope 2 has RECOVER (GHOST only where configured as an alias), Atheme GHOST.
REGAIN_COMMANDS = ("RECOVER", "GHOST")
_UNKNOWN_COMMAND = re.compile(r"unknown command|invalid command|no such command", re.IGNORECASE)
# The lines that speak for the bot or take its nick: each is written only while `may_send` says so.
FENCED_COMMANDS = ("PRIVMSG", "NOTICE", "NICK")


class Fenced(TransportUnavailable):
    """[ha] This instance may not speak now (it no longer leads): the line was not written, and
    its outbox row stays pending for the leader."""


def _fenced(line: str) -> bool:
    return line.split(" ", 1)[0].upper() in FENCED_COMMANDS


@dataclass(frozen=True)
class IrcConfig:
    """Everything the IRC transport needs, parsed once at start-up.

    Pacing defaults (measured on this project's machines, see tests/servers/ircd.py):

    - ngircd 26 processes at most ~3 commands and ~256 bytes per second of one client before
      it holds the rest until the next second (delayed, never dropped);
    - InspIRCd 3's default connect class lets ~8 commands through at once, then exactly one
      per second (fakelag), and kills a client whose unprocessed input overflows its recvq.

    So by default the bot sends at most ``line_burst`` = 3 lines at once, then
    ``line_rate`` = 1 line/s, and at most ``burst`` = 512 bytes at once refilled at
    ``rate`` = 256 bytes/s. Neither server then lags or kills it. ``pacing=False`` turns
    both buckets off (benchmarks against servers with flood rules off).
    """

    host: str
    port: int = 6667
    tls: bool = False
    tls_verify: bool = True
    client_cert: str | None = None  # PEM file holding the certificate and its key
    nick: str = "downtimebot"
    alt_nick: str | None = None  # default: nick + "_"
    username: str | None = None
    realname: str = "downtime-bot (tree-closing downtimes)"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    allow_plaintext_sasl: bool = False  # SASL without TLS: only for a local test server
    nickserv_password: str | None = field(default=None, repr=False)
    identity: Literal["account", "nick"] = "account"
    channels: Mapping[str, str] = field(
        default_factory=lambda: {"#ci": "#ci", "#developers": "#developers"}
    )
    pacing: bool = True
    burst: int = 512  # bytes that may go out at once
    rate: float = 256.0  # bytes per second refilled
    line_burst: int = 3  # lines that may go out at once
    line_rate: float = 1.0  # lines per second refilled
    ping_interval: float = 60.0
    ping_timeout: float = 120.0
    stable_after: float = 300.0
    backoff_min: float = 1.0
    backoff_max: float = 300.0
    connect_timeout: float = 30.0
    # How often an ISON asks whether the old holder of the nick is gone (no MONITOR). An ISON,
    # not a NICK: ngircd holds back a client's lines for 2 s after each refused NICK.
    regain_interval: float = 30.0
    whois_timeout: float = 2.0
    # An account learned without the server's account-tag may be out of date: one learned by
    # WHOIS (the bot sees no QUIT of a nick it shares no channel with), or any when the server
    # sends no account-notify. Older than this, it is checked again by WHOIS before a line that
    # starts with `command_prefix` is handed on, and before a private message goes to that nick.
    whois_max_age: float = 60.0
    command_prefix: str = "!"
    join_retry_min: float = 5.0

    def __post_init__(self) -> None:
        if self.sasl_username and self.sasl_password and not self.tls and not self.allow_plaintext_sasl:
            raise ValueError(
                f"[irc] sasl_username = {self.sasl_username}: SASL over a plaintext connection (tls = off) "
                "would send the password unencrypted; turn tls on, or set allow_plaintext_sasl = on "
                "(only for a local test server)"
            )

    @property
    def alternate_nick(self) -> str:
        return self.alt_nick or self.nick + "_"


# --- pure helpers ----------------------------------------------------------------------------


def sanitize_lines(text: str) -> list[str]:
    """Split text into the lines it means, with every control character removed.

    CR, LF and CRLF end a line (each line becomes its own PRIVMSG); a tab becomes a space;
    every other C0 character and DEL is dropped, so no text can smuggle a protocol line or
    CTCP/formatting codes. Lines left empty are dropped (an empty PRIVMSG is an error).
    """
    lines = []
    for raw in _NEWLINES.split(text):
        line = _CONTROL.sub("", raw.replace("\t", " "))
        if line.strip():
            lines.append(line)
    return lines


def split_utf8(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` UTF-8 bytes, at spaces where possible.

    A word longer than a piece is cut between characters, never inside one.
    """
    if limit < 4:
        raise ValueError("limit must leave room for one UTF-8 character")
    pieces: list[str] = []
    rest = text
    while len(rest.encode("utf-8")) > limit:
        cut = _char_cut(rest, limit)
        space = rest.rfind(" ", 0, cut + 1)
        if space > 0 and space >= cut // 2:
            pieces.append(rest[:space])
            rest = rest[space + 1 :]
        else:
            pieces.append(rest[:cut])
            rest = rest[cut:]
    if rest:
        pieces.append(rest)
    return [piece for piece in pieces if piece]


def _char_cut(text: str, limit: int) -> int:
    """The largest number of characters of ``text`` whose UTF-8 encoding fits in ``limit``."""
    encoded = text.encode("utf-8")[:limit]
    return len(encoded.decode("utf-8", errors="ignore"))


def _is_irc_account(account: str) -> bool:
    """False for names that cannot be IRC accounts (Matrix MXIDs such as @carol:example.org)."""
    return bool(account) and not account.startswith(("@", "#", "!")) and ":" not in account


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: not logged as "never retrieved"


def fold(name: str) -> str:
    """RFC 1459 case folding for nicks and channels."""
    folded: str = irc.strings.lower(name)  # an IRCFoldedCase, kept as it is
    return folded


class TokenBucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate`` per second.

    A cost larger than the capacity waits for a full bucket and then drives it negative,
    so one long line is delayed, never refused.
    """

    def __init__(self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock
        self._tokens = float(capacity)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self, cost: float) -> float:
        """Seconds to wait before ``cost`` tokens can be taken."""
        self._refill()
        needed = min(cost, self.capacity)
        return 0.0 if self._tokens >= needed else (needed - self._tokens) / self.rate

    def take(self, cost: float) -> None:
        self._refill()
        self._tokens -= cost


class Pacer:
    """Flood control for one connection: a byte bucket and a line bucket, both must allow."""

    def __init__(self, config: IrcConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.bytes = TokenBucket(config.burst, config.rate, clock)
        self.lines = TokenBucket(config.line_burst, config.line_rate, clock)

    def delay(self, size: int) -> float:
        return max(self.bytes.delay(size), self.lines.delay(1))

    def take(self, size: int) -> None:
        self.bytes.take(size)
        self.lines.take(1)


class Backoff:
    """Exponential backoff with jitter between ``minimum`` and ``maximum`` seconds."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        # The exponent stops at 32 (as in adapters/matrix.py): far past any maximum, and an
        # unbounded 2 ** attempt no longer converts to float after ~1000 failures (a server
        # down for a few days), which raised OverflowError out of the reconnect loop.
        ceiling = min(self.maximum, self.minimum * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        # "equal jitter": never below half the ceiling, so reconnects still back off
        return max(self.minimum, ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class _Known:
    account: str | None  # None: known not to be logged in
    source: str  # "tag", "join", "notify", "whois"
    seen: float


class AccountMap:
    """Which services account each nick is logged in as, as far as the bot has seen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_nick: dict[str, tuple[str, _Known]] = {}  # folded nick -> (nick, what we know)
        self._clock = clock

    def set(self, nick: str, account: str | None, source: str) -> None:
        self._by_nick[fold(nick)] = (nick, _Known(account, source, self._clock()))

    def lookup(self, nick: str) -> _Known | None:
        entry = self._by_nick.get(fold(nick))
        return entry[1] if entry else None

    def forget(self, nick: str) -> None:
        self._by_nick.pop(fold(nick), None)

    def rename(self, old: str, new: str) -> None:
        """A nick change keeps the account (it belongs to the connection), except WHOIS answers.

        What was known of the new nick (someone who left unseen) is dropped either way."""
        entry = self._by_nick.pop(fold(old), None)
        self._by_nick.pop(fold(new), None)
        if entry and entry[1].source != "whois":
            self._by_nick[fold(new)] = (new, entry[1])

    def age(self, known: _Known) -> float:
        """Seconds since ``known`` was learned."""
        return self._clock() - known.seen

    def nick_for(self, account: str) -> str | None:
        """The nick most recently seen logged in as ``account``."""
        best: tuple[float, str] | None = None
        for nick, known in self._by_nick.values():
            if known.account is not None and fold(known.account) == fold(account):
                if best is None or known.seen > best[0]:
                    best = (known.seen, nick)
        return best[1] if best else None

    def clear(self) -> None:
        self._by_nick.clear()


def tls_context(config: IrcConfig) -> ssl.SSLContext:
    """The TLS context for a connection: system CAs and hostname checks unless turned off."""
    context = ssl.create_default_context()
    if not config.tls_verify:
        log.warning("IRC TLS certificate verification is OFF for %s", config.host)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.client_cert:
        context.load_cert_chain(config.client_cert)
    return context


# --- the connection and its output queue ------------------------------------------------------


class _Connection(AioConnection):
    """An AioConnection that survives Latin-1 bytes and lets the transport run registration."""

    buffer_class = LenientDecodingLineBuffer

    async def open(self, host: str, port: int, nick: str, context: ssl.SSLContext | None) -> None:
        self.buffer = self.buffer_class()
        self.handlers: dict[str, Callable[..., Any]] = {}  # as irc.client declares it
        self.real_server_name = ""
        self.real_nickname = nick
        self.nickname = nick
        self.server, self.port = host, port
        self.server_address = (host, port)
        protocol = self.protocol_class(self, self.reactor.loop)
        transport, _ = await self.reactor.loop.create_connection(
            lambda: protocol, host, port, ssl=context, server_hostname=host if context else None
        )
        self.transport, self.protocol = transport, protocol
        self.connected = True

    def write_line(self, line: str, secret: bool = False) -> None:
        """Write one already-checked line; secrets are never logged."""
        self.write_lines([line], secret)

    def write_lines(self, lines: list[str], secret: bool = False) -> None:
        """Write lines in one socket write (so a server relays them together, not one by one
        behind its Nagle timer); each is checked to be one well-formed line of ≤ 512 bytes."""
        if not self.connected or self.transport is None or self.transport.is_closing():
            raise TransportUnavailable("IRC connection is closed")
        chunks = []
        for line in lines:
            data = line.encode("utf-8") + b"\r\n"
            if len(data) > LINE_LIMIT or "\n" in line or "\r" in line or "\0" in line:
                raise ValueError(f"refusing to send a malformed line ({len(data)} bytes)")
            log.debug("IRC >> %s", line.split(" ", 1)[0] + " ****" if secret else line)
            chunks.append(data)
        self.transport.write(b"".join(chunks))


@dataclass(order=True)
class _Batch:
    priority: int
    seq: int
    lines: list[str] = field(compare=False)
    done: asyncio.Future[None] = field(compare=False)
    secret: bool = field(default=False, compare=False)


class _Writer:
    """Drains one connection's output queue through the pacer; control lines go first."""

    CONTROL, MESSAGE = 0, 1

    def __init__(
        self, connection: _Connection, pacer: Pacer | None, may_send: Callable[[], bool] = lambda: True
    ) -> None:
        self._connection = connection
        self._pacer = pacer
        self._may_send = may_send  # asked right before each fenced line (see FENCED_COMMANDS)
        self._queue: asyncio.PriorityQueue[_Batch] = asyncio.PriorityQueue()
        self._seq = 0
        self._closed = False

    def put(self, lines: list[str], priority: int = MESSAGE, secret: bool = False) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            done.set_exception(TransportUnavailable("IRC connection is closed"))
            return done
        self._seq += 1
        self._queue.put_nowait(_Batch(priority, self._seq, lines, done, secret))
        return done

    async def run(self) -> None:
        batch: _Batch | None = None
        try:
            while True:
                batch = await self._queue.get()
                try:
                    await self._write(batch)
                except Fenced as exc:
                    if not batch.done.done():
                        batch.done.set_exception(exc)
                    self._drop_messages(exc)
                    continue
                except TransportUnavailable as exc:
                    if not batch.done.done():
                        batch.done.set_exception(exc)
                    return
                if not batch.done.done():
                    batch.done.set_result(None)
        finally:
            # Cancelled mid-batch (the connection ended while the pacer held it): its sender
            # must hear so, or the outbox would wait for it forever.
            if batch is not None and not batch.done.done():
                batch.done.set_exception(TransportUnavailable("IRC connection lost while sending"))
            self.close()

    async def _write(self, batch: _Batch) -> None:
        if self._pacer is None:  # pacing off: the whole message at once, in one socket write
            if not batch.done.done():
                for line in batch.lines:
                    self._check_fence(line)
                self._connection.write_lines(batch.lines, batch.secret)
            return
        for line in batch.lines:
            if batch.done.done():  # the sender gave up (cancelled): drop the rest
                return
            self._check_fence(line)
            size = len(line.encode("utf-8")) + 2
            while (wait := self._pacer.delay(size)) > 0:
                await asyncio.sleep(wait)
            # Asked again after the wait, right before the write: the lease may have ended while
            # the pacer held the line (or the process was paused, and this is its first step).
            if batch.done.done():
                return
            self._check_fence(line)
            self._pacer.take(size)
            self._connection.write_line(line, batch.secret)

    def _check_fence(self, line: str) -> None:
        if _fenced(line) and not self._may_send():
            raise Fenced("this instance does not lead now: the line was not sent")

    def _drop_messages(self, exc: Fenced) -> None:
        """The fence is shut: every message still queued fails now (its row stays pending);
        control lines stay queued (each fenced one is asked again when its turn comes)."""
        kept: list[_Batch] = []
        while not self._queue.empty():
            batch = self._queue.get_nowait()
            if batch.priority == self.CONTROL:
                kept.append(batch)
            elif not batch.done.done():
                batch.done.set_exception(exc)
        for batch in kept:
            self._queue.put_nowait(batch)

    def close(self) -> None:
        """Fail everything still queued: the outbox will send it again later."""
        self._closed = True
        while not self._queue.empty():
            batch = self._queue.get_nowait()
            if not batch.done.done():
                batch.done.set_exception(TransportUnavailable("IRC connection lost"))


class _Session:
    """The state of one connection; a reconnect starts a new session from scratch."""

    def __init__(self, connection: _Connection, writer: _Writer, nick: str) -> None:
        self.connection = connection
        self.writer = writer
        self.nick = nick
        self.user: str | None = None
        self.host: str | None = None
        self.offered: dict[str, str] = {}
        self.acked: set[str] = set()
        self.cap_ended = False
        self.sasl_done = False
        self.registered = False
        self.registered_at = 0.0
        self.account: str | None = None
        self.last_received = time.monotonic()
        self.ping_outstanding = False
        self.lost = asyncio.Event()
        self.joined: set[str] = set()  # folded IRC channel names
        self.join_backoff: dict[str, Backoff] = {}
        self.whois: dict[str, asyncio.Future[str | None]] = {}
        self.whois_seen: dict[str, str | None] = {}
        self.whois_missing: set[str] = set()  # folded nicks a WHOIS answered 401 for
        self.ready_told = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.nick_attempt = 0
        self.monitor = False  # the server offers MONITOR (ISUPPORT)
        self.monitoring = False  # MONITOR + <the bot's nick> was sent
        self.regain_commands: list[str] = []  # services commands still to try (RECOVER, GHOST)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@dataclass(frozen=True)
class _Received:
    nick: str
    room: str | None
    text: str
    tags: dict[str, str]


# --- the transport ---------------------------------------------------------------------------


class IrcTransport(Transport):
    """The bot on one IRC network. See the module docstring for what it guarantees."""

    network = "irc"
    # Paced at about a line a second: a longer answer goes privately, with a pointer in the channel.
    max_channel_lines = 4

    def __init__(
        self, config: IrcConfig, rng: random.Random | None = None, may_send: Callable[[], bool] | None = None
    ) -> None:
        self.config = config
        # [ha] The leader's fence (adapters/leadership.py Fence.check), asked before each line that
        # speaks or claims the nick; without [ha] always open. bot.py sets it once the fence exists.
        self.may_send: Callable[[], bool] = may_send or (lambda: True)
        self._rng = rng or random.Random()
        self._backoff = Backoff(config.backoff_min, config.backoff_max, self._rng)
        self._accounts = AccountMap()
        self._logical = {fold(irc_name): name for name, irc_name in config.channels.items()}
        self._session: _Session | None = None
        self._reactor: AioReactor | None = None
        self._on_message: MessageHandler | None = None
        self._incoming: asyncio.Queue[_Received] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.connections = 0  # successful registrations so far (for operators and tests)
        self._handlers: dict[str, Callable[[_Session, irc.client.Event], None]] = {
            "all_raw_messages": self._on_raw,
            "disconnect": self._on_disconnect,
            "cap": self._on_cap,
            "authenticate": self._on_authenticate,
            "loggedin": self._on_logged_in,
            "saslsuccess": self._on_sasl_success,
            "saslfail": self._on_sasl_fail,
            "sasltoolong": self._on_sasl_fail,
            "saslaborted": self._on_sasl_fail,
            "saslalready": self._on_sasl_success,
            "welcome": self._on_welcome,
            "featurelist": self._on_isupport,
            "ison": self._on_ison,
            "731": self._on_monitor_offline,  # RPL_MONOFFLINE
            "734": self._on_monitor_full,  # ERR_MONLISTFULL
            "privnotice": self._on_private_notice,
            "396": self._on_host_hidden,
            "nicknameinuse": self._on_nick_unavailable,
            "erroneusnickname": self._on_nick_unavailable,
            "nickcollision": self._on_nick_unavailable,
            "join": self._on_join,
            "part": self._on_part,
            "kick": self._on_kick,
            "quit": self._on_quit,
            "nick": self._on_nick,
            "account": self._on_account,
            "pubmsg": self._on_pubmsg,
            "privmsg": self._on_privmsg,
            "whoisaccount": self._on_whois_account,
            "endofwhois": self._on_end_of_whois,
            "nosuchnick": self._on_end_of_whois,
            "namreply": self._on_names,
            "pong": self._on_pong,
            "error": self._on_error,
        }
        for code in ("unavailresource", "channelisfull", "inviteonlychan", "bannedfromchan",
                     "nochanmodes", "nosuchchannel", "toomanychannels"):
            self._handlers[code] = self._on_join_error

    # --- Transport interface ---

    async def start(self, on_message: MessageHandler) -> None:
        """Connect in the background (and keep reconnecting); ``on_message`` gets each line."""
        if self.config.identity == "nick":
            log.warning(
                "IRC identity = nick: anyone can use any nick, so permissions are not safe; "
                "use this only against a local test server"
            )
        if self.config.sasl_username and self.config.sasl_password and not self.config.tls:
            log.warning(
                "IRC SASL login over a plaintext connection (allow_plaintext_sasl = on): the password "
                "crosses the network unencrypted; use this only against a local test server"
            )
        self._on_message = on_message
        self._stopping.clear()
        self._reactor = AioReactor(loop=asyncio.get_running_loop())
        self._reactor.connection_class = _Connection
        self._reactor.add_global_handler("all_events", self._dispatch, 0)
        self._tasks = [
            asyncio.create_task(self._run(), name="irc-connect"),
            asyncio.create_task(self._consume(), name="irc-incoming"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        session = self._session
        if session is not None and session.connection.connected:
            session.connection.disconnect("downtime-bot stopping")  # sends QUIT, then closes
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @property
    def connected(self) -> bool:
        session = self._session
        return bool(session and session.registered and session.connection.connected)

    @property
    def nick(self) -> str | None:
        """The bot's current nick, or None when disconnected."""
        return self._session.nick if self._session else None

    @property
    def account(self) -> str | None:
        """The services account the bot is logged in as (SASL 900), if any."""
        return self._session.account if self._session else None

    @property
    def joined(self) -> set[str]:
        """The logical names of the channels the bot is in right now."""
        session = self._session
        if not session or not self.connected:
            return set()
        return {self._logical[c] for c in session.joined if c in self._logical}

    def nick_for(self, account: str) -> str:
        if self.config.identity == "nick":
            return account
        return self._accounts.nick_for(account) or account

    async def send(self, message: Outgoing) -> None:
        """Write the message to the socket, or raise TransportUnavailable (the outbox retries)."""
        session = self._session
        if session is None or not self.connected:
            raise TransportUnavailable("not connected to IRC")
        if not self.may_send():
            raise Fenced("this instance does not lead now: the message was not sent")
        target = await self._irc_target(session, message.target)
        lines = sanitize_lines(message.text)
        nicks = await self._mention_nicks(session, message.mentions) if message.mentions else []
        if nicks:
            mention = ", ".join(nicks)
            lines = [f"{mention}: {lines[0]}" if lines else f"{mention}:"] + lines[1:]
        if not lines:
            return
        command = f"PRIVMSG {target} :"
        room = LINE_LIMIT - 2 - self._prefix_reserve(session) - len(command.encode("utf-8"))
        out = [command + piece for line in lines for piece in split_utf8(line, room)]
        done = session.writer.put(out)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            done.cancel()  # the writer drops lines it has not written yet
            raise

    # --- connection loop ---

    async def _run(self) -> None:
        while not self._stopping.is_set():
            session: _Session | None = None
            try:
                session = await self._connect()
                await self._keepalive(session)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, ssl.SSLError, TransportUnavailable) as exc:
                log.warning("IRC connection to %s:%s failed: %s", self.config.host, self.config.port, exc)
            except Exception:
                log.exception("IRC connection to %s:%s crashed", self.config.host, self.config.port)
            finally:
                if session is not None:
                    self._end_session(session)
            if session is not None and session.registered:
                if time.monotonic() - session.registered_at >= self.config.stable_after:
                    self._backoff.reset()
            if self._stopping.is_set():
                break
            delay = self._backoff.next()
            log.info("IRC reconnecting in %.1f s", delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _connect(self) -> _Session:
        assert self._reactor is not None
        config = self.config
        connection: _Connection = self._reactor.server()
        context = tls_context(config) if config.tls else None
        log.info("IRC connecting to %s:%s%s", config.host, config.port, " (TLS)" if context else "")
        try:
            await asyncio.wait_for(connection.open(config.host, config.port, config.nick, context),
                                   config.connect_timeout)
        except BaseException:
            self._reactor.connections.remove(connection)
            raise
        pacer = Pacer(config) if config.pacing else None
        session = _Session(connection, _Writer(connection, pacer, lambda: self.may_send()), config.nick)
        self._session = session
        session.spawn(session.writer.run())
        connection.write_line("CAP LS 302")
        connection.write_line(f"NICK {config.nick}")
        connection.write_line(f"USER {config.username or config.nick} 0 * :{config.realname}")
        return session

    async def _keepalive(self, session: _Session) -> None:
        """Wait until the connection is lost; PING when idle, give up after ping_timeout."""
        config = self.config
        while not session.lost.is_set():
            idle = time.monotonic() - session.last_received
            if not session.registered and idle >= config.ping_timeout:
                raise TransportUnavailable(f"no registration after {idle:.0f} s")
            if idle >= config.ping_timeout:
                log.warning("IRC server silent for %.0f s: reconnecting", idle)
                session.connection.disconnect("ping timeout")
                return
            if idle >= config.ping_interval and not session.ping_outstanding and session.registered:
                session.ping_outstanding = True
                session.writer.put([f"PING :keepalive-{int(time.time())}"], _Writer.CONTROL)
            next_check = config.ping_timeout if session.ping_outstanding else config.ping_interval
            wait = max(0.05, next_check - idle)
            try:
                await asyncio.wait_for(session.lost.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def _end_session(self, session: _Session) -> None:
        if session.connection.connected:
            session.connection.disconnect("reconnecting")
        session.writer.close()
        for task in list(session.tasks):
            task.cancel()
        for future in session.whois.values():
            if not future.done():
                future.set_result(None)
        if self._reactor is not None and session.connection in self._reactor.connections:
            self._reactor.connections.remove(session.connection)
        if self._session is session:
            self._session = None
        self._accounts.clear()  # the map is only true while we share channels with people
        log.info("IRC disconnected from %s:%s", self.config.host, self.config.port)

    # --- event dispatch ---

    def _dispatch(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        session = self._session
        if session is None or connection is not session.connection:
            return  # a late event from a connection we already left
        handler = self._handlers.get(event.type)
        if handler is None:
            return
        try:
            handler(session, event)
        except Exception:  # never let one odd line kill the connection
            log.exception("IRC: error handling %s", event.type)

    def _send_control(self, session: _Session, line: str, secret: bool = False) -> None:
        if session.registered:
            # Nobody waits for a control line: one still queued when the connection ends fails
            # with TransportUnavailable, and that is expected (asyncio would log it as unretrieved).
            session.writer.put([line], _Writer.CONTROL, secret).add_done_callback(_ignore_result)
        else:
            session.connection.write_line(line, secret)

    def _on_raw(self, session: _Session, event: irc.client.Event) -> None:
        session.last_received = time.monotonic()

    def _on_pong(self, session: _Session, event: irc.client.Event) -> None:
        session.ping_outstanding = False

    def _on_disconnect(self, session: _Session, event: irc.client.Event) -> None:
        session.lost.set()

    def _on_error(self, session: _Session, event: irc.client.Event) -> None:
        log.warning("IRC server error: %s", " ".join(filter(None, [event.target, *event.arguments])))

    # registration: CAP, SASL, nick

    def _on_cap(self, session: _Session, event: irc.client.Event) -> None:
        sub, *params = event.arguments
        sub = sub.upper()
        caps = params[-1].split() if params else []
        if sub in ("LS", "NEW"):
            for cap in caps:
                name, _, value = cap.partition("=")
                session.offered[name] = value
            if sub == "LS" and params[:1] == ["*"]:
                return  # more LS lines follow
            wanted = [cap for cap in WANTED_CAPS if cap in session.offered and cap not in session.acked]
            if "sasl" in wanted and not self._sasl_usable(session):
                wanted.remove("sasl")
            if sub == "NEW" and "sasl" in wanted:
                wanted.remove("sasl")  # post-registration SASL is not worth the complexity
            if wanted:
                self._send_control(session, "CAP REQ :" + " ".join(wanted))
            else:
                self._cap_end(session)
        elif sub == "ACK":
            session.acked.update(cap.lstrip("=~") for cap in caps if not cap.startswith("-"))
            session.acked.difference_update(cap[1:] for cap in caps if cap.startswith("-"))
            log.info("IRC capabilities: %s", " ".join(sorted(session.acked)))
            if "sasl" in caps and not session.registered:
                self._send_control(session, "AUTHENTICATE PLAIN")
            else:
                self._cap_end(session)
        elif sub == "NAK":
            log.warning("IRC server refused capabilities: %s", " ".join(caps))
            self._cap_end(session)
        elif sub == "DEL":
            session.acked.difference_update(caps)

    def _sasl_usable(self, session: _Session) -> bool:
        if not (self.config.sasl_username and self.config.sasl_password):
            return False
        mechanisms = session.offered.get("sasl", "")
        return not mechanisms or "PLAIN" in mechanisms.upper().split(",")

    def _cap_end(self, session: _Session) -> None:
        if not session.cap_ended and not session.registered:
            session.cap_ended = True
            self._send_control(session, "CAP END")

    def _on_authenticate(self, session: _Session, event: irc.client.Event) -> None:
        if event.target != "+":
            return
        user, password = self.config.sasl_username or "", self.config.sasl_password or ""
        token = base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode()
        chunks = [token[i : i + 400] for i in range(0, len(token), 400)] or ["+"]
        if len(chunks[-1]) == 400:
            chunks.append("+")
        for chunk in chunks:
            self._send_control(session, f"AUTHENTICATE {chunk}", secret=True)

    def _on_logged_in(self, session: _Session, event: irc.client.Event) -> None:
        # 900 <nick> <nick!user@host> <account> :You are now logged in
        mask, account = event.arguments[0], event.arguments[1]
        session.account = account
        self._learn_mask(session, mask)
        log.info("IRC logged in as account %s", account)

    def _on_sasl_success(self, session: _Session, event: irc.client.Event) -> None:
        session.sasl_done = True
        self._cap_end(session)

    def _on_sasl_fail(self, session: _Session, event: irc.client.Event) -> None:
        fallback = "NickServ IDENTIFY" if self.config.nickserv_password else "no login"
        log.warning("IRC SASL login as %s failed (%s): falling back to %s",
                    self.config.sasl_username, event.type, fallback)
        self._cap_end(session)

    def _on_welcome(self, session: _Session, event: irc.client.Event) -> None:
        session.registered = True
        session.registered_at = time.monotonic()
        session.nick = event.target or session.nick
        self.connections += 1
        log.info("IRC registered as %s on %s:%s", session.nick, self.config.host, self.config.port)
        if not session.sasl_done and self.config.nickserv_password:
            account = self.config.sasl_username or self.config.nick
            self._send_control(
                session, f"PRIVMSG NickServ :IDENTIFY {account} {self.config.nickserv_password}", secret=True
            )
        for irc_channel in self.config.channels.values():
            self._send_control(session, f"JOIN {irc_channel}")
        if fold(session.nick) != fold(self.config.nick):
            self._start_regain(session)

    def _on_host_hidden(self, session: _Session, event: irc.client.Event) -> None:
        if event.arguments:
            session.host = event.arguments[0]

    def _on_nick_unavailable(self, session: _Session, event: irc.client.Event) -> None:
        if session.registered:
            return  # a regain attempt failed: try again later
        session.nick_attempt += 1
        if session.nick_attempt == 1:
            candidate = self.config.alternate_nick
        else:
            candidate = f"{self.config.nick[:20]}{self._rng.randint(10, 9999)}"
        log.warning("IRC nick %s unavailable, trying %s", event.arguments[0] if event.arguments else "?", candidate)
        session.nick = candidate
        self._send_control(session, f"NICK {candidate}")

    # the bot's own nick, held by another connection

    def _has_services_login(self) -> bool:
        return bool(self.config.sasl_username and self.config.sasl_password) or bool(self.config.nickserv_password)

    def _start_regain(self, session: _Session) -> None:
        """Registered under another nick: get the bot's own back from whoever holds it.

        Usually an old connection of this bot (a leader whose machine died: the server keeps
        its connection until a ping timeout). With services credentials, NickServ is asked to
        RECOVER it (which disconnects a connection logged in to the same account); without
        them, or if services cannot help, the bot waits on the alternate nick for the old
        connection to time out: MONITOR or a periodic ISON tell when the nick is free.
        """
        wanted = self.config.nick
        if not self.may_send():
            log.info("IRC nick %s is held by another connection; this instance does not lead: left to it", wanted)
            return
        if self._has_services_login():
            log.warning("IRC nick %s is held by another connection (an old one of this bot?): "
                        "recovering it through %s; meanwhile the bot is %s", wanted, NICKSERV, session.nick)
            session.regain_commands = list(REGAIN_COMMANDS)
            self._ask_services(session)
        else:
            log.warning("IRC nick %s is held by another connection (an old one of this bot?): the bot is %s "
                        "until that connection is gone, and takes the nick back then", wanted, session.nick)
        session.spawn(self._regain_loop(session))

    def _ask_services(self, session: _Session) -> None:
        """Send the next services command of `regain_commands` (RECOVER, then GHOST)."""
        if not session.regain_commands or not self._wants_nick(session):
            return
        command = session.regain_commands.pop(0)
        password = self.config.nickserv_password or self.config.sasl_password
        if session.account is None and password:  # not logged in (SASL failed): prove it
            self._send_control(session, f"PRIVMSG {NICKSERV} :{command} {self.config.nick} {password}", secret=True)
        else:
            self._send_control(session, f"PRIVMSG {NICKSERV} :{command} {self.config.nick}")

    def _on_private_notice(self, session: _Session, event: irc.client.Event) -> None:
        if fold(event.source.nick or "") != fold(NICKSERV) or not self._wants_nick(session):
            return
        text = _CONTROL.sub("", event.arguments[0] if event.arguments else "")
        if _UNKNOWN_COMMAND.search(text) and session.regain_commands:
            log.info("IRC %s does not know that command (%s): trying %s", NICKSERV, text,
                     session.regain_commands[0])
            self._ask_services(session)
            return
        log.info("IRC %s: %s", NICKSERV, text)
        self._check_nick_free(session)  # e.g. "Ghost with your nick has been killed."

    def _on_isupport(self, session: _Session, event: irc.client.Event) -> None:
        # 005 <me> TOKEN[=value]... :are supported (irc's FeatureSet drops valueless tokens)
        tokens = event.arguments[:-1]
        if any(token.upper() == "MONITOR" or token.upper().startswith("MONITOR=") for token in tokens):
            session.monitor = True
            self._monitor_nick(session)

    def _monitor_nick(self, session: _Session) -> None:
        if session.monitor and session.registered and not session.monitoring and self._wants_nick(session):
            session.monitoring = True
            self._send_control(session, f"MONITOR + {self.config.nick}")  # 731 when it goes offline

    def _on_monitor_offline(self, session: _Session, event: irc.client.Event) -> None:
        # 731 <me> :nick[!user@host],...
        offline = (event.arguments[-1] if event.arguments else "").split(",")
        if any(fold(mask.split("!", 1)[0]) == fold(self.config.nick) for mask in offline):
            self._claim_nick(session)

    def _on_monitor_full(self, session: _Session, event: irc.client.Event) -> None:
        session.monitoring = False  # not watched: the periodic ISON asks instead

    def _on_ison(self, session: _Session, event: irc.client.Event) -> None:
        # 303 <me> :nick nick...: those online
        online = {fold(nick) for nick in (event.arguments[-1] if event.arguments else "").split()}
        if fold(self.config.nick) not in online:
            self._claim_nick(session)

    async def _regain_loop(self, session: _Session) -> None:
        while self._wants_nick(session):
            await asyncio.sleep(self.config.regain_interval)
            if not session.monitoring:
                self._check_nick_free(session)

    def _wants_nick(self, session: _Session) -> bool:
        """True while the bot is on another nick and may take its own back: never once the fence
        is shut (the new leader's connection may hold it; no tug-of-war)."""
        return fold(session.nick) != fold(self.config.nick) and self.may_send()

    def _check_nick_free(self, session: _Session) -> None:
        """Ask whether the bot's nick is free (ISON: no error numeric, so no flood penalty)."""
        if session.registered and self._wants_nick(session):
            self._send_control(session, f"ISON {self.config.nick}")

    def _claim_nick(self, session: _Session) -> None:
        """The bot's nick looks free: take it (a 433 leaves the bot where it is)."""
        if session.registered and self._wants_nick(session):
            self._send_control(session, f"NICK {self.config.nick}")

    def _took_back_nick(self, session: _Session) -> None:
        log.info("IRC took back the nick %s", session.nick)
        session.regain_commands = []
        if session.monitoring:
            session.monitoring = False
            self._send_control(session, f"MONITOR - {self.config.nick}")

    # channels and people

    def _learn_mask(self, session: _Session, mask: str) -> None:
        nick, _, userhost = mask.partition("!")
        user, _, host = userhost.partition("@")
        if user and host:
            session.user, session.host = user, host

    def _prefix_reserve(self, session: _Session) -> int:
        if not (session.user and session.host):
            return DEFAULT_PREFIX_RESERVE
        nick_len = max(len(session.nick.encode()), len(self.config.nick.encode()))
        return 1 + nick_len + 1 + len(session.user.encode()) + 1 + len(session.host.encode()) + 1

    def _is_me(self, session: _Session, nick: str) -> bool:
        return fold(nick) == fold(session.nick)

    def _on_join(self, session: _Session, event: irc.client.Event) -> None:
        channel = event.target
        nick = event.source.nick
        if self._is_me(session, nick):
            self._learn_mask(session, str(event.source))
            session.joined.add(fold(channel))
            session.join_backoff.pop(fold(channel), None)
            log.info("IRC joined %s", channel)
            self._tell_ready(session)
            return
        if self.config.identity == "nick":
            self._accounts.set(nick, nick, "join")
        elif "extended-join" in session.acked and event.arguments:
            account = event.arguments[0]
            self._accounts.set(nick, None if account == "*" else account, "join")
        else:
            self._accounts.forget(nick)  # maybe not the connection a WHOIS answered for earlier

    def _on_names(self, session: _Session, event: irc.client.Event) -> None:
        # 353 <me> <=|*|@> <channel> :[@+]nick ...: who is there (for mentions in nick mode)
        if self.config.identity != "nick" or not event.arguments:
            return
        for name in event.arguments[-1].split():
            nick = name.lstrip("~&@%+")
            if nick and not self._is_me(session, nick):
                self._accounts.set(nick, nick, "join")

    def _tell_ready(self, session: _Session) -> None:
        """Once per connection, when every channel is joined: let the outbox deliver now."""
        wanted = {fold(c) for c in self.config.channels.values()}
        if session.ready_told or not wanted <= session.joined:
            return
        session.ready_told = True
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                log.exception("IRC: the on_connected callback failed")

    def _on_part(self, session: _Session, event: irc.client.Event) -> None:
        nick = event.source.nick
        if self._is_me(session, nick):
            self._left(session, event.target, delay=1.0)
        else:
            self._accounts.forget(nick)

    def _on_kick(self, session: _Session, event: irc.client.Event) -> None:
        kicked = event.arguments[0] if event.arguments else ""
        if self._is_me(session, kicked):
            log.warning("IRC kicked from %s by %s: %s", event.target, event.source.nick,
                        event.arguments[1] if len(event.arguments) > 1 else "")
            self._left(session, event.target, delay=2.0)
        else:
            self._accounts.forget(kicked)

    def _left(self, session: _Session, channel: str, delay: float) -> None:
        session.joined.discard(fold(channel))
        if fold(channel) in self._logical:
            session.spawn(self._rejoin(session, channel, delay))

    async def _rejoin(self, session: _Session, channel: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if fold(channel) not in session.joined and session.registered:
            self._send_control(session, f"JOIN {channel}")

    def _on_join_error(self, session: _Session, event: irc.client.Event) -> None:
        channel = event.arguments[0] if event.arguments else ""
        if fold(channel) not in self._logical:
            if event.type == "unavailresource" and not session.registered:
                self._on_nick_unavailable(session, event)  # 437 on a nick
            return
        backoff = session.join_backoff.setdefault(
            fold(channel), Backoff(self.config.join_retry_min, self.config.backoff_max, self._rng)
        )
        delay = backoff.next()
        reason = event.arguments[-1] if len(event.arguments) > 1 else event.type
        log.warning("IRC cannot join %s (%s): retrying in %.0f s", channel, reason, delay)
        session.spawn(self._rejoin(session, channel, delay))

    def _on_quit(self, session: _Session, event: irc.client.Event) -> None:
        nick = event.source.nick
        self._accounts.forget(nick)
        if fold(nick) == fold(self.config.nick):
            self._claim_nick(session)

    def _on_nick(self, session: _Session, event: irc.client.Event) -> None:
        old, new = event.source.nick, event.target
        if self._is_me(session, old):
            session.nick = new
            if fold(new) == fold(self.config.nick) and fold(old) != fold(new):
                self._took_back_nick(session)
            else:
                log.info("IRC nick is now %s", new)
            return
        self._accounts.rename(old, new)
        session.whois_seen.pop(fold(old), None)
        session.whois_seen.pop(fold(new), None)
        if fold(old) == fold(self.config.nick):
            self._claim_nick(session)

    def _on_account(self, session: _Session, event: irc.client.Event) -> None:
        account = event.target
        self._accounts.set(event.source.nick, None if account in ("*", None) else account, "notify")

    # identity

    def _on_whois_account(self, session: _Session, event: irc.client.Event) -> None:
        # 330 <me> <nick> <account> :is logged in as
        if len(event.arguments) >= 2:
            session.whois_seen[fold(event.arguments[0])] = event.arguments[1]

    def _on_end_of_whois(self, session: _Session, event: irc.client.Event) -> None:
        if not event.arguments:
            return
        nick = event.arguments[0]
        account = session.whois_seen.get(fold(nick))
        if event.type == "nosuchnick":
            session.whois_missing.add(fold(nick))
        future = session.whois.pop(fold(nick), None)
        if event.type == "endofwhois" and fold(nick) not in session.whois_missing:
            self._accounts.set(nick, nick if self.config.identity == "nick" else account, "whois")
        if future is not None and not future.done():
            future.set_result(account)

    async def _whois(self, session: _Session, nick: str) -> str | None:
        """The account ``nick`` is logged in as, by WHOIS; None after whois_timeout."""
        future = session.whois.get(fold(nick))
        if future is None:
            future = asyncio.get_running_loop().create_future()
            session.whois[fold(nick)] = future
            session.whois_seen.pop(fold(nick), None)
            session.whois_missing.discard(fold(nick))
            self._send_control(session, f"WHOIS {nick}")
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.config.whois_timeout)
        except asyncio.TimeoutError:
            log.warning("IRC WHOIS %s got no answer in %.1f s", nick, self.config.whois_timeout)
            return None

    def _stale(self, session: _Session, known: _Known) -> bool:
        """True when ``known`` must be checked again by WHOIS before it decides anything.

        Older than ``whois_max_age`` and learned by WHOIS (the bot may share no channel with
        that nick, so it would not see it quit and another connection take it), or learned at
        all while the server sends no account-notify (a logout would go unseen)."""
        if self.config.identity == "nick" or self._accounts.age(known) <= self.config.whois_max_age:
            return False
        return known.source == "whois" or "account-notify" not in session.acked

    async def _account_of(self, nick: str, tags: dict[str, str], command: bool = False) -> str | None:
        """The account ``nick`` is logged in as; ``command``: the line is a command, so an old
        answer learned without a tag is checked again first."""
        if self.config.identity == "nick":
            self._accounts.set(nick, nick, "tag")
            return nick
        session = self._session
        if "account" in tags:
            self._accounts.set(nick, tags["account"], "tag")
            return tags["account"]
        if session is None:
            return None
        if "account-tag" in session.acked:
            return None  # the server tags every logged-in sender: no tag, no account
        known = self._accounts.lookup(nick)
        if known is not None and not (command and self._stale(session, known)):
            return known.account
        return await self._whois(session, nick)

    async def _irc_target(self, session: _Session, target: str) -> str:
        if target.startswith("~"):
            # The nick that wrote, not identified: the answer goes to that nick itself, never
            # to whoever holds an account of the same name.
            writer = target[1:]
            if not writer or any(c.isspace() or c in ",:*?!@#" for c in writer):
                raise Undeliverable(f"IRC: {writer!r} is not a nick")
            return writer
        if target.startswith("@"):
            account = target[1:]
            if not _is_irc_account(account):
                raise Undeliverable(f"IRC: {account} is not an IRC account")
            if self.config.identity == "nick":
                return account  # the server answers 401 if nobody has the nick; nothing to wait for
            nick = await self._online_nick(session, account)
            if nick is None:
                # Permanent, not a retry: a row kept pending would hold up every later message.
                raise Undeliverable(f"IRC: nobody is logged in as {account} now")
            return nick
        irc_channel = self.config.channels.get(target)
        if irc_channel is None:
            raise ValueError(f"IRC: no channel configured for {target!r}")
        if fold(irc_channel) not in session.joined:
            raise TransportUnavailable(f"IRC: not in {irc_channel} yet")
        return irc_channel

    async def _online_nick(self, session: _Session, account: str) -> str | None:
        """The nick ``account`` is online as, or None when the server says nobody.

        Seen nicks first (tags, extended-join, account-notify; in nick mode: the people in
        the bot's channels), else a WHOIS of the account's name as a nick. Raises
        TransportUnavailable when the WHOIS went unanswered (ask again later).
        """
        nick = self._accounts.nick_for(account)
        if nick is not None:
            known = self._accounts.lookup(nick)
            if known is None or not self._stale(session, known):
                return nick
            if session.registered:
                confirmed = await self._whois(session, nick)  # someone else may hold that nick now
                if confirmed is not None and fold(confirmed) == fold(account):
                    return nick
        if not session.registered:
            raise TransportUnavailable("not connected to IRC")
        found = await self._whois(session, account)
        if self.config.identity == "account" and found is not None and fold(found) == fold(account):
            return account
        if fold(account) in session.whois_missing:
            return None
        if self._accounts.lookup(account) is None:  # neither 401 nor 318: no answer in time
            raise TransportUnavailable(f"IRC: no WHOIS answer for {account}")
        return self._accounts.nick_for(account)

    async def _mention_nicks(self, session: _Session, accounts: Sequence[str]) -> list[str]:
        """The current nicks of the accounts that are online; the others are left out."""
        nicks: list[str] = []
        for account in accounts:
            if not _is_irc_account(account):
                continue  # an MXID: that person is pinged on Matrix
            try:
                nick = await self._online_nick(session, account)
            except TransportUnavailable:
                nick = None
            if nick is None:
                log.info("IRC: %s is not online; left out of the mentions", account)
                continue
            nick = re.sub(r"[\s,:]", "", nick)
            if nick and fold(nick) not in {fold(n) for n in nicks}:
                nicks.append(nick)
        return nicks

    # incoming messages

    def _on_pubmsg(self, session: _Session, event: irc.client.Event) -> None:
        room = self._logical.get(fold(event.target))
        if room is None:
            return
        self._receive(event, room)

    def _on_privmsg(self, session: _Session, event: irc.client.Event) -> None:
        if not self._is_me(session, event.target):
            return
        self._receive(event, None)

    def _receive(self, event: irc.client.Event, room: str | None) -> None:
        tags = {tag["key"]: tag["value"] or "" for tag in (event.tags or [])}
        # Formatting and other control codes are dropped on the way in, so nothing stored
        # (notice wording, reasons) can carry them into mails or other networks.
        text = _CONTROL.sub("", (event.arguments[0] if event.arguments else "").replace("\t", " "))
        self._incoming.put_nowait(_Received(event.source.nick, room, text, tags))

    async def _consume(self) -> None:
        """Hand each received line to the handler in order, its sender's account resolved."""
        while True:
            received = await self._incoming.get()
            try:
                command = received.text.startswith(self.config.command_prefix)
                account = await self._account_of(received.nick, received.tags, command)
                incoming = Incoming(
                    network=self.network,
                    room=received.room,
                    account=account,
                    nick=received.nick,
                    text=received.text,
                    msgid=received.tags.get("msgid"),
                )
                assert self._on_message is not None
                await self._on_message(incoming)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("IRC: the message handler failed")
