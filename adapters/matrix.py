"""The Matrix transport, on matrix-nio.

What it guarantees, and how:

- **One device per bot.** The device id and access token are kept in ``store_path`` (a JSON
  file, mode 0600); a restart restores the login instead of creating a new device. A token given
  in the configuration (from the environment) is used as is and never written to the store.
- **Another instance resumes where this one stopped** (``[ha]``, `SharedState`): the sync
  token, the rooms' first-sync facts, the direct chats and the device id are also kept in the
  database (`DatabaseState`: ``bot_meta`` rows ``matrix.next_batch``, ``matrix.state``,
  ``matrix.device_id``), and read from there at start; a store with none yet takes the file's
  (an existing install) and writes it there. Every instance logs in to that one device (a
  password login names it), so the homeserver drops a message resent with the same transaction
  id by the next leader: transaction ids are deduplicated per device. The access token stays in
  the file of each machine, never in the database. Under ``[ha]`` a write is made only while
  this instance's lease epoch is still the lease's (checked in the writing transaction, bot.py
  `leading_writes`): an old leader woken from a pause cannot move the position back; a refused
  write tells the bot (``on_fenced``), which stops the transport.
- **Its own sync loop** (not ``sync_forever``): every kind of failure (error response, exception,
  refused connection) backs off exponentially with jitter, from ``backoff_min`` to
  ``backoff_max`` seconds, and the delay resets after a good sync. ``M_UNKNOWN_TOKEN`` stops the
  loop with an ERROR log line: somebody has to log the bot in again.
- **No command runs twice, no old command is replayed, none is lost.** Each command is answered
  in a task of its own, so a slow one (waiting on Bugzilla) never holds up the sync loop or
  another person's command; ``next_batch`` is saved only once every event of that batch and of
  every earlier one was answered (`HandledUpTo`); handled event ids are saved (the last 2,000)
  and skipped; on the first sync of a room (first start, a join, a re-join) the
  events from before the bot's own join and those older than the bot's first start (saved in the
  store, compared with ``origin_server_ts``) are ignored; so are events seen in a room while the
  bot was not in it. A gap in the timeline (``limited``) is filled with ``/messages``.
- **Rooms.** The configured rooms (``#ci`` → alias or room id) are joined at start. Invites are
  accepted for those rooms, and for direct chats from ``allowed_inviters``; others are declined.
  Messages from other rooms are ignored.
- **Unencrypted rooms only.** A configured room with encryption enabled gets one notice saying
  so, an ERROR log line, and is then ignored (nothing read, nothing sent there).
- **Output is ``m.text``**, never ``m.notice``: clients suppress notifications for notices, and
  the bot pings sheriffs. The bot ignores ``m.notice`` from others (other bots), its own
  messages, and edits.
- **Sending** honours HTTP 429 ``retry_after_ms`` up to ``max_retries_429`` times, then raises
  `TransportUnavailable`, as it does when disconnected; the outbox retries later. Pass
  ``txn_id=`` (e.g. the outbox row key) so that a retried send is deduplicated by the homeserver.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import logging
import os
import random
import re
import tempfile
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import nio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.files import private_folder
from models.orm import BotMeta
from models.ports import Incoming, MessageHandler, Outgoing, Transport, TransportUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

STATE_FILE = "matrix-state.json"
# The database's rows (bot_meta) that a new leader on another machine resumes from.
NEXT_BATCH_KEY = "matrix.next_batch"
STATE_KEY = "matrix.state"  # JSON: user_id, first_start_ms, known_rooms, dm_rooms, encrypted_notified
DEVICE_KEY = "matrix.device_id"
SHARED_KEYS = (NEXT_BATCH_KEY, STATE_KEY, DEVICE_KEY)
SEEN_EVENTS_KEPT = 2000
BACKFILL_MAX_EVENTS = 500
JOIN_RETRY_SECONDS = 60.0
STOP_GRACE_SECONDS = 30.0

ENCRYPTED_ROOM_NOTICE = (
    "This room is end-to-end encrypted. downtime-bot only works in unencrypted rooms, "
    "so it will not read or answer anything here."
)

_MXID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")

# Timeline deep enough to bridge short gaps without /messages; presence and account data unused.
SYNC_FILTER: dict[str, Any] = {
    "room": {"timeline": {"limit": 50}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


def is_mxid(account: str) -> bool:
    """True for a Matrix user id such as ``@carol:example.org``."""
    return bool(_MXID.match(account))


@dataclass(frozen=True)
class MatrixConfig:
    """The ``[matrix]`` section, parsed. Secrets are passed in, already read from the environment."""

    homeserver: str
    user_id: str
    store_path: str  # a directory for device id, token, next_batch, seen event ids, DM rooms
    password: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    device_name: str = "downtime-bot"
    # logical channel ("#ci") -> room alias ("#ci:example.org") or room id ("!abc:example.org")
    rooms: Mapping[str, str] = field(default_factory=dict, hash=False)
    # MXIDs (or ":server" suffixes) whose direct-chat invites the bot accepts
    allowed_inviters: frozenset[str] = frozenset()
    sync_timeout_ms: int = 30000
    max_retries_429: int = 5
    max_timeouts: int = 1  # nio's own immediate retries of a failed connection, per request
    request_timeout: float = 30
    backoff_min: float = 1
    backoff_max: float = 300
    encrypted_room_notice: str = ENCRYPTED_ROOM_NOTICE

    def __post_init__(self) -> None:
        if not is_mxid(self.user_id):
            raise ValueError(f"[matrix] user_id: expected a MXID like @bot:example.org, got {self.user_id!r}")
        if not (self.password or self.access_token):
            raise ValueError("[matrix]: set password_env or access_token_env")
        if not self.homeserver.startswith(("http://", "https://")):
            raise ValueError(f"[matrix] homeserver: expected an http(s) URL, got {self.homeserver!r}")
        for channel, room in self.rooms.items():
            if not channel.startswith("#") or not room.startswith(("#", "!")):
                raise ValueError(
                    f"[matrix] rooms: expected '#channel = #alias:server or !id:server', "
                    f"got {channel!r} = {room!r}"
                )
        if not 0 < self.backoff_min <= self.backoff_max:
            raise ValueError("[matrix] backoff: expected 0 < backoff_min <= backoff_max")


# -- persistent state ----------------------------------------------------------------------


@dataclass
class MatrixState:
    """What survives a restart. Kept in ``<store_path>/matrix-state.json``."""

    first_start_ms: int
    user_id: str | None = None
    device_id: str | None = None
    access_token: str | None = field(default=None, repr=False)
    next_batch: str | None = None
    seen_events: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_EVENTS_KEPT))
    known_rooms: set[str] = field(default_factory=set)  # rooms whose first sync is done
    dm_rooms: dict[str, str] = field(default_factory=dict)  # MXID -> direct-chat room id
    encrypted_notified: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "first_start_ms": self.first_start_ms,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "access_token": self.access_token,
            "next_batch": self.next_batch,
            "seen_events": list(self.seen_events),
            "known_rooms": sorted(self.known_rooms),
            "dm_rooms": dict(self.dm_rooms),
            "encrypted_notified": sorted(self.encrypted_notified),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatrixState:
        return cls(
            first_start_ms=int(data["first_start_ms"]),
            user_id=data.get("user_id"),
            device_id=data.get("device_id"),
            access_token=data.get("access_token"),
            next_batch=data.get("next_batch"),
            seen_events=deque(data.get("seen_events", ()), maxlen=SEEN_EVENTS_KEPT),
            known_rooms=set(data.get("known_rooms", ())),
            dm_rooms=dict(data.get("dm_rooms", {})),
            encrypted_notified=set(data.get("encrypted_notified", ())),
        )


class MatrixStateStore:
    """Reads and atomically rewrites the state file. Blocking: call through a thread."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / STATE_FILE

    def load(self) -> MatrixState | None:
        try:
            return MatrixState.from_json(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, data: Mapping[str, Any]) -> None:
        private_folder(self.path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".matrix-state-")
        try:
            os.fchmod(fd, 0o600)  # it holds an access token
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class SharedState(Protocol):
    """What every instance of the bot reads and writes, wherever it runs: the database.
    Blocking: the transport calls it through a thread."""

    def load(self) -> Mapping[str, str]:
        """The saved values by key (`SHARED_KEYS`); those never saved are missing."""

    def save(self, values: Mapping[str, str]) -> None:
        """Write these values (only the keys given) in one transaction."""


class Fenced(RuntimeError):
    """`DatabaseState.save` refused: this instance may no longer write (another one leads)."""


class DatabaseState:
    """`SharedState` in the database's ``bot_meta`` table (models/orm.py `BotMeta`).

    `may_write`: checked inside the writing transaction (e.g. "this instance's lease epoch is
    still the current one"); False rolls the write back and raises `Fenced`, so an old leader
    that wakes up after a pause cannot put its older position over the new leader's.
    """

    def __init__(self, sessions: sessionmaker[Session], *, may_write: Callable[[Session], bool] | None = None) -> None:
        self._sessions = sessions
        self._may_write = may_write

    def load(self) -> dict[str, str]:
        with self._sessions() as session:
            rows = session.scalars(select(BotMeta).where(BotMeta.key.in_(SHARED_KEYS)))
            return {row.key: row.value for row in rows}

    def save(self, values: Mapping[str, str]) -> None:
        with self._sessions.begin() as session:
            if self._may_write is not None and not self._may_write(session):
                raise Fenced("this instance no longer leads: the Matrix sync position is not written")
            for key, value in values.items():
                session.merge(BotMeta(key=key, value=value))


def shared_values(state: MatrixState, user_id: str) -> dict[str, str]:
    """What of `state` goes to the database: the sync position and what it depends on
    (never the access token, never the seen event ids: handled_messages holds those that
    changed something)."""
    values = {STATE_KEY: json.dumps({
        "user_id": user_id,
        "first_start_ms": state.first_start_ms,
        "known_rooms": sorted(state.known_rooms),
        "dm_rooms": dict(sorted(state.dm_rooms.items())),
        "encrypted_notified": sorted(state.encrypted_notified),
    })}
    if state.next_batch:
        values[NEXT_BATCH_KEY] = state.next_batch
    if state.device_id:
        values[DEVICE_KEY] = state.device_id
    return values


# -- backoff -------------------------------------------------------------------------------


class Backoff:
    """Exponential delays with jitter: the n-th delay is in [b/2, b], b = min(max, min * 2**n)."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random) -> None:
        self._min, self._max, self._rng = minimum, maximum, rng
        self._failures = 0

    def next_delay(self) -> float:
        base = min(self._max, self._min * 2 ** min(self._failures, 32))
        self._failures += 1
        return self._rng.uniform(base / 2, base)

    def reset(self) -> None:
        self._failures = 0


# -- message content -----------------------------------------------------------------------


def pill(mxid: str) -> str:
    """The HTML link that Matrix clients render as a mention "pill"."""
    href = "https://matrix.to/#/" + urllib.parse.quote(mxid, safe="@:")
    return f'<a href="{html.escape(href)}">{html.escape(mxid)}</a>'


def _mention_pattern(mxid: str) -> re.Pattern[str]:
    # Not inside a longer MXID: "@carol:example.org." ends a sentence, "...org.uk" is another id.
    return re.compile(r"(?<![\w@])" + re.escape(html.escape(mxid)) + r"(?![\w\-]|\.[\w\-]|:\d)")


def render_content(message: Outgoing) -> dict[str, Any]:
    """The ``m.room.message`` content for an outgoing message.

    ``formatted_body`` is ``message.html`` when given, else the escaped text with newlines as
    ``<br>``. Each MXID in ``message.mentions`` becomes a pill where it appears in the text, or is
    put in front (``@carol:example.org: text``) when the text does not name it, and is listed in
    ``m.mentions``. Accounts that are not MXIDs (IRC accounts) are ignored here.
    """
    mxids = list(dict.fromkeys(m for m in message.mentions if is_mxid(m)))
    body = message.text
    if message.html is not None:
        formatted = message.html
    else:
        formatted = html.escape(body)
        for mxid in mxids:
            # A function, not a replacement string: sub() would read backslashes in that.
            replacement = pill(mxid)
            formatted = _mention_pattern(mxid).sub(lambda _m: replacement, formatted)
        formatted = formatted.replace("\r\n", "\n").replace("\n", "<br>")
    missing = [m for m in mxids if m not in body]
    if missing:
        body = ", ".join(missing) + ": " + body
        formatted = ", ".join(pill(m) for m in missing) + ": " + formatted
    return {
        "msgtype": "m.text",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": formatted,
        "m.mentions": {"user_ids": mxids} if mxids else {},
    }


def stable_txn_id(key: str) -> str:
    """A transaction id derived from a caller's stable key, so a retried send is deduplicated."""
    return "dtb-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _strip_reply_fallback(body: str) -> str:
    """Drop the "> <@someone> quoted text" lines that some clients put before a reply."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


# -- the transport -------------------------------------------------------------------------


class HandledUpTo:
    """The sync token that may be saved: the newest batch whose commands, and every earlier
    batch's, are all answered. A crash before then syncs again from the token saved, and the
    commands already answered are skipped by their event ids."""

    def __init__(self) -> None:
        self._open: deque[tuple[str | None, list[asyncio.Task[None]]]] = deque()

    def add(self, token: str | None, tasks: list[asyncio.Task[None]]) -> None:
        """A batch handed on: `token` (None: nothing new to save) once `tasks` are done."""
        self._open.append((token, tasks))

    def settled(self) -> str | None:
        """The newest token whose batch and every earlier one are answered (None: no news)."""
        token = None
        while self._open and all(task.done() for task in self._open[0][1]):
            token = self._open.popleft()[0] or token
        return token

    def running(self) -> list[asyncio.Task[None]]:
        return [task for _, tasks in self._open for task in tasks if not task.done()]


class _Stopped(Exception):
    """stop() was called while the sync loop was waiting."""


class _LoginRefused(Exception):
    """The homeserver refused our credentials: retrying will not help."""


class MatrixTransport(Transport):
    """Matrix, through matrix-nio. See the module docstring for what it guarantees."""

    network = "matrix"

    def __init__(
        self,
        config: MatrixConfig,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._rng = rng or random.Random()
        self._store = MatrixStateStore(config.store_path)
        self._shared: SharedState | None = None
        self._on_fenced: Callable[[], None] | None = None
        self._shared_saved: dict[str, str] = {}  # what the database holds, as far as we know
        self._state: MatrixState | None = None
        self._client: nio.AsyncClient | None = None
        self._on_message: MessageHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._synced_once = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._save_lock = asyncio.Lock()
        self._dm_locks: dict[str, asyncio.Lock] = {}
        self._seen: set[str] = set()
        self._since: str | None = None  # the newest batch handed on (saved: `state.next_batch`)
        self._handled = HandledUpTo()
        self._dispatched: list[asyncio.Task[None]] = []  # commands of the batch being handled
        self._room_by_channel: dict[str, str] = {}
        self._channel_by_room: dict[str, str] = {}
        self._joined: set[str] = set()
        self._encrypted: set[str] = set()
        self._declined_invites: set[str] = set()
        self._last_join_attempt = float("-inf")
        # [ha]: asked right before each message is posted (the leader's fence); a deposed instance
        # posts nothing, not even the answer to a question it was still handling.
        self.may_send: Callable[[], bool] = lambda: True

    def keep_state_in(self, shared: SharedState, *, on_fenced: Callable[[], None] | None = None) -> None:
        """Keep the sync position in `shared` (the database) too, and resume from there at
        start: another instance (a new leader) takes over where this one stopped.

        `on_fenced`: called (on the event loop) when `shared` refuses a write while the transport
        runs (`Fenced`: another instance leads); the bot then stops this transport."""
        if self._task is not None:
            raise RuntimeError("keep_state_in() must come before start()")
        self._shared = shared
        self._on_fenced = on_fenced

    # -- Transport interface ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self, on_message: MessageHandler) -> None:
        """Load the store and run the login, join and sync loop in the background."""
        if self._task is not None:
            raise RuntimeError("MatrixTransport already started")
        self._on_message = on_message
        state = await asyncio.to_thread(self._store.load)
        fresh = state is None
        if state is None:
            state = MatrixState(first_start_ms=int(self._clock().timestamp() * 1000))
        resumed = await self._resume_shared(state) if self._shared is not None else False
        if fresh and not resumed:
            log.info("Matrix store %s is new: events before now will be ignored", self._store.path)
        self._state = state
        self._seen = set(state.seen_events)
        self._since = state.next_batch
        # A restart of this same object (leadership lost, then won again): a run's own facts go.
        self._synced_once.clear()
        self._joined.clear()
        self._encrypted.clear()
        self._handled = HandledUpTo()
        self._dispatched = []
        await self._save()
        self._client = nio.AsyncClient(
            self.config.homeserver,
            self.config.user_id,
            config=nio.AsyncClientConfig(
                max_limit_exceeded=self.config.max_retries_429,
                max_timeouts=self.config.max_timeouts,
                request_timeout=self.config.request_timeout,
                encryption_enabled=False,
                store_sync_tokens=False,
            ),
        )
        self._stop_requested.clear()
        self._last_join_attempt = float("-inf")
        self._task = asyncio.create_task(self._run(), name="matrix-sync")

    async def _resume_shared(self, state: MatrixState) -> bool:
        """Take the database's sync position (and device) into `state`; True when it had one."""
        assert self._shared is not None
        values = dict(await asyncio.to_thread(self._shared.load))
        self._shared_saved = dict(values)
        shared = json.loads(values.get(STATE_KEY) or "{}")
        if shared.get("user_id") not in (None, self.config.user_id):
            log.warning("Matrix: the database's sync position is %s's, not %s's: not used",
                        shared.get("user_id"), self.config.user_id)
            return False
        device = values.get(DEVICE_KEY)
        if device and device != state.device_id:
            # The instances share one device (so that a resent message is recognised); a token
            # this machine kept for another device is not used (a password login gets one).
            log.info("Matrix: using the device %s that the database names", device)
            state.user_id, state.device_id = self.config.user_id, device
            if not self.config.access_token:
                state.access_token = None
        if not values.get(NEXT_BATCH_KEY):
            if state.next_batch:
                log.info("Matrix: the database has no sync position yet: taking the one in %s "
                         "(kept in the database from now on)", self._store.path)
            return False
        state.next_batch = values[NEXT_BATCH_KEY]
        state.first_start_ms = int(shared.get("first_start_ms", state.first_start_ms))
        state.known_rooms = set(shared.get("known_rooms", ()))
        state.dm_rooms = dict(shared.get("dm_rooms", {}))
        state.encrypted_notified = set(shared.get("encrypted_notified", ()))
        log.info("Matrix: resuming from the sync position in the database")
        return True

    async def stop(self) -> None:
        """Stop syncing (a batch being handled is finished first), save the state, close."""
        self._connected = False
        self._stop_requested.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_SECONDS)
            except asyncio.TimeoutError:
                log.warning("Matrix: a sync is still being handled; cancelling it")
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        running = self._handled.running() + [t for t in self._dispatched if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=STOP_GRACE_SECONDS)
            for task in late:
                log.warning("Matrix: a message handler is still running; cancelling it (its command is "
                            "read again at the next start)")
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._state is not None:
            self._advance()
            await self._save()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def wait_until_synced(self, timeout: float) -> bool:
        """True once the first sync after `start` has been handled (False after `timeout` s)."""
        try:
            await asyncio.wait_for(self._synced_once.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def send(self, message: Outgoing, *, txn_id: str | None = None) -> None:
        """Deliver `message` as one ``m.text`` event; raise TransportUnavailable to be retried.

        `txn_id`: a stable key for this message (e.g. the outbox row's key); a retry with the
        same key is not posted twice by the homeserver. Raises ValueError for a target that can
        never be delivered on Matrix (an unknown channel, a non-MXID account).
        """
        txn_id = txn_id if txn_id is not None else message.key
        if not self.may_send():
            raise TransportUnavailable("this instance no longer leads: nothing is posted to Matrix")
        client = self._client
        if client is None or not self._connected:
            raise TransportUnavailable("Matrix is not connected")
        room_id = await self._room_for(client, message.target)
        if room_id in self._encrypted:
            log.error("not sending to %s: room %s is encrypted (unsupported); message dropped",
                      message.target, room_id)
            return
        content = render_content(message)
        try:
            reply = await client.room_send(
                room_id, "m.room.message", content,
                tx_id=stable_txn_id(txn_id) if txn_id is not None else None,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            raise TransportUnavailable(f"Matrix send to {message.target} failed: {error!r}") from error
        if isinstance(reply, nio.RoomSendResponse):
            return
        if reply.status_code == "M_LIMIT_EXCEEDED" or _http_status(reply) == 429:
            raise TransportUnavailable(
                f"Matrix rate limit still hit after {self.config.max_retries_429} retries"
            )
        if message.target.startswith("@") and reply.status_code == "M_FORBIDDEN":
            # The person left the direct chat: make a new one on the next attempt.
            assert self._state is not None
            self._state.dm_rooms.pop(message.target[1:], None)
            await self._save()
        raise TransportUnavailable(f"Matrix refused the message to {message.target}: {reply}")

    def nick_for(self, account: str) -> str:
        """The display name of `account` in a room shared with the bot, else the MXID."""
        if self._client is not None:
            for room in self._client.rooms.values():
                if account in room.users:
                    return room.user_name(account) or account
        return account

    # -- sync loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._sync_loop()
        except _Stopped:
            pass
        finally:
            self._connected = False

    async def _sync_loop(self) -> None:
        assert self._client is not None and self._state is not None
        client = self._client
        backoff = Backoff(self.config.backoff_min, self.config.backoff_max, self._rng)
        logged_in = False
        full_state = True  # nio keeps no room state across restarts: fetch it once per run
        while not self._stop_requested.is_set():
            try:
                if not logged_in:
                    await self._unless_stopped(self._login(client))
                    logged_in = True
                if self._rooms_to_join():
                    await self._unless_stopped(self._join_configured_rooms(client))
                reply = await self._unless_stopped(client.sync(
                    timeout=self.config.sync_timeout_ms,
                    sync_filter=SYNC_FILTER,
                    since=self._since,
                    full_state=full_state,
                ))
            except (_Stopped, asyncio.CancelledError):
                raise
            except _LoginRefused as error:
                log.error("Matrix login refused, giving up until restarted: %s", error)
                return
            except Exception as error:  # noqa: BLE001 (any failure: back off, never spin)
                self._connected = False
                delay = backoff.next_delay()
                log.warning("Matrix sync failed (%r); retrying in %.1f s", error, delay)
                await self._unless_stopped(asyncio.sleep(delay))
                continue
            if not isinstance(reply, nio.SyncResponse):
                self._connected = False
                if reply.status_code == "M_UNKNOWN_TOKEN":
                    log.error(
                        "Matrix access token for %s was rejected (M_UNKNOWN_TOKEN): sync "
                        "stopped; log the bot in again and restart it", self.config.user_id,
                    )
                    return
                delay = backoff.next_delay()
                log.warning("Matrix sync error (%s); retrying in %.1f s", reply, delay)
                await self._unless_stopped(asyncio.sleep(delay))
                continue
            was_connected, self._connected = self._connected, True
            if not was_connected:
                log.info("Matrix sync is working (%s)", self.config.homeserver)
                if self.on_connected is not None:
                    self.on_connected()
            backoff.reset()
            # Not interrupted by stop(): a batch is handed on whole, or retried from `since`.
            # Its commands are answered in tasks of their own; the token is saved once they are.
            try:
                await self._handle_sync(client, reply, self._since)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 (keep syncing; the batch is retried from since)
                self._handled.add(None, self._take_dispatched())  # what went out still holds the token
                delay = backoff.next_delay()
                log.exception("Matrix: handling a sync failed; retrying in %.1f s", delay)
                await self._unless_stopped(asyncio.sleep(delay))
                continue
            self._since = reply.next_batch
            self._handled.add(reply.next_batch, self._take_dispatched())
            self._advance()
            try:
                await self._save()
            except OSError:
                log.exception("Matrix: cannot save the sync state (kept in memory; saved again later)")
            full_state = False
            self._synced_once.set()

    async def _unless_stopped(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, or cancel it and raise _Stopped as soon as stop() is called."""
        task = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._stop_requested.wait())
        try:
            done, _pending = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stopper.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise _Stopped

    def _rooms_to_join(self) -> bool:
        """True when a configured room is not joined and the last attempt is old enough."""
        missing = any(
            self._room_by_channel.get(channel) not in self._joined for channel in self.config.rooms
        )
        now = asyncio.get_running_loop().time()
        return missing and now - self._last_join_attempt >= JOIN_RETRY_SECONDS

    async def _login(self, client: nio.AsyncClient) -> None:
        state = self._state
        assert state is not None
        cfg = self.config
        if state.user_id != cfg.user_id:
            state.user_id, state.device_id, state.access_token = cfg.user_id, None, None
        if cfg.access_token:
            client.restore_login(cfg.user_id, state.device_id or "", cfg.access_token)
            who = await client.whoami()
            if not isinstance(who, nio.WhoamiResponse):
                if who.status_code in ("M_UNKNOWN_TOKEN", "M_FORBIDDEN"):
                    raise _LoginRefused(f"the configured access token was refused: {who.status_code}")
                raise ConnectionError(f"whoami failed: {who}")
            client.device_id = who.device_id or ""
            state.device_id = who.device_id
            log.info("Matrix: using the configured access token (device %s)", who.device_id)
            await self._save()
            return
        if state.access_token and state.device_id:
            client.restore_login(cfg.user_id, state.device_id, state.access_token)
            who = await client.whoami()
            if isinstance(who, nio.WhoamiResponse):
                log.info("Matrix: restored the login of %s (device %s)", cfg.user_id, state.device_id)
                return
            if who.status_code != "M_UNKNOWN_TOKEN":
                raise ConnectionError(f"whoami failed: {who}")
            log.warning("Matrix: the stored access token is no longer valid; logging in again")
            state.access_token = None
            client.access_token = ""
        client.user = cfg.user_id
        client.device_id = state.device_id or ""  # reuse the device when we know it
        reply = await client.login(password=cfg.password, device_name=cfg.device_name)
        if not isinstance(reply, nio.LoginResponse):
            if reply.status_code in ("M_FORBIDDEN", "M_USER_DEACTIVATED", "M_INVALID_PARAM"):
                raise _LoginRefused(f"{reply.status_code} for {cfg.user_id}")
            raise ConnectionError(f"login failed: {reply}")
        state.device_id, state.access_token = reply.device_id, reply.access_token
        log.info("Matrix: logged in as %s (device %s)", reply.user_id, reply.device_id)
        await self._save()

    async def _join_configured_rooms(self, client: nio.AsyncClient) -> None:
        self._last_join_attempt = asyncio.get_running_loop().time()
        for channel, room in self.config.rooms.items():
            room_id = self._room_by_channel.get(channel)
            if room_id is None:
                room_id = await self._resolve(client, room)
                if room_id is None:
                    continue
                self._room_by_channel[channel] = room_id
                self._channel_by_room[room_id] = channel
            if room_id in self._joined:
                continue
            reply = await client.join(room)
            if not isinstance(reply, nio.JoinResponse):
                log.warning("Matrix: cannot join %s (%s) for %s: %s; waiting for an invite",
                            room, room_id, channel, reply)
                continue
            log.info("Matrix: joined %s (%s) as %s", room, room_id, channel)
            self._joined.add(room_id)
            await self._check_encryption(client, room_id)

    async def _resolve(self, client: nio.AsyncClient, room: str) -> str | None:
        if room.startswith("!"):
            return room
        reply = await client.room_resolve_alias(room)
        if isinstance(reply, nio.RoomResolveAliasResponse):
            return reply.room_id
        log.warning("Matrix: cannot resolve room alias %s: %s", room, reply)
        return None

    async def _check_encryption(self, client: nio.AsyncClient, room_id: str) -> None:
        reply = await client.room_get_state_event(room_id, "m.room.encryption")
        if isinstance(reply, nio.RoomGetStateEventResponse) and reply.content.get("algorithm"):
            await self._refuse_encrypted(client, room_id)

    async def _refuse_encrypted(self, client: nio.AsyncClient, room_id: str) -> None:
        if room_id in self._encrypted:
            return
        self._encrypted.add(room_id)
        channel = self._channel_by_room.get(room_id, "a direct chat")
        log.error("Matrix room %s (%s) is encrypted; only unencrypted rooms are supported, "
                  "so the bot ignores it", room_id, channel)
        assert self._state is not None
        if room_id in self._state.encrypted_notified:
            return
        # Sent in clear text on purpose: the bot has no encryption keys.
        reply = await client.room_send(room_id, "m.room.message", {
            "msgtype": "m.notice", "body": self.config.encrypted_room_notice,
        }, tx_id=stable_txn_id("encrypted-notice:" + room_id))
        if isinstance(reply, nio.RoomSendResponse):
            self._state.encrypted_notified.add(room_id)
            await self._save()

    # -- handling a sync -------------------------------------------------------------------

    async def _handle_sync(
        self, client: nio.AsyncClient, reply: nio.SyncResponse, since: str | None
    ) -> None:
        state = self._state
        assert state is not None
        for room_id, invite in reply.rooms.invite.items():
            await self._on_invite(client, room_id, invite.invite_state)
        for room_id in reply.rooms.leave:
            self._joined.discard(room_id)
            state.known_rooms.discard(room_id)
            for mxid, dm_room in list(state.dm_rooms.items()):
                if dm_room == room_id:
                    del state.dm_rooms[mxid]
        for room_id, info in reply.rooms.join.items():
            self._joined.add(room_id)
            if any(isinstance(e, nio.RoomEncryptionEvent)
                   for e in [*info.state, *info.timeline.events]):
                await self._refuse_encrypted(client, room_id)
            first_sync = room_id not in state.known_rooms
            # nio's Timeline.events is untyped; it holds what _get_room_events parsed.
            events: list[nio.Event | nio.BadEventType] = list(info.timeline.events)
            if info.timeline.limited and not first_sync and since and info.timeline.prev_batch:
                events = await self._backfill(client, room_id, info.timeline.prev_batch, since) + events
            log.debug("Matrix: %s: %d timeline events (first sync: %s, limited: %s)",
                      room_id, len(events), first_sync, info.timeline.limited)
            for event in self._new_events(events, first_sync):
                await self._deliver(client, room_id, event)
            state.known_rooms.add(room_id)

    def _new_events(
        self, events: list[nio.Event | nio.BadEventType], first_sync: bool
    ) -> Iterable[nio.Event]:
        """The events of one room's timeline that may be commands, in order.

        Skips what happened while the bot was not in the room (before its own join in this
        timeline, or between its own leave and re-join), on a room's first sync anything
        older than the bot's first start, and events nio could not parse.
        """
        assert self._state is not None
        me = self.config.user_id
        own_joins = [
            i for i, e in enumerate(events)
            if isinstance(e, nio.RoomMemberEvent) and e.state_key == me and e.membership == "join"
        ]
        present = not (first_sync and own_joins)
        for event in events:
            # A BadEvent or UnknownBadEvent is never a command, and an UnknownBadEvent (no
            # event id, sender or timestamp) has no server_timestamp to compare below.
            if not isinstance(event, nio.Event):
                continue
            if isinstance(event, nio.RoomMemberEvent) and event.state_key == me:
                present = event.membership == "join"
                continue
            if not present:
                continue
            if first_sync and event.server_timestamp < self._state.first_start_ms:
                continue
            yield event

    async def _backfill(
        self, client: nio.AsyncClient, room_id: str, prev_batch: str, since: str
    ) -> list[nio.Event | nio.BadEventType]:
        """Events between our last sync and a limited timeline, oldest first (bounded)."""
        found: list[nio.Event | nio.BadEventType] = []
        start: str | None = prev_batch
        while start and len(found) < BACKFILL_MAX_EVENTS:
            reply = await client.room_messages(room_id, start=start, end=since, limit=100)
            if not isinstance(reply, nio.RoomMessagesResponse) or not reply.chunk:
                break
            found.extend(reply.chunk)
            if reply.end == start:
                break
            start = reply.end
        if len(found) >= BACKFILL_MAX_EVENTS:
            log.warning("Matrix: more than %d missed events in %s; older ones are skipped",
                        BACKFILL_MAX_EVENTS, room_id)
        return list(reversed(found))

    async def _deliver(self, client: nio.AsyncClient, room_id: str, event: nio.Event) -> None:
        state = self._state
        assert state is not None and self._on_message is not None
        if not isinstance(event, nio.RoomMessageText):  # m.notice, emotes, files: not commands
            return
        if event.sender == self.config.user_id or event.event_id in self._seen:
            return
        if room_id in self._encrypted:
            return
        relates = event.source.get("content", {}).get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":  # an edit: the original was handled
            return
        if room_id in self._channel_by_room:
            channel: str | None = self._channel_by_room[room_id]
        elif room_id in state.dm_rooms.values():
            channel = None
        else:
            return
        self._seen.add(event.event_id)
        room = client.rooms.get(room_id)
        nick = (room.user_name(event.sender) if room else None) or event.sender
        text = _strip_reply_fallback(event.body) if "m.in_reply_to" in relates else event.body
        incoming = Incoming(network=self.network, room=channel, account=event.sender,
                            nick=nick, text=text, msgid=event.event_id)
        self._dispatched.append(asyncio.create_task(self._answer(incoming), name=f"matrix-{event.event_id[:24]}"))

    async def _answer(self, incoming: Incoming) -> None:
        """Hand one command on and, once it is answered, record its event id as handled and
        save the sync token as far as every earlier command is answered too."""
        state = self._state
        assert state is not None and self._on_message is not None and incoming.msgid is not None
        try:
            await self._on_message(incoming)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 (one bad command must not stop the transport)
            log.exception("Matrix: handling %s from %s failed", incoming.msgid, incoming.account)
        if len(state.seen_events) == state.seen_events.maxlen:
            self._seen.discard(state.seen_events[0])
        state.seen_events.append(incoming.msgid)
        self._advance()
        try:
            await self._save()
        except OSError:
            log.exception("Matrix: cannot save the sync state (kept in memory; saved again later)")

    def _take_dispatched(self) -> list[asyncio.Task[None]]:
        tasks, self._dispatched = self._dispatched, []
        return tasks

    def _advance(self) -> None:
        """Move the saved token to the newest batch answered whole (see `HandledUpTo`)."""
        token = self._handled.settled()
        if token is not None and self._state is not None:
            self._state.next_batch = token

    async def _on_invite(self, client: nio.AsyncClient, room_id: str, invite_state: list[Any]) -> None:
        if room_id in self._declined_invites:
            return
        me = self.config.user_id
        inviter, is_direct = None, False
        for event in invite_state:
            if isinstance(event, nio.InviteMemberEvent) and event.state_key == me \
                    and event.membership == "invite":
                inviter, is_direct = event.sender, bool(event.content.get("is_direct"))
        if room_id not in self._channel_by_room:
            for channel, room in self.config.rooms.items():  # an alias unresolved so far
                if channel not in self._room_by_channel:
                    resolved = await self._resolve(client, room)
                    if resolved:
                        self._room_by_channel[channel] = resolved
                        self._channel_by_room[resolved] = channel
        if room_id in self._channel_by_room:
            kind = self._channel_by_room[room_id]
        elif is_direct and inviter and self._inviter_allowed(inviter):
            kind = "a direct chat"
        else:
            log.info("Matrix: declining the invite to %s from %s (not a configured room)",
                     room_id, inviter)
            self._declined_invites.add(room_id)
            await client.room_leave(room_id)
            return
        reply = await client.join(room_id)
        if not isinstance(reply, nio.JoinResponse):
            log.warning("Matrix: cannot accept the invite to %s: %s", room_id, reply)
            return
        log.info("Matrix: accepted the invite of %s to %s (%s)", inviter, room_id, kind)
        self._joined.add(room_id)
        if kind == "a direct chat" and inviter:
            assert self._state is not None
            self._state.dm_rooms[inviter] = room_id
            await self._save()
        await self._check_encryption(client, room_id)

    def _inviter_allowed(self, inviter: str) -> bool:
        return any(
            inviter == allowed or (allowed.startswith(":") and inviter.endswith(allowed))
            for allowed in self.config.allowed_inviters
        )

    # -- sending ---------------------------------------------------------------------------

    async def _room_for(self, client: nio.AsyncClient, target: str) -> str:
        if target.startswith("#"):
            if target not in self.config.rooms:
                raise ValueError(f"no Matrix room is configured for {target}")
            room_id = self._room_by_channel.get(target)
            if room_id is None or room_id not in self._joined:
                raise TransportUnavailable(f"the bot is not in the Matrix room for {target} yet")
            return room_id
        mxid = target[1:] if target.startswith("@") else ""
        if not is_mxid(mxid):
            raise ValueError(f"not a Matrix user: {target!r}")
        async with self._dm_locks.setdefault(mxid, asyncio.Lock()):
            assert self._state is not None
            room_id = self._state.dm_rooms.get(mxid)
            if room_id is not None:
                return room_id
            try:
                reply = await client.room_create(
                    is_direct=True, invite=[mxid], preset=nio.RoomPreset.trusted_private_chat,
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                raise TransportUnavailable(f"cannot open a direct chat with {mxid}: {error!r}") from error
            if not isinstance(reply, nio.RoomCreateResponse):
                raise TransportUnavailable(f"cannot open a direct chat with {mxid}: {reply}")
            log.info("Matrix: opened direct chat %s with %s", reply.room_id, mxid)
            self._state.dm_rooms[mxid] = reply.room_id
            self._joined.add(reply.room_id)
            await self._save()
            return reply.room_id

    async def _save(self) -> None:
        assert self._state is not None
        async with self._save_lock:
            snapshot = self._state.to_json()  # taken on the loop, written in a thread
            if self._shared is not None:
                await self._save_shared(shared_values(self._state, self.config.user_id))
            await asyncio.to_thread(self._store.save, snapshot)

    async def _save_shared(self, values: Mapping[str, str]) -> None:
        """Write what changed to the database; a failure is logged and written at the next save."""
        assert self._shared is not None
        changed = {key: value for key, value in values.items() if self._shared_saved.get(key) != value}
        if not changed:
            return
        try:
            await asyncio.to_thread(self._shared.save, changed)
        except Fenced:
            # The position in the database is the new leader's from now on: this one is dropped.
            log.info("Matrix: this instance no longer leads: its sync position is not written to the database")
            if self._on_fenced is not None and not self._stop_requested.is_set():
                self._on_fenced()
            return
        except Exception as error:  # noqa: BLE001 (the database is down: keep syncing, save later)
            log.warning("Matrix: cannot save the sync position in the database (%s: %s); "
                        "kept in memory, saved again at the next batch",
                        type(error).__name__, str(error).splitlines()[0] if str(error) else "")
            return
        self._shared_saved.update(changed)


def _http_status(reply: nio.ErrorResponse) -> int | None:
    transport = getattr(reply, "transport_response", None)
    return getattr(transport, "status", None)
