"""Confidential text stays private (DESIGN invariant 8): the one place that decides who reads
a bug's own words.

A bug's own words are *confidential* when the bug is marked security: the wording given with
`!downtime bug add … --security`, or the summary Bugzilla holds for a restricted bug (and, for
such a bug, who it is assigned to). Its number and status are not.

Who reads an answer is its `Audience`. A channel, a list mail, a calendar invite, a Treestatus
reason and a comment on another bug are public (`PUBLIC`); a private message is read by one
account on one network. Only CiDuty (or an admin) and the downtime's requester, asking
privately, read the confidential words; everyone else is told the bug vaguely: a `ToldBug` with
`hidden` set and its words left out, which the templates say with the vague sentence
(`_macros.txt`). So a template never decides who may read what: it is given the bugs as told.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from models.lifecycle import Role
from models.ports import BugInfo
from models.work import Actor


@dataclass(frozen=True)
class Audience:
    """Who reads an answer: everyone (a channel, a list), or one account on one network."""

    private: bool = False
    account: str | None = None
    network: str = ""
    ciduty: bool = False  # CiDuty or an admin

    def reads_confidential(self, requester: str | None = None, requester_network: str | None = None) -> bool:
        """Whether this audience reads confidential words: privately, as CiDuty, or as the
        requester (the same account on the network they asked from; a namesake elsewhere is
        somebody else)."""
        if not self.private or not self.account:
            return False
        if self.ciduty:
            return True
        return (
            requester is not None and self.account.casefold() == requester.casefold()
            and self.network == requester_network
        )


PUBLIC = Audience()


def audience_of(actor: Actor) -> Audience:
    """Who reads the answer to `actor`: a private answer goes to "@<account>" (or "~<nick>" when not identified)."""
    return Audience(
        private=actor.in_private, account=actor.account, network=actor.network,
        ciduty=bool({Role.CIDUTY, Role.ADMIN} & actor.roles),
    )


class BugWords(Protocol):
    """A bug of a downtime, as the ORM (`DowntimeBug`) and the show read model (`BugLine`) hold it."""

    @property
    def bug(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def security(self) -> bool: ...
    @property
    def wording(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def assignee(self) -> str: ...
    @property
    def note(self) -> str: ...


class ToldBug(NamedTuple):
    """A bug as one audience is told it. `hidden`: told vaguely, `text` and `assignee` left out."""

    bug: int
    status: str
    security: bool
    hidden: bool
    text: str
    assignee: str
    note: str


def told(bugs: Iterable[BugWords], full: bool, fallback: str = "") -> list[ToldBug]:
    """The bugs of a downtime as told to an audience that reads confidential words (`full`) or
    not. `fallback`: the text of a bug with neither wording nor summary."""
    return [
        ToldBug(b.bug, b.status, True, True, "", "", b.note) if b.security and not full
        else ToldBug(b.bug, b.status, b.security, False, b.wording or b.summary or fallback, b.assignee, b.note)
        for b in bugs
    ]


def told_found(bugs: Iterable[BugInfo], full: bool) -> list[ToldBug]:
    """Bugs found in Bugzilla (the queue) as told to an audience: a restricted one is only its number."""
    return [
        ToldBug(b.id, b.status, True, True, "", "", "") if b.restricted and not full
        else ToldBug(b.id, b.status, b.restricted, False, b.summary, b.assignee, "")
        for b in bugs
    ]


def named_in(text: str, bugs: Sequence[int]) -> list[int]:
    """The bugs of `bugs` whose number `text` names (as a whole number)."""
    return [b for b in bugs if re.search(rf"(?<!\d){b}(?!\d)", text)]
