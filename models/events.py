"""What happened: one immutable record per thing that happened to a downtime, a tree or a job.

The use cases (`models/service.py`, `models/trees.py`) change the rows, write the audit trail
and record these events; they never choose who hears of it. `models/reactions.py` turns each
event into what is said and done outside (chat lines, mails, Bugzilla and tree jobs) and into
the lines the person who acted is told. The adapters that carry out jobs record events too
(a tree closed in Treestatus, a Bugzilla change that failed, a mail that keeps failing).

Events hold ids and the facts of the moment (the old start of a rescheduled downtime, the
reason of a cancellation); the reactions read the rest from the database in the same
transaction.

Each event is an immutable, typed record: a `typing.NamedTuple` whose first field is the
downtime it concerns (None for what concerns no downtime). Why not frozen dataclasses: an
event needs nothing a tuple does not give, and under Python 3.11 defining these 35 records as
frozen dataclasses cost about 130 million instructions at every start of the bot, as
NamedTuples about 53 million (callgrind, ``python -c "import models.events"`` minus what it
imports): most of what this layout added to the start-up.
"""
from __future__ import annotations

import datetime as dt
from typing import NamedTuple, Union, get_args

from models.lifecycle import State
from models.planning import RuleFailure


# ---- a downtime's life ---------------------------------------------------------------------


class Proposed(NamedTuple):
    downtime_id: int | None
    network: str  # where it was asked: CiDuty on the other networks hears of it
    bugs: tuple[int, ...]
    # The channel it was asked in ("" privately): outside the requests channel, CiDuty hears of it.
    room: str = ""


class BugAdded(NamedTuple):
    downtime_id: int | None
    bug: int
    updated: bool  # it was in the downtime already: its wording or details changed
    looked_up: bool  # Bugzilla answered for it (its summary is known)
    pending: bool = False  # added to an announced downtime: waits for CiDuty's approval
    # Someone other than CiDuty added it after the approval: CiDuty is asked to approve it.
    asks_ciduty: bool = False
    by: str = ""
    at: dt.datetime | None = None


class BugDropped(NamedTuple):
    downtime_id: int | None
    bug: int
    was_approved: bool = False  # Bugzilla holds its "+" and the downtime's tag: taken back
    pending: bool = False  # dropped by the requester from an announced downtime: waits for CiDuty
    at: dt.datetime | None = None  # when: the key of the Bugzilla change (the bug may come back later)
    by: str = ""


class ChangesApproved(NamedTuple):
    """CiDuty approved what waited on an approved or announced downtime: bugs added since the
    first approval, and the requester's pending changes."""

    downtime_id: int | None
    revision: int
    approved: tuple[int, ...]  # bugs now approved (flag "+", the downtime's tag)
    dropped: tuple[int, ...]  # pending drops carried out (their "+" was taken back)
    unassigned: tuple[int, ...]  # waiting bugs left waiting: nobody is assigned
    at: dt.datetime  # when: the key of the Bugzilla change (the same bug may come back later)


class WordingEdited(NamedTuple):
    """The notice wording changed (the audit row holds the old and the new)."""

    downtime_id: int | None
    by: str


class NoticeUpdated(NamedTuple):
    """The announced notice changed (a bug added or dropped, the wording edited): everyone told
    before is told again, with a higher calendar SEQUENCE."""

    downtime_id: int | None
    revision: int
    update: int  # Downtime.notice_updates after this update: its key
    added: tuple[int, ...] = ()
    dropped: tuple[int, ...] = ()
    old_wording: str = ""  # the wording before an edit ("" when it did not change)
    reworded: tuple[int, ...] = ()  # bugs whose words in the notice CiDuty changed


class Approved(NamedTuple):
    downtime_id: int | None
    revision: int
    bugs: tuple[int, ...]


class Rejected(NamedTuple):
    downtime_id: int | None
    by: str
    reason: str


class PreApproved(NamedTuple):
    downtime_id: int | None
    by: str


class Objected(NamedTuple):
    downtime_id: int | None
    by: str
    reason: str
    number: int  # the verdict's number in this downtime (each objection is its own notice)


class ObjectionWithdrawn(NamedTuple):
    """The objector pre-approved after all: their objection no longer blocks the announcement."""

    downtime_id: int | None
    by: str
    reason: str  # of the objection withdrawn


class Confirmed(NamedTuple):
    """Someone working in the downtime confirmed the draft wording."""

    downtime_id: int | None
    by: str  # the account that confirmed
    worker: str  # the worker they are (models/workers.py), as the bot names them
    waiting: tuple[str, ...]  # the workers who have not confirmed yet


class Objection(NamedTuple):
    by: str
    reason: str
    network: str = ""  # where the objector spoke: an override is told to them there


class Announced(NamedTuple):
    downtime_id: int | None
    revision: int
    # What it was announced over, with --force: the hard rules that failed, and the objections.
    overridden: tuple[RuleFailure, ...] = ()
    objections: tuple[Objection, ...] = ()
    force_reason: str = ""
    # Who has not answered the draft: the pre-approvers with no verdict, and the people working
    # in the downtime who have not confirmed it (warnings, not refusals).
    unanswered: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()
    by: str = ""  # who announced (an overridden objector is told)


class Rescheduled(NamedTuple):
    downtime_id: int | None
    revision: int
    old_start: dt.datetime
    old_end: dt.datetime
    before: State
    approvals_reset: int
    confirmations_reset: int = 0
    objections: tuple[str, ...] = ()  # the objectors whose objection still stands
    draft: bool = False  # a draft was out: it goes again, for the new time


class Extended(NamedTuple):
    downtime_id: int | None
    revision: int
    old_end: dt.datetime


class Cancelled(NamedTuple):
    downtime_id: int | None
    by: str
    reason: str
    before: State
    merged_into: int | None = None
    # Merged away: the bugs that the other downtime approved at once (its Bugzilla change holds
    # them; this cancellation leaves them alone).
    kept: tuple[int, ...] = ()
    by_requester: bool = False  # the requester withdrew it


class Started(NamedTuple):
    downtime_id: int | None
    by: str
    early: bool  # forced: more than an hour before the announced start
    # A forced early start moves the planned times to now + the planned duration: the plan before.
    planned_start: dt.datetime | None = None
    planned_end: dt.datetime | None = None


class BugOutcome(NamedTuple):
    downtime_id: int | None
    bug: int
    outcome: str  # landed | landed-and-stuck | rolled-back | not-done
    note: str
    # Recorded after the end: a correction of the TREE OPEN (its number among the downtime's
    # corrections keys what is said, so that every correction is told).
    correction: int = 0


class Ended(NamedTuple):
    downtime_id: int | None
    no_outcome: tuple[int, ...] = ()  # bugs nobody recorded an outcome for (now not-done)
    # builtin backend: the trees not open after the restore (left under someone else's change,
    # or given back a closure from before the downtime); the other backends restore later, in a
    # tree job (TreesRestoredRemotely.left).
    left: tuple[LeftTree, ...] = ()


class Verified(NamedTuple):
    downtime_id: int | None
    by: str


class Merged(NamedTuple):
    downtime_id: int | None
    other: int  # the downtime merged into this one (and cancelled)
    moved: tuple[int, ...]  # the bugs moved over


class ReminderDue(NamedTuple):
    downtime_id: int | None
    job_id: str  # the scheduler's job id, "downtime:7:r2:remind-1h": the key of what is said
    kind: str  # an offset ("1h", "24h") or start | end | overrun | undecided | unannounced
    offset: dt.timedelta | None  # for a reminder before the start
    late: bool  # due while the bot was not running
    auto_start_failed: bool = False  # [policy] auto_start tried and was refused


# ---- the trees -----------------------------------------------------------------------------


class TreesClosed(NamedTuple):
    """The built-in registry closed trees in one remembered change (a downtime's, or by hand)."""

    downtime_id: int | None
    change_id: int
    trees: tuple[str, ...]
    by_hand: bool = False


class TreesCloseRequested(NamedTuple):
    """Treestatus (or, advisory, a sheriff) must close the trees; `change_id` stands for it here."""

    downtime_id: int | None
    change_id: int
    trees: tuple[str, ...]
    reason: str
    tags: tuple[str, ...]


class LeftTree(NamedTuple):
    """A tree a restore left alone, and why: a later change holds it, or someone changed it."""

    tree: str
    status: str  # as it is now
    reason: str
    held_by: int | None  # the later remembered change that holds it (None: changed by hand)
    who: str = ""  # who made the change that holds it


class TreesRestored(NamedTuple):
    """The built-in registry put a remembered change's trees back."""

    downtime_id: int | None
    change_id: int
    restored: tuple[str, ...]
    left: tuple[LeftTree, ...]
    by_hand: bool = False


class TreesRestoreSkipped(NamedTuple):
    """A downtime ended, but its tree change was already undone by hand."""

    downtime_id: int | None
    change_id: int
    state: str


class TreesRestoreRequested(NamedTuple):
    downtime_id: int | None
    change_id: int | None


class TreesOpened(NamedTuple):
    downtime_id: int | None
    trees: tuple[str, ...]


class TreeChangeConfirmed(NamedTuple):
    downtime_id: int | None
    change_id: int
    what: str  # closed | restored


# ---- what the jobs found outside -----------------------------------------------------------


class TreesClosedRemotely(NamedTuple):
    downtime_id: int | None
    job: str  # the key of the tree job that did it
    change_id: int
    stack_id: int | None


class TreesRestoredRemotely(NamedTuple):
    downtime_id: int | None
    job: str
    change_id: int | None  # None: the closure never reached Treestatus, nothing to restore
    remote_id: int | None = None
    restored: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    waiting: tuple[tuple[str, int], ...] = ()
    # The downtime's trees not open after the restore, as Treestatus shows them: the downtime is
    # over but someone else's closure keeps them closed (told where the TREE OPEN went).
    left: tuple[LeftTree, ...] = ()


class TreeChangeAsked(NamedTuple):
    """Advisory backend: the sheriffs and CiDuty are asked to make the change in Treestatus."""

    downtime_id: int | None
    job: str
    op: str  # close | restore
    change_id: int
    unconfirmed: bool = False  # a restore of a closure nobody confirmed


class TreeJobFailed(NamedTuple):
    downtime_id: int | None
    job: str
    op: str  # close | restore
    trees: tuple[str, ...]
    error: str


class BugProblem(NamedTuple):
    """Why Bugzilla did not take part of a change."""

    kind: str  # hidden | unreadable | unassigned | flag_denied | error
    bugs: tuple[int, ...]
    detail: str = ""  # Bugzilla's own words (flag_denied, error)


class BugzillaJobFailed(NamedTuple):
    downtime_id: int | None
    job: str
    description: str  # what the job was to do, as the outbox row says it
    problems: tuple[BugProblem, ...]


class BugsFoundRestricted(NamedTuple):
    """Bugzilla answered after the bugs were added (it was down then) that they are restricted:
    from now on they are described vaguely in public."""

    downtime_id: int | None
    bugs: tuple[int, ...]


class BugzillaJobStuck(NamedTuple):
    downtime_id: int | None
    job: str
    description: str
    error: str
    waited: dt.timedelta


class BugzillaCheckFailed(NamedTuple):
    downtime_id: int | None
    error: str
    at: dt.datetime


class MailFailed(NamedTuple):
    downtime_id: int | None
    job: str
    subject: str
    to: tuple[str, ...]
    reason: str
    final: bool  # refused for good (else: still retried)
    attempts: int


Event = Union[
    Proposed,
    BugAdded,
    BugDropped,
    ChangesApproved,
    WordingEdited,
    NoticeUpdated,
    Approved,
    Rejected,
    PreApproved,
    Objected,
    ObjectionWithdrawn,
    Confirmed,
    Announced,
    Rescheduled,
    Extended,
    Cancelled,
    Started,
    BugOutcome,
    Ended,
    Verified,
    Merged,
    ReminderDue,
    TreesClosed,
    TreesCloseRequested,
    TreesRestored,
    TreesRestoreSkipped,
    TreesRestoreRequested,
    TreesOpened,
    TreeChangeConfirmed,
    TreesClosedRemotely,
    TreesRestoredRemotely,
    TreeChangeAsked,
    TreeJobFailed,
    BugzillaJobFailed,
    BugsFoundRestricted,
    BugzillaJobStuck,
    BugzillaCheckFailed,
    MailFailed,
]
ALL: tuple[type[Event], ...] = get_args(Event)
