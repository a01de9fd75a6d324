"""The refusals about rights and states read as English for every action of the lifecycle."""
from __future__ import annotations

import pytest

from adapters.templates import Renderer
from models import lifecycle

RENDER = Renderer()

# What each action is called in the two refusals: "only CiDuty may <forbidden>" and
# "downtime #1 is finished; <wrong_state> only when it is …". An action added to RULES needs its
# wording in templates/refusals/forbidden.txt and wrong_state.txt, and a row here.
WORDING = {
    "add bug": ("add a bug to downtime #1", "bugs can be added to it"),
    "drop bug": ("drop a bug from downtime #1", "bugs can be dropped from it"),
    "approve": ("approve downtime #1", "it can be approved"),
    "reject": ("reject downtime #1", "it can be rejected"),
    "preapprove": ("pre-approve downtime #1", "it can be pre-approved"),
    "object": ("object to downtime #1", "objections can be raised to it"),
    "announce": ("announce downtime #1", "it can be announced"),
    "reschedule": ("reschedule downtime #1", "it can be rescheduled"),
    "extend": ("extend downtime #1", "it can be extended"),
    "cancel": ("cancel downtime #1", "it can be cancelled"),
    "start": ("start downtime #1", "it can be started"),
    "done": ("record outcomes of downtime #1", "outcomes can be recorded"),
    "end": ("end downtime #1", "it can be ended"),
    "verify": ("verify downtime #1", "it can be verified"),
    "merge": ("merge other downtimes into downtime #1", "other downtimes can be merged into it"),
    "merge away": ("merge downtime #1 into another", "it can be merged into another"),
    "confirm": ("confirm the draft of downtime #1", "its draft can be confirmed"),
    "edit": ("edit the notice of downtime #1", "its notice can be edited"),
}
ACTIONS = sorted(set(lifecycle.RULES) | {"confirm", "edit"})


def refusal(reason: str, **facts: object) -> str:
    return RENDER("refusal.txt", refusal=reason, **facts)


def test_every_action_of_the_lifecycle_has_its_wording() -> None:
    assert set(lifecycle.RULES) <= set(WORDING), "word the new actions in forbidden.txt and wrong_state.txt"


@pytest.mark.parametrize("action", ACTIONS)
def test_the_forbidden_refusal_reads_as_english_for_every_action(action: str) -> None:
    said = refusal("forbidden", roles=["ciduty"], requester=False, action=action, id=1)
    assert said == f"only CiDuty may {WORDING[action][0]}"
    for raw in ("may done", "bug downtime", "may preapprove", "may object downtime", "may merge away", "may confirm downtime", "may edit downtime"):
        assert raw not in said


@pytest.mark.parametrize("action", ACTIONS)
def test_the_wrong_state_refusal_reads_as_english_for_every_action(action: str) -> None:
    said = refusal("wrong_state", id=1, state="finished", action=action, allowed=["proposed", "in_progress"])
    assert said == f"downtime #1 is finished; {WORDING[action][1]} only when it is proposed or in progress"
    assert "works only" not in said


def test_the_refusals_say_the_examples_of_the_issue() -> None:
    assert refusal("forbidden", roles=["ciduty"], requester=False, action="done", id=1) == (
        "only CiDuty may record outcomes of downtime #1")
    assert refusal("wrong_state", id=1, state="finished", action="start", allowed=["announced"]) == (
        "downtime #1 is finished; it can be started only when it is announced")
    assert refusal("wrong_state", id=1, state="finished", action="add bug",
                   allowed=["proposed", "approved", "announced"]) == (
        "downtime #1 is finished; bugs can be added to it only when it is proposed, approved or announced")


def test_a_refusal_about_trees_keeps_its_own_words() -> None:
    said = refusal("forbidden", roles=["sheriffs", "ciduty"], requester=False, action="close trees", id=None)
    assert said == "only a sheriff or CiDuty may close trees"
