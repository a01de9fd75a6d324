"""Who is told what: the one place that turns events into outbox rows.

Each reaction below takes one event (`models/events.py`) and decides, from the settings, what
follows from it outside: chat lines (which networks, which rooms, who is mentioned), mails
(recipients, thread, calendar sequence), Bugzilla jobs and tree jobs (`models/jobs.py`), and
the lines the person who acted is told in the command's reply (notes, and what to do by hand
when Bugzilla or mail is not configured). Every word comes from a template; every row has a
key derived from the event, so a reaction that runs twice queues nothing twice.

Adding a notice means adding a reaction here (or a line in one) and a template; nothing else.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import events as ev
from models import jobs, workers
from models.confidential import named_in, told
from models.lifecycle import State
from models.orm import Downtime, OutboxMessage, TreeChange
from models.outbox import Outbox
from models.reminders import START
from models.work import Settings

log = logging.getLogger(__name__)
Render = Callable[..., str]
E = TypeVar("E", bound=ev.Event)
# Reminders this near the start (or nearer) ping CiDuty and the sheriffs by name.
PING_WITHIN = dt.timedelta(hours=1)


@dataclass
class Told:
    """What the person who acted is told, besides the command's own answer."""

    notes: list[str] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)  # what they must do by hand


class Reactions:
    """The reactions, bound to the configuration and the templates."""

    def __init__(self, settings: Settings, render: Render):
        self.settings = settings
        self.render = render

    def react(self, events: Iterable[ev.Event], outbox: Outbox) -> Told:
        """Queue what follows from `events` in `outbox` (the caller writes and commits it)."""
        told = Told()
        for event in events:
            reaction = REACTIONS.get(type(event))
            if reaction is None:
                raise LookupError(f"no reaction for {type(event).__name__}")
            reaction(Telling(self, outbox, told, event), event)
        return told

    def queue(self, session: Session, now: dt.datetime, events: Iterable[ev.Event], *,
              queued: AbstractSet[str] | None = None) -> int:
        """The bot's own work (reminders, jobs reporting back): react and add the rows to
        `session` (the caller commits). Nobody is waiting for a reply, so notes are only logged.
        Returns the number of rows queued (0: all of it was queued before)."""
        outbox = Outbox(session, now=now, networks=self.settings.networks, queued=queued)
        told = self.react(events, outbox)
        for line in told.notes + told.manual:
            log.info("%s", line)
        added = len(outbox.added)
        outbox.write()
        return added

    def outcome_line(self, status: str, note: str) -> str:
        """The outcome sentence of a bug's comment (for Bugzilla jobs queued without one)."""
        return self.render("bug_outcome.txt", status=status, note=note, flag=self.settings.bugzilla_flag).strip()


REACTIONS: dict[type[Any], Callable[[Telling, Any], None]] = {}


def reaction(*kinds: type[E]) -> Callable[[Callable[[Telling, E], None]], Callable[[Telling, E], None]]:
    def register(func: Callable[[Telling, E], None]) -> Callable[[Telling, E], None]:
        for kind in kinds:
            REACTIONS[kind] = func
        return func

    return register


class Telling:
    """The vocabulary of reactions: say in a room, mail, queue a job, tell the actor."""

    def __init__(self, reactions: Reactions, outbox: Outbox, told: Told, event: ev.Event):
        self.settings = reactions.settings
        self.render = reactions.render
        self.outbox = outbox
        self.session = outbox.session
        self.told = told
        self.event = event
        self.made_by = type(event).__name__

    @property
    def downtime(self) -> Downtime:
        assert self.event.downtime_id is not None
        downtime = self.session.get(Downtime, self.event.downtime_id)
        assert downtime is not None, f"{self.made_by} of a downtime that is not there"
        return downtime

    # ----- chat ----------------------------------------------------------------------------

    def chat(
        self, key: str, target: str | Sequence[str], template: str, *, mentions: Sequence[str] = (),
        networks: Iterable[str] | None = None, downtime: bool = True, **context: Any,
    ) -> int:
        """Say `template` to `target` ("#ci", "@account", or several) on each network (all by default)."""
        text = self.render(template, **context)
        return sum(
            self.outbox.chat(
                key, one, text, mentions=mentions, networks=networks,
                downtime_id=self.event.downtime_id if downtime else None, made_by=f"{self.made_by} {template}",
            )
            for one in ([target] if isinstance(target, str) else target)
        )

    def channels(self, key: str, template: str, **context: Any) -> int:
        """Say it in the announce and requests channels, on every network."""
        return self.chat(key, self.settings.channels, template, **context)

    def ciduty(self, key: str, template: str, *, downtime: bool = True, **context: Any) -> int:
        """Tell CiDuty: in the requests channel, mentioning them, on every network."""
        return self.chat(
            key, self.settings.requests_channel, template, mentions=self.settings.ciduty, downtime=downtime, **context
        )

    def requester(self, d: Downtime, key: str, template: str, **context: Any) -> int:
        """Tell the requester privately, on the network they asked from."""
        return self.chat(key, "@" + d.requester, template, networks=[d.requester_network], d=d, **context)

    # ----- mail ----------------------------------------------------------------------------

    def mail(self, key: str, name: str, to: Sequence[str], cc: Sequence[str], d: Downtime, *,
             thread: str | None = None, invitation: jobs.Invitation | None = None, **context: Any) -> int:
        """Queue the mail `<name>_subject.txt` / `<name>_message.txt`. Every mail is public (lists,
        or a draft of what the lists will read): its bugs are told vaguely where confidential."""
        # A bug waiting to join an announced downtime (pending "add") is not in its notice yet.
        context.setdefault("bugs", told([b for b in d.bugs if b.pending != "add"], full=False, fallback=d.summary))
        job = jobs.SendMail(
            to=tuple(to), cc=tuple(cc), subject=self.render(f"{name}_subject.txt", d=d, **context).strip(),
            thread=thread, invitation=invitation,
        )
        return self.outbox.mail(
            key, job, self.render(f"{name}_message.txt", d=d, **context), downtime_id=d.id,
            made_by=f"{self.made_by} {name}_message.txt",
        )

    def mail_lists(self, d: Downtime, name: str, *, calendar: str | None, key: str | None = None,
                   thread: str | None = None, **context: Any) -> int:
        """Mail the lists; a later mail goes where the announcement went, in its thread."""
        routing = self.settings.mail
        to, cc = list(routing.announce_to), list(routing.copy_to)
        first = self.session.scalar(select(OutboxMessage).where(OutboxMessage.key == thread)) if thread else None
        if first is not None:
            before = jobs.load(first.payload)
            assert isinstance(before, jobs.SendMail)
            to = list(dict.fromkeys([*before.to, *to]))
            cc = [a for a in dict.fromkeys([*before.cc, *cc]) if a not in to]
        if not to and not cc:
            if routing.configured:
                return 0  # no lists configured: the channels were told
            to = ["(announcement lists)"]
        invitation = None
        if calendar:
            # A cancellation must outrank the last invitation, or calendars keep the event (RFC 5546).
            invitation = jobs.Invitation(
                method=calendar, sequence=d.sequence + (1 if calendar == "CANCEL" else 0),
                status="CANCELLED" if calendar == "CANCEL" else "CONFIRMED",
            )
        return self.mail(
            key or f"dt{d.id}:r{d.revision}:{name}:mail", name, to, cc, d, thread=thread, invitation=invitation,
            **context,
        )

    def announcement_thread(self, d: Downtime) -> str | None:
        """The key of the first announcement mail of `d`: later mails answer it."""
        return self.session.scalar(
            select(OutboxMessage.key)
            .where(OutboxMessage.downtime_id == d.id, OutboxMessage.key.like(f"dt{d.id}:r%:announce:mail"))
            .order_by(OutboxMessage.id)
            .limit(1)
        )

    # ----- jobs ----------------------------------------------------------------------------

    def job(self, key: str, job: jobs.Job, **context: Any) -> int:
        """Queue a change in another system, described for people by `jobs/<type>.txt`."""
        description = self.render(f"jobs/{job.type}.txt", job=job, flag=self.settings.bugzilla_flag, **context)
        return self.outbox.job(key, job, description.strip(), downtime_id=self.event.downtime_id)

    # ----- the person who acted -------------------------------------------------------------

    def note(self, template: str, **context: Any) -> None:
        self.told.notes.append(self.render(f"notes/{template}.txt", **context).strip())

    def manual(self, template: str, **context: Any) -> None:
        """What they must do by hand (Bugzilla or mail is not configured)."""
        self.told.manual.append(self.render(f"manual/{template}.txt", flag=self.settings.bugzilla_flag, **context).strip())


# ===== a downtime's life =========================================================================


@reaction(ev.Proposed)
def proposed(t: Telling, e: ev.Proposed) -> None:
    d = t.downtime
    # CiDuty hears of it in the requests channel wherever it was not asked there: on the other
    # networks, and on this one when it was asked in another channel or privately.
    relay = [n for n in t.settings.networks if n != e.network or e.room != t.settings.requests_channel]
    if relay:
        t.chat(f"dt{d.id}:proposed", t.settings.requests_channel, "proposed_ping.txt",
               mentions=t.settings.ciduty, networks=relay, d=d, room=e.room, network=e.network)
    _nominate(t, d, e.bugs, f"dt{d.id}:bz-nominate")


def _nominate(t: Telling, d: Downtime, bugs: Sequence[int], key: str) -> None:
    if not bugs:
        return
    if t.settings.bugzilla_enabled:
        t.job(key, jobs.NominateBugs(tuple(bugs)))
    else:
        t.manual("nominate", bugs=bugs)


@reaction(ev.BugAdded)
def bug_added(t: Telling, e: ev.BugAdded) -> None:
    d = t.downtime
    if e.asks_ciduty:
        _ask_ciduty(t, d, "add", e.bug, e.by, e.at)
    if e.updated:
        t.note("bug_updated", bug=e.bug, id=d.id)
    if not t.settings.bugzilla_enabled:
        t.manual("nominate", bugs=[e.bug])
    elif not e.updated:
        t.job(f"dt{d.id}:bz-nominate:{e.bug}", jobs.NominateBugs((e.bug,)))
        if not e.looked_up:
            t.note("bugzilla_later", bug=e.bug, id=d.id, flag=t.settings.bugzilla_flag)
    _security_bug_named(t, d, e.bug)


@reaction(ev.BugsFoundRestricted)
def bugs_found_restricted(t: Telling, e: ev.BugsFoundRestricted) -> None:
    d = t.downtime
    for bug in e.bugs:
        _security_bug_named(t, d, bug)


def _security_bug_named(t: Telling, d: Downtime, bug: int) -> None:
    """The notice wording is public: its requester is told privately, once, when it names a
    security-sensitive bug, so that they can reword it."""
    row = next((b for b in d.bugs if b.bug == bug), None)
    if row is not None and row.security and named_in(d.summary, [bug]):
        t.requester(d, f"dt{d.id}:security-bug-named:{bug}", "security_bug_named.txt", bugs=[bug])


@reaction(ev.BugDropped)
def bug_dropped(t: Telling, e: ev.BugDropped) -> None:
    """A bug that Bugzilla holds as approved for this downtime gets its "?" and no tag back: it
    waits for another downtime. (A pending drop waits for CiDuty: the reply says so.)"""
    d = t.downtime
    if e.pending:
        _ask_ciduty(t, d, "drop", e.bug, e.by, e.at)
    if e.pending or not e.was_approved:
        return
    when = f":{e.at:%Y%m%dT%H%M%S}" if e.at else ""
    _retag(t, d, d.revision, "dropped", "", bugs=[e.bug], key=f"dt{d.id}:bz-dropped:{e.bug}{when}")


def _ask_ciduty(t: Telling, d: Downtime, change: str, bug: int, by: str, at: dt.datetime | None) -> None:
    """A change after the approval waits for CiDuty: they hear of it in the requests channel
    (it may have been asked privately)."""
    when = f":{at:%Y%m%dT%H%M%S}" if at else ""
    t.ciduty(f"dt{d.id}:waiting:{change}:{bug}{when}", "change_waiting_chat.txt", d=d, change=change, bug=bug, by=by)


@reaction(ev.ChangesApproved)
def changes_approved(t: Telling, e: ev.ChangesApproved) -> None:
    """What waited on an approved or announced downtime is approved: as at the first approval,
    the flag and the tag in Bugzilla; the dropped bugs wait for another downtime."""
    d = t.downtime
    at = f"{e.at:%Y%m%dT%H%M%S}"
    if e.approved:
        _approve_in_bugzilla(t, d, e.approved, f"dt{d.id}:r{e.revision}:bz-approve:{at}:{'-'.join(map(str, e.approved))}")
    if e.dropped:
        key = f"dt{d.id}:r{e.revision}:bz-dropped:{at}:{'-'.join(map(str, e.dropped))}"
        _retag(t, d, e.revision, "dropped", "", bugs=e.dropped, key=key)
    if e.unassigned:
        t.note("left_waiting", bugs=e.unassigned, id=d.id)


@reaction(ev.NoticeUpdated)
def notice_updated(t: Telling, e: ev.NoticeUpdated) -> None:
    """Everyone told of the announcement is told of the change: both channels, and the lists in
    the announcement's thread with the next calendar SEQUENCE (the same UID)."""
    d = t.downtime
    context: dict[str, Any] = {
        "added": e.added, "dropped": e.dropped, "old_wording": e.old_wording, "reworded": e.reworded,
    }
    t.channels(f"dt{d.id}:r{e.revision}:u{e.update}:updated", "updated_chat.txt", d=d, **context)
    t.mail_lists(
        d, "updated", thread=t.announcement_thread(d), calendar="REQUEST",
        key=f"dt{d.id}:r{e.revision}:u{e.update}:updated:mail", **context,
    )


@reaction(ev.WordingEdited)
def wording_edited(t: Telling, e: ev.WordingEdited) -> None:
    d = t.downtime
    for row in d.bugs:
        _security_bug_named(t, d, row.bug)


@reaction(ev.PreApproved, ev.Verified, ev.TreesOpened, ev.TreeChangeConfirmed)
def nothing_more(t: Telling, e: ev.Event) -> None:
    """The command's own answer says it all; nobody else is told."""


@reaction(ev.Approved)
def approved(t: Telling, e: ev.Approved) -> None:
    d = t.downtime
    _approve_in_bugzilla(t, d, e.bugs, f"dt{d.id}:r{e.revision}:bz-approve")
    _draft(t, d, e)


def _approve_in_bugzilla(t: Telling, d: Downtime, bugs: Sequence[int], key: str) -> None:
    """The flag's "+" and the whiteboard tag of the downtime's time, or say what to do by hand."""
    tag = whiteboard_tag(d.start_at)
    if t.settings.bugzilla_enabled:
        t.job(key, jobs.ApproveBugs(tuple(bugs), tag))
    else:
        t.manual("approve", bugs=bugs, tag=tag)


def _draft(t: Telling, d: Downtime, e: ev.Approved | ev.Rescheduled) -> None:
    """The draft goes to everyone working in the downtime, the requester and the pre-approvers
    (the process's "Who do I notify", steps 1 and 2), again for a new time; the people working
    in it are asked in chat too, mentioned where their account is known, to confirm it."""
    again = isinstance(e, ev.Rescheduled)
    crew = workers.crew(d, t.settings)
    mentions = tuple(dict.fromkeys(a for w in crew for a in w.mentions))
    t.chat(f"dt{d.id}:r{e.revision}:draft-confirm", t.settings.requests_channel, "draft_chat.txt",
           mentions=mentions, d=d, again=again, unreached=[w.name for w in crew if not w.mentions])
    routing = t.settings.mail
    assignees = [b.assignee for b in d.bugs if "@" in b.assignee and not b.unassigned]
    requester = routing.people.get(d.requester.casefold(), "")
    if routing.configured and not requester:
        t.note("draft_misses_requester", requester=d.requester)
    to = list(dict.fromkeys(a for a in [*assignees, requester, *routing.preapprovers] if a))
    if not to and not routing.configured:
        to = ["(pre-approvers)"]
    if not to and not routing.cc:
        t.manual("draft_nobody")
        return
    t.mail(f"dt{d.id}:r{e.revision}:draft", "draft", to, routing.cc, d, again=again,
           workers=[w.name for w in crew])
    if again:
        t.note("draft_again", id=d.id)
    if not routing.configured:
        t.manual("draft_printed")


@reaction(ev.Rejected)
def rejected(t: Telling, e: ev.Rejected) -> None:
    d = t.downtime
    t.requester(d, f"dt{d.id}:rejected", "requester_told.txt", what="rejected", by=e.by, reason=e.reason)


@reaction(ev.Objected)
def objected(t: Telling, e: ev.Objected) -> None:
    t.ciduty(f"dt{e.downtime_id}:objection:{e.number}", "objection_chat.txt", by=e.by, id=e.downtime_id,
             reason=e.reason)


@reaction(ev.ObjectionWithdrawn)
def objection_withdrawn(t: Telling, e: ev.ObjectionWithdrawn) -> None:
    """CiDuty heard of the objection: they hear that it is withdrawn."""
    d = t.downtime
    t.ciduty(f"dt{d.id}:withdrawn:{len(d.verdicts)}", "objection_withdrawn_chat.txt", by=e.by, id=d.id,
             reason=e.reason)
    t.note("objection_withdrawn", id=d.id)


@reaction(ev.Confirmed)
def confirmed(t: Telling, e: ev.Confirmed) -> None:
    if e.waiting:
        t.note("unconfirmed", names=e.waiting)


@reaction(ev.Announced)
def announced(t: Telling, e: ev.Announced) -> None:
    d = t.downtime
    t.channels(f"dt{d.id}:r{e.revision}:announce", "announce_chat.txt", d=d)
    # A second announcement (after a reschedule) answers the first: one conversation.
    t.mail_lists(d, "announce", thread=t.announcement_thread(d), calendar="REQUEST")
    if e.overridden or e.objections:
        t.note("announced_over", failures=e.overridden, objections=e.objections, reason=e.force_reason)
    for o in e.objections:  # each objector hears, privately, that their objection was overridden
        t.chat(f"dt{d.id}:r{e.revision}:overridden:{o.by}", "@" + o.by, "objection_overridden.txt",
               networks=[o.network] if o.network in t.settings.networks else None, d=d, objection=o,
               reason=e.force_reason, by=e.by)
    if e.unanswered:
        t.note("unanswered", names=e.unanswered)
    if e.unconfirmed:
        t.note("unconfirmed", names=e.unconfirmed)


@reaction(ev.Rescheduled)
def rescheduled(t: Telling, e: ev.Rescheduled) -> None:
    d = t.downtime
    if e.approvals_reset or e.confirmations_reset:
        t.note("approvals_reset", count=e.approvals_reset, confirmations=e.confirmations_reset)
    if e.objections:
        t.note("objections_stand", names=e.objections, id=d.id)
    if e.before is State.ANNOUNCED:
        t.note("announce_again", id=d.id)
    if e.before is not State.PROPOSED:  # nothing was written to Bugzilla before the approval
        _retag(t, d, e.revision, "rescheduled", whiteboard_tag(d.start_at))
    if d.was_announced:
        t.channels(f"dt{d.id}:r{e.revision}:rescheduled", "rescheduled_chat.txt", d=d, old_start=e.old_start,
                   old_end=e.old_end)
        t.mail_lists(d, "rescheduled", thread=t.announcement_thread(d), calendar="REQUEST")
    if e.draft:  # the process's steps 1 and 2 again, for the new time
        _draft(t, d, e)


def _retag(t: Telling, d: Downtime, revision: int, why: str, tag: str, *, bugs: Sequence[int] | None = None,
           key: str | None = None) -> None:
    """Retag the bugs of `d` (or only `bugs`) in Bugzilla, or say what to do by hand. A bug that
    leaves the downtime (cancelled, dropped) is nominated again ("?") for another one."""
    bugs = tuple(b.bug for b in d.bugs) if bugs is None else tuple(bugs)
    if not bugs:
        return
    if t.settings.bugzilla_enabled:
        comment = t.render("bug_comment.txt", d=d, event=why)
        renominate = why in ("cancelled", "dropped")
        t.job(key or f"dt{d.id}:r{revision}:bz-{why}", jobs.RetagBugs(bugs, tag, comment, renominate=renominate))
    else:
        t.manual("retag", bugs=bugs, tag=tag, why=why)


@reaction(ev.Extended)
def extended(t: Telling, e: ev.Extended) -> None:
    d = t.downtime
    t.channels(f"dt{d.id}:r{e.revision}:extended", "extended_chat.txt", d=d, old_end=e.old_end)
    t.mail_lists(d, "extended", thread=t.announcement_thread(d), calendar="REQUEST")


@reaction(ev.Cancelled)
def cancelled(t: Telling, e: ev.Cancelled) -> None:
    d = t.downtime
    if e.before is not State.PROPOSED:
        _retag(t, d, d.revision, "cancelled", "", bugs=[b.bug for b in d.bugs if b.bug not in e.kept])
    if d.was_announced:
        t.channels(f"dt{d.id}:cancelled", "cancelled_chat.txt", d=d, reason=e.reason)
        t.mail_lists(d, "cancelled", thread=t.announcement_thread(d), calendar="CANCEL", reason=e.reason)
    elif e.by_requester:  # withdrawn: CiDuty hears of it (it may be approved already)
        t.ciduty(f"dt{d.id}:cancelled", "withdrawn_chat.txt", d=d, by=e.by, reason=e.reason)
    else:
        t.requester(d, f"dt{d.id}:cancelled", "requester_told.txt", what="cancelled", by=e.by, reason=e.reason)
    if e.merged_into is not None:
        t.note("merged_away", id=d.id, into=e.merged_into)


@reaction(ev.Started)
def started(t: Telling, e: ev.Started) -> None:
    d = t.downtime
    s = t.settings
    t.chat(f"dt{d.id}:started", s.announce_channel, "sheriff_ping.txt", mentions=s.sheriffs, d=d)
    if s.requests_channel != s.announce_channel:
        t.chat(f"dt{d.id}:started", s.requests_channel, "started_chat.txt", mentions=s.ciduty, d=d, actor=e.by,
               planned_end=e.planned_end)
    if e.planned_start is not None and e.planned_end is not None:
        t.note("started_early", d=d, planned_start=e.planned_start, planned_end=e.planned_end)


@reaction(ev.BugOutcome)
def bug_outcome(t: Telling, e: ev.BugOutcome) -> None:
    """While the downtime runs the command's answer says it all. After the end the outcome
    corrects the TREE OPEN: told where the TREE OPEN went, and commented on the bug."""
    if not e.correction:
        return
    d = t.downtime
    s = t.settings
    key = f"dt{d.id}:correction:{e.correction}"
    t.channels(key, "outcome_correction_chat.txt", d=d, bug=e.bug, status=e.outcome, note=e.note)
    t.mail_lists(d, "outcome_correction", thread=t.announcement_thread(d), calendar=None, key=f"{key}:mail",
                 bug=e.bug, status=e.outcome, note=e.note)
    if s.bugzilla_enabled:
        line = t.render("bug_outcome.txt", status=e.outcome, note=e.note, flag=s.bugzilla_flag).strip()
        # The end cleared the flag of work that had no outcome: work that landed after all gets it back.
        result = jobs.BugResult(e.bug, e.outcome, e.note, line, OUTCOME_FLAG.get(e.outcome) or "+")
        t.job(f"{key}:bz-outcome", jobs.RecordOutcomes((result,), t.render("bug_comment.txt", d=d, event="corrected")))
    else:
        t.manual("outcomes", bugs=[e.bug])


@reaction(ev.Ended)
def ended(t: Telling, e: ev.Ended) -> None:
    d = t.downtime
    s = t.settings
    trees: dict[str, Any] = {"no_outcome": e.no_outcome, "left": e.left, "backend": s.tree_backend}
    for channel in s.channels:
        mentions = s.sheriffs if channel == s.announce_channel else ()
        t.chat(f"dt{d.id}:ended", channel, "tree_open_chat.txt", mentions=mentions, d=d, **trees)
    t.mail_lists(d, "tree_open", thread=t.announcement_thread(d), calendar=None, **trees)
    if e.no_outcome:
        t.note("no_outcome", bugs=e.no_outcome, id=d.id)
    bugs = [b.bug for b in d.bugs]
    if bugs and s.bugzilla_enabled:
        results = tuple(
            jobs.BugResult(b.bug, b.status, b.note, t.render("bug_outcome.txt", status=b.status, note=b.note,
                                                             flag=s.bugzilla_flag).strip(), OUTCOME_FLAG.get(b.status))
            for b in d.bugs
        )
        t.job(f"dt{d.id}:bz-outcomes", jobs.RecordOutcomes(results, t.render("bug_comment.txt", d=d, event="ended")))
    elif bugs:
        t.manual("outcomes", bugs=bugs)


@reaction(ev.Merged)
def merged(t: Telling, e: ev.Merged) -> None:
    t.note("merged", moved=e.moved, other=e.other, id=e.downtime_id)


@reaction(ev.ReminderDue)
def reminder_due(t: Telling, e: ev.ReminderDue) -> None:
    d = t.downtime
    s = t.settings
    both = tuple(dict.fromkeys([*s.ciduty, *s.sheriffs]))
    if e.offset is not None:
        targets, mentions = s.channels, (both if e.offset <= PING_WITHIN else ())
    elif e.kind == START:
        targets, mentions = s.channels, both
    else:  # end, overrun, undecided, unannounced: CiDuty's business
        targets, mentions = [s.requests_channel], s.ciduty
    queued = t.chat(e.job_id, targets, "reminder.txt", mentions=mentions, d=d, kind=e.kind, late=e.late,
                    auto_start=e.auto_start_failed)
    # With [mail] remind_lists, a reminder before the start also goes to the lists, in the
    # announcement's thread (never before an announcement: there is nothing to remind of).
    if queued and e.offset is not None and s.mail.remind_lists and d.was_announced:
        thread = t.announcement_thread(d)
        if thread is not None:
            t.mail_lists(d, "reminder", thread=thread, calendar=None, key=f"{e.job_id}:mail", kind=e.kind)


# ===== the trees =================================================================================


@reaction(ev.TreesClosed)
def trees_closed(t: Telling, e: ev.TreesClosed) -> None:
    if not e.by_hand:
        t.note("trees_closed", trees=e.trees, change=e.change_id)


@reaction(ev.TreesCloseRequested)
def trees_close_requested(t: Telling, e: ev.TreesCloseRequested) -> None:
    t.job(f"dt{e.downtime_id}:trees-close", jobs.CloseTrees(e.trees, e.reason, e.tags, e.change_id))
    t.note("trees_closing", trees=e.trees, change=e.change_id, backend=t.settings.tree_backend)


@reaction(ev.TreesRestored)
def trees_restored(t: Telling, e: ev.TreesRestored) -> None:
    if not e.by_hand:
        t.note("trees_restored", restored=e.restored)
        if e.left:
            t.note("trees_left", left=e.left)


@reaction(ev.TreesRestoreSkipped)
def trees_restore_skipped(t: Telling, e: ev.TreesRestoreSkipped) -> None:
    t.note("trees_restore_skipped", change=e.change_id, state=e.state)


@reaction(ev.TreesRestoreRequested)
def trees_restore_requested(t: Telling, e: ev.TreesRestoreRequested) -> None:
    t.job(f"dt{e.downtime_id}:trees-restore", jobs.RestoreTrees(e.downtime_id, e.change_id))
    t.note("trees_restoring", backend=t.settings.tree_backend)


# ===== what the jobs found outside: CiDuty is told ===============================================


@reaction(ev.TreesClosedRemotely)
def trees_closed_remotely(t: Telling, e: ev.TreesClosedRemotely) -> None:
    t.ciduty(f"{e.job}:done", "trees_closed_chat.txt", downtime=False, change=_change(t, e.change_id),
             id=e.downtime_id, stack_id=e.stack_id)


@reaction(ev.TreesRestoredRemotely)
def trees_restored_remotely(t: Telling, e: ev.TreesRestoredRemotely) -> None:
    change = _change(t, e.change_id) if e.change_id is not None else None
    t.ciduty(f"{e.job}:done", "trees_restored_chat.txt", downtime=False, id=e.downtime_id, change=change,
             done=e.change_id is not None, restored=e.restored, changed=e.changed, waiting=e.waiting,
             remote_id=e.remote_id)
    if e.left and e.downtime_id is not None:
        # The TREE OPEN could not say which trees stay closed (the restore came after it): this does.
        d = t.downtime
        t.channels(f"{e.job}:left", "trees_stay_closed_chat.txt", d=d, left=e.left)
        t.mail_lists(d, "trees_stay_closed", thread=t.announcement_thread(d), calendar=None, key=f"{e.job}:left:mail",
                     left=e.left)


@reaction(ev.TreeChangeAsked)
def tree_change_asked(t: Telling, e: ev.TreeChangeAsked) -> None:
    s = t.settings
    t.chat(f"{e.job}:advice", s.announce_channel, f"trees_advice_{e.op}.txt", downtime=False,
           mentions=tuple(dict.fromkeys((*s.sheriffs, *s.ciduty))), change=_change(t, e.change_id),
           id=e.downtime_id, unconfirmed=e.unconfirmed)


@reaction(ev.TreeJobFailed)
def tree_job_failed(t: Telling, e: ev.TreeJobFailed) -> None:
    t.ciduty(f"{e.job}:failed", "trees_failed_chat.txt", downtime=False, op=e.op, id=e.downtime_id,
             error=e.error, trees=e.trees)


@reaction(ev.BugzillaJobFailed)
def bugzilla_job_failed(t: Telling, e: ev.BugzillaJobFailed) -> None:
    t.ciduty(f"{e.job}:failed", "bugzilla_failed_chat.txt", id=e.downtime_id, description=e.description,
             problems=e.problems)


@reaction(ev.BugzillaJobStuck)
def bugzilla_job_stuck(t: Telling, e: ev.BugzillaJobStuck) -> None:
    t.ciduty(f"{e.job}:stuck", "bugzilla_stuck_chat.txt", id=e.downtime_id, description=e.description,
             error=e.error, waited=e.waited)


@reaction(ev.BugzillaCheckFailed)
def bugzilla_check_failed(t: Telling, e: ev.BugzillaCheckFailed) -> None:
    t.ciduty(f"bugzilla:check:{e.at:%Y%m%dT%H%M%S}", "bugzilla_check_chat.txt", error=e.error)


@reaction(ev.MailFailed)
def mail_failed(t: Telling, e: ev.MailFailed) -> None:
    t.ciduty(f"mail-failed:{e.job}", "mail_failed.txt", subject=e.subject, to=e.to, reason=e.reason,
             final=e.final, attempts=e.attempts)


def _change(t: Telling, change_id: int) -> TreeChange | None:
    return t.session.get(TreeChange, change_id)


# ----- small pure helpers ------------------------------------------------------------------------

# What the end of a downtime does to a bug's flag, by outcome: work that landed keeps its "+";
# work that did not is taken off ("X") so that it is nominated again when it is ready.
OUTCOME_FLAG = {"landed": None, "landed-and-stuck": None, "rolled-back": "X", "not-done": "X"}


def whiteboard_tag(start: dt.datetime) -> str:
    return f"[tree-closure {start.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC]"
