"""Reminders on time: the reminder plan (models/reminders.py) as APScheduler 3 jobs.

The database is the source of truth. Jobs are derived from it with the plan's
deterministic ids (``downtime:7:r2:remind-24h``), added with
``replace_existing=True``, and re-derived at start-up, after every change (the
Bot pokes) and periodically. A job calls the module-level `fire` with ids only;
`fire` reads the downtime again, re-plans it at the time of firing and does
nothing if the state moved on (cancelled, rescheduled, started…). What it
queues are outbox rows whose keys are the job ids, so a reminder is sent once
even if it is queued twice, across restarts too.

Horizon: only reminders due within `horizon` (12h by default) become jobs, and the
plan is re-derived every `replan_every` (1h). The query that finds the downtimes
with a reminder in that window is an indexed range on (state, start_at), so a
database with 10,000 upcoming downtimes costs at start-up what the few due in the
next hours cost, not 40,000 jobs. A change re-derives the window at once, so a
downtime proposed or moved into it is never missed.

Late reminders: at start-up, a reminder that fell due while the bot was not
running is sent at once, marked late, if it still means something; else it is
dropped with a log line (see models/reminders.py for the rules).

[ha] (adapters/leadership.py): the scheduler runs on the leader only (bot.py starts it on election
and stops it first on deposition), and checks the `Fence` before it queues: an instance that is no
longer the leader queues nothing. Two leaders can never overlap in the database either: the
reminder's outbox key is unique, so the second transaction to queue it fails as a whole (its audit
line and any auto-start with it) and is dropped here with a log line.

Many reminders falling due together are queued in one transaction (a batch per
event-loop turn), so a thousand due in the same second cost one commit.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import func, or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from adapters.leadership import Fence
from models import reminders as plans
from models.lifecycle import State
from models.orm import AuditEvent, Downtime, OutboxMessage
from models.ports import Clock, DurationObserver
from models.reactions import Reactions
from models.service import Downtimes
from models.work import Work, bot_actor

log = logging.getLogger(__name__)

REPLAN_JOB = "replan"
# A job that APScheduler fires this little before its due time (clock reading order) still counts.
EARLY_SLACK = dt.timedelta(seconds=1)
_CHUNK = 500

# The running schedulers, by name: jobs hold a name and ids, never an object.
_SERVICES: dict[str, ReminderScheduler] = {}
_names = itertools.count(1)


async def fire(service: str, downtime_id: int, job_id: str) -> None:
    """The job function: hand the reminder to the scheduler that planned it (ids only)."""
    scheduler = _SERVICES.get(service)
    if scheduler is None:
        log.warning("reminder %s fired with no scheduler %r running: ignored", job_id, service)
        return
    scheduler.due(downtime_id, job_id)


async def replan(service: str) -> None:
    """The periodic job: re-derive the window of jobs from the database."""
    scheduler = _SERVICES.get(service)
    if scheduler is not None:
        scheduler.replan()


class ReminderScheduler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        reactions: Reactions,
        *,
        nick: str,
        on_queued: Callable[[], None] = lambda: None,
        horizon: dt.timedelta = dt.timedelta(hours=12),
        replan_every: dt.timedelta = dt.timedelta(hours=1),
        on_reminder: DurationObserver | None = None,
        fence: Fence | None = None,
    ):
        if replan_every >= horizon:
            raise ValueError("replan_every must be shorter than the horizon, or reminders fall through the gap")
        self.sessions = sessions
        self.clock = clock
        self.reactions = reactions
        self.settings = reactions.settings
        self.nick = nick
        self.on_queued = on_queued
        # Told, per reminder queued, how many seconds after its due time it was (the metrics).
        self.on_reminder = on_reminder
        self.horizon = horizon
        self.replan_every = replan_every
        self.fence = fence or Fence.always()
        self.name = f"reminders-{next(_names)}"
        self.scheduler: AsyncIOScheduler | None = None
        self.ready = asyncio.Event()
        self._jobs: dict[int, dict[str, dt.datetime]] = {}  # downtime id -> {job id: due}
        self._handled: set[str] = set()  # job ids queued (or found queued) by this process
        self._batch: dict[str, int] = {}  # job id -> downtime id, due now
        self._flush: asyncio.Handle | None = None
        self._replan_soon: asyncio.Handle | None = None
        self.queued_at: dict[str, dt.datetime] = {}  # job id -> when queued (for the benchmark)

    # ----- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start APScheduler, send what fell due while the bot was down, schedule the window."""
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every job at INFO
        self.scheduler = AsyncIOScheduler(
            timezone=dt.timezone.utc,
            # misfire_grace_time=None: a job that runs late (busy loop) still runs.
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self.scheduler.start()
        _SERVICES[self.name] = self
        self.replan(startup=True)
        self.scheduler.add_job(
            replan, "interval", seconds=self.replan_every.total_seconds(), args=[self.name],
            id=REPLAN_JOB, replace_existing=True,
        )
        self.ready.set()

    def stop(self) -> None:
        _SERVICES.pop(self.name, None)
        for handle in (self._flush, self._replan_soon):
            if handle is not None:
                handle.cancel()
        # Startable again ([ha]: a new term): nothing of this run is left to fire or to wait for.
        self._flush = self._replan_soon = None
        self._batch = {}
        self._jobs = {}
        self.ready.clear()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None

    @property
    def running(self) -> bool:
        return self.scheduler is not None

    def poke(self) -> None:
        """Something changed: re-derive the jobs soon (once per event-loop turn)."""
        if not self.running or self._replan_soon is not None:
            return
        self._replan_soon = asyncio.get_running_loop().call_soon(self._replan_from_poke)

    def _replan_from_poke(self) -> None:
        self._replan_soon = None
        self.replan()

    def job_ids(self) -> list[str]:
        return [] if self.scheduler is None else [j.id for j in self.scheduler.get_jobs() if j.id != REPLAN_JOB]

    # ----- deriving the jobs --------------------------------------------------------------------

    def replan(self, *, startup: bool = False, only: Iterable[int] | None = None) -> None:
        """Derive the jobs of the window (or of downtimes `only`) from the database."""
        now = self.clock.now()
        with self.sessions() as session:
            downtimes = self._candidates(session, now, only)
            facts = self._facts(session, downtimes)
            wanted: dict[int, dict[str, dt.datetime]] = {}
            due_now: list[tuple[Downtime, plans.Reminder]] = []
            for downtime in downtimes:
                p = plans.plan(facts[downtime.id], self.settings.policy, now)
                jobs = {r.job_id: r.due for r in p.upcoming if r.due <= now + self.horizon}
                if jobs:
                    wanted[downtime.id] = jobs
                due_now.extend((downtime, r) for r in p.overdue if r.job_id not in self._handled)
                if startup:
                    self._log_dropped(session, p.dropped)
            if due_now:
                self._queue(session, due_now, now, late=startup)
        self._apply(wanted, only)

    def _candidates(self, session: Session, now: dt.datetime, only: Iterable[int] | None) -> list[Downtime]:
        if only is not None:
            ids = list(only)
            return list(session.scalars(select(Downtime).where(Downtime.id.in_(ids)).order_by(Downtime.id))) if ids else []
        policy = self.settings.policy
        # The earliest reminder of a downtime comes this long before its start.
        lead = max([*policy.reminders, policy.min_notice + plans.UNANNOUNCED_BEFORE, dt.timedelta()])
        ahead = now + self.horizon
        # Announced downtimes whose end passed more than this long ago have nothing left to say.
        behind = now - plans.OVERRUN_EVERY - dt.timedelta(days=8)
        query = select(Downtime).where(
            or_(
                Downtime.state == State.IN_PROGRESS.value,
                (Downtime.state.in_([State.APPROVED.value, State.ANNOUNCED.value]))
                & (Downtime.start_at <= ahead + lead)
                & (Downtime.start_at >= behind),
                (Downtime.state == State.PROPOSED.value)
                & (Downtime.start_at >= now)
                & (Downtime.created_at <= ahead - plans.UNDECIDED_AFTER),
            )
        ).order_by(Downtime.start_at, Downtime.id)  # reminders due at once are queued in this order (not the heap's)
        return list(session.scalars(query))

    @staticmethod
    def _facts(session: Session, downtimes: Sequence[Downtime]) -> dict[int, plans.DowntimeFacts]:
        """Each downtime's facts; approval and revision times come from the audit trail."""
        times: dict[tuple[int, str], dt.datetime] = {}
        ids = [d.id for d in downtimes]
        for i in range(0, len(ids), _CHUNK):
            rows = session.execute(
                select(AuditEvent.downtime_id, AuditEvent.action, func.max(AuditEvent.at))
                .where(
                    AuditEvent.downtime_id.in_(ids[i : i + _CHUNK]),
                    AuditEvent.action.in_(["approve", "reschedule", "extend"]),
                )
                .group_by(AuditEvent.downtime_id, AuditEvent.action)
            )
            for downtime_id, action, at in rows:
                # func.max loses the column type on SQLite: put the zone back.
                if isinstance(at, str):
                    at = dt.datetime.fromisoformat(at)
                times[(downtime_id, action)] = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
        facts = {}
        for d in downtimes:
            revised = [t for t in (times.get((d.id, "reschedule")), times.get((d.id, "extend"))) if t]
            facts[d.id] = plans.DowntimeFacts(
                id=d.id,
                state=State(d.state),
                start_at=d.start_at,
                end_at=d.end_at,
                revision=d.revision,
                created_at=d.created_at,
                approved_at=times.get((d.id, "approve")),
                announced_at=d.announced_at,
                revised_at=max(revised) if revised else None,
            )
        return facts

    def _log_dropped(self, session: Session, dropped: list[tuple[plans.Reminder, str]]) -> None:
        for reminder, why in dropped:
            if reminder.job_id in self._handled:
                continue
            self._handled.add(reminder.job_id)
            sent = session.scalar(
                select(OutboxMessage.id).where(OutboxMessage.key.like(f"{reminder.job_id}:%")).limit(1)
            )
            if sent is None:
                log.info(
                    "reminder %s (due %s) fell due while the bot was down and is dropped: %s",
                    reminder.job_id, f"{reminder.due:%Y-%m-%d %H:%M:%S} UTC", why,
                )

    def _apply(self, wanted: dict[int, dict[str, dt.datetime]], only: Iterable[int] | None) -> None:
        """Make the APScheduler jobs match `wanted` (for every downtime, or those in `only`)."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        scope = set(self._jobs) | set(wanted) if only is None else set(only)
        for downtime_id in scope:
            old = self._jobs.get(downtime_id, {})
            new = wanted.get(downtime_id, {})
            for job_id in old.keys() - new.keys():
                try:
                    scheduler.remove_job(job_id)
                except LookupError:  # it fired already
                    pass
            for job_id, due in new.items():
                if old.get(job_id) == due and scheduler.get_job(job_id) is not None:
                    continue
                scheduler.add_job(
                    fire, DateTrigger(run_date=due), args=[self.name, downtime_id, job_id],
                    id=job_id, name=job_id, replace_existing=True,
                )
            if new:
                self._jobs[downtime_id] = new
            else:
                self._jobs.pop(downtime_id, None)

    # ----- firing -------------------------------------------------------------------------------

    def due(self, downtime_id: int, job_id: str) -> None:
        """A job fired: queue it with the others firing in this event-loop turn."""
        self._batch[job_id] = downtime_id
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._fire_batch)

    def _fire_batch(self) -> None:
        self._flush = None
        batch, self._batch = self._batch, {}
        if not batch:
            return
        now = self.clock.now()
        with self.sessions() as session:
            downtimes = {d.id: d for d in session.scalars(select(Downtime).where(Downtime.id.in_(set(batch.values()))))}
            facts = self._facts(session, list(downtimes.values()))
            todo: list[tuple[Downtime, plans.Reminder]] = []
            for job_id, downtime_id in batch.items():
                downtime = downtimes.get(downtime_id)
                if downtime is None:
                    continue
                p = plans.plan(facts[downtime_id], self.settings.policy, now + EARLY_SLACK)
                reminder = next((r for r in p.overdue if r.job_id == job_id), None)
                if reminder is None:
                    log.debug("reminder %s fired but the downtime moved on: nothing to do", job_id)
                    continue
                todo.append((downtime, reminder))
            if todo:
                self._queue(session, todo, now, late=False)
        # Fired jobs are gone from APScheduler; the next ones (overrun) come from the plan.
        self.replan(only=set(batch.values()))

    def _queue(self, session: Session, todo: list[tuple[Downtime, plans.Reminder]], now: dt.datetime, *, late: bool) -> None:
        """Queue the reminders in one transaction, then wake the outbox."""
        if not self.fence.check():
            log.info("instance %s does not lead: %d reminder(s) left to the leader", self.fence.instance, len(todo))
            return
        queued = 0
        known = self._queued_keys(session, [r.job_id for _, r in todo])
        try:
            with session.no_autoflush:
                for downtime, reminder in todo:
                    # One Work per reminder: an auto_start that fails leaves the others alone.
                    work = Work(session, now=now, settings=self.settings, actor=bot_actor(self.nick))
                    Downtimes(work).remind(downtime, reminder, late=late)
                    if self.reactions.queue(session, now, work.events, queued=known):
                        queued += 1
            session.commit()
        except (IntegrityError, DBAPIError) as err:
            if not self.fence.enabled:
                raise
            # [ha]: another instance queued them first (the keys are unique), or wrote meanwhile.
            session.rollback()
            log.warning("reminders %s not queued by instance %s: %s", ", ".join(r.job_id for _, r in todo),
                        self.fence.instance, type(err).__name__)
            return
        for _, reminder in todo:
            self._handled.add(reminder.job_id)
            self.queued_at.setdefault(reminder.job_id, self.clock.now())
            if self.on_reminder is not None:
                self.on_reminder(max(0.0, (now - reminder.due).total_seconds()))
        if queued:
            log.info("queued %d reminder(s)%s", queued, " (late)" if late else "")
            self.on_queued()

    def _queued_keys(self, session: Session, job_ids: list[str]) -> set[str]:
        """The outbox keys of these reminders that are already queued (one query per 500)."""
        channels = {self.settings.requests_channel, self.settings.announce_channel}
        # The reminder reaction keys each line "<job id>:<network>:<target>" (Outbox.chat), and
        # its mail to the lists "<job id>:mail".
        keys = [f"{j}:{n}:{c}" for j in job_ids for n in self.settings.networks for c in channels]
        keys += [f"{j}:mail" for j in job_ids]
        found: set[str] = set()
        for i in range(0, len(keys), _CHUNK):
            found.update(session.scalars(select(OutboxMessage.key).where(OutboxMessage.key.in_(keys[i : i + _CHUNK]))))
        return found

    def send_due(self) -> None:
        """Queue every reminder due at the clock's time (without APScheduler: tests with a fake clock)."""
        self.replan()
