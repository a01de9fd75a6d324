"""The reminder plan, as a pure function of the downtime, the policy and the time."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from models.lifecycle import State
from models.planning import Policy
from models.reminders import DowntimeFacts, Plan, offset_label, plan

UTC = dt.timezone.utc
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
CREATED = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
START = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
POLICY = Policy()  # reminders 24h and 1h, min_notice 24h


def facts(state: State = State.ANNOUNCED, **changes: object) -> DowntimeFacts:
    base = DowntimeFacts(
        id=7,
        state=state,
        start_at=START,
        end_at=START + 2 * H,
        revision=0,
        created_at=CREATED,
        approved_at=CREATED + H,
        announced_at=CREATED + 2 * H if state in (State.ANNOUNCED, State.IN_PROGRESS) else None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def ids(reminders: list) -> list[str]:
    return [r.job_id for r in reminders]


def dropped(p: Plan) -> list[str]:
    return [r.job_id for r, _ in p.dropped]


def test_an_announced_downtime_gets_the_ladder_24h_1h_start_and_end() -> None:
    p = plan(facts(), POLICY, CREATED + 3 * H)

    assert [(r.job_id, r.due, r.kind) for r in p.upcoming] == [
        ("downtime:7:r0:remind-24h", START - 24 * H, "24h"),
        ("downtime:7:r0:remind-1h", START - H, "1h"),
        ("downtime:7:r0:start", START, "start"),
        ("downtime:7:r0:end", START + 2 * H, "end"),
    ]
    assert p.overdue == [] and p.dropped == []


def test_the_offsets_come_from_the_policy_and_short_ones_work() -> None:
    p = plan(facts(), Policy(reminders=(2 * M, M, 48 * H)), CREATED + 3 * H)

    assert ids(p.upcoming)[:3] == ["downtime:7:r0:remind-48h", "downtime:7:r0:remind-2m", "downtime:7:r0:remind-1m"]
    assert p.upcoming[1].due == START - 2 * M


def test_an_announcement_less_than_24h_before_the_start_plans_no_24h_reminder() -> None:
    announced = START - 3 * H
    p = plan(facts(announced_at=announced), POLICY, announced)

    assert ids(p.upcoming) == ["downtime:7:r0:remind-1h", "downtime:7:r0:start", "downtime:7:r0:end"]
    assert p.overdue == [] and p.dropped == []


def test_a_rescheduled_downtime_has_new_ids_and_no_reminder_of_its_old_time() -> None:
    # Announced, rescheduled (back to approved), announced again: revision 1.
    moved = START + 48 * H
    revised = CREATED + 5 * H
    p = plan(
        facts(start_at=moved, end_at=moved + 2 * H, revision=1, revised_at=revised, announced_at=revised + H),
        POLICY,
        revised + H,
    )

    assert ids(p.upcoming) == [
        "downtime:7:r1:remind-24h", "downtime:7:r1:remind-1h", "downtime:7:r1:start", "downtime:7:r1:end",
    ]
    assert all(r.due >= moved - 24 * H for r in p.upcoming)


def test_a_rescheduled_downtime_that_is_not_announced_again_gets_no_ladder() -> None:
    p = plan(facts(State.APPROVED, revision=1, revised_at=CREATED + 5 * H), POLICY, CREATED + 5 * H)

    assert [r.kind for r in p.reminders] == ["unannounced"]


def test_an_extension_does_not_bring_back_a_reminder_that_was_due_before_it() -> None:
    # The 24h reminder fell due (and was sent) before the extension raised the revision.
    extended = START - 2 * H
    p = plan(facts(end_at=START + 3 * H, revision=1, revised_at=extended), POLICY, extended)

    assert ids(p.upcoming) == ["downtime:7:r1:remind-1h", "downtime:7:r1:start", "downtime:7:r1:end"]
    assert p.upcoming[-1].due == START + 3 * H
    assert p.overdue == [] and p.dropped == []


def test_an_extension_while_in_progress_moves_the_end_reminder() -> None:
    extended = START + H
    p = plan(facts(State.IN_PROGRESS, end_at=START + 4 * H, revision=1, revised_at=extended), POLICY, extended)

    assert [(r.job_id, r.due) for r in p.upcoming] == [
        ("downtime:7:r1:end", START + 4 * H), ("downtime:7:r1:overrun-1", START + 4 * H + 30 * M),
    ]


@pytest.mark.parametrize("state", [State.CANCELLED, State.REJECTED, State.FINISHED])
def test_a_closed_downtime_gets_no_reminder(state: State) -> None:
    p = plan(facts(state), POLICY, CREATED + 3 * H)

    assert p.reminders == [] and p.dropped == []


def test_a_proposal_without_a_decision_reminds_24h_after_the_request() -> None:
    p = plan(facts(State.PROPOSED), POLICY, CREATED)

    assert [(r.job_id, r.due, r.kind) for r in p.upcoming] == [
        ("downtime:7:r0:undecided", CREATED + 24 * H, "undecided"),
    ]


def test_an_approved_downtime_reminds_2h_before_the_last_moment_that_gives_the_notice() -> None:
    p = plan(facts(State.APPROVED), POLICY, CREATED + H)

    assert [(r.job_id, r.due) for r in p.upcoming] == [("downtime:7:r0:unannounced", START - 24 * H - 2 * H)]


def test_an_approval_after_that_moment_plans_no_unannounced_reminder() -> None:
    late = START - 25 * H
    p = plan(facts(State.APPROVED, approved_at=late), POLICY, late)

    assert p.reminders == [] and p.dropped == []


def test_an_in_progress_downtime_reminds_at_the_end_then_every_30_minutes_of_overrun() -> None:
    assert ids(plan(facts(State.IN_PROGRESS), POLICY, START + H).upcoming) == [
        "downtime:7:r0:end", "downtime:7:r0:overrun-1",
    ]
    p = plan(facts(State.IN_PROGRESS), POLICY, START + 2 * H + 65 * M)

    assert [(r.job_id, r.due) for r in p.overdue] == [("downtime:7:r0:overrun-2", START + 3 * H)]
    assert [(r.job_id, r.due) for r in p.upcoming] == [("downtime:7:r0:overrun-3", START + 3 * H + 30 * M)]
    assert dropped(p) == ["downtime:7:r0:end"]


def test_a_reminder_that_fell_due_while_the_bot_was_down_is_overdue_if_it_still_means_something() -> None:
    p = plan(facts(), POLICY, START - 20 * H)

    assert ids(p.overdue) == ["downtime:7:r0:remind-24h"]
    assert ids(p.upcoming) == ["downtime:7:r0:remind-1h", "downtime:7:r0:start", "downtime:7:r0:end"]


def test_a_24h_reminder_after_the_start_is_dropped_with_its_reason() -> None:
    p = plan(facts(), POLICY, START + 10 * M)

    assert ids(p.overdue) == ["downtime:7:r0:start"]
    assert dict((r.kind, why) for r, why in p.dropped) == {
        "24h": "the downtime's start has passed",
        "1h": "the downtime's start has passed",
    }


def test_of_several_missed_offset_reminders_only_the_nearest_to_the_start_is_sent() -> None:
    p = plan(facts(), POLICY, START - 30 * M)

    assert ids(p.overdue) == ["downtime:7:r0:remind-1h"]
    assert [(r.kind, why) for r, why in p.dropped] == [("24h", "superseded by the 1h reminder")]


def test_a_start_reminder_after_the_planned_end_is_dropped() -> None:
    p = plan(facts(), POLICY, START + 2 * H + 10 * M)

    assert "downtime:7:r0:start" in dropped(p)
    assert ids(p.overdue) == ["downtime:7:r0:end"]
    assert "downtime:7:r0:end" in dropped(plan(facts(), POLICY, START + 3 * H))


def test_a_missed_undecided_reminder_is_dropped_once_the_start_has_passed() -> None:
    assert ids(plan(facts(State.PROPOSED), POLICY, CREATED + 30 * H).overdue) == ["downtime:7:r0:undecided"]
    assert dropped(plan(facts(State.PROPOSED), POLICY, START + M)) == ["downtime:7:r0:undecided"]


def test_a_missed_unannounced_reminder_is_dropped_once_the_notice_can_no_longer_be_kept() -> None:
    assert ids(plan(facts(State.APPROVED), POLICY, START - 25 * H).overdue) == ["downtime:7:r0:unannounced"]
    assert dropped(plan(facts(State.APPROVED), POLICY, START - 23 * H)) == ["downtime:7:r0:unannounced"]


def test_a_dst_change_between_announcement_and_start_keeps_24h_as_24_real_hours() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Clocks go back in Berlin on 2026-10-25 at 03:00; the downtime starts at noon that day.
    start = dt.datetime(2026, 10, 25, 12, 0, tzinfo=berlin).astimezone(UTC)
    announced = dt.datetime(2026, 10, 20, 9, 0, tzinfo=berlin).astimezone(UTC)
    d = facts(start_at=start, end_at=start + 2 * H, created_at=announced - H, approved_at=announced, announced_at=announced)

    first = plan(d, POLICY, announced).upcoming[0]

    assert first.due == start - 24 * H
    # 24 real hours before 12:00 CET is 13:00 CEST the day before: the wall clock moved.
    assert first.due.astimezone(berlin).hour == 13


def test_offsets_are_labelled_in_hours_and_minutes() -> None:
    assert [offset_label(o) for o in (24 * H, H, 90 * M, 2 * M, 48 * H)] == ["24h", "1h", "1h30m", "2m", "48h"]
