"""Every template renders (StrictUndefined catches a missing name), and the notice says what the process asks."""
from __future__ import annotations

import datetime as dt
import types

import pytest

from adapters.config import NoticeSection
from adapters.templates import Renderer
from models.orm import AuditEvent, Downtime, DowntimeBug, OutboxMessage, Tree, TreeChange, TreeChangeItem

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
    "headline": "Done.",
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
}
CHANGE = TreeChange(id=3, at=dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC), who="carol", status="closed",
                    reason="Downtime #7: x", tags="planned", state="active", remote_id=9)
CHANGE.items = [TreeChangeItem(tree="autoland", last_status="open", current_status="closed")]
# Templates where a name means something else than in the shared context above.
OVERRIDES = {"trees_restored.txt": {"change": 3}}


@pytest.mark.parametrize("name", RENDER.names())
def test_every_template_renders(name: str) -> None:
    context = {**CONTEXT, "change": CHANGE, "changes": [CHANGE], **OVERRIDES.get(name, {})}
    text = RENDER(name, d=downtime(), **context)
    assert text.strip()


def test_the_notice_lists_each_bug_with_its_wording_and_is_vague_for_security_bugs() -> None:
    text = RENDER("notice.txt", d=downtime())
    assert "Bug 111: Move the build database" in text
    assert "Bug 222: security-sensitive work (details restricted)" in text
    assert "Patch the secret thing" not in text
    assert "* When can I push?" in text
    assert "2026-12-05 14:00 UTC (06:00 America/Los_Angeles) for 2h" in text


def test_the_tree_open_mail_lists_what_did_and_did_not_get_done() -> None:
    text = RENDER("tree_open_message.txt", d=downtime())
    done, not_done = text.split("What did not get done:")
    assert "Bug 111: Move the build database: landed" in done
    assert "Bug 222: security-sensitive work (details restricted): rolled-back (lag)" in not_done


def test_a_late_reminder_says_it_is_late() -> None:
    assert "(late:" in RENDER("reminder.txt", d=downtime(), kind="start", late=True, auto_start=False)
