"""Delivering tree changes (outbox rows of kind "trees") for the treestatus and advisory backends.

The core queues ``{"op": "close", "trees", "reason", "tags", "change"}`` when a downtime starts
and ``{"op": "restore", "downtime", "change"}`` when it ends or is cancelled, and keeps a local
`TreeChange` row (``change``) that stands for the change made outside.

- treestatus: the change is made through `TreestatusClient` (in a thread: it is blocking and
  retries with backoff). The close records Treestatus's stack id on the TreeChange and what each
  tree was before; the restore undoes that stack entry (leaving alone what was changed since)
  and tells CiDuty in the requests channel what was restored and what was left alone.
  `TreestatusUnavailable` → `Retry` (the row stays pending: nothing lost); any other
  `TreestatusError` → `Permanent`, and CiDuty is told why and what to do by hand.
- advisory: nothing is changed by the bot. It posts the exact change to make to the sheriffs
  and CiDuty in the announce channel; ``!trees confirm <change>`` records who made it.

Nothing is done twice: client.close looks before it leaps (a lost answer does not close twice),
a TreeChange already active/restored is not changed again, and every chat note has an outbox
key derived from the job's key.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy.orm import Session, sessionmaker

from adapters.outbox import Permanent, Retry
from models.lifecycle import DomainError
from models.orm import AuditEvent, Downtime, OutboxMessage, TreeChange, TreeChangeItem
from models.outbox import Outbox
from models.ports import Clock, TreestatusError, TreestatusUnavailable, TreeService, TreeState
from models.service import Settings

log = logging.getLogger(__name__)


class TreeJobs:
    """The deliver function of the "trees" OutboxWorker, and the reader behind ``!trees``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: Settings,
        render: Callable[..., str],
        *,
        client: TreeService | None = None,
        reader: TreeService | None = None,
        on_queued: Callable[[], None] = lambda: None,
        account: str = "downtimebot",
    ):
        if settings.tree_backend == "treestatus" and client is None:
            raise ValueError("the treestatus backend needs a Treestatus client")
        self.sessions = sessions
        self.clock = clock
        self.settings = settings
        self.render = render
        self.client = client
        self.reader = reader or client
        self.on_queued = on_queued
        self.account = account
        self._lock = asyncio.Lock()

    # ----- !trees ------------------------------------------------------------------------------

    async def read_trees(self) -> Mapping[str, TreeState]:
        """The trees as Treestatus shows them now (GET /trees, in a thread)."""
        if self.reader is None:
            raise DomainError("no Treestatus is configured to read the trees from")
        try:
            return await asyncio.to_thread(self.reader.trees)
        except TreestatusError as err:
            raise DomainError(f"Treestatus cannot be read now: {err}") from err

    # ----- delivery ----------------------------------------------------------------------------

    async def deliver(self, row: OutboxMessage) -> None:
        op = row.payload.get("op")
        if op not in ("close", "restore"):
            raise Permanent(f"unknown tree job {op!r}")
        # One tree job at a time, and never one already done: two deliveries of the same row
        # can overlap (Bot.drain runs deliver_pending while the worker's own loop does).
        async with self._lock:
            with self.sessions() as session:
                current = session.get(OutboxMessage, row.id)
                if current is not None and current.status != "pending":
                    log.info("tree job %s is %s already", row.key, current.status)
                    return
            if self.settings.tree_backend == "advisory":
                self._advise(row, op)
            elif op == "close":
                await self._close(row)
            else:
                await self._restore(row)

    async def _close(self, row: OutboxMessage) -> None:
        p = row.payload
        with self.sessions() as session:
            change = self._change(session, row)
            if change is not None and change.state != "pending":
                log.info("tree job %s: tree change %s is %s already", row.key, change.id, change.state)
                return
        assert self.client is not None
        try:
            stack_id = await asyncio.to_thread(self.client.close, list(p["trees"]), p["reason"], list(p["tags"]))
            entry = next((e for e in await asyncio.to_thread(self.client.stack) if e["id"] == stack_id), None)
        except TreestatusUnavailable as err:
            raise Retry(str(err)) from err
        except TreestatusError as err:
            self._failed(row, "close", str(err))
            raise Permanent(str(err)) from err
        before = {item["tree"]: item["last_state"] for item in (entry or {}).get("trees", [])}
        with self.sessions() as session, session.begin():
            change = self._change(session, row, create=True)
            assert change is not None
            change.remote_id = stack_id
            change.state = "active"
            for item in change.items:
                state = before.get(item.tree)
                if state is not None:
                    item.last_status = state["status"]
                    item.last_reason = state.get("reason") or ""
                    item.last_tags = ",".join(state.get("tags") or ())
            self._audit(session, row, "trees closed", f"Treestatus change {stack_id}: {', '.join(p['trees'])} closed")
            self._say(
                session, f"{row.key}:done", self.settings.requests_channel,
                self.render("trees_closed_chat.txt", change=change, downtime=row.downtime_id, stack_id=stack_id),
            )
        self.on_queued()

    async def _restore(self, row: OutboxMessage) -> None:
        with self.sessions() as session:
            change = self._change(session, row)
            state = change.state if change is not None else None
            remote_id = change.remote_id if change is not None else None
        if state in ("restored", "discarded"):
            log.info("tree job %s: nothing to do, the change is %s", row.key, state)
            return
        if change is None or remote_id is None:
            # The close never reached Treestatus (it failed for good, and CiDuty was told).
            with self.sessions() as session, session.begin():
                self._say(session, f"{row.key}:done", self.settings.requests_channel,
                          self.render("trees_restored_chat.txt", downtime=row.downtime_id, report=None, change=None))
            self.on_queued()
            return
        assert self.client is not None
        try:
            report = await asyncio.to_thread(self.client.restore, remote_id)
        except TreestatusUnavailable as err:
            raise Retry(str(err)) from err
        except TreestatusError as err:
            self._failed(row, "restore", str(err))
            raise Permanent(str(err)) from err
        with self.sessions() as session, session.begin():
            change = self._change(session, row)
            assert change is not None
            change.state = "restored"
            self._audit(
                session, row, "trees restored",
                f"Treestatus change {remote_id}: restored {', '.join(report.restored) or 'nothing'}"
                + (f"; left alone {', '.join(report.changed)}" if report.changed else "")
                + (f"; waiting for {', '.join(report.waiting)}" if report.waiting else ""),
            )
            self._say(session, f"{row.key}:done", self.settings.requests_channel,
                      self.render("trees_restored_chat.txt", downtime=row.downtime_id, report=report, change=change))
        self.on_queued()

    def _advise(self, row: OutboxMessage, op: str) -> None:
        with self.sessions() as session, session.begin():
            change = self._change(session, row, create=op == "close")
            if change is None:
                raise Permanent(f"downtime #{row.downtime_id} has no tree change to restore")
            if op == "restore":
                was = change.state
                if was in ("restored", "discarded"):
                    return
                change.state = "restoring"
                text = self.render("trees_advice_restore.txt", change=change, downtime=row.downtime_id,
                                   unconfirmed=was == "requested")
            else:
                text = self.render("trees_advice_close.txt", change=change, downtime=row.downtime_id)
            self._audit(session, row, f"trees {op} asked", f"tree change {change.id}: asked the sheriffs")
            self._say(session, f"{row.key}:advice", self.settings.announce_channel, text,
                      mentions=tuple(dict.fromkeys((*self.settings.sheriffs, *self.settings.ciduty))))
        self.on_queued()

    # ----- helpers -----------------------------------------------------------------------------

    def _change(self, session: Session, row: OutboxMessage, *, create: bool = False) -> TreeChange | None:
        """The local row standing for this job's change (made here for a job queued without one)."""
        p = row.payload
        change_id = p.get("change")
        if change_id is None and row.downtime_id is not None:
            downtime = session.get(Downtime, row.downtime_id)
            change_id = downtime.tree_change_id if downtime else None
        change = session.get(TreeChange, change_id) if change_id is not None else None
        if change is None and create:
            advisory = self.settings.tree_backend == "advisory"
            change = TreeChange(
                at=self.clock.now(), who=self.account, status="closed", reason=p["reason"],
                tags=",".join(p["tags"]), downtime_id=row.downtime_id, state="requested" if advisory else "pending",
            )
            for name in p["trees"]:
                change.items.append(TreeChangeItem(tree=name, last_status="", current_status="closed",
                                                   current_reason=p["reason"], current_tags=",".join(p["tags"])))
            session.add(change)
            session.flush()
            downtime = session.get(Downtime, row.downtime_id) if row.downtime_id is not None else None
            if downtime is not None:
                downtime.tree_change_id = change.id
        return change

    def _failed(self, row: OutboxMessage, op: str, error: str) -> None:
        """Tell CiDuty that a tree change failed for good, and mark the local row."""
        with self.sessions() as session, session.begin():
            change = self._change(session, row)
            if change is not None and op == "close":
                change.state = "failed"
            self._audit(session, row, f"trees {op} failed", error)
            self._say(session, f"{row.key}:failed", self.settings.requests_channel,
                      self.render("trees_failed_chat.txt", op=op, downtime=row.downtime_id, error=error,
                                  trees=row.payload.get("trees") or (
                                      [i.tree for i in change.items] if change is not None else [])))
        self.on_queued()

    def _say(self, session: Session, key: str, channel: str, text: str, mentions: Sequence[str] | None = None) -> None:
        outbox = Outbox(session, now=self.clock.now(), networks=self.settings.networks)
        outbox.chat(key, channel, text, mentions=self.settings.ciduty if mentions is None else mentions,
                    downtime_id=None)
        outbox.write()

    def _audit(self, session: Session, row: OutboxMessage, action: str, detail: str) -> None:
        session.add(AuditEvent(downtime_id=row.downtime_id, at=self.clock.now(), account=self.account,
                               network="bot", action=action[:40], detail=detail))


