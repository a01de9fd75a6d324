"""The downtime lifecycle and who may move a downtime along it.

    proposed --approve--> approved --announce--> announced --start--> in_progress --end--> finished
        | reject            |  ^ reschedule         |                    | extend
        v                   +--+ (approvals reset)  |                    |
     rejected                                        (reschedule: back to approved)
    any state before finished --cancel--> cancelled
    approve on approved/announced: the bugs and changes waiting since (the state stays)

Pure: no database, no clock, no config. `check` raises a `DomainError` naming the
refusal (``templates/refusals/<reason>.txt`` words it for the user).
"""
from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass


class DomainError(Exception):
    """A refusal: nothing was changed. `reason` names the template that says why in one line
    (``templates/refusals/<reason>.txt``); `facts` are what it needs to say it."""

    def __init__(self, reason: str, **facts: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.facts = facts

    def __str__(self) -> str:  # for the log; people read the rendered template
        return f"{self.reason} {self.facts}" if self.facts else self.reason


class Forbidden(DomainError):
    pass


class NotAllowedNow(DomainError):
    pass


class State(enum.StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    ANNOUNCED = "announced"
    IN_PROGRESS = "in_progress"
    FINISHED = "finished"
    CANCELLED = "cancelled"


ACTIVE = frozenset({State.PROPOSED, State.APPROVED, State.ANNOUNCED, State.IN_PROGRESS})
CLOSED = frozenset({State.REJECTED, State.FINISHED, State.CANCELLED})


class Role(enum.StrEnum):
    CIDUTY = "ciduty"
    SHERIFF = "sheriffs"
    PREAPPROVER = "preapprovers"
    ADMIN = "admins"


class BugStatus(enum.StrEnum):
    NOMINATED = "nominated"
    APPROVED = "approved"
    DECLINED = "declined"
    LANDED = "landed"
    LANDED_AND_STUCK = "landed-and-stuck"
    ROLLED_BACK = "rolled-back"
    NOT_DONE = "not-done"


OUTCOMES = (
    BugStatus.LANDED,
    BugStatus.LANDED_AND_STUCK,
    BugStatus.ROLLED_BACK,
    BugStatus.NOT_DONE,
)
DONE_OUTCOMES = frozenset({BugStatus.LANDED, BugStatus.LANDED_AND_STUCK})


@dataclass(frozen=True)
class Rule:
    """Where an action may start, where it leads, and who may take it."""

    sources: frozenset[State]
    target: State | None  # None: the state does not change
    roles: frozenset[Role]  # empty: anyone
    requester_in: frozenset[State] = frozenset()  # where the downtime's requester may take it too
    keeps: frozenset[State] = frozenset()  # sources where the action leaves the state as it is


def _r(
    sources: Collection[State], target: State | None, *roles: Role, requester: Collection[State] = (),
    keeps: Collection[State] = (),
) -> Rule:
    return Rule(frozenset(sources), target, frozenset(roles), frozenset(requester), frozenset(keeps))


BEFORE_START = (State.PROPOSED, State.APPROVED, State.ANNOUNCED)
# The requester shapes their own request until it is announced (and may withdraw it until then).
BEFORE_ANNOUNCE = (State.PROPOSED, State.APPROVED)

# README's role table, as data: CiDuty runs the process; the requester adds and drops bugs until
# the start (after the announcement a change of theirs waits for CiDuty's approval, see
# `Downtimes.add_bug`), edits the wording while it is proposed, withdraws it until it is
# announced, and records outcomes while it runs; after the end only CiDuty records outcomes; a
# sheriff verifies the reopened trees. Admins may do everything (`may`).
RULES: dict[str, Rule] = {
    "add bug": _r(BEFORE_START, None, Role.CIDUTY, requester=BEFORE_START),
    "drop bug": _r(BEFORE_START, None, Role.CIDUTY, requester=BEFORE_START),
    # From approved or announced: approve the bugs and changes waiting since the first approval.
    "approve": _r(BEFORE_START, State.APPROVED, Role.CIDUTY, keeps=[State.APPROVED, State.ANNOUNCED]),
    "edit": _r(BEFORE_START + (State.IN_PROGRESS,), None, Role.CIDUTY, requester=[State.PROPOSED]),
    "reject": _r([State.PROPOSED, State.APPROVED], State.REJECTED, Role.CIDUTY),
    # A pre-approver answers the draft; pre-approving after an objection withdraws it, also
    # once announced (an objection to an announced downtime blocks its next announcement).
    "preapprove": _r([State.PROPOSED, State.APPROVED, State.ANNOUNCED], None, Role.PREAPPROVER),
    "object": _r([State.PROPOSED, State.APPROVED, State.ANNOUNCED], None, Role.PREAPPROVER),
    # The people working in it confirm the draft wording (models/workers.py says who they are):
    # a draft exists from the approval on.
    "confirm": _r([State.APPROVED, State.ANNOUNCED], None),
    "announce": _r([State.APPROVED], State.ANNOUNCED, Role.CIDUTY),
    "reschedule": _r(BEFORE_START, None, Role.CIDUTY),
    "extend": _r([State.ANNOUNCED, State.IN_PROGRESS], None, Role.CIDUTY),
    "cancel": _r(BEFORE_START + (State.IN_PROGRESS,), State.CANCELLED, Role.CIDUTY, requester=BEFORE_ANNOUNCE),
    "start": _r([State.ANNOUNCED], State.IN_PROGRESS, Role.CIDUTY),
    "done": _r([State.IN_PROGRESS, State.FINISHED], None, Role.CIDUTY, requester=[State.IN_PROGRESS]),
    "end": _r([State.IN_PROGRESS], State.FINISHED, Role.CIDUTY),
    "verify": _r([State.FINISHED], None, Role.SHERIFF),
    "merge": _r(BEFORE_START, None, Role.CIDUTY),
    "merge away": _r([State.PROPOSED, State.APPROVED], State.CANCELLED, Role.CIDUTY),
}


def may(action: str, actor_roles: Collection[Role], *, is_requester: bool = False, state: State | None = None) -> bool:
    """Whether someone holding `actor_roles` may take `action` (admins may do everything);
    the requester's right depends on the `state` (None: in any state the rule allows it in)."""
    rule = RULES[action]
    if Role.ADMIN in actor_roles or not rule.roles or rule.roles & set(actor_roles):
        return True
    return is_requester and bool(rule.requester_in) and (state is None or state in rule.requester_in)


def check(
    action: str,
    state: State,
    actor_roles: Collection[Role],
    *,
    downtime_id: int,
    is_requester: bool = False,
) -> State:
    """Return the state after `action`, or raise why it cannot be taken: no right to it at all,
    then the wrong state, then (the requester) no right to it in this state."""
    rule = RULES[action]
    if not may(action, actor_roles, is_requester=is_requester):
        raise Forbidden(
            "forbidden", roles=sorted(rule.roles), requester=bool(rule.requester_in), action=action, id=downtime_id
        )
    if state not in rule.sources:
        allowed = [s.value for s in sorted(rule.sources, key=list(State).index)]
        raise NotAllowedNow("wrong_state", id=downtime_id, state=state.value, action=action, allowed=allowed)
    if not may(action, actor_roles, is_requester=is_requester, state=state):
        raise Forbidden(
            "forbidden", roles=sorted(rule.roles), requester=False, action=action, id=downtime_id,
            in_state=state.value,
        )
    return state if state in rule.keeps else rule.target or state


def may_merge(into: State, away: State) -> bool:
    """Whether a downtime in state `away` can be merged into one in state `into` (by CiDuty)."""
    return into in RULES["merge"].sources and away in RULES["merge away"].sources


def after_reschedule(state: State) -> State:
    """Rescheduling an announced downtime sends it back to approved: it must be announced again."""
    return State.APPROVED if state is State.ANNOUNCED else state
