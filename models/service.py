"""The downtime use cases: one method per thing a person can do to a downtime.

`Downtimes` is made per command on that command's `Work` (session, time, settings, actor). Each
method checks the lifecycle and the roles, changes the rows, writes the audit trail and records
what happened (`models/events.py`). It never renders a word, never picks a channel or a mail
recipient and never queues anything: `models/reactions.py` does, from the recorded events.
Refusals are `DomainError`s naming their template (``templates/refusals/<reason>.txt``).
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Sequence

from sqlalchemy import func, select

from models import events, lifecycle, planning, workers
from models.instance import database_token
from models.lifecycle import BugStatus, DomainError, State
from models.orm import AuditEvent, Downtime, DowntimeBug, Verdict
from models.queries import Queries
from models.reminders import START, Reminder
from models.trees import Trees
from models.wording import SHOWN, clean_reason, clean_wording, tidy
from models.work import Outcome, Work

log = logging.getLogger(__name__)
MIN_DURATION = dt.timedelta(minutes=5)
# The bugs one downtime holds: far more than the process ever sees in one closure, and few enough
# that `show`, the notice and every "by hand" note stay short.
MAX_BUGS = 50
# Starting more than this long before the announced start needs --force.
EARLY_START = dt.timedelta(hours=1)


class Downtimes:
    def __init__(self, work: Work):
        self.work = work
        self.session = work.session
        self.now = work.now
        self.settings = work.settings
        self.actor = work.actor
        self.queries = Queries(work.session, now=work.now, settings=work.settings)
        self.trees = Trees(work)

    def get(self, downtime_id: int) -> Downtime:
        """The downtime a use case is about to change, its row locked until the commit (on
        PostgreSQL two instances, or two connections, may change the same downtime at once)."""
        return self.queries.get(downtime_id, for_update=True)

    def _check_time(self, start: dt.datetime, duration: dt.timedelta) -> None:
        if start <= self.now:
            raise DomainError("in_the_past", start=start, now=self.now)
        # Before any date arithmetic: a start near year 9999 plus a duration does not exist.
        if start - self.now > self.settings.policy.max_horizon:
            raise DomainError("too_far_ahead", most=self.settings.policy.max_horizon, now=self.now)
        if not MIN_DURATION <= duration <= planning.MAX_DURATION:
            raise DomainError("bad_duration", least=MIN_DURATION, most=planning.MAX_DURATION)

    @staticmethod
    def _check_bugs(count: int) -> None:
        if count > MAX_BUGS:
            raise DomainError("too_many_bugs", count=count, most=MAX_BUGS)

    # ----- asking for one -----------------------------------------------------------------

    def may_propose(self, bugs: Sequence[int]) -> None:
        """Refuse now whoever may not propose these bugs: called before Bugzilla is asked
        anything about them, so a refused sender costs no outside request."""
        self.work.identified()
        self._check_bugs(len(set(bugs)))
        if bugs:
            self.work.may_nominate()
            self._check_not_held(bugs)

    def may_add_bug(self, downtime_id: int, bug: int | None = None) -> None:
        """Refuse now whoever may not add a bug to this downtime, or a bug another downtime
        holds (before Bugzilla is asked)."""
        self.work.may_nominate()
        downtime = self.get(downtime_id)
        self.work.may("add bug", downtime)
        if bug is not None and not any(b.bug == bug for b in downtime.bugs):
            self._check_not_held([bug], downtime)

    def propose(
        self,
        start: dt.datetime,
        duration: dt.timedelta,
        wording: str,
        *,
        bugs: Sequence[int] = (),
        trees: Sequence[str] = (),
    ) -> Outcome:
        self.may_propose(bugs)
        self._check_time(start, duration)
        self.work.check_trees(trees)
        wording = clean_wording(wording)
        downtime = Downtime(
            state=State.PROPOSED.value,
            summary=wording,
            start_at=start,
            end_at=start + duration,
            requester=self.actor.account,
            requester_network=self.actor.network,
            trees=",".join(dict.fromkeys(trees)),
            systems=",".join(host for host in self.settings.systems if names_host(wording, host)),
            created_at=self.now,
            updated_at=self.now,
            id_token=database_token(self.session),
        )
        self.session.add(downtime)
        self.session.flush()
        bugs = list(dict.fromkeys(bugs))
        for bug in bugs:
            downtime.bugs.append(DowntimeBug(bug=bug, wording="", added_by=self.actor.who))
        self.work.audit(downtime.id, "propose", "", State.PROPOSED.value, wording)
        room = "" if self.actor.in_private else self.actor.reply_target
        self.work.record(events.Proposed(downtime.id, network=self.actor.network, bugs=tuple(bugs), room=room))
        return Outcome(downtime, warnings=self.queries.rules(downtime), offers=self.queries.consolidations(downtime))

    def _check_not_held(self, bugs: Sequence[int], downtime: Downtime | None = None) -> None:
        """Refuse a bug that another active downtime holds: one bug is worked on in one downtime."""
        held = self.queries.holders(bugs, exclude=downtime.id if downtime else None)
        if held:
            bug = next(b for b in bugs if b in held)
            raise DomainError("bug_held", bug=bug, other=held[bug], id=downtime.id if downtime else None)

    def _approver(self) -> bool:
        """Whether the actor approves changes (CiDuty or an admin): their own need no approval."""
        return lifecycle.may("approve", self.actor.roles)

    def _notice_updated(
        self, downtime: Downtime, *, added: Sequence[int] = (), dropped: Sequence[int] = (), old_wording: str = "",
        reworded: Sequence[int] = (),
    ) -> None:
        """The announced notice changed: everyone told before gets the updated notice, with the
        next calendar SEQUENCE (`Downtime.sequence`)."""
        if not downtime.was_announced or State(downtime.state) not in (State.ANNOUNCED, State.IN_PROGRESS):
            return
        downtime.notice_updates += 1
        self.work.record(
            events.NoticeUpdated(
                downtime.id, revision=downtime.revision, update=downtime.notice_updates, added=tuple(added),
                dropped=tuple(dropped), old_wording=old_wording, reworded=tuple(reworded),
            )
        )

    def add_bug(
        self,
        downtime_id: int,
        bug: int,
        *,
        wording: str = "",
        security: bool = False,
        summary: str = "",
        assignee: str = "",
    ) -> Outcome:
        """Add a bug (or update one already in). Added after the first approval it waits for
        CiDuty's `approve`; added to an announced downtime it is a pending change ("add"), outside
        the notice until approved."""
        downtime = self.get(downtime_id)
        self.work.may_nominate()
        self.work.may("add bug", downtime)
        existing = next((b for b in downtime.bugs if b.bug == bug), None)
        if existing is None:
            self._check_not_held([bug], downtime)
        announced = State(downtime.state) is State.ANNOUNCED
        wording = clean_wording(wording) if wording else ""
        summary, assignee = tidy(summary), tidy(assignee, 255)
        # The words of a bug the announced notice names are CiDuty's to change; anyone who may
        # add it may have it told vaguely (--security) at once.
        in_notice = existing is not None and announced and existing.pending != "add"
        new_words = in_notice and bool(wording) and existing is not None and wording != existing.wording
        if new_words and not self._approver():
            raise DomainError("bug_in_notice", bug=bug, id=downtime.id)
        rewords = new_words or (in_notice and security and existing is not None and not existing.security)
        pending = existing is None and announced
        self.work.transition("add bug", downtime, f"bug {bug}" + (" (waits for CiDuty's approval)" if pending else ""))
        if existing is None:
            self._check_bugs(len(downtime.bugs) + 1)
        if existing:
            existing.wording = wording or existing.wording
            existing.security = existing.security or security
            existing.summary = summary or existing.summary
            existing.assignee = assignee or existing.assignee
        else:
            downtime.bugs.append(
                DowntimeBug(
                    bug=bug, wording=wording, security=security, summary=summary, assignee=assignee,
                    added_by=self.actor.who, pending="add" if pending else "",
                )
            )
        self.work.record(
            events.BugAdded(
                downtime.id, bug=bug, updated=existing is not None, looked_up=bool(summary), pending=pending,
                asks_ciduty=existing is None and State(downtime.state) is not State.PROPOSED and not self._approver(),
                by=self.actor.who, at=self.now,
            )
        )
        if rewords:
            self._notice_updated(downtime, reworded=[bug])
        return Outcome(downtime)

    def drop_bug(self, downtime_id: int, bug: int) -> Outcome:
        """Take a bug out. From an announced downtime the requester's drop is a pending change
        ("drop") that CiDuty approves; CiDuty's own drop is made at once and the updated notice goes out."""
        downtime = self.get(downtime_id)
        row = next((b for b in downtime.bugs if b.bug == bug), None)
        if row is None:
            raise DomainError("bug_not_in_downtime", bug=bug, id=downtime.id)
        state = State(downtime.state)
        in_notice = state is State.ANNOUNCED and row.pending != "add"
        if in_notice and not self._approver():
            self.work.transition("drop bug", downtime, f"bug {bug} (waits for CiDuty's approval)")
            row.pending = "drop"
            self.work.record(events.BugDropped(downtime.id, bug=bug, pending=True, at=self.now, by=self.actor.who))
            return Outcome(downtime)
        self.work.transition("drop bug", downtime, f"bug {bug}")
        was_approved = row.status == BugStatus.APPROVED
        downtime.bugs.remove(row)
        self.work.record(events.BugDropped(downtime.id, bug=bug, was_approved=was_approved, at=self.now))
        if in_notice:
            self._notice_updated(downtime, dropped=[bug])
        return Outcome(downtime)

    # ----- deciding -------------------------------------------------------------------------

    def approve(self, downtime_id: int) -> Outcome:
        """Approve a proposal; on an approved or announced downtime, approve what waits since
        (bugs added late, the requester's pending changes)."""
        downtime = self.get(downtime_id)
        if State(downtime.state) in (State.APPROVED, State.ANNOUNCED):
            return self._approve_changes(downtime)
        if not downtime.bugs:
            self.work.may("approve", downtime)
            raise DomainError("no_bugs", id=downtime.id)
        unassigned = self._unassigned(downtime.bugs)
        if unassigned:
            self.work.may("approve", downtime)
            raise DomainError("bugs_unassigned", bugs=unassigned[:SHOWN], count=len(unassigned))
        self.work.transition("approve", downtime)
        self._approve_rows([b for b in downtime.bugs if b.status == BugStatus.NOMINATED])
        self.work.record(
            events.Approved(downtime.id, revision=downtime.revision, bugs=tuple(b.bug for b in downtime.bugs))
        )
        return Outcome(downtime, warnings=self.queries.rules(downtime))

    def _unassigned(self, rows: Sequence[DowntimeBug]) -> list[int]:
        """The bugs of `rows` with nobody assigned (known only when Bugzilla is asked): refused approval."""
        return [b.bug for b in rows if self.settings.bugzilla_enabled and b.unassigned]

    @staticmethod
    def _approve_rows(rows: Sequence[DowntimeBug]) -> list[int]:
        """Mark `rows` approved (a pending "add" joins the notice); their bug numbers."""
        for b in rows:
            b.status, b.pending = BugStatus.APPROVED.value, ""
        return [b.bug for b in rows]

    def _approve_changes(self, downtime: Downtime) -> Outcome:
        self.work.may("approve", downtime)
        adds = [b for b in downtime.bugs if b.pending == "add" or (not b.pending and b.status == BugStatus.NOMINATED)]
        drops = [b for b in downtime.bugs if b.pending == "drop"]
        if not adds and not drops:
            raise DomainError("nothing_to_approve", id=downtime.id, state=downtime.state)
        unassigned = self._unassigned(adds)
        ready = [b for b in adds if b.bug not in unassigned]
        if not ready and not drops:
            raise DomainError("bugs_unassigned", bugs=unassigned[:SHOWN], count=len(unassigned))
        approved, dropped = [b.bug for b in ready], [b.bug for b in drops]
        joining = [b.bug for b in ready if b.pending == "add"]
        detail = "; ".join(
            part for part in (
                f"bug {', '.join(map(str, approved))} approved" if approved else "",
                f"bug {', '.join(map(str, dropped))} dropped" if dropped else "",
                f"bug {', '.join(map(str, unassigned))} left waiting (nobody assigned)" if unassigned else "",
            ) if part
        )
        self.work.transition("approve", downtime, detail)
        self._approve_rows(ready)
        for b in drops:
            downtime.bugs.remove(b)
        self.work.record(
            events.ChangesApproved(
                downtime.id, revision=downtime.revision, approved=tuple(approved), dropped=tuple(dropped),
                unassigned=tuple(unassigned), at=self.now,
            )
        )
        if joining or dropped:
            self._notice_updated(downtime, added=joining, dropped=dropped)
        return Outcome(
            downtime, warnings=self.queries.rules(downtime),
            facts={"approved": approved, "dropped": dropped, "unassigned": unassigned, "updated": bool(joining or dropped)
                   and State(downtime.state) is State.ANNOUNCED},
        )

    def reject(self, downtime_id: int, reason: str) -> Outcome:
        downtime = self.get(downtime_id)
        reason = clean_reason(reason)
        self.work.transition("reject", downtime, reason)
        self.work.record(events.Rejected(downtime.id, by=self.actor.who, reason=reason))
        return Outcome(downtime)

    def verdict(self, downtime_id: int, verdict: str, reason: str = "") -> Outcome:
        """A pre-approver's answer to the draft. Their answer replaces their earlier one: an
        objection stands until the same pre-approver pre-approves (withdraws it) or CiDuty
        announces over it with --force."""
        downtime = self.get(downtime_id)
        action = "preapprove" if verdict == "preapproved" else "object"
        reason = clean_reason(reason) if reason else ""
        mine = workers.same_person(self.actor.who, self.settings)
        earlier = [
            v for v in downtime.verdicts
            if v.active and v.verdict in workers.PREAPPROVAL_VERDICTS and v.account.casefold() in mine
        ]
        withdrawn = next((v for v in earlier if v.verdict == "objected"), None) if verdict == "preapproved" else None
        detail = f"withdraws the objection: {withdrawn.reason}" if withdrawn is not None else reason
        self.work.transition(action, downtime, detail)
        for old in earlier:
            old.active = False
        downtime.verdicts.append(
            Verdict(
                account=self.actor.who, network=self.actor.network, verdict=verdict, reason=reason, at=self.now,
                active=True,
            )
        )
        if verdict == "objected":
            self.work.record(
                events.Objected(downtime.id, by=self.actor.who, reason=reason, number=len(downtime.verdicts))
            )
        else:
            self.work.record(events.PreApproved(downtime.id, by=self.actor.who))
            if withdrawn is not None:
                self.work.record(events.ObjectionWithdrawn(downtime.id, by=self.actor.who, reason=withdrawn.reason))
        return Outcome(downtime)

    def confirm(self, downtime_id: int) -> Outcome:
        """Someone working in the downtime (its requester, an assignee of its bugs) confirms
        the draft wording; possible once a draft exists (from the approval on)."""
        downtime = self.get(downtime_id)
        self.work.may("confirm", downtime)
        crew = workers.crew(downtime, self.settings)
        me = workers.worker_of(self.actor.who, crew, self.settings)
        if me is None:
            raise DomainError("not_a_worker", id=downtime.id, workers=[w.name for w in crew[:SHOWN]], count=len(crew))
        self.work.transition("confirm", downtime, "" if me.name == self.actor.who else f"as {me.name}")
        for old in downtime.verdicts:
            if old.active and old.verdict == workers.CONFIRMED and workers.worker_of(old.account, [me], self.settings):
                old.active = False
        downtime.verdicts.append(
            Verdict(
                account=self.actor.who, network=self.actor.network, verdict=workers.CONFIRMED, at=self.now, active=True,
            )
        )
        _, waiting = workers.confirmations(downtime, self.settings)
        self.work.record(
            events.Confirmed(downtime.id, by=self.actor.who, worker=me.name, waiting=tuple(w.name for w in waiting))
        )
        return Outcome(downtime)

    def announce(self, downtime_id: int, force_reason: str | None = None) -> Outcome:
        """Announce: refused over a failing hard rule or a standing objection unless forced
        with a reason (the objections forced over are cleared, their objectors told). The
        pre-approvers who have not answered and the workers who have not confirmed the draft
        are named, as warnings: the process asks for objections, not for sign-off."""
        downtime = self.get(downtime_id)
        self.work.may("announce", downtime)
        if force_reason is not None:
            force_reason = clean_reason(force_reason)
        failures = self.queries.rules(downtime)
        hard = tuple(f for f in failures if f.hard)
        standing = [v for v in downtime.verdicts if v.active and v.verdict == "objected"]
        objections = tuple(events.Objection(v.account, v.reason, v.network) for v in standing)
        if (hard or objections) and force_reason is None:
            raise DomainError("announce_blocked", id=downtime.id, failures=hard, objections=objections)
        forced = bool(hard or objections)
        detail = ""
        if forced:
            over = "; ".join([f.rule for f in hard] + [f"{o.by} objects: {o.reason}" for o in objections])
            detail = f"forced: {force_reason} (over: {over})"
        unanswered = workers.unanswered(downtime.verdicts, self.settings)
        _, waiting = workers.confirmations(downtime, self.settings)
        self.work.transition("announce", downtime, detail)
        for v in standing:
            v.active = False  # overridden: it no longer stands (the history keeps it and the reason)
        downtime.announced_at = self.now
        downtime.was_announced = True
        self.work.record(
            events.Announced(
                downtime.id, revision=downtime.revision, overridden=hard if forced else (),
                objections=objections if forced else (), force_reason=force_reason or "",
                unanswered=tuple(unanswered), unconfirmed=tuple(w.name for w in waiting), by=self.actor.who,
            )
        )
        return Outcome(downtime, warnings=[f for f in failures if not f.hard])

    # ----- changing the plan ----------------------------------------------------------------

    def reschedule(self, downtime_id: int, start: dt.datetime, duration: dt.timedelta | None) -> Outcome:
        """Move a downtime. A new time resets the pre-approvals and the workers' confirmations
        (the draft goes again); objections stay. The same start and duration change nothing."""
        downtime = self.get(downtime_id)
        duration = duration or downtime.duration
        self.work.may("reschedule", downtime)
        if start == downtime.start_at and start + duration == downtime.end_at:
            raise DomainError("reschedule_same", id=downtime.id, start=start, duration=duration)
        self._check_time(start, duration)
        old_start, old_end = downtime.start_at, downtime.end_at
        before = State(downtime.state)
        after = State.APPROVED if before is State.ANNOUNCED else before  # announce it again
        downtime.start_at, downtime.end_at = start, start + duration
        downtime.state = after.value
        downtime.revision += 1
        downtime.updated_at = self.now
        reset = {"preapproved": 0, workers.CONFIRMED: 0}
        for v in downtime.verdicts:
            if v.active and v.verdict in reset:
                v.active = False
                reset[v.verdict] += 1
        objectors = tuple(dict.fromkeys(v.account for v in downtime.verdicts if v.active and v.verdict == "objected"))
        self.work.audit(
            downtime.id, "reschedule", before.value, after.value,
            f"{old_start:%Y-%m-%d %H:%M}–{old_end:%H:%M} UTC → {start:%Y-%m-%d %H:%M}–{downtime.end_at:%H:%M} UTC",
        )
        self.work.record(
            events.Rescheduled(
                downtime.id, revision=downtime.revision, old_start=old_start, old_end=old_end, before=before,
                approvals_reset=reset["preapproved"], confirmations_reset=reset[workers.CONFIRMED],
                objections=objectors, draft=before in (State.APPROVED, State.ANNOUNCED),
            )
        )
        return Outcome(downtime, warnings=self.queries.rules(downtime))

    def extend(self, downtime_id: int, duration: dt.timedelta) -> Outcome:
        downtime = self.get(downtime_id)
        old_end = downtime.end_at
        if downtime.end_at + duration - downtime.start_at > planning.MAX_DURATION:
            self.work.may("extend", downtime)
            raise DomainError("too_long", most=planning.MAX_DURATION)
        self.work.transition("extend", downtime, f"end {old_end:%H:%M} → {(old_end + duration):%H:%M} UTC")
        downtime.end_at = old_end + duration
        downtime.revision += 1
        self.work.record(events.Extended(downtime.id, revision=downtime.revision, old_end=old_end))
        return Outcome(downtime, warnings=[w for w in self.queries.rules(downtime) if w.rule in ("overlap", "blackout")])

    def cancel(
        self, downtime_id: int, reason: str, *, merged_into: int | None = None, kept: Sequence[int] = ()
    ) -> Outcome:
        """Cancel (CiDuty), or withdraw (the requester, until it is announced). `kept`: merged
        away, the bugs the other downtime approved at once."""
        downtime = self.get(downtime_id)
        before = State(downtime.state)
        reason = clean_reason(reason)
        self.work.transition("cancel" if merged_into is None else "merge away", downtime, reason)
        if before is State.IN_PROGRESS:
            self.trees.restore_for(downtime)
        by_requester = merged_into is None and self.work.is_requester(downtime) and not self._approver()
        self.work.record(
            events.Cancelled(
                downtime.id, by=self.actor.who, reason=reason, before=before, merged_into=merged_into,
                kept=tuple(kept), by_requester=by_requester,
            )
        )
        return Outcome(downtime, facts={"withdrawn": True} if by_requester else {})

    def merge(self, into_id: int, other_id: int) -> Outcome:
        """Consolidate: the other downtime's bugs move into this one and it is cancelled. Into an
        approved or announced downtime the moved bugs are approved at once (CiDuty merges; a bug
        with nobody assigned waits), and an announced one sends the updated notice."""
        if into_id == other_id:
            raise DomainError("merge_same")
        # Locked in the order of their ids: two merges of the same pair never wait for each other.
        first, second = [self.get(i) for i in sorted((into_id, other_id))]
        into, other = (first, second) if first.id == into_id else (second, first)
        self.work.may("merge away", other)
        self.work.transition("merge", into, f"bugs of #{other.id}")
        self._check_bugs(len({b.bug for b in into.bugs} | {b.bug for b in other.bugs}))
        state = State(into.state)
        moved = []
        for bug in list(other.bugs):
            if not any(b.bug == bug.bug for b in into.bugs):
                into.bugs.append(
                    DowntimeBug(
                        bug=bug.bug, wording=bug.wording or other.summary, security=bug.security,
                        summary=bug.summary, assignee=bug.assignee, added_by=bug.added_by,
                        pending="add" if state is State.ANNOUNCED else "",
                    )
                )
                moved.append(bug.bug)
        into.systems = ",".join(dict.fromkeys(into.system_names + other.system_names))
        self.work.record(events.Merged(into.id, other=other.id, moved=tuple(moved)))
        approved: list[int] = []
        if state in (State.APPROVED, State.ANNOUNCED) and moved:
            rows = [b for b in into.bugs if b.bug in moved]
            unassigned = self._unassigned(rows)
            approved = self._approve_rows([b for b in rows if b.bug not in unassigned])
            self.work.record(
                events.ChangesApproved(
                    into.id, revision=into.revision, approved=tuple(approved), dropped=(),
                    unassigned=tuple(unassigned), at=self.now,
                )
            )
            if approved:
                self._notice_updated(into, added=approved)
        self.cancel(other.id, f"merged into downtime #{into.id}", merged_into=into.id, kept=approved)
        return Outcome(into)

    def edit(self, downtime_id: int, wording: str) -> Outcome:
        """Change the notice wording: the requester while it is proposed, CiDuty until the end.
        After the announcement everyone told before gets the updated notice."""
        downtime = self.get(downtime_id)
        self.work.may("edit", downtime)
        wording = clean_wording(wording)
        old = downtime.summary
        if wording == old:
            raise DomainError("wording_unchanged", id=downtime.id)
        self.work.transition("edit", downtime, f"{old} → {wording}")
        downtime.summary = wording
        downtime.systems = ",".join(host for host in self.settings.systems if names_host(wording, host))
        self.work.record(events.WordingEdited(downtime.id, by=self.actor.who))
        self._notice_updated(downtime, old_wording=old)
        return Outcome(downtime, offers=self.queries.consolidations(downtime))

    # ----- running it -----------------------------------------------------------------------

    def start(self, downtime_id: int, *, force: bool = False) -> Outcome:
        downtime = self.get(downtime_id)
        self.work.may("start", downtime)
        early = downtime.start_at - self.now > EARLY_START
        if early and not force:
            raise DomainError("too_early", id=downtime.id, start=downtime.start_at)
        planned_start, planned_end = downtime.start_at, downtime.end_at
        detail = ""
        if early:
            # The work takes as long as planned from when it really starts: `!canipush`, `show`
            # and the end and overrun reminders (models/reminders.py) follow the new end. The
            # reminders before the start are not planned once it runs: none is sent again.
            downtime.start_at, downtime.end_at = self.now, self.now + (planned_end - planned_start)
            downtime.updated_at = self.now
            # A new plan, as an extension makes one: new reminder ids, a new calendar SEQUENCE.
            downtime.revision += 1
            detail = (
                f"forced early start: expected end moved from {planned_end:%Y-%m-%d %H:%M} UTC "
                f"to {downtime.end_at:%Y-%m-%d %H:%M} UTC (planned start {planned_start:%Y-%m-%d %H:%M} UTC)"
            )
        self.work.transition("start", downtime, detail)
        downtime.started_at = self.now
        self.trees.close_for(downtime)
        self.work.record(
            events.Started(
                downtime.id, by=self.actor.who, early=early,
                planned_start=planned_start if early else None, planned_end=planned_end if early else None,
            )
        )
        return Outcome(downtime)

    def done(self, downtime_id: int, bug: int, outcome: str, note: str = "") -> Outcome:
        downtime = self.get(downtime_id)
        row = next((b for b in downtime.bugs if b.bug == bug), None)
        if row is None:
            raise DomainError("bug_not_in_downtime", bug=bug, id=downtime.id)
        note = clean_reason(note) if note else ""
        after_end = State(downtime.state) is State.FINISHED
        self.work.transition(
            "done", downtime, ("correction after the end: " if after_end else "")
            + f"bug {bug}: {outcome}" + (f" ({note})" if note else ""),
        )
        row.status = outcome
        row.note = note
        correction = 0
        if after_end:
            # Each correction is told, however often the same bug is corrected: it is numbered.
            correction = self.session.scalar(
                select(func.count(AuditEvent.id)).where(
                    AuditEvent.downtime_id == downtime.id, AuditEvent.action == "done",
                    AuditEvent.from_state == State.FINISHED.value,
                )
            ) or 1
        self.work.record(events.BugOutcome(downtime.id, bug=bug, outcome=outcome, note=note, correction=correction))
        return Outcome(downtime)

    def end(self, downtime_id: int) -> Outcome:
        downtime = self.get(downtime_id)
        self.work.transition("end", downtime)
        downtime.ended_at = self.now
        no_outcome = []
        for bug in downtime.bugs:
            if bug.status in (BugStatus.NOMINATED, BugStatus.APPROVED):
                bug.status = BugStatus.NOT_DONE.value
                bug.note = bug.note or "no outcome recorded before the end"
                no_outcome.append(bug.bug)
        restored = self.trees.restore_for(downtime)
        left = self.trees.not_open(downtime, restored.left if restored else ())
        self.work.record(events.Ended(downtime.id, no_outcome=tuple(no_outcome), left=left))
        return Outcome(downtime)

    def verify(self, downtime_id: int) -> Outcome:
        downtime = self.get(downtime_id)
        self.work.transition("verify", downtime)
        downtime.verified_by = self.actor.who
        downtime.verified_at = self.now
        self.work.record(events.Verified(downtime.id, by=self.actor.who))
        return Outcome(downtime)

    # ----- the bot on its own ---------------------------------------------------------------

    def remind(self, downtime: Downtime, reminder: Reminder, *, late: bool) -> None:
        """A reminder fell due. At the start with [policy] auto_start the bot starts the
        downtime itself (as CiDuty would; a refusal falls back to reminding CiDuty)."""
        auto_start = reminder.kind == START and self.settings.policy.auto_start
        if auto_start and State(downtime.state) is State.ANNOUNCED:
            try:
                # start refuses (state, role, too early) before it changes anything.
                self.start(downtime.id)
            except DomainError as err:
                log.warning("auto_start of downtime #%s refused (%s): reminding CiDuty instead", downtime.id, err)
            else:
                log.info("downtime #%s started by the bot ([policy] auto_start)", downtime.id)
                return
        self.work.record(
            events.ReminderDue(
                downtime.id, job_id=reminder.job_id, kind=reminder.kind, offset=reminder.offset, late=late,
                auto_start_failed=auto_start,
            )
        )


def names_host(text: str, host: str) -> bool:
    """Whether `text` names `host` whole, also as the process document writes it (build.m.o).

    "mail.build.mozilla.org" names that host only, not "build.mozilla.org" too.
    """
    return _host_pattern(host).search(text) is not None


@functools.cache
def _host_pattern(host: str) -> re.Pattern[str]:
    """The host and its short form as one compiled pattern, made once per host: every proposal
    is matched against every host of the registry, and building the patterns anew cost more
    than the matching."""
    forms = sorted({host, re.sub(r"\.mozilla\.org$", ".m.o", host)})
    return re.compile(rf"(?<![\w.-])(?:{'|'.join(map(re.escape, forms))})(?![\w-]|\.\w)", re.IGNORECASE)
