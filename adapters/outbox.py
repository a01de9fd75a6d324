"""Delivering the outbox: one worker per chat network and one per other kind (mail, bugzilla, trees).

A row is read, delivered, then marked sent in its own short transaction, so
no transaction is held across an await. A transient failure leaves the row
pending and the worker waits (with backoff) until it is woken or the wait is
over; a permanent failure marks it failed and says why.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

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
    ):
        self.sessions = sessions
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

    def _finish(self, row_id: int, *, status: str, error: str = "", attempt: bool = True) -> None:
        with self.sessions() as session, session.begin():
            row = session.get(OutboxMessage, row_id)
            if row is None:
                return
            row.attempts += int(attempt)
            row.last_error = error[:500]
            row.status = status
            if status == "sent":
                row.sent_at = self.clock.now()

    async def deliver_pending(self) -> bool:
        """Deliver what is pending now. False when a transient failure stopped the run."""
        async with self._delivering:
            return await self._deliver_pending()

    async def _deliver_pending(self) -> bool:
        last = 0
        while rows := self._pending(last):
            for row in rows:
                try:
                    await self.deliver(row)
                except Retry as err:
                    log.info("outbox %s: row %s (%s) not delivered yet: %s", self.name, row.id, row.key, err)
                    self._finish(row.id, status="pending", error=str(err))
                    self._observe("retry")
                    return False
                except Permanent as err:
                    log.error("outbox %s: row %s (%s) failed for good: %s", self.name, row.id, row.key, err)
                    self._finish(row.id, status="failed", error=str(err))
                    self._observe("failed")
                else:
                    self._finish(row.id, status="sent")
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
            except Exception:  # a bug must not stop delivery for good
                log.exception("outbox %s: delivery loop error", self.name)
                ok = False
            if ok:
                self._delay = self.backoff_min
                self.idle.set()
                timeout = None
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

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()
