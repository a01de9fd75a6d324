"""Delivering the outbox: one worker per chat network and one per other kind (mail, bugzilla, trees).

A row is read, delivered, then marked sent in its own short transaction, so
no transaction is held across an await. A transient failure leaves the row
pending and the worker waits (with backoff) until it is woken or the wait is
over; a permanent failure marks it failed and says why.

[ha] (adapters/leadership.py): the worker checks its `Fence` right before each delivery (not the
leader: it stops, the row stays pending), and marks the row in a statement that also checks the
instance's epoch is still the lease's. When the database refuses it, the instance has lost the
lead: the row stays pending for the new leader (a chat line already written may go out once more:
the one possible repeat), the worker stops and the instance steps down.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from adapters.leadership import Fence, holds
from models.orm import OutboxMessage
from models.ports import Clock, DeliveryObserver, Outgoing, Transport, TransportUnavailable

log = logging.getLogger(__name__)


class Retry(Exception):
    """Delivery failed for now (network down, server busy); keep the row and try later."""


class Permanent(Exception):
    """Delivery can never succeed as it is; the row is marked failed with this reason."""


Deliver = Callable[[OutboxMessage], Awaitable[None]]


def chat_delivery(transport: Transport) -> Deliver:
    """The deliver function of a chat network's worker: the row as an `Outgoing`."""

    async def deliver(row: OutboxMessage) -> None:
        try:
            await transport.send(
                Outgoing(row.target, row.body, mentions=tuple(row.payload.get("mentions", ())), key=row.key)
            )
        except TransportUnavailable as err:
            raise Retry(str(err) or "not connected") from err
        except ValueError as err:  # a target this network can never reach (Undeliverable)
            raise Permanent(str(err)) from err

    return deliver


class OutboxWorker:
    """Delivers the pending rows of one kind (and, for chat, one network) in order."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        kind: str,
        deliver: Deliver,
        network: str = "",
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        on_delivery: DeliveryObserver | None = None,
        fence: Fence | None = None,
        poll_every: float | None = None,
    ):
        self.sessions = sessions
        self.fence = fence or Fence.always()
        # Idle, look again this often (None: only when poked). [ha]: a row may come from another
        # instance (a line it answered just before it stepped down), which cannot poke this one.
        self.poll_every = poll_every
        self.clock = clock
        self.kind = kind
        self.network = network
        self.deliver = deliver
        # Told of each delivery: (network, or kind for mail, bugzilla and trees; ok|retry|failed).
        self.on_delivery = on_delivery
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._delay = backoff_min
        self._stopping = False
        # run() and a caller such as Bot.drain() must never deliver the same row side by side.
        self._delivering = asyncio.Lock()

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.network}" if self.network else self.kind

    def _pending(self, after_id: int) -> list[OutboxMessage]:
        with self.sessions() as session:
            query = select(OutboxMessage).where(
                OutboxMessage.status == "pending", OutboxMessage.kind == self.kind, OutboxMessage.id > after_id
            )
            if self.network:
                query = query.where(OutboxMessage.network == self.network)
            return list(session.scalars(query.order_by(OutboxMessage.id).limit(100)))

    def _finish(self, row_id: int, *, status: str, error: str = "", attempt: bool = True) -> bool:
        """Mark the row; False when [ha] refused it (this instance's epoch is no longer the lease's)."""
        values: dict[str, object] = {
            "attempts": OutboxMessage.attempts + int(attempt), "last_error": error[:500], "status": status,
        }
        if status == "sent":
            values["sent_at"] = self.clock.now()
        statement = update(OutboxMessage).where(OutboxMessage.id == row_id)
        epoch = self.fence.epoch
        if epoch is not None:
            if status == "sent":
                values["sent_epoch"] = epoch
            statement = statement.where(OutboxMessage.status == "pending", holds(self.fence.instance, epoch))
        with self.sessions() as session, session.begin():
            marked = session.connection().execute(statement.values(values))
            if epoch is None or marked.rowcount:
                return True
            # Nothing marked: the row was finished already (a tree job found done), or the lease moved on.
            return bool(session.scalar(select(holds(self.fence.instance, epoch))))

    def _claim(self, row: OutboxMessage) -> bool | None:
        """[ha], before a change in another system (mail, Bugzilla, trees): the database, not only
        the local fence, says this instance still leads, and the row records the epoch that starts
        it. A row that an earlier leader started (it may have died half-way) is delivered as a
        retry, so the job looks before it leaps (Bugzilla's comment markers, Treestatus's stack).
        True: go on; False: refused (the lead is lost); None: the row is finished already."""
        epoch = self.fence.epoch
        assert epoch is not None
        statement = (
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id, OutboxMessage.status == "pending", holds(self.fence.instance, epoch))
            .values(sent_epoch=epoch)
        )
        with self.sessions() as session, session.begin():
            if not session.connection().execute(statement).rowcount:
                return None if session.scalar(select(holds(self.fence.instance, epoch))) else False
        if row.sent_epoch is not None and row.sent_epoch != epoch:
            log.info("outbox %s: row %s (%s) was started under epoch %s: delivered as a retry",
                     self.name, row.id, row.key, row.sent_epoch)
            row.attempts = max(row.attempts, 1)
        return True

    def _refused(self, row: OutboxMessage, status: str) -> None:
        """The database refused to mark a row under this instance's epoch: it has lost the lead."""
        what = {"sent": "delivered", "claimed": "about to be delivered"}.get(status, "tried")
        repeat = " (this line may be said twice)" if status == "sent" and self.kind == "chat" else ""
        log.warning(
            "instance %s lost the lead: outbox %s row %s (%s) was %s, but epoch %s is no longer the lease's; "
            "the new leader delivers it%s",
            self.fence.instance, self.name, row.id, row.key, what, self.fence.epoch, repeat,
        )
        self.fence.lost(f"the database refused epoch {self.fence.epoch} for outbox row {row.id}")
        self._stopping = True

    def _not_leader(self) -> None:
        log.info("outbox %s: instance %s does not lead: stopped, what is pending stays pending",
                 self.name, self.fence.instance)
        self._stopping = True

    async def deliver_pending(self) -> bool:
        """Deliver what is pending now. False when a transient failure stopped the run."""
        async with self._delivering:
            return await self._deliver_pending()

    async def _deliver_pending(self) -> bool:
        last = 0
        while rows := self._pending(last):
            for row in rows:
                if not self.fence.check():
                    self._not_leader()
                    return False
                if self.fence.epoch is not None and self.kind != "chat":
                    claimed = self._claim(row)
                    if claimed is None:
                        last = row.id
                        continue
                    if not claimed:
                        self._refused(row, "claimed")
                        return False
                try:
                    await self.deliver(row)
                except Retry as err:
                    log.info("outbox %s: row %s (%s) not delivered yet: %s", self.name, row.id, row.key, err)
                    if not self._finish(row.id, status="pending", error=str(err)):
                        self._refused(row, "pending")
                    self._observe("retry")
                    return False
                except Permanent as err:
                    log.error("outbox %s: row %s (%s) failed for good: %s", self.name, row.id, row.key, err)
                    if not self._finish(row.id, status="failed", error=str(err)):
                        self._refused(row, "failed")
                        return False
                    self._observe("failed")
                else:
                    if not self._finish(row.id, status="sent"):
                        self._refused(row, "sent")
                        return False
                    self._observe("ok")
                last = row.id
        return True

    def _observe(self, result: str) -> None:
        if self.on_delivery is not None:
            self.on_delivery(self.network or self.kind, result)

    async def run(self) -> None:
        while not self._stopping:
            self.idle.clear()
            try:
                ok = await self.deliver_pending()
            except OperationalError as err:  # the database is gone for now (failover drills): one line, retried
                first = str(err.orig or err).strip().splitlines()
                log.warning("outbox %s: the database did not answer, trying again: %s",
                            self.name, first[0][:300] if first else type(err).__name__)
                ok = False
            except Exception:  # a bug must not stop delivery for good
                log.exception("outbox %s: delivery loop error", self.name)
                ok = False
            if ok:
                self._delay = self.backoff_min
                self.idle.set()
                timeout = self.poll_every
            else:
                timeout = self._delay * random.uniform(0.8, 1.2)
                self._delay = min(self._delay * 2, self.backoff_max)
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    def poke(self) -> None:
        self.wake.set()

    def resume(self) -> None:
        """Before `run` starts again (a new term of [ha] leadership)."""
        self._stopping = False
        self._delay = self.backoff_min
        self.wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()
