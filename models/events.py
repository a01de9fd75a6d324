"""What happened: one frozen dataclass per thing that happened to a downtime, a tree or a job.

The use cases (`models/service.py`, `models/trees.py`) change the rows, write the audit trail
and record these events; they never choose who hears of it. `models/reactions.py` turns each
event into what is said and done outside (chat lines, mails, Bugzilla and tree jobs) and into
the lines the person who acted is told. The adapters that carry out jobs record events too
(a tree closed in Treestatus, a Bugzilla change that failed, a mail that keeps failing).

Events hold ids and the facts of the moment (the old start of a rescheduled downtime, the
reason of a cancellation); the reactions read the rest from the database in the same
transaction.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models.lifecycle import State
from models.planning import RuleFailure


@dataclass(frozen=True)
class Event:
    """Something that happened. `downtime_id` is None for what concerns no downtime."""

    downtime_id: int | None


# ---- a downtime's life ---------------------------------------------------------------------


@dataclass(frozen=True)
class Proposed(Event):
    network: str  # where it was asked: CiDuty on the other networks hears of it
    bugs: tuple[int, ...]


@dataclass(frozen=True)
class BugAdded(Event):
    bug: int
    updated: bool  # it was in the downtime already: its wording or details changed
    looked_up: bool  # Bugzilla answered for it (its summary is known)


@dataclass(frozen=True)
class BugDropped(Event):
    bug: int


@dataclass(frozen=True)
class Approved(Event):
    revision: int
    bugs: tuple[int, ...]


@dataclass(frozen=True)
class Rejected(Event):
    by: str
    reason: str


@dataclass(frozen=True)
class PreApproved(Event):
    by: str


@dataclass(frozen=True)
class Objected(Event):
    by: str
    reason: str
    number: int  # the verdict's number in this downtime (each objection is its own notice)


@dataclass(frozen=True)
class Objection:
    by: str
    reason: str


@dataclass(frozen=True)
class Announced(Event):
    revision: int
    # What it was announced over, with --force: the hard rules that failed, and the objections.
    overridden: tuple[RuleFailure, ...] = ()
    objections: tuple[Objection, ...] = ()
    force_reason: str = ""


@dataclass(frozen=True)
class Rescheduled(Event):
    revision: int
    old_start: dt.datetime
    old_end: dt.datetime
    before: State
    approvals_reset: int


@dataclass(frozen=True)
class Extended(Event):
    revision: int
    old_end: dt.datetime


@dataclass(frozen=True)
class Cancelled(Event):
    by: str
    reason: str
    before: State
    merged_into: int | None = None


@dataclass(frozen=True)
class Started(Event):
    by: str
    early: bool  # forced: more than an hour before the announced start


@dataclass(frozen=True)
class BugOutcome(Event):
    bug: int
    outcome: str  # landed | landed-and-stuck | rolled-back | not-done
    note: str


@dataclass(frozen=True)
class Ended(Event):
    pass


@dataclass(frozen=True)
class Verified(Event):
    by: str


@dataclass(frozen=True)
class Merged(Event):
    other: int  # the downtime merged into this one (and cancelled)
    moved: tuple[int, ...]  # the bugs moved over


@dataclass(frozen=True)
class ReminderDue(Event):
    job_id: str  # the scheduler's job id, "downtime:7:r2:remind-1h": the key of what is said
    kind: str  # an offset ("1h", "24h") or start | end | overrun | undecided | unannounced
    offset: dt.timedelta | None  # for a reminder before the start
    late: bool  # due while the bot was not running
    auto_start_failed: bool = False  # [policy] auto_start tried and was refused


# ---- the trees -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TreesClosed(Event):
    """The built-in registry closed trees in one remembered change (a downtime's, or by hand)."""

    change_id: int
    trees: tuple[str, ...]
    by_hand: bool = False


@dataclass(frozen=True)
class TreesCloseRequested(Event):
    """Treestatus (or, advisory, a sheriff) must close the trees; `change_id` stands for it here."""

    change_id: int
    trees: tuple[str, ...]
    reason: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class LeftTree:
    """A tree a restore left alone, and why: a later change holds it, or someone changed it."""

    tree: str
    status: str  # as it is now
    reason: str
    held_by: int | None  # the later remembered change that holds it (None: changed by hand)


@dataclass(frozen=True)
class TreesRestored(Event):
    """The built-in registry put a remembered change's trees back."""

    change_id: int
    restored: tuple[str, ...]
    left: tuple[LeftTree, ...]
    by_hand: bool = False


@dataclass(frozen=True)
class TreesRestoreSkipped(Event):
    """A downtime ended, but its tree change was already undone by hand."""

    change_id: int
    state: str


@dataclass(frozen=True)
class TreesRestoreRequested(Event):
    change_id: int | None


@dataclass(frozen=True)
class TreesOpened(Event):
    trees: tuple[str, ...]


@dataclass(frozen=True)
class TreeChangeConfirmed(Event):
    change_id: int
    what: str  # closed | restored


# ---- what the jobs found outside -----------------------------------------------------------


@dataclass(frozen=True)
class TreesClosedRemotely(Event):
    job: str  # the key of the tree job that did it
    change_id: int
    stack_id: int | None


@dataclass(frozen=True)
class TreesRestoredRemotely(Event):
    job: str
    change_id: int | None  # None: the closure never reached Treestatus, nothing to restore
    remote_id: int | None = None
    restored: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    waiting: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class TreeChangeAsked(Event):
    """Advisory backend: the sheriffs and CiDuty are asked to make the change in Treestatus."""

    job: str
    op: str  # close | restore
    change_id: int
    unconfirmed: bool = False  # a restore of a closure nobody confirmed


@dataclass(frozen=True)
class TreeJobFailed(Event):
    job: str
    op: str  # close | restore
    trees: tuple[str, ...]
    error: str


@dataclass(frozen=True)
class BugProblem:
    """Why Bugzilla did not take part of a change."""

    kind: str  # hidden | unreadable | unassigned | flag_denied | error
    bugs: tuple[int, ...]
    detail: str = ""  # Bugzilla's own words (flag_denied, error)


@dataclass(frozen=True)
class BugzillaJobFailed(Event):
    job: str
    description: str  # what the job was to do, as the outbox row says it
    problems: tuple[BugProblem, ...]


@dataclass(frozen=True)
class BugzillaJobStuck(Event):
    job: str
    description: str
    error: str
    waited: dt.timedelta


@dataclass(frozen=True)
class BugzillaCheckFailed(Event):
    error: str
    at: dt.datetime


@dataclass(frozen=True)
class MailFailed(Event):
    job: str
    subject: str
    to: tuple[str, ...]
    reason: str
    final: bool  # refused for good (else: still retried)
    attempts: int


ALL: tuple[type[Event], ...] = tuple(
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
)
