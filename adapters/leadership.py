"""[ha]: several instances on one database, one of them leading (one voice).

The lease is a row of `leader_lease` (models/orm.py LeaderLease): who holds it, until when, and
an epoch that goes up by one at each new term. Its times are the DATABASE's clock (seconds since
1970), so instances never compare their own machines' clocks. Every statement is one conditional
UPDATE: the database decides who wins, whatever the instances believe.

- `Lease`: the SQL (acquire, renew, release, read). No session advisory locks: a killed backend
  releases them while the old process still believes it holds them; a row with an expiry does not.
- `Leadership`: the loop. A standby tries to take the lease every lease_seconds/3, and right
  after the expiry it last read (so a dead leader is replaced lease_seconds after its last renew,
  not up to a tick later); the leader renews it every lease_seconds/3. The leader keeps a LOCAL deadline: the time it sent the last renew that
  succeeded, plus lease_seconds, minus a margin. The database's expiry can only come later than
  that (the renew reached the database after it was sent), so the leader stops before anyone else
  may start. When the deadline passes without a renew (the database is down, the process was
  paused, a query hung), it steps down at once, whatever the database says later.
- `Fence`: what every sender checks right before it acts on the outside (`check()`), and the
  epoch it marks its outbox row sent under (adapters/outbox.py: refused unless that epoch is still
  the lease's). `Fence.always()` is the fence without [ha]: always open, no epoch, no query.

The local clock is CLOCK_BOOTTIME where there is one: unlike CLOCK_MONOTONIC it also counts the
time a suspended machine slept, so a leader whose machine wakes up knows its lease is gone.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, select, text

from models.orm import LeaderLease

log = logging.getLogger("downtimebot.leadership")

LEASE = "leader"  # the row's name: one lease for the whole bot
EXPIRY_SLACK = 0.05  # seconds: a standby tries this long after the lease it read should have ended


def local_clock() -> float:
    """Seconds on a clock that never goes back and counts a suspended machine's sleep."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


@dataclass(frozen=True)
class Holding:
    """The lease as the database has it: who holds it, the epoch, and seconds until it expires
    (negative: expired), on the database's clock."""

    holder: str
    epoch: int
    expires_in: float

    @property
    def live(self) -> bool:
        return bool(self.holder) and self.expires_in > 0


class Lease:
    """The lease row's SQL, on any engine (SQLite or PostgreSQL).

    Each method is one short transaction; none holds a lock or a connection between calls.
    """

    def __init__(self, engine: Engine, name: str = LEASE):
        self.engine = engine
        self.name = name
        if engine.dialect.name == "postgresql":
            # clock_timestamp(), not now(): now() is the transaction's start.
            self.now = "CAST(extract(epoch from clock_timestamp()) AS double precision)"
        elif engine.dialect.name == "sqlite":
            self.now = "((julianday('now') - 2440587.5) * 86400.0)"
        else:
            raise ValueError(f"[ha] needs SQLite or PostgreSQL, not {engine.dialect.name}")
        now = self.now
        # Both databases read INSERT … ON CONFLICT DO NOTHING (SQLite since 3.24) and RETURNING (3.35).
        self._create = text(
            "INSERT INTO leader_lease (name, holder, epoch, acquired_at, renewed_at, expires_at) "
            "VALUES (:name, '', 0, 0, 0, 0) ON CONFLICT (name) DO NOTHING"
        )
        # Free (expired), or still held by this process's own term: a new term, epoch + 1.
        self._acquire = text(
            f"UPDATE leader_lease SET holder = :me, epoch = epoch + 1, acquired_at = {now}, "
            f"renewed_at = {now}, expires_at = {now} + :seconds "
            f"WHERE name = :name AND (expires_at <= {now} OR (holder = :me AND epoch = :mine)) "
            "RETURNING epoch"
        )
        # Only while the holder and the epoch are still this term's (even past the expiry: nobody
        # took it meanwhile, or the epoch would have changed).
        self._renew = text(
            f"UPDATE leader_lease SET renewed_at = {now}, expires_at = {now} + :seconds "
            "WHERE name = :name AND holder = :me AND epoch = :epoch"
        )
        self._release = text(
            f"UPDATE leader_lease SET expires_at = {now} "
            "WHERE name = :name AND holder = :me AND epoch = :epoch"
        )
        self._read = text(f"SELECT holder, epoch, expires_at - {now} FROM leader_lease WHERE name = :name")

    def acquire(self, instance: str, lease_seconds: float, *, epoch: int | None = None) -> int | None:
        """Take the lease if it is free or expired, or if `instance` holds it under `epoch`
        (this process's last term): a new term, whose epoch is returned. None: another holds it."""
        with self.engine.begin() as connection:
            connection.execute(self._create, {"name": self.name})
            found = connection.execute(
                self._acquire,
                {"name": self.name, "me": instance, "mine": -1 if epoch is None else epoch, "seconds": lease_seconds},
            ).scalar()
        return None if found is None else int(found)

    def renew(self, instance: str, epoch: int, lease_seconds: float) -> bool:
        """Extend this term's lease by `lease_seconds` from now; False when it is no longer this term's."""
        with self.engine.begin() as connection:
            result = connection.execute(
                self._renew, {"name": self.name, "me": instance, "epoch": epoch, "seconds": lease_seconds}
            )
            return bool(result.rowcount)

    def release(self, instance: str, epoch: int) -> bool:
        """Expire this term's lease now (a clean stop): a standby takes it at its next try."""
        with self.engine.begin() as connection:
            result = connection.execute(self._release, {"name": self.name, "me": instance, "epoch": epoch})
            return bool(result.rowcount)

    def read(self) -> Holding | None:
        """The lease as it stands (None: nobody ever took it)."""
        with self.engine.connect() as connection:
            row = connection.execute(self._read, {"name": self.name}).first()
        return None if row is None else Holding(str(row[0]), int(row[1]), float(row[2]))


def holds(instance: str, epoch: int, name: str = LEASE) -> ColumnElement[bool]:
    """A WHERE clause: `instance` still holds the lease under `epoch` (read in the statement's
    own transaction). On PostgreSQL the lease row is read FOR SHARE, so a standby's acquire waits
    until this transaction is over, and this one, if it comes second, sees the new epoch: a
    delivery is marked sent under a term either before the next term begins, or not at all."""
    return (
        select(LeaderLease.name)
        .where(LeaderLease.name == name, LeaderLease.holder == instance, LeaderLease.epoch == epoch)
        .with_for_update(read=True)
        .exists()
    )


class Fence:
    """What a sender checks right before it acts outside: is this instance still the leader?

    `check()` is local (no query): the instance's role and its local deadline. `epoch` is the term
    to mark deliveries under. `lost(reason)` is how a sender tells the leadership that the database
    refused its epoch (the instance steps down at once)."""

    def __init__(
        self,
        instance: str = "",
        *,
        leadership: Leadership | None = None,
    ):
        self.instance = instance
        self._leadership = leadership

    @classmethod
    def always(cls) -> Fence:
        """Without [ha]: the only instance; always open, no epoch (today's behaviour)."""
        return cls()

    @property
    def enabled(self) -> bool:
        return self._leadership is not None

    @property
    def epoch(self) -> int | None:
        return None if self._leadership is None else self._leadership.epoch

    def check(self) -> bool:
        """True when this instance may act outside now."""
        return self._leadership is None or self._leadership.leading_now()

    def lost(self, reason: str) -> None:
        """The database refused this instance's epoch: step down now."""
        if self._leadership is not None:
            self._leadership.lose(reason)


Callback = Callable[[], Awaitable[None]]


class Leadership:
    """The lease loop of one instance; `on_elected(epoch)` and `on_deposed()` run in order, one at
    a time, in a task of their own (the loop keeps renewing while they run)."""

    def __init__(
        self,
        lease: Lease,
        instance: str,
        lease_seconds: float,
        *,
        on_elected: Callable[[int], Awaitable[None]],
        on_deposed: Callback,
        clock: Callable[[], float] = local_clock,
        margin: float | None = None,
        query_timeout: float | None = None,
    ):
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.lease = lease
        self.instance = instance
        self.lease_seconds = lease_seconds
        self.every = lease_seconds / 3
        # Stop this much before the lease's end: room for the clocks' rates to differ and for a
        # line already on its way.
        self.margin = lease_seconds / 5 if margin is None else margin
        self.query_timeout = self.every if query_timeout is None else query_timeout
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.clock = clock
        self.fence = Fence(instance, leadership=self)
        self.is_leader = False
        self.epoch: int | None = None
        self.leader: str | None = None  # who leads, as last read (this instance when it leads)
        self.deadline = 0.0  # local clock; leading only before it
        self._last_epoch: int | None = None
        self._wake = asyncio.Event()
        self._changes: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._roles: asyncio.Task[None] | None = None
        self._query: asyncio.Future[object] | None = None  # a lease query still running in its thread
        self._stopping = False
        self._announced_standby: str | None = None
        self._expires_in: float | None = None  # a standby: when the leader's lease ends, as last read
        self.terms = 0  # how many times this instance was elected

    # ----- what the senders ask ------------------------------------------------------------------

    def leading_now(self) -> bool:
        return self.is_leader and self.clock() < self.deadline

    def lose(self, reason: str) -> None:
        if self.is_leader:
            self._step_down(reason)
            self._wake.set()

    @property
    def role(self) -> str:
        return "leader" if self.leading_now() else "standby"

    # ----- the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="leadership")
        self._roles = asyncio.create_task(self._apply_roles(), name="leadership-roles")

    async def stop(self, *, release: bool = True) -> None:
        """Stop the loop; step down (on_deposed runs) and, when `release`, expire the lease now."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        epoch = self.epoch
        if self.is_leader:
            self._step_down("stopping", log_it=False)
        await self._settled()
        if self._roles is not None:
            self._roles.cancel()
            await asyncio.gather(self._roles, return_exceptions=True)
            self._roles = None
        if release and epoch is not None:
            try:
                released = await asyncio.wait_for(
                    asyncio.to_thread(self.lease.release, self.instance, epoch), self.query_timeout
                )
            except Exception as err:  # it expires by itself in lease_seconds
                log.warning("instance %s could not release the lease (%s): it expires by itself", self.instance, err)
            else:
                if released:
                    log.info("instance %s released the lead (epoch %d)", self.instance, epoch)

    async def _settled(self) -> None:
        """Wait until every role change queued so far has run."""
        await self._changes.join()

    async def run(self) -> None:
        while not self._stopping:
            if self.is_leader:
                await self._renew()
            else:
                await self._try_acquire()
            wait = self.every
            if self.is_leader:
                # Wake at the deadline at the latest: stepping down must not wait for a tick.
                wait = max(0.0, min(wait, self.deadline - self.clock()))
            elif self._expires_in is not None:
                # A standby tries again right after the lease it read ends, not a tick later: a dead
                # leader is replaced lease_seconds after its last renew (not up to 4/3 of it).
                wait = max(0.0, min(wait, self._expires_in + EXPIRY_SLACK))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            if self.is_leader and self.clock() >= self.deadline:
                self._step_down(f"could not renew the lease within {self.lease_seconds:g} s")

    async def _query_lease(self, call: Callable[[], object], timeout: float) -> object:
        """A lease query in a thread, for at most `timeout` seconds (it may go on in its thread;
        no new one starts before it is over)."""
        if self._query is not None and not self._query.done():
            raise TimeoutError("the previous lease query has not answered yet")
        self._query = asyncio.ensure_future(asyncio.to_thread(call))
        return await asyncio.wait_for(asyncio.shield(self._query), max(timeout, 0.001))

    async def _try_acquire(self) -> None:
        self._expires_in = None
        sent = self.clock()
        last = self._last_epoch
        try:
            epoch = await self._query_lease(
                lambda: self.lease.acquire(self.instance, self.lease_seconds, epoch=last), self.query_timeout
            )
        except Exception as err:  # a database error: try again at the next tick
            log.warning("instance %s could not read the lease: %s", self.instance, _why(err))
            return
        if epoch is None:
            await self._note_leader()
            return
        assert isinstance(epoch, int)
        self.deadline = sent + self.lease_seconds - self.margin
        if self.clock() >= self.deadline:  # the answer came too late to lead on it
            return
        self.is_leader, self.epoch, self._last_epoch, self.leader = True, epoch, epoch, self.instance
        self._announced_standby = None
        self.terms += 1
        log.info("instance %s leads (epoch %d)", self.instance, epoch)
        self._changes.put_nowait(("elected", epoch))

    async def _renew(self) -> None:
        epoch = self.epoch
        assert epoch is not None
        sent = self.clock()
        try:
            renewed = await self._query_lease(
                lambda: self.lease.renew(self.instance, epoch, self.lease_seconds), self.deadline - sent
            )
        except Exception as err:  # a failed renew; the deadline decides
            log.warning("instance %s could not renew the lease: %s", self.instance, _why(err))
            return
        if not self.is_leader or self.epoch != epoch:
            return
        if renewed:
            self.deadline = max(self.deadline, sent + self.lease_seconds - self.margin)
        else:
            holding = await self._holding()
            by = f" by {holding.holder} (epoch {holding.epoch})" if holding and holding.holder != self.instance else ""
            self._step_down(f"the lease was taken{by}")

    async def _holding(self) -> Holding | None:
        try:
            found = await self._query_lease(self.lease.read, self.query_timeout)
        except Exception:
            return None
        return found if isinstance(found, Holding) else None

    async def _note_leader(self) -> None:
        holding = await self._holding()
        leader = holding.holder if holding is not None and holding.live else None
        self.leader = leader
        self._expires_in = holding.expires_in if holding is not None and holding.live else None
        shown = leader or "none"
        if self._announced_standby != shown:
            self._announced_standby = shown
            log.info("instance %s stands by (leader: %s)", self.instance, shown)

    def _step_down(self, reason: str, *, log_it: bool = True) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        self.epoch = None
        self.deadline = 0.0
        self.leader = None
        if log_it:
            log.warning("instance %s lost the lead: %s", self.instance, reason)
        self._changes.put_nowait(("deposed", 0))

    async def _apply_roles(self) -> None:
        while True:
            change, epoch = await self._changes.get()
            try:
                if change == "elected":
                    if self.is_leader and self.epoch == epoch:  # else lost already: a "deposed" follows
                        await self.on_elected(epoch)
                else:
                    await self.on_deposed()
            except Exception:
                log.exception("instance %s: the change of role (%s) failed", self.instance, change)
                if change == "elected" and self.is_leader:
                    self._step_down("could not start leading")
            finally:
                self._changes.task_done()


def _why(err: BaseException) -> str:
    """A database error in one line, never a traceback (and never the URL's password: the
    driver's messages do not hold it; logsafe masks it anyway)."""
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return str(err) or "no answer in time"
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0] if first else ''}"[:300]
