"""The Bugzilla job logic against FakeBugzilla: what each change does and how many calls it costs."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from models.ports import BugzillaUnavailable
from tests.fakes import FakeBugzilla
from adapters.bugzilla_jobs import BugzillaLookup, BugzillaStatus, marker, perform
from adapters.templates import Renderer
from models import jobs
from models.events import BugProblem
from models.jobs import ApproveBugs, BugResult, NominateBugs, RecordOutcomes, RetagBugs
from models.lifecycle import DomainError

FLAG = "needs-treeclosure"
TAG = "[tree-closure 2026-12-05 14:00 UTC]"


@pytest.fixture
def fake() -> FakeBugzilla:
    fake = FakeBugzilla()
    fake.add_bug(1, whiteboard="[infra]", flags=[(FLAG, "?")])
    fake.add_bug(2, flags=[(FLAG, "?")])
    fake.add_bug(3, flags=[(FLAG, "?")])
    return fake


def calls(fake: FakeBugzilla) -> list[str]:
    return [name for name, _ in fake.calls]


def test_nominating_sets_the_flag_only_where_it_is_not_set_yet(fake):
    fake.add_bug(4)
    fake.add_bug(5, flags=[(FLAG, "-")])

    report = perform(fake, FLAG, "dt1:bz-nominate", NominateBugs((1, 4, 5,)))

    assert calls(fake) == ["get_bugs", "update"]
    assert fake.calls[1][1]["ids"] == (4, 5) and fake.calls[1][1]["flag_status"] == "?"
    assert [fake.bugs[i].flag_status(FLAG) for i in (1, 4, 5)] == ["?", "?", "?"]
    assert sorted(report.done) == [1, 4, 5] and not report.problems


def test_nominating_bugs_that_all_have_the_flag_makes_no_update(fake):
    perform(fake, FLAG, "k", NominateBugs((2, 3,)))

    assert calls(fake) == ["get_bugs"]


def test_approving_takes_one_update_per_distinct_whiteboard_each_carrying_the_flag(fake):
    report = perform(fake, FLAG, "dt1:r0:bz-approve", ApproveBugs((1, 2, 3,), TAG))

    updates = [args for name, args in fake.calls if name == "update"]
    assert calls(fake) == ["get_bugs", "update", "update"]
    assert [(u["ids"], u["whiteboard"], u["flag_status"]) for u in updates] == [
        ((1,), f"[infra] {TAG}", "+"), ((2, 3), TAG, "+")]
    assert [fake.bugs[i].whiteboard for i in (1, 2, 3)] == [f"[infra] {TAG}", TAG, TAG]
    assert all(fake.bugs[i].flag_status(FLAG) == "+" for i in (1, 2, 3)) and not report.problems


def test_approving_bugs_that_get_the_same_whiteboard_takes_a_single_update(fake):
    perform(fake, FLAG, "k", ApproveBugs((2, 3,), TAG))

    assert calls(fake) == ["get_bugs", "update"]
    assert fake.calls[1][1]["whiteboard"] == TAG and fake.calls[1][1]["flag_status"] == "+"


def test_approving_again_after_a_partial_failure_only_sends_what_is_missing(fake):
    payload = ApproveBugs((1, 2, 3,), TAG)
    # The whiteboards went through, then Bugzilla failed on the flag update.
    perform(fake, FLAG, "k", payload)
    fake.bugs[2] = replace(fake.bugs[2], flags=((FLAG, "?"),))
    fake.calls.clear()

    perform(fake, FLAG, "k", payload, attempts=1)

    assert calls(fake) == ["get_bugs", "update"]
    assert fake.calls[1][1]["ids"] == (2,) and fake.calls[1][1]["whiteboard"] is None
    assert [fake.bugs[i].whiteboard for i in (1, 2, 3)] == [f"[infra] {TAG}", TAG, TAG]


def test_approving_leaves_out_and_names_bugs_with_nobody_assigned(fake):
    fake.add_bug(4, assignee="nobody@mozilla.org", flags=[(FLAG, "?")])

    report = perform(fake, FLAG, "k", ApproveBugs((2, 3, 4,), TAG))

    assert fake.bugs[4].flag_status(FLAG) == "?" and fake.bugs[4].whiteboard == ""
    assert fake.bugs[2].flag_status(FLAG) == "+"
    assert report.problems == [BugProblem("unassigned", (4,))]


def test_a_flag_refused_on_one_bug_is_reported_and_the_others_are_still_approved(fake):
    fake.denied.add(3)

    report = perform(fake, FLAG, "k", ApproveBugs((2, 3,), TAG))

    assert fake.bugs[2].flag_status(FLAG) == "+" and fake.bugs[3].flag_status(FLAG) == "?"
    assert report.done == [2]
    assert report.problems == [BugProblem("flag_denied", (3,), f"Bugzilla refused the {FLAG} change on bug 3")]


def test_a_bug_the_bot_cannot_see_is_left_out_with_the_advice(fake):
    fake.add_bug(9, flags=[(FLAG, "?")], hidden=True)

    report = perform(fake, FLAG, "k", ApproveBugs((2, 9,), TAG))

    assert fake.bugs[2].flag_status(FLAG) == "+"
    assert report.problems == [BugProblem("hidden", (9,))]
    said = Renderer().env.get_template("bug_problems.txt").render(problems=report.problems)
    assert said.startswith("bug 9 not visible to the bot (restricted or missing)") and "tracking bug" in said


def test_ending_comments_once_per_distinct_outcome_and_clears_the_flag_of_work_not_done(fake):
    for i in (1, 2, 3):
        fake.bugs[i] = replace(fake.bugs[i], flags=((FLAG, "+"),))
    fake.add_bug(4, flags=[(FLAG, "+")])
    job = RecordOutcomes(
        (BugResult(1, "landed", "", "Outcome: landed.", None), BugResult(2, "landed", "", "Outcome: landed.", None),
         BugResult(3, "rolled-back", "lag", "Rolled back.", "X"), BugResult(4, "not-done", "later", "Not done.", "X")),
        "Downtime #1 ran from 14:00 to 16:00 UTC.",
    )

    perform(fake, FLAG, "dt1:bz-outcomes", job)

    assert calls(fake) == ["get_bugs", "update", "update", "update"]
    assert [fake.bugs[i].flag_status(FLAG) for i in (1, 2, 3, 4)] == ["+", "+", None, None]
    assert fake.comments_on[1] == [f"Downtime #1 ran from 14:00 to 16:00 UTC.\nOutcome: landed.\n\n"
                                   f"{marker('dt1:bz-outcomes')}"]
    assert all(len(fake.comments_on[i]) == 1 for i in (1, 2, 3, 4))


def test_a_retried_end_never_comments_twice_on_a_bug(fake):
    job = RecordOutcomes(
        (BugResult(1, "landed", "", "Landed.", None), BugResult(2, "rolled-back", "", "Rolled back.", "X"),
         BugResult(3, "landed", "", "Landed.", None)),
        "Ran.",
    )
    perform(fake, FLAG, "dt1:bz-outcomes", job)
    # Suppose the answer was lost: the job runs again.
    fake.calls.clear()

    perform(fake, FLAG, "dt1:bz-outcomes", job, attempts=1)

    assert calls(fake) == ["get_bugs", "comments"]
    assert all(len(fake.comments_on[i]) == 1 for i in (1, 2, 3))


def test_cancelling_takes_the_tag_out_comments_and_puts_the_bugs_back_in_the_queue(fake):
    perform(fake, FLAG, "k1", ApproveBugs((1, 2,), TAG))
    fake.calls.clear()

    perform(fake, FLAG, "dt1:r0:bz-cancelled",
            RetagBugs((1, 2), "", "Cancelled.", renominate=True))

    assert [fake.bugs[i].whiteboard for i in (1, 2)] == ["[infra]", ""]
    assert [fake.bugs[i].flag_status(FLAG) for i in (1, 2)] == ["?", "?"]
    assert fake.comments_on[1] == [f"Cancelled.\n\n{marker('dt1:r0:bz-cancelled')}"]
    assert calls(fake) == ["get_bugs", "update", "update", "update"]  # 2 whiteboards + comment


def test_rescheduling_replaces_the_tag_instead_of_adding_a_second(fake):
    perform(fake, FLAG, "k1", ApproveBugs((1,), TAG))
    new = "[tree-closure 2026-12-06 14:00 UTC]"

    perform(fake, FLAG, "k2", RetagBugs((1,), new, "Moved."))

    assert fake.bugs[1].whiteboard == f"[infra] {new}"
    assert fake.bugs[1].flag_status(FLAG) == "+"


def test_bugzilla_being_down_is_raised_for_the_worker_to_retry(fake):
    fake.failures = [BugzillaUnavailable("Bugzilla is unavailable (HTTP 503).")]

    with pytest.raises(BugzillaUnavailable):
        perform(fake, FLAG, "k", ApproveBugs((1,), TAG))
    assert fake.bugs[1].flag_status(FLAG) == "?"


def test_lookup_gives_the_process_advice_for_a_bug_the_bot_cannot_see(fake):
    fake.add_bug(9, hidden=True)
    lookup = BugzillaLookup(fake, BugzillaStatus())

    with pytest.raises(DomainError) as refused:
        asyncio.run(lookup.lookup(9))

    assert (refused.value.reason, refused.value.facts) == ("bug_not_visible", {"bug": 9})
    assert Renderer()("refusal.txt", refusal="bug_not_visible", bug=9) == (
        "bug 9 is not visible to the bot (restricted or missing): file a separate "
        "tracking bug that CiDuty can see, and track it closely")


def test_lookup_while_bugzilla_is_down_answers_none_and_marks_it_unavailable(fake):
    fake.failures = [BugzillaUnavailable("down")]
    status = BugzillaStatus()

    assert asyncio.run(BugzillaLookup(fake, status).lookup(1)) is None
    assert not status.available and status.reason == "down"


def test_the_queue_while_bugzilla_is_down_is_a_one_line_refusal(fake):
    fake.failures = [BugzillaUnavailable("Bugzilla is unavailable (HTTP 503).")]

    with pytest.raises(DomainError) as refused:
        asyncio.run(BugzillaLookup(fake, BugzillaStatus()).nominated())
    said = Renderer()("refusal.txt", refusal=refused.value.reason, **refused.value.facts)
    assert said == "Bugzilla is unavailable (HTTP 503). Try again later."


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"op": "nominate", "bugs": [1, 4]}, NominateBugs((1, 4))),
        ({"op": "approve", "bugs": [1], "tag": TAG}, ApproveBugs((1,), TAG)),
        ({"op": "rescheduled", "bugs": [1], "tag": TAG, "comment": "Moved."}, RetagBugs((1,), TAG, "Moved.")),
        ({"op": "cancelled", "bugs": [1], "tag": "", "comment": "Off."}, RetagBugs((1,), "", "Off.", renominate=True)),
        ({"op": "outcomes", "comment": "Ran.", "outcomes": {"1": ["landed", ""], "2": ["not-done", "later"]}},
         RecordOutcomes((BugResult(1, "landed", "", None, None), BugResult(2, "not-done", "later", None, "X")), "Ran.")),
    ],
)
def test_a_job_queued_by_the_version_before_typed_jobs_still_runs(old, new) -> None:  # type: ignore[no-untyped-def]
    assert jobs.load(old) == new
    assert jobs.load(jobs.dump(new)) == new


def test_a_payload_no_version_wrote_is_refused() -> None:
    with pytest.raises(jobs.JobError):
        jobs.load({"op": "frobnicate"})
    with pytest.raises(jobs.JobError):
        jobs.load({"v": 99, "type": "approve-bugs"})
