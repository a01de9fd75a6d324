"""Delivering tree changes (outbox rows of kind "trees") for the treestatus and advisory backends.

The reactions queue a `models.jobs.CloseTrees` when a downtime starts and a `RestoreTrees` when
it ends or is cancelled; the tree use cases keep a local `TreeChange` row (``change``) that
stands for the change made outside.

- treestatus: the change is made through `TreestatusClient` (in a thread: it is blocking and
  retries with backoff). The close records Treestatus's stack id on the TreeChange and what each
  tree was before; the restore undoes that stack entry (leaving alone what was changed since).
  `TreestatusUnavailable` → `Retry` (the row stays pending: nothing lost); any other
  `TreestatusError` → `Permanent`.
- advisory: nothing is changed by the bot; the sheriffs and CiDuty are asked to make the exact
  change, and ``!trees confirm <change>`` records who made it.

What happened is recorded as an event (closed, restored, asked, failed) in the same transaction
as the local row's new state; the reactions tell CiDuty or the sheriffs. Nothing is done twice:
client.close looks before it leaps (a lost answer does not close twice), a TreeChange already
active/restored is not changed again, and every message has an outbox key derived from the job's.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from sqlalchemy.orm import Session, sessionmaker

from adapters.outbox import Permanent, Retry
from models import events, jobs
from models.lifecycle import DomainError
from models.orm import Downtime, OutboxMessage, TreeChange, TreeChangeItem
from models.ports import Clock, RestoreReport, TreestatusError, TreestatusUnavailable, TreeService, TreeState
from models.reactions import Reactions
from models.work import Work, bot_actor

log = logging.getLogger(__name__)


class TreeJobs:
    """The deliver function of the "trees" OutboxWorker, and the reader behind ``!trees``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        reactions: Reactions,
        *,
        client: TreeService | None = None,
        reader: TreeService | None = None,
        on_queued: Callable[[], None] = lambda: None,
        account: str = "downtimebot",
    ):
        self.settings = reactions.settings
        if self.settings.tree_backend == "treestatus" and client is None:
            raise ValueError("the treestatus backend needs a Treestatus client")
        self.sessions = sessions
        self.clock = clock
        self.reactions = reactions
        self.client = client
        self.reader = reader or client
        self.on_queued = on_queued
        self.account = account
        self._lock = asyncio.Lock()

    # ----- !trees ------------------------------------------------------------------------------

    async def read_trees(self) -> Mapping[str, TreeState]:
        """The trees as Treestatus shows them now (GET /trees, in a thread)."""
        if self.reader is None:
            raise DomainError("no_treestatus")
        try:
            return await asyncio.to_thread(self.reader.trees)
        except TreestatusError as err:
            raise DomainError("treestatus_unreadable", error=str(err)) from err

    # ----- delivery ----------------------------------------------------------------------------

    async def deliver(self, row: OutboxMessage) -> None:
        try:
            job = jobs.load(row.payload)
        except (jobs.JobError, KeyError, TypeError) as err:
            raise Permanent(f"not a tree job this bot can do: {err}") from err
        if not isinstance(job, jobs.CloseTrees | jobs.RestoreTrees):
            raise Permanent(f"not a tree job: {job.type}")
        # One tree job at a time, and never one already done: two deliveries of the same row
        # can overlap (Bot.drain runs deliver_pending while the worker's own loop does).
        async with self._lock:
            with self.sessions() as session:
                current = session.get(OutboxMessage, row.id)
                if current is not None and current.status != "pending":
                    log.info("tree job %s is %s already", row.key, current.status)
                    return
            if self.settings.tree_backend == "advisory":
                self._advise(row, job)
            elif isinstance(job, jobs.CloseTrees):
                await self._close(row, job)
            else:
                await self._restore(row, job)

    async def _close(self, row: OutboxMessage, job: jobs.CloseTrees) -> None:
        with self.sessions() as session:
            change = self._change(session, row, job)
            if change is not None and change.state != "pending":
                log.info("tree job %s: tree change %s is %s already", row.key, change.id, change.state)
                return
        assert self.client is not None
        try:
            stack_id = await asyncio.to_thread(self.client.close, list(job.trees), job.reason, list(job.tags))
            entry = next((e for e in await asyncio.to_thread(self.client.stack) if e["id"] == stack_id), None)
        except TreestatusUnavailable as err:
            raise Retry(str(err)) from err
        except TreestatusError as err:
            self._failed(row, job, str(err))
            raise Permanent(str(err)) from err
        before = {item["tree"]: item["last_state"] for item in (entry or {}).get("trees", [])}
        with self.sessions() as session, session.begin():
            work = self._work(session)
            change = self._change(session, row, job, create=True)
            assert change is not None
            change.remote_id = stack_id
            change.state = "active"
            for item in change.items:
                state = before.get(item.tree)
                if state is not None:
                    item.last_status = state["status"]
                    item.last_reason = state.get("reason") or ""
                    item.last_tags = ",".join(state.get("tags") or ())
            work.audit(row.downtime_id, "trees closed", detail=f"Treestatus change {stack_id}: {', '.join(job.trees)} closed")
            work.record(events.TreesClosedRemotely(row.downtime_id, job=row.key, change_id=change.id, stack_id=stack_id))
            self._react(session, work)
        self.on_queued()

    async def _restore(self, row: OutboxMessage, job: jobs.RestoreTrees) -> None:
        with self.sessions() as session:
            change = self._change(session, row, job)
            state = change.state if change is not None else None
            remote_id = change.remote_id if change is not None else None
        if state in ("restored", "discarded"):
            log.info("tree job %s: nothing to do, the change is %s", row.key, state)
            return
        if change is None or remote_id is None:
            # The close never reached Treestatus (it failed for good, and CiDuty was told).
            with self.sessions() as session, session.begin():
                work = self._work(session)
                work.record(events.TreesRestoredRemotely(row.downtime_id, job=row.key, change_id=None))
                self._react(session, work)
            self.on_queued()
            return
        assert self.client is not None
        try:
            report = await asyncio.to_thread(self.client.restore, remote_id)
        except TreestatusUnavailable as err:
            raise Retry(str(err)) from err
        except TreestatusError as err:
            self._failed(row, job, str(err))
            raise Permanent(str(err)) from err
        left = await self._left(report)
        with self.sessions() as session, session.begin():
            work = self._work(session)
            change = self._change(session, row, job)
            assert change is not None
            change.state = "restored"
            work.audit(
                row.downtime_id, "trees restored",
                detail=f"Treestatus change {remote_id}: restored {', '.join(report.restored) or 'nothing'}"
                + (f"; left alone {', '.join(report.changed)}" if report.changed else "")
                + (f"; waiting for {', '.join(report.waiting)}" if report.waiting else ""),
            )
            work.record(
                events.TreesRestoredRemotely(
                    row.downtime_id, job=row.key, change_id=change.id, remote_id=remote_id,
                    restored=tuple(report.restored), changed=tuple(report.changed),
                    waiting=tuple(report.waiting.items()), left=left,
                )
            )
            self._react(session, work)
        self.on_queued()

    async def _left(self, report: RestoreReport) -> tuple[events.LeftTree, ...]:
        """The trees of a restore that are not open now: someone else's closure holds them
        (one made during the downtime, or one from before it that the restore gave back).
        Read after the restore; if Treestatus does not answer, nothing is claimed."""
        names = sorted({*report.restored, *report.changed, *report.waiting})
        if not names:
            return ()
        assert self.client is not None
        try:
            now = await asyncio.to_thread(self.client.trees)
        except TreestatusError as err:  # TreestatusUnavailable too
            log.warning("could not read the trees after a restore: %s", err)
            return ()
        return tuple(
            events.LeftTree(name, state.status, state.reason, held_by=None)
            for name in names
            if (state := now.get(name)) is not None and state.status != "open"
        )

    def _advise(self, row: OutboxMessage, job: jobs.CloseTrees | jobs.RestoreTrees) -> None:
        op = "close" if isinstance(job, jobs.CloseTrees) else "restore"
        with self.sessions() as session, session.begin():
            work = self._work(session)
            change = self._change(session, row, job, create=op == "close")
            if change is None:
                raise Permanent(f"downtime #{row.downtime_id} has no tree change to restore")
            unconfirmed = False
            if op == "restore":
                if change.state in ("restored", "discarded"):
                    return
                unconfirmed = change.state == "requested"
                change.state = "restoring"
            work.audit(row.downtime_id, f"trees {op} asked", detail=f"tree change {change.id}: asked the sheriffs")
            work.record(
                events.TreeChangeAsked(row.downtime_id, job=row.key, op=op, change_id=change.id, unconfirmed=unconfirmed)
            )
            self._react(session, work)
        self.on_queued()

    # ----- helpers -----------------------------------------------------------------------------

    def _work(self, session: Session) -> Work:
        return Work(session, now=self.clock.now(), settings=self.settings, actor=bot_actor(self.account))

    def _react(self, session: Session, work: Work) -> None:
        self.reactions.queue(session, work.now, work.events)

    def _change(
        self, session: Session, row: OutboxMessage, job: jobs.CloseTrees | jobs.RestoreTrees, *, create: bool = False
    ) -> TreeChange | None:
        """The local row standing for this job's change (made here for a job queued without one)."""
        change_id = job.change
        if change_id is None and row.downtime_id is not None:
            downtime = session.get(Downtime, row.downtime_id)
            change_id = downtime.tree_change_id if downtime else None
        change = session.get(TreeChange, change_id) if change_id is not None else None
        if change is None and create and isinstance(job, jobs.CloseTrees):
            advisory = self.settings.tree_backend == "advisory"
            change = TreeChange(
                at=self.clock.now(), who=self.account, status="closed", reason=job.reason,
                tags=",".join(job.tags), downtime_id=row.downtime_id, state="requested" if advisory else "pending",
            )
            for name in job.trees:
                change.items.append(TreeChangeItem(tree=name, last_status="", current_status="closed",
                                                   current_reason=job.reason, current_tags=",".join(job.tags)))
            session.add(change)
            session.flush()
            downtime = session.get(Downtime, row.downtime_id) if row.downtime_id is not None else None
            if downtime is not None:
                downtime.tree_change_id = change.id
        return change

    def _failed(self, row: OutboxMessage, job: jobs.CloseTrees | jobs.RestoreTrees, error: str) -> None:
        """Record that a tree change failed for good (CiDuty is told), and mark the local row."""
        op = "close" if isinstance(job, jobs.CloseTrees) else "restore"
        with self.sessions() as session, session.begin():
            work = self._work(session)
            change = self._change(session, row, job)
            if change is not None and op == "close":
                change.state = "failed"
            work.audit(row.downtime_id, f"trees {op} failed", detail=error)
            trees = job.trees if isinstance(job, jobs.CloseTrees) else tuple(
                i.tree for i in change.items) if change is not None else ()
            work.record(events.TreeJobFailed(row.downtime_id, job=row.key, op=op, trees=trees, error=error))
            self._react(session, work)
        self.on_queued()
