"""Every template renders (StrictUndefined catches a missing name), and the notice says what the process asks."""
from __future__ import annotations

import datetime as dt
import types

import pytest

from adapters.config import NoticeSection
from adapters.templates import Renderer
from models.confidential import told
from models import jobs
from models.events import BugProblem, LeftTree, Objection
from models.orm import AuditEvent, Downtime, DowntimeBug, OutboxMessage, Tree, TreeChange, TreeChangeItem
from models.planning import RuleFailure
from models.reactions import Told
from models.work import Consolidation, Outcome

UTC = dt.timezone.utc
RENDER = Renderer(zones=("America/Los_Angeles",), prefix="!", trees=("autoland", "try"), links=NoticeSection())


def downtime() -> Downtime:
    start = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
    d = Downtime(
        id=7, state="finished", summary="Upgrade the hg servers", start_at=start, end_at=start + dt.timedelta(hours=2),
        requester="alice", requester_network="irc", trees="", systems="hg.mozilla.org", created_at=start,
        updated_at=start, started_at=start, ended_at=start + dt.timedelta(hours=1), revision=1, verified_by="sam",
    )
    d.bugs = [
        DowntimeBug(bug=111, wording="Move the build database", security=False, status="landed", summary="", assignee="a@m.c", note="", added_by="alice"),
        DowntimeBug(bug=222, wording="Patch the secret thing", security=True, status="rolled-back", summary="", assignee="", note="lag", added_by="alice"),
    ]
    d.verdicts = []
    return d


CONTEXT = {
    "old_start": dt.datetime(2026, 12, 4, 14, 0, tzinfo=UTC),
    "old_end": dt.datetime(2026, 12, 5, 15, 0, tzinfo=UTC),
    "reason": "chemspill",
    "actor": "carol",
    "event": "ended",
    "kind": "1h",
    "late": False,
    "rows": [],
    "which": "upcoming",
    "page": 1,
    "pages": 1,
    "events": [AuditEvent(at=dt.datetime(2026, 12, 1, tzinfo=UTC), account="a", network="irc", action="propose", from_state="", to_state="proposed", detail="")],
    "id": 7,
    "warnings": [],
    "notes": ["a note"],
    "manual": [],
    "slots": [dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)],
    "duration": dt.timedelta(hours=2),
    "tree_rows": [Tree(name="autoland", status="closed", reason="Downtime #7", tags="planned")],
    "changes": [],
    "systems": [("hg.mozilla.org", "source")],
    "requests": "#ci",
    "bugs": [],
    "flag": "needs-treeclosure",
    "pending": [],
    "status": "rolled-back",
    "note": "lag",
    "error": "HTTP 500",
    "row": OutboxMessage(key="k", kind="bugzilla", target="bugzilla", body="set flags on bug 1", downtime_id=7),
    "waited": dt.timedelta(minutes=31),
    "source": "",
    "auto_start": False,
    "final": True,
    "subject": "Tree-closing downtime #7",
    "to": ["dev-planning@example.org"],
    "attempts": 3,
    "builtin": True,
    "case": "push",
    "branch": "autoland",
    "e2e": "2h",
    "results": "13:40 UTC",
    "start": "14:00 UTC",
    "end": "16:00 UTC",
    "downtime": 7,
    "op": "close",
    "stack_id": 3,
    "restored": ["autoland"],
    "left": [],
    "unconfirmed": False,
    "report": types.SimpleNamespace(restored=["autoland"], changed=["try"], waiting={"mozilla-central": 4}),
    # refusals, usage errors, notes, jobs and replies
    "refusal": "no_downtime",
    "usage": "downtime show <id>",
    "roles": ["ciduty", "sheriffs"],
    "requester": True,
    "action": "approve",
    "allowed": ["proposed"],
    "state": "in_progress",
    "nick": "bob",
    "now": dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    "least": dt.timedelta(minutes=5),
    "most": dt.timedelta(days=7),
    "bug": 111,
    "failures": (RuleFailure("notice", True, start=dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC), notice=dt.timedelta(hours=5), required=dt.timedelta(hours=24)),),
    "objections": (Objection("pat", "release day"),),
    "unknown": ["nonesuch"],
    "known": ["autoland", "try"],
    "backend": "advisory",
    "what": "close trees",
    "verb": "close",
    "length": 2500,
    "limit": 2000,
    "sub": "frobnicate",
    "top": "downtime",
    "ref": "1a2b3c4d",
    "token": "x7",
    "text": "tomorrow-ish",
    "extra": "and more",
    "topic": "frobnicate",
    "outcomes": ["landed", "not-done"],
    "count": 2,
    "moved": [111],
    "other": 8,
    "into": 7,
    "trees": ["autoland", "try"],
    "asker": "bob",
    "opened": ["autoland"],
    "lines": 7,
    "by": "carol",
    "subs": ["propose", "list"],
    "others": ["trees", "canipush"],
    "examples": ["!downtime show 7"],
    "role": "ciduty",
    "admins_too": True,
    "host": "hg.mozilla.org",
    "matches": [("hg.mozilla.org", "source")],
    "tag": "[tree-closure 2026-12-05 14:00 UTC]",
    "why": "rescheduled",
    "problems": (BugProblem("hidden", (9,)), BugProblem("flag_denied", (3,), "Bugzilla refused the flag")),
    "description": "set needs-treeclosure+ on bug 1",
    "done": True,
    "changed": ["try"],
    "waiting": (("mozilla-central", 4),),
    "remote_id": 9,
    "told": Told(notes=["a note"], manual=["by hand"]),
    "headline": "proposed",
    "planned_start": dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC),
    "planned_end": dt.datetime(2026, 12, 5, 16, 0, tzinfo=UTC),
    "no_outcome": (222,),
    "room": "#developers",
    "network": "irc",
    "approved": [111],
    "dropped": [222],
    "unassigned": [333],
    "updated": True,
    "added": [111],
    "old_wording": "Upgrade the hg servers",
    "reworded": [111],
    "change": "add",
}
CHANGE = TreeChange(id=3, at=dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC), who="carol", status="closed",
                    reason="Downtime #7: x", tags="planned", state="active", remote_id=9)
CHANGE.items = [TreeChangeItem(tree="autoland", last_status="open", current_status="closed")]
# Templates where a name means something else than in the shared context above.
RESULT = jobs.BugResult(111, "landed", "", "Outcome: landed.", None)
OVERRIDES = {
    "draft_chat.txt": {"again": True, "unreached": ["bob@example.org"]},
    "draft_message.txt": {"again": True, "workers": ["alice", "bob@example.org"]},
    "notes/approvals_reset.txt": {"confirmations": 1},
    "notes/objections_stand.txt": {"names": ["pat"]},
    "notes/unanswered.txt": {"names": ["pat"]},
    "notes/unconfirmed.txt": {"names": ["bob@example.org"]},
    "objection_overridden.txt": {"objection": Objection("pat", "release day")},
    "refusals/not_a_worker.txt": {"workers": ["alice"], "count": 3},
    "refusals/reschedule_same.txt": {"start": dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)},
    "trees_restored.txt": {"change": 3, "left": (LeftTree("try", "closed", "bustage", held_by=4),)},
    "notes/trees_left.txt": {"left": (LeftTree("try", "open", "", held_by=None),)},
    "notes/trees_closing.txt": {"change": 3},
    "notes/trees_restore_skipped.txt": {"change": 3},
    "refusals/no_tree_change.txt": {"change": 3},
    "refusals/nothing_to_confirm.txt": {"change": 3},
    "refusals/no_tree_change_to_restore.txt": {"change": 3},
    "replies/bug_added.txt": {"bug": DowntimeBug(bug=222, security=True)},
    "refusals/in_the_past.txt": {"start": dt.datetime(2026, 11, 30, 9, 0, tzinfo=UTC)},
    "refusals/too_early.txt": {"start": dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)},
    "help_family.txt": {"top": "canipush", "subs": [], "branches": [("mozilla-central", ["m-c", "central"])]},
    "help_group.txt": {"group": "downtime bug", "usages": ["downtime bug add <id> <bug>", "downtime bug drop <id> <bug>"]},
    "help_top.txt": {"families": [("downtime", ["propose", "list"]), ("canipush", [])]},
    "usage/no_such_command.txt": {"word": "dowtnime", "close": "downtime"},
    "usage/no_such_subcommand.txt": {"close": "list"},
    "refusals/unknown_subcommand.txt": {"close": "downtime list"},
    "canipush.txt": {"results": dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
                     "start": dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC),
                     "end": dt.datetime(2026, 12, 5, 16, 0, tzinfo=UTC)},
    "usage.txt": {"refusal": "not_a_downtime_id"},
    "slow_down.txt": {"who": "mallory", "commands": 10, "period": dt.timedelta(minutes=1), "seconds": 6},
    "jobs/nominate-bugs.txt": {"job": jobs.NominateBugs((1, 2))},
    "jobs/approve-bugs.txt": {"job": jobs.ApproveBugs((1, 2), "[tree-closure 2026-12-05 14:00 UTC]")},
    "jobs/retag-bugs.txt": {"job": jobs.RetagBugs((1,), "", "cancelled", renominate=True)},
    "jobs/record-outcomes.txt": {"job": jobs.RecordOutcomes((RESULT,), "ran")},
    "jobs/close-trees.txt": {"job": jobs.CloseTrees(("autoland",), "Downtime #7: x", ("planned",), 3)},
    "jobs/restore-trees.txt": {"job": jobs.RestoreTrees(7, 3)},
}


@pytest.mark.parametrize("name", RENDER.names())
def test_every_template_renders(name: str) -> None:
    d = downtime()
    outcome = Outcome(d, warnings=list(CONTEXT["failures"]), offers=[Consolidation(8, ("hg.mozilla.org",), None, (8, 7))])
    context = {**CONTEXT, "change": CHANGE, "changes": [CHANGE], "outcome": outcome, **OVERRIDES.get(name, {})}
    text = RENDER(name, d=d, **context)
    assert text.strip()
    assert "Undefined" not in text and "None" not in text.replace("Done: nothing", "")


def test_the_notice_lists_each_bug_with_its_wording_and_is_vague_for_security_bugs() -> None:
    d = downtime()
    text = RENDER("notice.txt", d=d, bugs=told(d.bugs, full=False, fallback=d.summary))
    assert "Bug 111: Move the build database" in text
    assert "Bug 222: security-sensitive work (details restricted)" in text
    assert "Patch the secret thing" not in text
    assert "* When can I push?" in text
    assert "2026-12-05 14:00 UTC (06:00 America/Los_Angeles) for 2h" in text


def test_the_tree_open_mail_lists_what_did_and_did_not_get_done() -> None:
    d = downtime()
    text = RENDER("tree_open_message.txt", d=d, bugs=told(d.bugs, full=False, fallback=d.summary), no_outcome=(),
                  left=(), backend="builtin")
    done, not_done = text.split("What did not get done:")
    assert "Bug 111: Move the build database: landed" in done
    assert "Bug 222: security-sensitive work (details restricted): rolled-back (lag)" in not_done


def test_a_late_reminder_says_it_is_late() -> None:
    assert "(late:" in RENDER("reminder.txt", d=downtime(), kind="start", late=True, auto_start=False)


# Templates that show a time in UTC only, and why: the whiteboard tag is Bugzilla's own text,
# subjects stay short, a Bugzilla comment is read by people on Bugzilla's own time display, and
# the history is an audit log (one zone, sortable).
UTC_ONLY = {"replies/approved.txt", "history.txt", "bug_comment.txt"}


@pytest.mark.parametrize("name", RENDER.names())
def test_every_reply_shows_its_times_in_utc_and_the_display_zones(name: str) -> None:
    """A time formatted by hand (strftime) shows UTC only; `when` adds the display zones."""
    if name in UTC_ONLY or name.endswith("_subject.txt"):
        return
    source = (RENDER.env.loader.get_source(RENDER.env, name)[0])  # type: ignore[union-attr]
    assert "strftime" not in source, f"{name} shows a time in UTC only: use when(t)"
