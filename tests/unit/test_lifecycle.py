"""The lifecycle as a pure state machine, with role checks."""
from __future__ import annotations

import pytest

from adapters.templates import Renderer
from models import lifecycle
from models.lifecycle import Forbidden, NotAllowedNow, Role, State

RENDER = Renderer()

CIDUTY = frozenset({Role.CIDUTY})
NOBODY: frozenset[Role] = frozenset()


@pytest.mark.parametrize(
    ("action", "before", "after"),
    [
        ("approve", State.PROPOSED, State.APPROVED),
        ("reject", State.PROPOSED, State.REJECTED),
        ("announce", State.APPROVED, State.ANNOUNCED),
        ("start", State.ANNOUNCED, State.IN_PROGRESS),
        ("end", State.IN_PROGRESS, State.FINISHED),
        ("cancel", State.ANNOUNCED, State.CANCELLED),
        ("cancel", State.IN_PROGRESS, State.CANCELLED),
        ("extend", State.IN_PROGRESS, State.IN_PROGRESS),
        ("reschedule", State.APPROVED, State.APPROVED),
    ],
)
def test_ciduty_moves_a_downtime_along_the_lifecycle(action: str, before: State, after: State) -> None:
    assert lifecycle.check(action, before, CIDUTY, downtime_id=1) is after


@pytest.mark.parametrize(
    ("action", "state"),
    [
        ("announce", State.PROPOSED),
        ("start", State.APPROVED),
        ("end", State.ANNOUNCED),
        ("approve", State.FINISHED),
        ("cancel", State.FINISHED),
        ("cancel", State.CANCELLED),
        ("verify", State.IN_PROGRESS),
        ("extend", State.PROPOSED),
    ],
)
def test_a_transition_from_the_wrong_state_is_refused_with_the_allowed_states(action: str, state: State) -> None:
    with pytest.raises(NotAllowedNow) as err:
        lifecycle.check(action, state, frozenset({Role.ADMIN}), downtime_id=7)
    assert err.value.reason == "wrong_state"
    assert err.value.facts == {
        "id": 7, "state": state.value, "action": action,
        "allowed": [s.value for s in lifecycle.State if s in lifecycle.RULES[action].sources],
    }
    said = RENDER("refusal.txt", refusal=err.value.reason, **err.value.facts)
    assert said.startswith(f"downtime #7 is {state.value.replace('_', ' ')}; it can be ")
    assert " only when it is " in said


@pytest.mark.parametrize(
    ("action", "state", "roles"),
    [
        ("approve", State.PROPOSED, frozenset({Role.SHERIFF})),
        ("announce", State.APPROVED, frozenset({Role.PREAPPROVER})),
        ("preapprove", State.APPROVED, CIDUTY),
        ("verify", State.FINISHED, frozenset({Role.PREAPPROVER})),
        ("start", State.ANNOUNCED, NOBODY),
    ],
)
def test_an_action_without_the_role_is_forbidden(action: str, state: State, roles: frozenset[Role]) -> None:
    with pytest.raises(Forbidden) as err:
        lifecycle.check(action, state, roles, downtime_id=1)
    said = RENDER("refusal.txt", refusal=err.value.reason, **err.value.facts)
    assert said.startswith("only ") and said.endswith(f" may {action.replace('preapprove', 'pre-approve')} downtime #1")


def test_anyone_identified_may_try_to_confirm_a_draft_and_an_objection_may_be_withdrawn_once_announced() -> None:
    # Who works in the downtime is the use case's check (models/workers.py), not a role.
    assert lifecycle.check("confirm", State.APPROVED, NOBODY, downtime_id=1) is State.APPROVED
    assert lifecycle.check("confirm", State.ANNOUNCED, NOBODY, downtime_id=1) is State.ANNOUNCED
    preapprover = frozenset({Role.PREAPPROVER})
    assert lifecycle.check("preapprove", State.ANNOUNCED, preapprover, downtime_id=1) is State.ANNOUNCED
    for state in (State.PROPOSED, State.IN_PROGRESS, State.FINISHED):
        with pytest.raises(NotAllowedNow) as err:
            lifecycle.check("confirm", state, NOBODY, downtime_id=1)
        assert err.value.facts["allowed"] == ["approved", "announced"]


def test_admins_may_do_everything() -> None:
    for action, rule in lifecycle.RULES.items():
        source = sorted(rule.sources)[0]
        lifecycle.check(action, source, frozenset({Role.ADMIN}), downtime_id=1)


def test_the_requester_may_add_bugs_and_record_outcomes_but_not_approve() -> None:
    assert lifecycle.check("add bug", State.PROPOSED, NOBODY, downtime_id=1, is_requester=True) is State.PROPOSED
    assert lifecycle.check("done", State.IN_PROGRESS, NOBODY, downtime_id=1, is_requester=True) is State.IN_PROGRESS
    with pytest.raises(Forbidden) as err:
        lifecycle.check("add bug", State.PROPOSED, NOBODY, downtime_id=1, is_requester=False)
    said = RENDER("refusal.txt", refusal=err.value.reason, **err.value.facts)
    assert said == "only CiDuty or the requester may add a bug to downtime #1"
    with pytest.raises(Forbidden):
        lifecycle.check("approve", State.PROPOSED, NOBODY, downtime_id=1, is_requester=True)


def test_sheriffs_and_admins_verify_a_finished_downtime_and_ciduty_does_not() -> None:
    assert lifecycle.check("verify", State.FINISHED, frozenset({Role.SHERIFF}), downtime_id=1) is State.FINISHED
    assert lifecycle.check("verify", State.FINISHED, frozenset({Role.ADMIN}), downtime_id=1) is State.FINISHED
    with pytest.raises(Forbidden) as err:
        lifecycle.check("verify", State.FINISHED, CIDUTY, downtime_id=1)
    assert RENDER("refusal.txt", refusal=err.value.reason, **err.value.facts) == "only a sheriff may verify downtime #1"


def test_after_the_end_only_ciduty_records_outcomes() -> None:
    assert lifecycle.check("done", State.FINISHED, CIDUTY, downtime_id=1) is State.FINISHED
    with pytest.raises(Forbidden) as err:
        lifecycle.check("done", State.FINISHED, NOBODY, downtime_id=1, is_requester=True)
    said = RENDER("refusal.txt", refusal=err.value.reason, **err.value.facts)
    assert said == "only CiDuty may record outcomes of downtime #1 now that it is finished"


@pytest.mark.parametrize("action", ["add bug", "drop bug"])
def test_the_requester_may_change_the_bugs_until_the_start_and_not_after(action: str) -> None:
    assert lifecycle.check(action, State.APPROVED, NOBODY, downtime_id=1, is_requester=True) is State.APPROVED
    # After the announcement their change waits for CiDuty's approval (Downtimes.add_bug/drop_bug).
    assert lifecycle.check(action, State.ANNOUNCED, NOBODY, downtime_id=1, is_requester=True) is State.ANNOUNCED
    assert lifecycle.check(action, State.ANNOUNCED, CIDUTY, downtime_id=1) is State.ANNOUNCED
    with pytest.raises(NotAllowedNow):
        lifecycle.check(action, State.IN_PROGRESS, NOBODY, downtime_id=1, is_requester=True)


def test_approve_approves_a_proposal_and_later_the_changes_without_moving_the_state() -> None:
    assert lifecycle.check("approve", State.PROPOSED, CIDUTY, downtime_id=1) is State.APPROVED
    assert lifecycle.check("approve", State.APPROVED, CIDUTY, downtime_id=1) is State.APPROVED
    assert lifecycle.check("approve", State.ANNOUNCED, CIDUTY, downtime_id=1) is State.ANNOUNCED


def test_the_requester_withdraws_until_the_announcement_then_only_ciduty_cancels() -> None:
    assert lifecycle.check("cancel", State.APPROVED, NOBODY, downtime_id=1, is_requester=True) is State.CANCELLED
    with pytest.raises(Forbidden) as err:
        lifecycle.check("cancel", State.ANNOUNCED, NOBODY, downtime_id=1, is_requester=True)
    said = RENDER("refusal.txt", refusal=err.value.reason, **err.value.facts)
    assert said == "only CiDuty may cancel downtime #1 now that it is announced"


def test_merging_takes_an_announced_downtime_in_but_never_merges_one_away() -> None:
    assert lifecycle.may_merge(State.ANNOUNCED, State.APPROVED)
    assert not lifecycle.may_merge(State.APPROVED, State.ANNOUNCED)
    assert not lifecycle.may_merge(State.IN_PROGRESS, State.PROPOSED)


def test_rescheduling_an_announced_downtime_sends_it_back_to_approved() -> None:
    assert lifecycle.after_reschedule(State.ANNOUNCED) is State.APPROVED
    assert lifecycle.after_reschedule(State.PROPOSED) is State.PROPOSED
    assert lifecycle.after_reschedule(State.APPROVED) is State.APPROVED
