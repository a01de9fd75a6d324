"""The use cases: one method per thing a person can do to a downtime.

A `Core` is made per command with the session of that command's transaction,
the time, the settings and the actor. It checks the lifecycle and the roles,
changes the rows, writes the audit trail, and queues what must be said or done
outside (the outbox) in the same transaction. It never sends anything itself
and never reads the wall clock.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from models import lifecycle, planning
from models.lifecycle import BugStatus, DomainError, Role, State
from models.orm import AuditEvent, Downtime, DowntimeBug, OutboxMessage, Verdict
from models.outbox import Outbox
from models.trees import TreeUseCases
from models.wording import clean_wording

Render = Callable[..., str]
PAGE_SIZE = 10


@dataclass(frozen=True)
class Actor:
    account: str | None
    network: str
    nick: str
    roles: frozenset[Role]
    reply_target: str = ""

    @property
    def who(self) -> str:
        return self.account or self.nick


@dataclass(frozen=True)
class MailRouting:
    configured: bool = False
    remind_lists: bool = False
    preapprovers: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    announce_to: tuple[str, ...] = ()
    copy_to: tuple[str, ...] = ()
    people: Mapping[str, str] = field(default_factory=dict)  # casefolded account -> mail address


@dataclass(frozen=True)
class Settings:
    """What the core needs to know of the configuration."""

    policy: planning.Policy = planning.Policy()
    requests_channel: str = "#ci"
    announce_channel: str = "#developers"
    networks: tuple[str, ...] = ("console",)
    trees: tuple[str, ...] = ("autoland", "mozilla-central")
    tree_backend: str = "builtin"
    systems: Mapping[str, str] = field(default_factory=dict)
    bugzilla_enabled: bool = False
    bugzilla_flag: str = "needs-treeclosure"
    mail: MailRouting = MailRouting()
    ciduty: tuple[str, ...] = ()
    sheriffs: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What a use case did, for the handler's reply template."""

    downtime: Downtime | None = None
    warnings: list[planning.RuleFailure] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)  # what a person must do by hand
    notes: list[str] = field(default_factory=list)


class Core(TreeUseCases):
    def __init__(self, session: Session, *, now: dt.datetime, settings: Settings, render: Render, actor: Actor):
        self.session = session
        self.now = now
        self.settings = settings
        self.render = render
        self.actor = actor
        self.outbox = Outbox(session, now=now, networks=settings.networks)
        self.changed = False

    # ----- reading -------------------------------------------------------------------------

    def get(self, downtime_id: int) -> Downtime:
        downtime = self.session.get(
            Downtime, downtime_id, options=[selectinload(Downtime.bugs), selectinload(Downtime.verdicts)]
        )
        if downtime is None:
            raise DomainError(f"there is no downtime #{downtime_id} (see !downtime list)")
        return downtime

    def list(self, which: str = "upcoming", page: int = 1) -> tuple[list[Downtime], int]:
        """A page of downtimes and the number of pages. Upcoming: active and not yet over."""
        query = select(Downtime)
        counter = select(func.count(Downtime.id))
        if which == "upcoming":
            # start_at bounds the index scan: no downtime lasts longer than MAX_DURATION.
            cond = (
                Downtime.state.in_([s.value for s in lifecycle.ACTIVE]),
                Downtime.start_at >= self.now - planning.MAX_DURATION,
                Downtime.end_at >= self.now,
            )
            query, counter = query.where(*cond).order_by(Downtime.start_at), counter.where(*cond)
        elif which == "past":
            cond = (Downtime.start_at < self.now,)
            query = query.where(*cond).order_by(Downtime.start_at.desc())
            counter = counter.where(*cond)
        else:
            query = query.order_by(Downtime.start_at.desc())
        total = self.session.scalar(counter) or 0
        pages = max(1, -(-total // PAGE_SIZE))
        rows = self.session.scalars(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
        return list(rows), pages

    def history(self, downtime_id: int) -> list[AuditEvent]:
        self.get(downtime_id)
        return list(
            self.session.scalars(
                select(AuditEvent).where(AuditEvent.downtime_id == downtime_id).order_by(AuditEvent.id)
            )
        )

    def pending_jobs(self, downtime_id: int) -> list[OutboxMessage]:
        return list(
            self.session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.downtime_id == downtime_id,
                    OutboxMessage.status != "sent",
                    OutboxMessage.kind.in_(["bugzilla", "trees", "mail"]),
                )
                .order_by(OutboxMessage.id)
            )
        )

    def nearby(self, start: dt.datetime, end: dt.datetime, *, exclude: int | None = None) -> list[planning.Slot]:
        """Active downtimes that could overlap or be near [start, end) (indexed range)."""
        gap = self.settings.policy.min_gap
        rows = self.session.execute(
            select(Downtime.id, Downtime.start_at, Downtime.end_at, Downtime.summary).where(
                Downtime.start_at >= start - gap - planning.MAX_DURATION,
                Downtime.start_at < end + gap,
                Downtime.state.in_([s.value for s in lifecycle.ACTIVE]),
            )
        )
        return [planning.Slot(i, s, e, t) for i, s, e, t in rows if i != exclude]

    def suggest(self, duration: dt.timedelta) -> list[dt.datetime]:
        horizon = dt.timedelta(days=90)
        others = self.nearby(self.now, self.now + horizon)
        return planning.suggest(duration, now=self.now, policy=self.settings.policy, others=others, horizon=horizon)

    def rules(self, downtime: Downtime) -> list[planning.RuleFailure]:
        others = self.nearby(downtime.start_at, downtime.end_at, exclude=downtime.id)
        return planning.check(
            downtime.start_at, downtime.end_at, now=self.now, policy=self.settings.policy, others=others
        )

    def notice(self, downtime_id: int) -> str:
        return self.render("notice.txt", d=self.get(downtime_id))

    # ----- changing --------------------------------------------------------------------------

    def _may(self, action: str, downtime: Downtime) -> State:
        """The state after `action`, or a refusal: not identified, no role, wrong state."""
        self._identified()
        return lifecycle.check(
            action,
            State(downtime.state),
            self.actor.roles,
            downtime_id=downtime.id,
            is_requester=self._is_requester(downtime),
        )

    def _transition(self, action: str, downtime: Downtime, detail: str = "") -> State:
        before = State(downtime.state)
        after = self._may(action, downtime)
        downtime.state = after.value
        downtime.updated_at = self.now
        self._audit(downtime.id, action, before.value, after.value, detail)
        return after

    def _identified(self) -> None:
        if not self.actor.account:
            raise lifecycle.Forbidden(
                f"identify with services first: {self.actor.nick} is not logged in to an account, "
                "and changes are made by account"
            )

    def held_bugs(self, bugs: Sequence[int]) -> set[int]:
        """Which of these bugs an active downtime already holds."""
        if not bugs:
            return set()
        return set(
            self.session.scalars(
                select(DowntimeBug.bug)
                .join(Downtime)
                .where(DowntimeBug.bug.in_(bugs), Downtime.state.in_([s.value for s in lifecycle.ACTIVE]))
            )
        )

    def _is_requester(self, downtime: Downtime) -> bool:
        return bool(self.actor.account) and downtime.requester.casefold() == (self.actor.account or "").casefold()

    def _audit(self, downtime_id: int | None, action: str, before: str = "", after: str = "", detail: str = "") -> None:
        self.changed = True
        self.session.add(
            AuditEvent(
                downtime_id=downtime_id,
                at=self.now,
                account=self.actor.who,
                network=self.actor.network,
                action=action,
                from_state=before,
                to_state=after,
                detail=detail,
            )
        )

    def _check_time(self, start: dt.datetime, duration: dt.timedelta) -> None:
        if start <= self.now:
            raise DomainError(
                f"{start:%Y-%m-%d %H:%M} UTC is in the past (it is now {self.now:%Y-%m-%d %H:%M} UTC)"
            )
        if not dt.timedelta(minutes=5) <= duration <= planning.MAX_DURATION:
            raise DomainError("a downtime lasts from 5m to 7d")

    def _check_trees(self, trees: Sequence[str]) -> None:
        unknown = [t for t in trees if t not in self.settings.trees]
        if unknown:
            raise DomainError(
                f"unknown tree {', '.join(unknown)}: the trees are {', '.join(self.settings.trees)}"
            )

    def _tag_systems(self, text: str) -> str:
        """The registry's hosts that the wording names, as whole host names.

        "mail.build.mozilla.org" names that host only, not "build.mozilla.org" too.
        """
        return ",".join(host for host in self.settings.systems if _names_host(text, host))

    def propose(
        self,
        start: dt.datetime,
        duration: dt.timedelta,
        wording: str,
        *,
        bugs: Sequence[int] = (),
        trees: Sequence[str] = (),
    ) -> Outcome:
        self._identified()
        self._check_time(start, duration)
        self._check_trees(trees)
        wording = clean_wording(wording)
        downtime = Downtime(
            state=State.PROPOSED.value,
            summary=wording,
            start_at=start,
            end_at=start + duration,
            requester=self.actor.account,
            requester_network=self.actor.network,
            trees=",".join(dict.fromkeys(trees)),
            systems=self._tag_systems(wording),
            created_at=self.now,
            updated_at=self.now,
        )
        self.session.add(downtime)
        self.session.flush()
        for bug in dict.fromkeys(bugs):
            downtime.bugs.append(DowntimeBug(bug=bug, wording="", added_by=self.actor.who))
        self._audit(downtime.id, "propose", "", State.PROPOSED.value, wording)
        outcome = Outcome(downtime, warnings=self.rules(downtime))
        outcome.notes.extend(self._system_overlaps(downtime))
        if bugs and self.settings.bugzilla_enabled:
            self._nominate(downtime, list(dict.fromkeys(bugs)), f"dt{downtime.id}:bz-nominate")
        elif bugs:
            outcome.manual.append(
                f"Bugzilla is not configured: set {self.settings.bugzilla_flag}? on bug "
                f"{_bug_list(bugs)} by hand"
            )
        elsewhere = [n for n in self.settings.networks if n != self.actor.network]
        if elsewhere:  # CiDuty on the other networks hears of it too
            self.outbox.chat(
                f"dt{downtime.id}:proposed",
                self.settings.requests_channel,
                self.render("proposed_ping.txt", d=downtime),
                mentions=self.settings.ciduty,
                networks=elsewhere,
                downtime_id=downtime.id,
            )
        return outcome

    def _system_overlaps(self, downtime: Downtime) -> list[str]:
        """Other active downtimes that work on the same hosts or overlap in time: offered for consolidation.

        (A downtime merely near in time gets the planner's "near" warning instead.)
        """
        notes = []
        mine = set(downtime.system_names)
        active = Downtime.state.in_([s.value for s in lifecycle.ACTIVE])
        # Two indexed reads instead of every active downtime: those overlapping in time, and
        # (only when this one names hosts) those naming one of the same hosts.
        near_in_time = (
            Downtime.start_at >= downtime.start_at - planning.MAX_DURATION,
            Downtime.start_at < downtime.end_at,
            Downtime.end_at > downtime.start_at,
        )
        condition = and_(*near_in_time)
        if mine:
            same_hosts = and_(
                Downtime.start_at >= self.now - planning.MAX_DURATION,
                or_(*(Downtime.systems.contains(host) for host in mine)),
            )
            condition = or_(condition, same_hosts)
        others = self.session.scalars(
            select(Downtime).where(Downtime.id != downtime.id, active, condition).order_by(Downtime.start_at)
        )
        for other in others:
            shared = mine & set(other.system_names)
            overlaps = other.start_at < downtime.end_at and downtime.start_at < other.end_at
            if not shared and not overlaps:
                continue
            why = [f"also works on {', '.join(sorted(shared))}"] if shared else []
            if overlaps:
                why.append(f"overlaps it in time ({other.start_at:%Y-%m-%d %H:%M}–{other.end_at:%H:%M} UTC)")
            notes.append(
                f"downtime #{other.id} {' and '.join(why)}: consolidate RelEng and IT downtimes with "
                f"!downtime merge {other.id} {downtime.id}"
            )
        return notes

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
        downtime = self.get(downtime_id)
        self._transition("add bug", downtime, f"bug {bug}")
        wording = clean_wording(wording) if wording else ""
        existing = next((b for b in downtime.bugs if b.bug == bug), None)
        if existing:
            existing.wording = wording or existing.wording
            existing.security = existing.security or security
            existing.summary = summary or existing.summary
            existing.assignee = assignee or existing.assignee
        else:
            downtime.bugs.append(
                DowntimeBug(
                    bug=bug,
                    wording=wording,
                    security=security,
                    summary=summary,
                    assignee=assignee,
                    added_by=self.actor.who,
                )
            )
        outcome = Outcome(downtime)
        if existing:
            outcome.notes.append(f"bug {bug} was already in downtime #{downtime.id}: updated")
        if not self.settings.bugzilla_enabled:
            outcome.manual.append(
                f"Bugzilla is not configured: set {self.settings.bugzilla_flag}? on bug {bug} by hand"
            )
        elif not existing:
            self._nominate(downtime, [bug], f"dt{downtime.id}:bz-nominate:{bug}")
            if not summary:
                outcome.notes.append(
                    f"Bugzilla did not answer: bug {bug} gets {self.settings.bugzilla_flag}? when it does "
                    f"(see !downtime show {downtime.id})"
                )
        return outcome

    def _nominate(self, downtime: Downtime, bugs: list[int], key: str) -> None:
        flag = self.settings.bugzilla_flag
        self.outbox.job(
            "bugzilla", key, f"set {flag}? on bug {_bug_list(bugs)} unless already set",
            {"op": "nominate", "bugs": bugs}, downtime_id=downtime.id,
        )

    def drop_bug(self, downtime_id: int, bug: int) -> Outcome:
        downtime = self.get(downtime_id)
        row = next((b for b in downtime.bugs if b.bug == bug), None)
        if row is None:
            raise DomainError(f"bug {bug} is not in downtime #{downtime.id}")
        self._transition("drop bug", downtime, f"bug {bug}")
        downtime.bugs.remove(row)
        return Outcome(downtime)

    def approve(self, downtime_id: int) -> Outcome:
        downtime = self.get(downtime_id)
        if not downtime.bugs:
            self._may("approve", downtime)
            raise DomainError(
                f"downtime #{downtime.id} has no bugs: add one with !downtime bug add {downtime.id} <bug>"
            )
        unassigned = [b.bug for b in downtime.bugs if self.settings.bugzilla_enabled and _nobody(b.assignee)]
        if unassigned:
            self._may("approve", downtime)
            raise DomainError(
                f"bug {_bug_list(unassigned)} has nobody assigned: assign the person doing the work first"
            )
        self._transition("approve", downtime)
        for bug in downtime.bugs:
            if bug.status == BugStatus.NOMINATED:
                bug.status = BugStatus.APPROVED.value
        outcome = Outcome(downtime, warnings=self.rules(downtime))
        tag = whiteboard_tag(downtime.start_at)
        bugs = [b.bug for b in downtime.bugs]
        if self.settings.bugzilla_enabled:
            self.outbox.job(
                "bugzilla",
                f"dt{downtime.id}:r{downtime.revision}:bz-approve",
                f"set {self.settings.bugzilla_flag}+ and whiteboard {tag} on bug {_bug_list(bugs)}",
                {"op": "approve", "bugs": bugs, "tag": tag},
                downtime_id=downtime.id,
            )
        else:
            outcome.manual.append(
                f"Bugzilla is not configured: set {self.settings.bugzilla_flag}+ and add {tag} to the "
                f"whiteboard of bug {_bug_list(bugs)} by hand"
            )
        self._mail_draft(downtime, outcome)
        return outcome

    def _mail_draft(self, downtime: Downtime, outcome: Outcome) -> None:
        """The draft goes to everyone working in the downtime, the requester and the pre-approvers."""
        routing = self.settings.mail
        assignees = [b.assignee for b in downtime.bugs if b.assignee and "@" in b.assignee and not _nobody(b.assignee)]
        requester = routing.people.get(downtime.requester.casefold(), "")
        if routing.configured and not requester:
            outcome.notes.append(
                f"the requester {downtime.requester} has no mail address in [people]: the draft does not reach them"
            )
        to = list(dict.fromkeys(a for a in [*assignees, requester, *routing.preapprovers] if a))
        if not to and not routing.configured:
            to = ["(pre-approvers)"]
        if not to and not routing.cc:
            outcome.manual.append("nobody to mail the draft to: set [mail] preapprovers (and [people])")
            return
        self.outbox.mail(
            f"dt{downtime.id}:r{downtime.revision}:draft",
            to=to,
            cc=routing.cc,
            subject=self.render("draft_subject.txt", d=downtime).strip(),
            body=self.render("draft_message.txt", d=downtime),
            downtime_id=downtime.id,
        )
        if not routing.configured:
            outcome.manual.append("mail is not configured: the draft notice was printed, not sent")

    def reject(self, downtime_id: int, reason: str) -> Outcome:
        downtime = self.get(downtime_id)
        self._transition("reject", downtime, clean_wording(reason))
        self._tell_requester(downtime, f"dt{downtime.id}:rejected", "rejected", reason)
        return Outcome(downtime)

    def verdict(self, downtime_id: int, verdict: str, reason: str = "") -> Outcome:
        downtime = self.get(downtime_id)
        action = "preapprove" if verdict == "preapproved" else "object"
        self._transition(action, downtime, reason)
        for old in downtime.verdicts:
            if old.active and old.account.casefold() == self.actor.who.casefold():
                old.active = False
        downtime.verdicts.append(
            Verdict(
                account=self.actor.who,
                network=self.actor.network,
                verdict=verdict,
                reason=reason,
                at=self.now,
            )
        )
        if verdict == "objected":
            self.outbox.chat(
                f"dt{downtime.id}:objection:{len(downtime.verdicts)}",
                self.settings.requests_channel,
                f"Pre-approver {self.actor.who} objects to downtime #{downtime.id}: {reason}",
                mentions=self.settings.ciduty,
                downtime_id=downtime.id,
            )
        return Outcome(downtime)

    def announce(self, downtime_id: int, force_reason: str | None = None) -> Outcome:
        downtime = self.get(downtime_id)
        self._may("announce", downtime)
        failures = self.rules(downtime)
        hard = [f for f in failures if f.hard]
        objections = [v for v in downtime.verdicts if v.active and v.verdict == "objected"]
        blockers = [f.message for f in hard] + [f"{v.account} objects: {v.reason}" for v in objections]
        if blockers and force_reason is None:
            raise DomainError(
                f"cannot announce downtime #{downtime.id}: {'; '.join(blockers)} "
                f"(to announce anyway: !downtime announce {downtime.id} --force -- <reason>)"
            )
        detail = f"forced: {force_reason} (over: {'; '.join(blockers)})" if blockers else ""
        self._transition("announce", downtime, detail)
        downtime.announced_at = self.now
        downtime.was_announced = True
        key = f"dt{downtime.id}:r{downtime.revision}:announce"
        text = self.render("announce_chat.txt", d=downtime)
        self._tell_channels(key, downtime, text)
        # A second announcement (after a reschedule) answers the first: one conversation.
        self._mail_lists(downtime, "announce", thread=self._announcement_thread(downtime), calendar="REQUEST")
        outcome = Outcome(downtime, warnings=[f for f in failures if not f.hard])
        if blockers:
            outcome.notes.append(f"announced over: {'; '.join(blockers)} (reason logged: {force_reason})")
        return outcome

    def _tell_channels(self, key: str, downtime: Downtime, text: str) -> None:
        """Say `text` in the announce and requests channels, on every network."""
        for channel in self._channels():
            self.outbox.chat(key, channel, text, downtime_id=downtime.id)

    def _tell_requester(self, downtime: Downtime, key: str, what: str, reason: str) -> None:
        """Tell the requester privately, on the network they asked from."""
        self.outbox.chat(
            key,
            "@" + downtime.requester,
            f"Your downtime #{downtime.id} was {what} by {self.actor.who}: {reason}",
            networks=[downtime.requester_network],
            downtime_id=downtime.id,
        )

    def _channels(self) -> list[str]:
        return list(dict.fromkeys([self.settings.announce_channel, self.settings.requests_channel]))

    def _mail_lists(
        self,
        downtime: Downtime,
        event: str,
        *,
        thread: str | None,
        calendar: str | None,
        key: str | None = None,
        **context: object,
    ) -> None:
        """Mail the lists; a later mail goes where the announcement went, in its thread."""
        routing = self.settings.mail
        to, cc = list(routing.announce_to), list(routing.copy_to)
        first = self.session.scalar(select(OutboxMessage).where(OutboxMessage.key == thread)) if thread else None
        if first is not None:
            to = list(dict.fromkeys([*first.payload.get("to", []), *to]))
            cc = [a for a in dict.fromkeys([*first.payload.get("cc", []), *cc]) if a not in to]
        if not to and not cc:
            if routing.configured:
                return  # no lists configured: the channels were told
            to = ["(announcement lists)"]
        # A cancellation must outrank the last invitation, or calendars keep the event (RFC 5546).
        sequence = downtime.revision + (1 if calendar == "CANCEL" else 0)
        self.outbox.mail(
            key or f"dt{downtime.id}:r{downtime.revision}:{event}:mail",
            to=to,
            cc=cc,
            subject=self.render(f"{event}_subject.txt", d=downtime, **context).strip(),
            body=self.render(f"{event}_message.txt", d=downtime, **context),
            downtime_id=downtime.id,
            thread=thread,
            calendar=(
                {"method": calendar, "sequence": sequence,
                 "status": "CANCELLED" if calendar == "CANCEL" else "CONFIRMED"}
                if calendar
                else None
            ),
        )

    def mail_reminder(self, downtime: Downtime, job_id: str, kind: str) -> None:
        """With [mail] remind_lists, a reminder before the start also goes to the lists, in the
        announcement's thread (never before an announcement: there is nothing to remind of)."""
        if not self.settings.mail.remind_lists or not downtime.was_announced:
            return
        thread = self._announcement_thread(downtime)
        if thread is None:
            return
        self._mail_lists(downtime, "reminder", thread=thread, calendar=None, key=f"{job_id}:mail", kind=kind)

    def _announcement_thread(self, downtime: Downtime) -> str | None:
        return self.session.scalar(
            select(OutboxMessage.key)
            .where(OutboxMessage.downtime_id == downtime.id, OutboxMessage.key.like(f"dt{downtime.id}:r%:announce:mail"))
            .order_by(OutboxMessage.id)
            .limit(1)
        )

    def reschedule(self, downtime_id: int, start: dt.datetime, duration: dt.timedelta | None) -> Outcome:
        downtime = self.get(downtime_id)
        duration = duration or downtime.duration
        self._may("reschedule", downtime)
        self._check_time(start, duration)
        old_start, old_end = downtime.start_at, downtime.end_at
        before = State(downtime.state)
        after = lifecycle.after_reschedule(before)
        downtime.start_at, downtime.end_at = start, start + duration
        downtime.state = after.value
        downtime.revision += 1
        downtime.updated_at = self.now
        reset = 0
        if before in (State.APPROVED, State.ANNOUNCED):
            for v in downtime.verdicts:
                if v.active:
                    v.active = False
                    reset += 1
        self._audit(
            downtime.id,
            "reschedule",
            before.value,
            after.value,
            f"{old_start:%Y-%m-%d %H:%M}–{old_end:%H:%M} UTC → {start:%Y-%m-%d %H:%M}–{downtime.end_at:%H:%M} UTC",
        )
        outcome = Outcome(downtime, warnings=self.rules(downtime))
        if reset:
            outcome.notes.append(f"{reset} pre-approval(s) reset: the pre-approvers must answer again")
        if before is State.ANNOUNCED:
            outcome.notes.append(f"announce it again with !downtime announce {downtime.id}")
        self._bugzilla_retag(downtime, outcome, "rescheduled")
        if downtime.was_announced:
            text = self.render("rescheduled_chat.txt", d=downtime, old_start=old_start)
            self._tell_channels(f"dt{downtime.id}:r{downtime.revision}:rescheduled", downtime, text)
            self._mail_lists(downtime, "rescheduled", thread=self._announcement_thread(downtime), calendar="REQUEST")
        return outcome

    def _bugzilla_retag(self, downtime: Downtime, outcome: Outcome, why: str) -> None:
        if State(downtime.state) is State.PROPOSED and why == "rescheduled":
            return  # nothing was written to Bugzilla before approval
        bugs = [b.bug for b in downtime.bugs]
        if not bugs:
            return
        tag = whiteboard_tag(downtime.start_at) if why == "rescheduled" else ""
        if self.settings.bugzilla_enabled:
            self.outbox.job(
                "bugzilla",
                f"dt{downtime.id}:r{downtime.revision}:bz-{why}",
                f"{'set whiteboard ' + tag if tag else 'remove the tree-closure whiteboard tag'} and comment on "
                f"bug {_bug_list(bugs)}",
                {"op": why, "bugs": bugs, "tag": tag, "comment": self.render("bug_comment.txt", d=downtime, event=why)},
                downtime_id=downtime.id,
            )
        else:
            change = f"put {tag} in the whiteboard" if tag else "remove the [tree-closure …] whiteboard tag"
            outcome.manual.append(
                f"Bugzilla is not configured: {change} of bug {_bug_list(bugs)} and comment that the downtime was "
                f"{why}, by hand"
            )

    def extend(self, downtime_id: int, duration: dt.timedelta) -> Outcome:
        downtime = self.get(downtime_id)
        old_end = downtime.end_at
        if downtime.end_at + duration - downtime.start_at > planning.MAX_DURATION:
            self._may("extend", downtime)
            raise DomainError("a downtime lasts at most 7d, extensions included")
        self._transition("extend", downtime, f"end {old_end:%H:%M} → {(old_end + duration):%H:%M} UTC")
        downtime.end_at = old_end + duration
        downtime.revision += 1
        text = self.render("extended_chat.txt", d=downtime, old_end=old_end)
        self._tell_channels(f"dt{downtime.id}:r{downtime.revision}:extended", downtime, text)
        self._mail_lists(downtime, "extended", thread=self._announcement_thread(downtime), calendar="REQUEST")
        return Outcome(downtime, warnings=[w for w in self.rules(downtime) if w.rule in ("overlap", "blackout")])

    def cancel(self, downtime_id: int, reason: str, *, action: str = "cancel") -> Outcome:
        downtime = self.get(downtime_id)
        before = State(downtime.state)
        self._transition(action, downtime, clean_wording(reason))
        outcome = Outcome(downtime)
        if before is State.IN_PROGRESS:
            self._restore_trees(downtime, outcome)
        if before is not State.PROPOSED:
            self._bugzilla_retag(downtime, outcome, "cancelled")
        if downtime.was_announced:
            text = self.render("cancelled_chat.txt", d=downtime, reason=reason)
            self._tell_channels(f"dt{downtime.id}:cancelled", downtime, text)
            self._mail_lists(downtime, "cancelled", thread=self._announcement_thread(downtime), calendar="CANCEL")
        else:
            self._tell_requester(downtime, f"dt{downtime.id}:cancelled", "cancelled", reason)
        return outcome

    def start(self, downtime_id: int, *, force: bool = False) -> Outcome:
        downtime = self.get(downtime_id)
        self._may("start", downtime)
        early = downtime.start_at - self.now
        if early > dt.timedelta(hours=1) and not force:
            raise DomainError(
                f"downtime #{downtime.id} is announced for {downtime.start_at:%Y-%m-%d %H:%M} UTC, more than an hour "
                f"from now: use !downtime start {downtime.id} --force to start it early"
            )
        self._transition("start", downtime, "forced early start" if early > dt.timedelta(hours=1) else "")
        downtime.started_at = self.now
        outcome = Outcome(downtime)
        self._close_trees(downtime, outcome)
        self.outbox.chat(
            f"dt{downtime.id}:started",
            self.settings.announce_channel,
            self.render("sheriff_ping.txt", d=downtime),
            mentions=self.settings.sheriffs,
            downtime_id=downtime.id,
        )
        if self.settings.requests_channel != self.settings.announce_channel:
            self.outbox.chat(
                f"dt{downtime.id}:started",
                self.settings.requests_channel,
                self.render("started_chat.txt", d=downtime, actor=self.actor.who),
                mentions=self.settings.ciduty,
                downtime_id=downtime.id,
            )
        return outcome

    def end(self, downtime_id: int) -> Outcome:
        downtime = self.get(downtime_id)
        self._transition("end", downtime)
        downtime.ended_at = self.now
        for bug in downtime.bugs:
            if bug.status in (BugStatus.NOMINATED, BugStatus.APPROVED):
                bug.status = BugStatus.NOT_DONE.value
                bug.note = bug.note or "no outcome recorded before the end"
        outcome = Outcome(downtime)
        self._restore_trees(downtime, outcome)
        text = self.render("tree_open_chat.txt", d=downtime)
        for channel in self._channels():
            self.outbox.chat(
                f"dt{downtime.id}:ended", channel, text, mentions=self.settings.sheriffs
                if channel == self.settings.announce_channel else (), downtime_id=downtime.id,
            )
        self._mail_lists(downtime, "tree_open", thread=self._announcement_thread(downtime), calendar=None)
        bugs = [b.bug for b in downtime.bugs]
        if bugs and self.settings.bugzilla_enabled:
            self.outbox.job(
                "bugzilla",
                f"dt{downtime.id}:bz-outcomes",
                f"comment the outcome on bug {_bug_list(bugs)}",
                {"op": "outcomes", "outcomes": {str(b.bug): [b.status, b.note] for b in downtime.bugs},
                 "comment": self.render("bug_comment.txt", d=downtime, event="ended")},
                downtime_id=downtime.id,
            )
        elif bugs:
            outcome.manual.append(
                f"Bugzilla is not configured: comment the outcome on bug {_bug_list(bugs)} by hand"
            )
        return outcome

    def verify(self, downtime_id: int) -> Outcome:
        downtime = self.get(downtime_id)
        self._transition("verify", downtime)
        downtime.verified_by = self.actor.who
        downtime.verified_at = self.now
        return Outcome(downtime)

    def done(self, downtime_id: int, bug: int, outcome_name: str, note: str = "") -> Outcome:
        downtime = self.get(downtime_id)
        row = next((b for b in downtime.bugs if b.bug == bug), None)
        if row is None:
            raise DomainError(f"bug {bug} is not in downtime #{downtime.id}")
        self._transition("done", downtime, f"bug {bug}: {outcome_name}" + (f" ({note})" if note else ""))
        row.status = outcome_name
        row.note = clean_wording(note) if note else ""
        return Outcome(downtime)

    def merge(self, into_id: int, other_id: int) -> Outcome:
        if into_id == other_id:
            raise DomainError("merge needs two different downtimes")
        into, other = self.get(into_id), self.get(other_id)
        self._transition("merge", into, f"bugs of #{other.id}")
        moved = []
        for bug in list(other.bugs):
            if not any(b.bug == bug.bug for b in into.bugs):
                into.bugs.append(
                    DowntimeBug(
                        bug=bug.bug, wording=bug.wording or other.summary, security=bug.security,
                        summary=bug.summary, assignee=bug.assignee, added_by=bug.added_by,
                    )
                )
                moved.append(bug.bug)
        into.systems = ",".join(dict.fromkeys(into.system_names + other.system_names))
        self.cancel(other.id, f"merged into downtime #{into.id}", action="merge away")
        outcome = Outcome(into)
        outcome.notes.append(
            f"moved bug {_bug_list(moved)} from #{other.id}" if moved else f"#{other.id} had no bugs to move"
        )
        outcome.notes.append(f"downtime #{other.id} is cancelled (merged into #{into.id})")
        return outcome

    def next_downtime(self) -> Downtime | None:
        """The running downtime (even one running over its end), else the next announced one."""
        running = self.session.scalars(
            select(Downtime)
            .where(Downtime.state == State.IN_PROGRESS.value, Downtime.start_at >= self.now - planning.MAX_DURATION * 2)
            .order_by(Downtime.start_at)
            .limit(1)
        ).first()
        if running is not None:
            return running
        return self.session.scalars(
            select(Downtime)
            .where(
                Downtime.state == State.ANNOUNCED.value,
                Downtime.start_at >= self.now - planning.MAX_DURATION,
                Downtime.end_at >= self.now,
            )
            .order_by(Downtime.start_at)
            .limit(1)
        ).first()

    def _require(self, what: str, *roles: Role) -> None:
        self._identified()
        if Role.ADMIN not in self.actor.roles and not set(roles) & self.actor.roles:
            raise lifecycle.Forbidden(f"only {lifecycle.describe_roles(roles)} may {what}")


def _names_host(text: str, host: str) -> bool:
    """Whether `text` names `host` whole, also as the process document writes it (build.m.o)."""
    forms = {host, re.sub(r"\.mozilla\.org$", ".m.o", host)}
    return any(
        re.search(rf"(?<![\w.-]){re.escape(form)}(?![\w-]|\.\w)", text, re.IGNORECASE) for form in forms
    )


# ----- small pure helpers ------------------------------------------------------------------------

def _bug_list(bugs: Sequence[int]) -> str:
    return ", ".join(str(b) for b in bugs)


def _nobody(assignee: str) -> bool:
    return not assignee or assignee.split("@")[0].lower() in ("nobody", "nobody@mozilla.org")


def whiteboard_tag(start: dt.datetime) -> str:
    return f"[tree-closure {start.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC]"


