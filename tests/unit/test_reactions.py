"""Who is told what, per event: the reactions table (models/reactions.py) read as a table.

Each row of TABLE is one event in one situation, and lists exactly the outbox rows it makes
(kind, network, target, who is mentioned, and which reaction and template made it, or the
job's type) and what the person who acted is told. Two networks (irc, matrix), two channels,
Bugzilla and mail configured unless the row says otherwise.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from adapters.config import NoticeSection
from adapters.db import migrate, session_factory
from tests.conftest import make_test_engine
from adapters.templates import Renderer
from models import events as ev
from models import jobs
from models.events import BugProblem, LeftTree, Objection
from models.lifecycle import State
from models.orm import Downtime, DowntimeBug, OutboxMessage, TreeChange, TreeChangeItem
from models.outbox import Outbox
from models.planning import RuleFailure
from models.reactions import REACTIONS, Reactions
from models.work import MailRouting, Settings

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
START = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
MAIL = MailRouting(
    configured=True, preapprovers=("relman@example.org",), cc=("releng@example.org",),
    announce_to=("dev-planning@example.org",), copy_to=("all@example.org",),
    people={"alice": "alice@example.org"}, remind_lists=True,
)
SETTINGS = Settings(
    networks=("irc", "matrix"), trees=("autoland", "try"), bugzilla_enabled=True, mail=MAIL,
    ciduty=("carol",), sheriffs=("sam",),
)
OFF = dataclasses.replace(SETTINGS, bugzilla_enabled=False, mail=MailRouting())
ADVISORY = dataclasses.replace(SETTINGS, tree_backend="advisory")
BOTH = ("irc", "matrix")
CIDUTY = ("carol",)
SHERIFFS = ("sam",)
CHANNELS = ("#developers", "#ci")

Row = tuple[str, str, str, tuple[str, ...], str]


def chat(made_by: str, targets: tuple[str, ...] = CHANNELS, mentions: tuple[str, ...] = (),
         networks: tuple[str, ...] = BOTH) -> list[Row]:
    return [("chat", n, t, mentions, made_by) for t in targets for n in networks]


def job(kind: str, type_: str) -> list[Row]:
    return [(kind, "", kind, (), type_)]


def mail(made_by: str, to: str) -> list[Row]:
    return [("mail", "", to, (), made_by)]


@dataclass
class Case:
    event: Callable[[Downtime], ev.Event]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)  # a phrase of each note, in order
    manual: list[str] = field(default_factory=list)
    settings: Settings = SETTINGS
    announced: bool = True  # the downtime was announced before (later changes reach the lists)


LISTS = "dev-planning@example.org"
RENDER = Renderer(links=NoticeSection())
LEFT = LeftTree("try", "closed", "bustage", held_by=4)
TABLE: dict[str, Case] = {
    "proposed in #ci on irc: CiDuty on matrix hears of it; its bugs are nominated": Case(
        lambda d: ev.Proposed(d.id, network="irc", bugs=(111,), room="#ci"),
        chat("Proposed proposed_ping.txt", ("#ci",), CIDUTY, ("matrix",)) + job("bugzilla", "nominate-bugs"),
    ),
    "proposed in #developers or privately: CiDuty hears of it in #ci on every network": Case(
        lambda d: ev.Proposed(d.id, network="irc", bugs=(), room=""),
        chat("Proposed proposed_ping.txt", ("#ci",), CIDUTY),
    ),
    "proposed without Bugzilla: the requester nominates by hand": Case(
        lambda d: ev.Proposed(d.id, network="irc", bugs=(111,), room="#ci"),
        chat("Proposed proposed_ping.txt", ("#ci",), CIDUTY, ("matrix",)),
        manual=["set needs-treeclosure? on bug 111 by hand"], settings=OFF,
    ),
    "a bug added: nominated": Case(
        lambda d: ev.BugAdded(d.id, bug=222, updated=False, looked_up=True), job("bugzilla", "nominate-bugs"),
    ),
    "a bug added while Bugzilla did not answer": Case(
        lambda d: ev.BugAdded(d.id, bug=222, updated=False, looked_up=False), job("bugzilla", "nominate-bugs"),
        notes=["Bugzilla did not answer: bug 222 gets needs-treeclosure? when it does"],
    ),
    "a security bug that the public wording names: the requester, privately, on their network": Case(
        lambda d: _named_security_bug(d, 111), job("bugzilla", "nominate-bugs")
        + chat("BugAdded security_bug_named.txt", ("@alice",), (), ("irc",)),
    ),
    "bugs found restricted later, one named in the public wording: its requester, privately": Case(
        lambda d: _named_security_bug(d, 111, found_later=True),
        chat("BugsFoundRestricted security_bug_named.txt", ("@alice",), (), ("irc",)),
    ),
    "a bug added again: updated, nominated before": Case(
        lambda d: ev.BugAdded(d.id, bug=111, updated=True, looked_up=True), [], notes=["was already in downtime"],
    ),
    "a bug dropped": Case(lambda d: ev.BugDropped(d.id, bug=111), []),
    "an approved bug dropped: its flag back to ?, its tag out": Case(
        lambda d: ev.BugDropped(d.id, bug=111, was_approved=True, at=NOW), job("bugzilla", "retag-bugs"),
    ),
    "a drop waiting for CiDuty: CiDuty is asked in the requests channel": Case(
        lambda d: ev.BugDropped(d.id, bug=111, pending=True, at=NOW, by="alice"),
        chat("BugDropped change_waiting_chat.txt", ("#ci",), CIDUTY),
    ),
    "a bug added after the approval by the requester: CiDuty is asked": Case(
        lambda d: ev.BugAdded(d.id, bug=222, updated=False, looked_up=True, pending=True, asks_ciduty=True,
                              by="alice", at=NOW),
        job("bugzilla", "nominate-bugs") + chat("BugAdded change_waiting_chat.txt", ("#ci",), CIDUTY),
    ),
    "changes approved: flags and tags, drops taken back, the unassigned left waiting": Case(
        lambda d: ev.ChangesApproved(d.id, revision=0, approved=(222,), dropped=(111,), unassigned=(333,), at=NOW),
        job("bugzilla", "approve-bugs") + job("bugzilla", "retag-bugs"),
        notes=["bug 333 has nobody assigned and still waits"],
    ),
    "changes approved without Bugzilla: by hand": Case(
        lambda d: ev.ChangesApproved(d.id, revision=0, approved=(222,), dropped=(111,), unassigned=(), at=NOW), [],
        manual=["set needs-treeclosure+ and add [tree-closure 2026-12-05 14:00 UTC] to the whiteboard of bug 222",
                "remove the [tree-closure …] whiteboard tag of bug 111"], settings=OFF,
    ),
    "the notice updated: both channels and the lists, in the announcement's thread": Case(
        lambda d: ev.NoticeUpdated(d.id, revision=0, update=1, added=(222,)),
        chat("NoticeUpdated updated_chat.txt") + mail("NoticeUpdated updated_message.txt", LISTS),
    ),
    "the wording edited: nobody else (the notice update says it)": Case(
        lambda d: ev.WordingEdited(d.id, by="carol"), [],
    ),
    "approved: flags and whiteboards in Bugzilla, the draft to assignees, requester, pre-approvers": Case(
        lambda d: ev.Approved(d.id, revision=0, bugs=(111,)),
        job("bugzilla", "approve-bugs") + mail("Approved draft_message.txt", "a@m.c, alice@example.org, relman@example.org")
        + chat("Approved draft_chat.txt", ("#ci",), ("alice",)),
    ),
    "approved without Bugzilla or mail: what to do by hand": Case(
        lambda d: ev.Approved(d.id, revision=0, bugs=(111,)),
        mail("Approved draft_message.txt", "a@m.c, alice@example.org")
        + chat("Approved draft_chat.txt", ("#ci",), ("alice",)),
        manual=["set needs-treeclosure+ and add [tree-closure 2026-12-05 14:00 UTC]", "draft notice was printed"],
        settings=dataclasses.replace(OFF, mail=MailRouting(people={"alice": "alice@example.org"})),
    ),
    "rejected: the requester, privately, on their network": Case(
        lambda d: ev.Rejected(d.id, by="carol", reason="clash"), chat("Rejected requester_told.txt", ("@alice",), (), ("irc",)),
    ),
    "pre-approved": Case(lambda d: ev.PreApproved(d.id, by="pat"), []),
    "objected: CiDuty in the requests channel": Case(
        lambda d: ev.Objected(d.id, by="pat", reason="release day", number=1),
        chat("Objected objection_chat.txt", ("#ci",), CIDUTY),
    ),
    "an objection withdrawn: CiDuty in the requests channel": Case(
        lambda d: ev.ObjectionWithdrawn(d.id, by="pat", reason="release day"),
        chat("ObjectionWithdrawn objection_withdrawn_chat.txt", ("#ci",), CIDUTY),
        notes=["your objection to downtime #7 is withdrawn"],
    ),
    "the draft confirmed: the actor hears who has not confirmed yet": Case(
        lambda d: ev.Confirmed(d.id, by="alice", worker="alice", waiting=("a@m.c",)), [],
        notes=["the draft is not confirmed yet by a@m.c"],
    ),
    "the draft confirmed by the last worker: nothing more": Case(
        lambda d: ev.Confirmed(d.id, by="alice", worker="alice", waiting=()), [],
    ),
    "announced with answers missing: the actor is warned who has not answered": Case(
        lambda d: ev.Announced(d.id, revision=0, unanswered=("pat",), unconfirmed=("a@m.c",)),
        chat("Announced announce_chat.txt") + mail("Announced announce_message.txt", LISTS),
        notes=["no answer yet from the pre-approver(s) pat", "the draft is not confirmed yet by a@m.c"],
        announced=False,
    ),
    "announced: both channels everywhere and the lists": Case(
        lambda d: ev.Announced(d.id, revision=0),
        chat("Announced announce_chat.txt") + mail("Announced announce_message.txt", LISTS), announced=False,
    ),
    "announced with --force: the actor is told what it overrode": Case(
        lambda d: ev.Announced(d.id, revision=0, overridden=(RuleFailure("overlap", True, (4,)),),
                               objections=(Objection("pat", "release day", "matrix"),), force_reason="chemspill",
                               by="carol"),
        chat("Announced announce_chat.txt") + mail("Announced announce_message.txt", LISTS)
        + chat("Announced objection_overridden.txt", ("@pat",), (), ("matrix",)),
        notes=["announced over: overlaps downtime #4; pat objects: release day (reason logged: chemspill)"],
        announced=False,
    ),
    "rescheduled after the announcement: Bugzilla, both channels, the lists, the draft again": Case(
        lambda d: ev.Rescheduled(d.id, revision=1, old_start=START, old_end=START, before=State.ANNOUNCED,
                                 approvals_reset=1, confirmations_reset=1, objections=("quinn",), draft=True),
        job("bugzilla", "retag-bugs") + chat("Rescheduled rescheduled_chat.txt")
        + mail("Rescheduled rescheduled_message.txt", LISTS)
        + mail("Rescheduled draft_message.txt", "a@m.c, alice@example.org, relman@example.org")
        + chat("Rescheduled draft_chat.txt", ("#ci",), ("alice",)),
        notes=["1 pre-approval(s) and 1 confirmation(s) reset", "the objection of quinn still stands",
               "announce it again with !downtime announce 7", "the draft went again"],
    ),
    "rescheduled while proposed: nobody else": Case(
        lambda d: ev.Rescheduled(d.id, revision=1, old_start=START, old_end=START, before=State.PROPOSED,
                                 approvals_reset=0),
        [], announced=False,
    ),
    "extended: both channels and the lists": Case(
        lambda d: ev.Extended(d.id, revision=1, old_end=START),
        chat("Extended extended_chat.txt") + mail("Extended extended_message.txt", LISTS),
    ),
    "cancelled after the announcement: Bugzilla, both channels, the lists": Case(
        lambda d: ev.Cancelled(d.id, by="carol", reason="chemspill", before=State.ANNOUNCED),
        job("bugzilla", "retag-bugs") + chat("Cancelled cancelled_chat.txt")
        + mail("Cancelled cancelled_message.txt", LISTS),
    ),
    "cancelled before any announcement: the requester only": Case(
        lambda d: ev.Cancelled(d.id, by="carol", reason="chemspill", before=State.PROPOSED),
        chat("Cancelled requester_told.txt", ("@alice",), (), ("irc",)), announced=False,
    ),
    "withdrawn by the requester before the announcement: CiDuty in the requests channel": Case(
        lambda d: ev.Cancelled(d.id, by="alice", reason="not needed", before=State.APPROVED, by_requester=True),
        job("bugzilla", "retag-bugs") + chat("Cancelled withdrawn_chat.txt", ("#ci",), CIDUTY), announced=False,
    ),
    "merged away: as cancelled, and the actor hears where it went": Case(
        lambda d: ev.Cancelled(d.id, by="carol", reason="merged", before=State.APPROVED, merged_into=9),
        job("bugzilla", "retag-bugs") + chat("Cancelled requester_told.txt", ("@alice",), (), ("irc",)),
        notes=["downtime #7 is cancelled (merged into #9)"], announced=False,
    ),
    "started: the sheriffs in #developers, CiDuty in #ci": Case(
        lambda d: ev.Started(d.id, by="carol", early=False),
        chat("Started sheriff_ping.txt", ("#developers",), SHERIFFS) + chat("Started started_chat.txt", ("#ci",), CIDUTY),
    ),
    "started early (forced): as started, and the actor hears the end moved": Case(
        lambda d: ev.Started(d.id, by="carol", early=True, planned_start=START, planned_end=START + dt.timedelta(hours=2)),
        chat("Started sheriff_ping.txt", ("#developers",), SHERIFFS) + chat("Started started_chat.txt", ("#ci",), CIDUTY),
        notes=["the expected end moves from 2026-12-05 16:00 UTC"],
    ),
    "a bug's outcome while it runs": Case(lambda d: ev.BugOutcome(d.id, bug=111, outcome="landed", note=""), []),
    "a bug's outcome after the end: a correction where the TREE OPEN went, and on the bug": Case(
        lambda d: ev.BugOutcome(d.id, bug=111, outcome="landed", note="", correction=1),
        chat("BugOutcome outcome_correction_chat.txt") + mail("BugOutcome outcome_correction_message.txt", LISTS)
        + job("bugzilla", "record-outcomes"),
    ),
    "a bug's outcome after the end without Bugzilla: the comment by hand": Case(
        lambda d: ev.BugOutcome(d.id, bug=111, outcome="landed", note="", correction=2),
        chat("BugOutcome outcome_correction_chat.txt") + mail("BugOutcome outcome_correction_message.txt", LISTS),
        manual=["comment the outcome on bug 111 by hand"], settings=OFF,
    ),
    "ended with bugs nobody recorded: the actor hears which": Case(
        lambda d: ev.Ended(d.id, no_outcome=(111,), left=(LEFT,)),
        chat("Ended tree_open_chat.txt", ("#developers",), SHERIFFS) + chat("Ended tree_open_chat.txt", ("#ci",))
        + mail("Ended tree_open_message.txt", LISTS) + job("bugzilla", "record-outcomes"),
        notes=["no outcome recorded: 111"],
    ),
    "ended: TREE OPEN in both channels (sheriffs pinged in #developers), the lists, Bugzilla": Case(
        lambda d: ev.Ended(d.id),
        chat("Ended tree_open_chat.txt", ("#developers",), SHERIFFS) + chat("Ended tree_open_chat.txt", ("#ci",))
        + mail("Ended tree_open_message.txt", LISTS) + job("bugzilla", "record-outcomes"),
    ),
    "ended without Bugzilla: outcomes by hand": Case(
        lambda d: ev.Ended(d.id),
        chat("Ended tree_open_chat.txt", ("#developers",), SHERIFFS) + chat("Ended tree_open_chat.txt", ("#ci",))
        + mail("Ended tree_open_message.txt", LISTS),  # where the announcement went, in its thread
        manual=["comment the outcome on bug 111 by hand"], settings=OFF,
    ),
    "verified": Case(lambda d: ev.Verified(d.id, by="sam"), []),
    "merged: the actor hears what moved": Case(
        lambda d: ev.Merged(d.id, other=8, moved=(333,)), [], notes=["moved bug 333 from #8"],
    ),
    "the 24h reminder: both channels, nobody pinged, and the lists": Case(
        lambda d: ev.ReminderDue(d.id, job_id="downtime:7:r0:remind-24h", kind="24h", offset=dt.timedelta(hours=24),
                                 late=False),
        chat("ReminderDue reminder.txt") + mail("ReminderDue reminder_message.txt", LISTS),
    ),
    "the 1h reminder: both channels, CiDuty and the sheriffs pinged": Case(
        lambda d: ev.ReminderDue(d.id, job_id="downtime:7:r0:remind-1h", kind="1h", offset=dt.timedelta(hours=1),
                                 late=False),
        chat("ReminderDue reminder.txt", mentions=CIDUTY + SHERIFFS) + mail("ReminderDue reminder_message.txt", LISTS),
    ),
    "the end reminder: CiDuty's business": Case(
        lambda d: ev.ReminderDue(d.id, job_id="downtime:7:r0:end", kind="end", offset=None, late=False),
        chat("ReminderDue reminder.txt", ("#ci",), CIDUTY),
    ),
    "trees closed for a downtime (builtin)": Case(
        lambda d: ev.TreesClosed(d.id, change_id=3, trees=("autoland",)), [], notes=["closed autoland (tree change 3)"],
    ),
    "trees closed by hand (builtin): the reply says it": Case(
        lambda d: ev.TreesClosed(None, change_id=3, trees=("autoland",), by_hand=True), [],
    ),
    "trees to close in Treestatus (advisory)": Case(
        lambda d: ev.TreesCloseRequested(d.id, change_id=3, trees=("autoland",), reason="Downtime #7", tags=("planned",)),
        job("trees", "close-trees"), notes=["sheriffs and CiDuty are asked to close autoland"], settings=ADVISORY,
    ),
    "trees restored (builtin)": Case(
        lambda d: ev.TreesRestored(d.id, change_id=3, restored=("autoland",), left=(LEFT,)), [],
        notes=["restored autoland", "left alone (changed during the downtime): try (still closed under tree change 4"],
    ),
    "trees restored by hand (builtin): the reply says it": Case(
        lambda d: ev.TreesRestored(None, change_id=3, restored=("autoland",), left=(), by_hand=True), [],
    ),
    "a tree change restored by hand before the end": Case(
        lambda d: ev.TreesRestoreSkipped(d.id, change_id=3, state="restored"), [],
        notes=["tree change 3 was already restored: no tree touched"],
    ),
    "trees to restore in Treestatus": Case(
        lambda d: ev.TreesRestoreRequested(d.id, change_id=3), job("trees", "restore-trees"),
        notes=["restoring the trees in Treestatus"],
    ),
    "trees opened by hand": Case(lambda d: ev.TreesOpened(None, trees=("autoland",)), []),
    "a tree change confirmed": Case(lambda d: ev.TreeChangeConfirmed(d.id, change_id=3, what="closed"), []),
    "Treestatus closed the trees: CiDuty": Case(
        lambda d: ev.TreesClosedRemotely(d.id, job="dt7:trees-close", change_id=3, stack_id=11),
        chat("TreesClosedRemotely trees_closed_chat.txt", ("#ci",), CIDUTY),
    ),
    "Treestatus restored the trees: CiDuty": Case(
        lambda d: ev.TreesRestoredRemotely(d.id, job="dt7:trees-restore", change_id=3, remote_id=11,
                                           restored=("autoland",)),
        chat("TreesRestoredRemotely trees_restored_chat.txt", ("#ci",), CIDUTY),
    ),
    "Treestatus restored the trees but another closure holds one: CiDuty, and where the TREE OPEN went": Case(
        lambda d: ev.TreesRestoredRemotely(d.id, job="dt7:trees-restore", change_id=3, remote_id=11,
                                           restored=("autoland",), waiting=(("try", 12),), left=(LEFT,)),
        chat("TreesRestoredRemotely trees_restored_chat.txt", ("#ci",), CIDUTY)
        + chat("TreesRestoredRemotely trees_stay_closed_chat.txt")
        + mail("TreesRestoredRemotely trees_stay_closed_message.txt", LISTS),
    ),
    "advisory: the sheriffs and CiDuty asked in #developers": Case(
        lambda d: ev.TreeChangeAsked(d.id, job="dt7:trees-close", op="close", change_id=3),
        chat("TreeChangeAsked trees_advice_close.txt", ("#developers",), SHERIFFS + CIDUTY), settings=ADVISORY,
    ),
    "a tree job failed for good: CiDuty": Case(
        lambda d: ev.TreeJobFailed(d.id, job="dt7:trees-close", op="close", trees=("autoland",), error="403"),
        chat("TreeJobFailed trees_failed_chat.txt", ("#ci",), CIDUTY),
    ),
    "Bugzilla refused part of a change: CiDuty": Case(
        lambda d: ev.BugzillaJobFailed(d.id, job="dt7:r0:bz-approve", description="set flags",
                                       problems=(BugProblem("hidden", (9,)),)),
        chat("BugzillaJobFailed bugzilla_failed_chat.txt", ("#ci",), CIDUTY),
    ),
    "a Bugzilla change still not made: CiDuty": Case(
        lambda d: ev.BugzillaJobStuck(d.id, job="dt7:r0:bz-approve", description="set flags", error="503",
                                      waited=dt.timedelta(minutes=31)),
        chat("BugzillaJobStuck bugzilla_stuck_chat.txt", ("#ci",), CIDUTY),
    ),
    "Bugzilla failed its start-up check: CiDuty": Case(
        lambda d: ev.BugzillaCheckFailed(None, error="bad key", at=NOW),
        chat("BugzillaCheckFailed bugzilla_check_chat.txt", ("#ci",), CIDUTY),
    ),
    "a mail keeps failing: CiDuty": Case(
        lambda d: ev.MailFailed(d.id, job="dt7:r0:announce:mail", subject="Tree-closing downtime #7",
                                to=(LISTS,), reason="550", final=True, attempts=1),
        chat("MailFailed mail_failed.txt", ("#ci",), CIDUTY),
    ),
}


def _named_security_bug(d: Downtime, bug: int, *, found_later: bool = False) -> ev.Event:
    d.summary = f"Upgrade hg.mozilla.org, see bug {bug}"
    for row in d.bugs:
        row.security = row.bug == bug
    if found_later:
        return ev.BugsFoundRestricted(d.id, bugs=(bug, 999))
    return ev.BugAdded(d.id, bug=bug, updated=False, looked_up=True)


@pytest.fixture
def session(database: str) -> Iterator[Session]:
    engine = make_test_engine(database)
    migrate(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def downtime(session: Session, *, announced: bool) -> Downtime:
    d = Downtime(
        id=7, state="announced" if announced else "approved", summary="Upgrade hg.mozilla.org", start_at=START,
        end_at=START + dt.timedelta(hours=2), requester="alice", requester_network="irc", created_at=NOW,
        updated_at=NOW, was_announced=announced, announced_at=NOW if announced else None,
    )
    d.bugs = [DowntimeBug(bug=111, assignee="a@m.c", added_by="alice")]
    change = TreeChange(id=3, at=NOW, who="carol", status="closed", reason="Downtime #7", tags="planned")
    change.items = [TreeChangeItem(tree="autoland", last_status="open", current_status="closed")]
    session.add_all([d, change])
    if announced:  # the announcement mail, which later mails answer
        session.add(OutboxMessage(key="dt7:r0:announce:mail", kind="mail", target=LISTS, body="notice",
                                  payload=jobs.dump(jobs.SendMail((LISTS,), ("all@example.org",), "Tree-closing")),
                                  downtime_id=7, status="sent", created_at=NOW))
    session.flush()
    return d


def what(row: dict[str, Any]) -> Row:
    payload = row["payload"]
    made_by = payload.get("made_by") or payload.get("type", "")
    return (row["kind"], row["network"], row["target"], tuple(payload.get("mentions", ())), made_by)


@pytest.mark.parametrize("name", list(TABLE))
def test_who_is_told_what(session: Session, name: str) -> None:
    case = TABLE[name]
    d = downtime(session, announced=case.announced)
    outbox = Outbox(session, now=NOW, networks=case.settings.networks)

    told = Reactions(case.settings, RENDER).react([case.event(d)], outbox)

    assert sorted(what(r) for r in outbox.added) == sorted(case.rows)
    assert len(told.notes) == len(case.notes) and all(p in n for p, n in zip(case.notes, told.notes))
    assert len(told.manual) == len(case.manual) and all(p in m for p, m in zip(case.manual, told.manual))
    assert all(r["body"].strip() for r in outbox.added)


def test_every_event_has_a_reaction_and_a_row_in_this_table() -> None:
    assert set(ev.ALL) == set(REACTIONS)
    covered = {type(case.event(Downtime(id=7))) for case in TABLE.values()}
    assert covered == set(ev.ALL)


def test_reacting_twice_queues_nothing_twice(session: Session) -> None:
    d = downtime(session, announced=True)
    reactions = Reactions(SETTINGS, RENDER)
    first = Outbox(session, now=NOW, networks=SETTINGS.networks)
    reactions.react([ev.Ended(d.id)], first)
    queued = len(first.added)
    first.write()
    session.flush()
    again = Outbox(session, now=NOW, networks=SETTINGS.networks)
    reactions.react([ev.Ended(d.id)], again)
    assert queued == 6 and again.added == []


SECRETS = ("Heap overflow in libfoo", "Swap the libfoo allocator")


def test_no_list_mail_channel_line_or_bugzilla_comment_holds_a_confidential_bugs_words(session: Session) -> None:
    d = downtime(session, announced=True)
    d.bugs[0].security, d.bugs[0].summary, d.bugs[0].assignee = True, "Heap overflow in libfoo", "sec@example.org"
    d.bugs += [
        DowntimeBug(bug=222, security=True, wording="Swap the libfoo allocator", assignee="a@m.c", added_by="alice"),
        DowntimeBug(bug=333, wording="Move the build database", assignee="a@m.c", added_by="alice"),
    ]
    session.flush()
    outbox = Outbox(session, now=NOW, networks=SETTINGS.networks)
    happened = [
        ev.Approved(d.id, revision=0, bugs=(111, 222, 333)), ev.Announced(d.id, revision=1),
        ev.Rescheduled(d.id, revision=2, old_start=START, old_end=START, before=State.ANNOUNCED, approvals_reset=0),
        ev.Extended(d.id, revision=3, old_end=START), ev.Started(d.id, by="carol", early=False), ev.Ended(d.id),
        ev.Cancelled(d.id, by="carol", reason="chemspill", before=State.ANNOUNCED),
    ]
    Reactions(SETTINGS, RENDER).react(happened, outbox)

    said = [f"{r['body']} {r['payload']}" for r in outbox.added]
    # The draft goes to everyone working in the downtime, the restricted bug's assignee too; no
    # text names them.
    assert [r["body"] for r in outbox.added if "sec@example.org" in r["body"]] == []
    assert {r["kind"] for r in outbox.added} == {"chat", "mail", "bugzilla"}
    assert any("Move the build database" in text for text in said)  # a bug's own words, where not confidential
    assert [text for text in said if any(s in text for s in SECRETS)] == []
