"""Bugzilla kept in step with the downtimes: lookups for commands, and the outbox worker.

- `BugzillaLookup` answers the commands' read-only questions (`lookup`, `nominated`).
- `perform` carries out one queued change (a `models.jobs` Bugzilla job) against a
  `BugTracker` with as few requests as Bugzilla allows, and says what it could not do.
- `BugzillaSync` ties both to the bot: the start-up check, the outbox `deliver` function
  (Retry while Bugzilla is down, Permanent with the reason when a bug refuses). What CiDuty
  must hear of (a failed check, a change refused, a change still not made after
  ``[bugzilla] report_after``) is recorded as an event; the reactions say it.

Idempotency: a retried job reads the bugs again and only writes what is still
missing. Flags and whiteboards are compared with what was read; comments carry a
marker naming the job, and on a retry (``row.attempts > 0``) the bugs' comments are
read and bugs that already have the marker get no second comment.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.bugzilla import whiteboard_with_tag, whiteboard_without_tag
from adapters.outbox import Permanent, Retry
from models import events, jobs
from models.events import BugProblem
from models.lifecycle import DomainError
from models.orm import Downtime, DowntimeBug, OutboxMessage
from models.ports import (
    BugInfo, BugNotVisible, BugTracker, BugzillaError, BugzillaUnavailable, Clock, FlagDenied, InvalidApiKey,
)
from models.reactions import Reactions

log = logging.getLogger(__name__)


def marker(key: str) -> str:
    """The line a job's comments end with, so a retry can tell they were made."""
    return f"(downtime-bot {key})"


# ---- the status of Bugzilla, as the bot last saw it ---------------------------------------

@dataclass
class BugzillaStatus:
    available: bool = True
    key_refused: bool = False
    reason: str = ""

    def up(self) -> None:
        if not self.available:
            log.info("Bugzilla answers again")
        self.available, self.reason = True, ""

    def down(self, reason: str) -> None:
        if self.available:
            log.warning("Bugzilla marked unavailable: %s", reason)
        self.available, self.reason = False, reason

    def refuse_key(self, reason: str) -> None:
        # BMO blocks the IP of a client that keeps sending a bad key: stop asking until
        # the operator fixes the key and restarts.
        log.error("Bugzilla refused the API key; no more Bugzilla requests until a restart: %s",
                  reason)
        self.available, self.key_refused, self.reason = False, True, reason


# ---- read-only questions from commands -----------------------------------------------------

class BugzillaLookup:
    """`models.ports.BugLookup` over a BugTracker; every call runs in a thread."""

    enabled = True

    def __init__(self, tracker: BugTracker, status: BugzillaStatus) -> None:
        self.tracker = tracker
        self.status = status

    async def lookup(self, bug: int) -> BugInfo | None:
        """The bug as Bugzilla has it; None when Bugzilla cannot answer now (the bug is
        still added and nominated once Bugzilla is back); DomainError when invisible."""
        return (await self.lookup_many([bug])).get(bug)

    async def lookup_many(self, bugs: Sequence[int]) -> dict[int, BugInfo]:
        """The bugs in one batched read (the client splits only lists too long for one URL);
        {} when Bugzilla cannot answer now, or is marked unavailable (then only the health
        check asks it); DomainError naming the first bug that is not visible."""
        if not bugs or not self.status.available:
            return {}
        wanted = list(dict.fromkeys(bugs))
        try:
            found = await asyncio.to_thread(self.tracker.get_bugs, wanted)
        except InvalidApiKey as err:
            self.status.refuse_key(str(err))
            return {}
        except BugzillaError as err:
            self.status.down(str(err))
            log.warning("Bugzilla lookup of %d bug(s) failed: %s", len(wanted), err)
            return {}
        self.status.up()
        hidden = next((b for b in wanted if found.get(b) is None), None)
        if hidden is not None:
            raise DomainError("bug_not_visible", bug=hidden)
        return {b: info for b in wanted if (info := found.get(b)) is not None}

    async def nominated(self) -> list[BugInfo]:
        if self.status.key_refused:
            raise DomainError("bugzilla_unusable", error=self.status.reason)
        try:
            bugs = await asyncio.to_thread(self.tracker.search_nominated)
        except BugzillaError as err:
            if isinstance(err, InvalidApiKey):
                self.status.refuse_key(str(err))
            else:
                self.status.down(str(err))
            raise DomainError("bugzilla_unavailable", error=str(err)) from err
        self.status.up()
        return bugs


# ---- carrying out one change (synchronous: runs in a thread) ---------------------------------

@dataclass
class Report:
    """What a job did: bugs changed, problems to tell CiDuty, bugs as read (for the database)."""

    done: list[int] = field(default_factory=list)
    problems: list[BugProblem] = field(default_factory=list)
    read: dict[int, BugInfo] = field(default_factory=dict)


class _Job:
    def __init__(self, tracker: BugTracker, flag: str, key: str, attempts: int) -> None:
        self.tracker, self.flag, self.key, self.attempts = tracker, flag, key, attempts
        self.report = Report()

    def read(self, ids: Sequence[int]) -> dict[int, BugInfo]:
        bugs = self.tracker.get_bugs(ids)
        hidden = [i for i, b in bugs.items() if b is None]
        if hidden:
            self.report.problems.append(BugProblem("hidden", tuple(hidden)))
        self.report.read = {i: b for i, b in bugs.items() if b is not None}
        return self.report.read

    def put(self, ids: Sequence[int], **changes: Any) -> list[int]:
        """One PUT for all `ids`; bugs Bugzilla refuses are reported and the rest sent again."""
        left = list(ids)
        while left:
            try:
                self.tracker.update(left, **changes)
            except FlagDenied as err:
                refused = [i for i in err.bug_ids if i in left] or left
                self.report.problems.append(BugProblem("flag_denied", tuple(refused), str(err).rstrip(".")))
            except BugNotVisible as err:
                refused = [err.bug_id] if err.bug_id in left else left
                self.report.problems.append(BugProblem("unreadable", tuple(refused)))
            else:
                self.report.done.extend(i for i in left if i not in self.report.done)
                return left
            left = [i for i in left if i not in refused]
        return []

    def put_with_whiteboards(self, new_whiteboards: dict[str, list[int]], ids: list[int],
                             **changes: Any) -> None:
        """Whiteboards (one PUT per distinct new text) and `changes` on `ids` (one PUT).

        The whiteboard is replaced whole, so bugs share a PUT only when their new
        whiteboard is the same; when that is every bug of `ids`, it rides along in the
        one PUT. Whiteboards go first: they are idempotent, so a failure part-way
        leaves only what a retry compares and skips."""
        groups = [(text, bugs) for text, bugs in new_whiteboards.items() if bugs]
        if len(groups) == 1 and ids and sorted(groups[0][1]) == sorted(ids):
            self.put(ids, whiteboard=groups[0][0], **changes)
            return
        if changes.get("comment") is None:
            # Without a comment the other changes (a flag) are idempotent, so they ride in
            # each whiteboard's PUT, and only bugs whose whiteboard stays need one more.
            for text, bugs in groups:
                self.put(bugs, whiteboard=text, **changes)
            grouped = {i for _, bugs in groups for i in bugs}
            rest = [i for i in ids if i not in grouped]
            if rest and any(v is not None for v in changes.values()):
                self.put(rest, **changes)
            return
        for text, bugs in groups:
            self.put(bugs, whiteboard=text)
        if ids and any(v is not None for v in changes.values()):
            self.put(ids, **changes)

    def commented(self, ids: Sequence[int]) -> set[int]:
        """Bugs that already have this job's comment (asked only on a retry)."""
        if self.attempts == 0 or not ids:
            return set()
        mark = marker(self.key)
        return {i for i, texts in self.tracker.comments(ids).items()
                if any(mark in t for t in texts)}

    def comment(self, text: str) -> str:
        return f"{text.rstrip()}\n\n{marker(self.key)}"


def perform(tracker: BugTracker, flag: str, key: str, job: jobs.BugzillaJob, attempts: int = 0) -> Report:
    """Carry out one queued Bugzilla change; raises BugzillaUnavailable/InvalidApiKey to retry.

    Requests, whatever the number of bugs: nominate = 1 read + 1 update; approve = 1 read +
    1 update per distinct new whiteboard, carrying the flag (plus 1 for bugs whose whiteboard
    does not change); retag (rescheduled, cancelled) = 1 read + 1 per distinct whiteboard +
    1 comment update; outcomes = 1 read + 1 update per distinct comment. A retry adds one
    comment read per bug when the job leaves comments.
    """
    work = _Job(tracker, flag, key, attempts)
    match job:
        case jobs.NominateBugs():
            bugs = work.read(job.bugs)
            need = [i for i, b in bugs.items() if b.flag_status(flag) not in ("?", "+")]
            work.put(need, flag_status="?")
            work.report.done.extend(i for i in bugs if i not in need)
        case jobs.ApproveBugs():
            bugs = work.read(job.bugs)
            nobody = [i for i, b in bugs.items() if b.unassigned]
            if nobody:
                work.report.problems.append(BugProblem("unassigned", tuple(nobody)))
            ok = {i: b for i, b in bugs.items() if i not in nobody}
            work.put_with_whiteboards(_whiteboards(ok, job.tag),
                                      [i for i, b in ok.items() if b.flag_status(flag) != "+"],
                                      flag_status="+")
        case jobs.RetagBugs():
            bugs = work.read(job.bugs)
            commented = work.commented(list(bugs))
            fresh = [i for i in bugs if i not in commented]
            # Cancelled: approved for a closure that will not happen, so back to the queue of
            # nominations; in the comment's update when that is every bug (the usual case).
            approved = [i for i, b in bugs.items() if b.flag_status(flag) == "+"] if job.renominate else []
            together = bool(approved) and sorted(approved) == sorted(fresh)
            work.put_with_whiteboards(_whiteboards(bugs, job.tag), fresh,
                                      comment=work.comment(job.comment),
                                      flag_status="?" if together else None)
            if approved and not together:
                work.put(approved, flag_status="?")
        case jobs.RecordOutcomes():
            results = {r.bug: r for r in job.results}
            bugs = work.read(list(results))
            done = work.commented(list(bugs))
            groups: dict[tuple[str, str | None], list[int]] = {}
            for bug in bugs:
                if bug not in done:
                    r = results[bug]
                    groups.setdefault((f"{job.comment.rstrip()}\n{r.line}", r.flag), []).append(bug)
            for (comment, flag_after), ids in groups.items():
                work.put(ids, comment=work.comment(comment), flag_status=flag_after)
            work.report.done.extend(i for i in done if i not in work.report.done)
        case _:
            assert_never(job)
    return work.report


def _whiteboards(bugs: Mapping[int, BugInfo], tag: str) -> dict[str, list[int]]:
    """Each distinct new whiteboard and the bugs that get it (bugs already right left out)."""
    groups: dict[str, list[int]] = {}
    for bug_id, bug in bugs.items():
        new = whiteboard_with_tag(bug.whiteboard, tag) if tag else whiteboard_without_tag(bug.whiteboard)
        if new != bug.whiteboard:
            groups.setdefault(new, []).append(bug_id)
    return groups


# ---- the bot's side: start-up check, outbox delivery, reports ------------------------------

class BugzillaSync:
    """Everything the bot does with Bugzilla, given a tracker (the real client or a fake)."""

    def __init__(self, tracker: BugTracker, *, sessions: sessionmaker[Session], clock: Clock,
                 reactions: Reactions, product: str = "",
                 report_after: dt.timedelta = dt.timedelta(minutes=30),
                 on_queued: Callable[[], None] = lambda: None) -> None:
        self.tracker = tracker
        self.sessions, self.clock, self.reactions = sessions, clock, reactions
        self.product, self.report_after, self.on_queued = product, report_after, on_queued
        self.flag = reactions.settings.bugzilla_flag
        self.status = BugzillaStatus()
        self.lookup = BugzillaLookup(tracker, self.status)

    async def check(self) -> bool:
        """The start-up check: the key works and the flag exists. On failure Bugzilla is
        marked unavailable, CiDuty is told, and the queued changes wait and retry."""
        err = await self._ask()
        if err is not None:
            log.error("Bugzilla start-up check failed: %s Bugzilla is marked unavailable; "
                      "its changes stay queued and are retried.", err)
            self._tell(events.BugzillaCheckFailed(None, error=str(err), at=self.clock.now()))
            return False
        log.info("Bugzilla start-up check passed (flag %s%s)", self.flag,
                 f" in {self.product}" if self.product else "")
        return True

    async def health(self) -> bool:
        """The periodic health check: while Bugzilla is marked unavailable, this is the only
        thing that asks it (commands do without it and queued changes wait). True when it
        answers again (then the caller wakes the queued changes)."""
        if self.status.available or self.status.key_refused:
            return False
        err = await self._ask()
        if err is not None:
            log.info("Bugzilla health check: still unavailable (%s)", err)
            return False
        return True

    async def _ask(self) -> BugzillaError | None:
        """Check the key and the flag, and mark Bugzilla up, down or its key refused; the
        error when it failed."""
        try:
            await asyncio.to_thread(self.tracker.check, self.product or None)
        except BugzillaError as err:
            if isinstance(err, InvalidApiKey):
                self.status.refuse_key(str(err))
            else:
                self.status.down(str(err))
            return err
        self.status.up()
        return None

    def _job(self, row: OutboxMessage) -> jobs.BugzillaJob:
        try:
            job = jobs.load(row.payload)
        except (jobs.JobError, KeyError, TypeError) as err:
            raise Permanent(f"not a Bugzilla job this bot can do: {err}") from err
        if not isinstance(job, jobs.NominateBugs | jobs.ApproveBugs | jobs.RetagBugs | jobs.RecordOutcomes):
            raise Permanent(f"not a Bugzilla job: {job.type}")
        if isinstance(job, jobs.RecordOutcomes) and any(r.line is None for r in job.results):
            # Queued by a version that left the outcome sentence to the worker.
            job = dataclasses.replace(job, results=tuple(
                r if r.line is not None else dataclasses.replace(r, line=self.reactions.outcome_line(r.status, r.note))
                for r in job.results
            ))
        return job

    async def deliver(self, row: OutboxMessage) -> None:
        """Deliver one "bugzilla" outbox row (OutboxWorker's deliver function)."""
        if self.status.key_refused:
            raise Retry(self.status.reason)
        if not self.status.available:
            # Marked unavailable: only the health check asks Bugzilla until it answers again.
            self._report_stuck(row, self.status.reason)
            raise Retry(self.status.reason)
        job = self._job(row)
        try:
            report = await asyncio.to_thread(perform, self.tracker, self.flag, row.key, job, row.attempts)
        except InvalidApiKey as err:
            self.status.refuse_key(str(err))
            self._report_stuck(row, str(err), now=True)
            raise Retry(str(err)) from err
        except BugzillaUnavailable as err:
            self.status.down(str(err))
            self._report_stuck(row, str(err))
            raise Retry(str(err)) from err
        except BugzillaError as err:
            self._report_failed(row, (BugProblem("error", (), str(err)),))
            raise Permanent(str(err)) from err
        self.status.up()
        if row.downtime_id is not None and report.read:
            self._remember(row.downtime_id, report.read)
        if report.problems:
            reason = self._report_failed(row, tuple(report.problems))
            raise Permanent(reason)
        log.info("Bugzilla: %s done (bug %s)", row.key, ", ".join(map(str, report.done)) or "none")

    def _remember(self, downtime_id: int, read: Mapping[int, BugInfo]) -> None:
        """Keep what Bugzilla said of the bugs (a bug added while Bugzilla was down has no
        summary or assignee yet, and approve needs the assignee); a bug found restricted only
        now is told to the reactions (its requester may have named it in the public wording)."""
        restricted = []
        with self.sessions() as session, session.begin():
            rows = session.scalars(select(DowntimeBug).where(
                DowntimeBug.downtime_id == downtime_id, DowntimeBug.bug.in_(list(read))).order_by(DowntimeBug.bug))
            changed = False
            for row in rows:
                info = read[row.bug]
                learned = (row.summary or info.summary, info.assignee)
                changed = changed or learned != (row.summary, row.assignee)
                row.summary, row.assignee = learned
                if info.restricted and not row.security:
                    row.security = True
                    restricted.append(row.bug)
                    changed = True
            downtime = session.get(Downtime, downtime_id) if changed else None
            if downtime is not None:  # what its page shows changed: its Last-Modified moves too
                downtime.updated_at = self.clock.now()
        if restricted:
            self._tell(events.BugsFoundRestricted(downtime_id, tuple(restricted)))

    def _report_stuck(self, row: OutboxMessage, error: str, *, now: bool = False) -> None:
        waited = self.clock.now() - row.created_at
        if now or waited >= self.report_after:
            self._tell(events.BugzillaJobStuck(row.downtime_id, job=row.key, description=row.body, error=error,
                                               waited=waited))

    def _report_failed(self, row: OutboxMessage, problems: tuple[BugProblem, ...]) -> str:
        """Tell CiDuty what Bugzilla refused; returns it in one line (kept on the outbox row)."""
        self._tell(events.BugzillaJobFailed(row.downtime_id, job=row.key, description=row.body, problems=problems))
        return self.reactions.render("bug_problems.txt", problems=problems).strip()

    def _tell(self, event: events.Event) -> None:
        """Tell CiDuty (the reactions decide how), once per event key (the outbox keeps it)."""
        with self.sessions() as session, session.begin():
            queued = self.reactions.queue(session, self.clock.now(), [event])
        if queued:
            self.on_queued()
