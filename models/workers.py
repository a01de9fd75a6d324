"""Who works in a downtime and who has answered its draft (the process's "Who do I notify").

Step 1: everyone working in the downtime (its requester and the assignees of its bugs) is asked
to confirm the draft wording (`!downtime confirm`); step 2: the pre-approvers are asked for
objections (`!downtime preapprove` / `object`). A worker is known by a chat account (the
requester's, or an assignee's through [people]) and a mail address where [people] or Bugzilla
gives one; a worker with no known account is named by their mail address and cannot confirm
in chat until [people] links them.

Pure: reads any downtime-like object (the ORM's `Downtime` or `models/detail.py`'s read model)
with `requester`, `bugs` (each with `assignee`) and `verdicts` (each with `account`, `verdict`,
`active`), and the settings.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from models.orm import nobody_assigned
from models.work import Settings

CONFIRMED = "confirmed"
PREAPPROVAL_VERDICTS = ("preapproved", "objected")


class Worker(NamedTuple):
    # How the bot names them: their first account, else their mail address; for the assignee
    # of security bugs only, "the assignee of bug N" (who works on a restricted bug is
    # confidential, DESIGN invariant 8: never named or mentioned in public).
    name: str
    mail: str  # "" when unknown
    accounts: tuple[str, ...]  # their chat accounts (any of them may confirm)
    hidden: bool = False

    @property
    def mentions(self) -> tuple[str, ...]:
        """The accounts to mention in a channel: none for a hidden worker."""
        return () if self.hidden else self.accounts


def crew(downtime: Any, settings: Settings) -> list[Worker]:
    """The people working in `downtime`: the requester first, then each bug's assignee once."""
    routing = settings.mail
    mail = routing.people.get(downtime.requester.casefold(), "")
    linked = routing.accounts.get(mail.casefold(), ()) if mail else ()
    found = [Worker(downtime.requester, mail, tuple(dict.fromkeys([downtime.requester, *linked])))]
    assigned: dict[str, list[Any]] = {}
    for bug in downtime.bugs:
        address = bug.assignee.strip()
        if "@" in address and not nobody_assigned(address):
            assigned.setdefault(address.casefold(), []).append(bug)
    for folded, bugs in assigned.items():
        if any(w.mail.casefold() == folded for w in found):
            continue
        address = bugs[0].assignee.strip()
        accounts = tuple(routing.accounts.get(folded, ()))
        if all(b.security for b in bugs):
            found.append(Worker(f"the assignee of bug {bugs[0].bug}", address, accounts, hidden=True))
        else:
            found.append(Worker(accounts[0] if accounts else address, address, accounts))
    return found


def worker_of(account: str, workers: Iterable[Worker], settings: Settings) -> Worker | None:
    """The worker that `account` is (by the account itself, or by its mail in [people])."""
    folded = account.casefold()
    mail = settings.mail.people.get(folded, "").casefold()
    for worker in workers:
        if folded in (a.casefold() for a in worker.accounts) or (mail and mail == worker.mail.casefold()):
            return worker
    return None


def confirmations(downtime: Any, settings: Settings) -> tuple[list[Worker], list[Worker]]:
    """Who of the workers confirmed the draft (since it last changed), and who has not yet."""
    workers = crew(downtime, settings)
    done = {
        w for v in downtime.verdicts if v.active and v.verdict == CONFIRMED
        if (w := worker_of(v.account, workers, settings)) is not None
    }
    return [w for w in workers if w in done], [w for w in workers if w not in done]


def unanswered(verdicts: Sequence[Any], settings: Settings) -> list[str]:
    """The pre-approvers (each named once, by their first account) with no standing answer."""
    answered = {v.account.casefold() for v in verdicts if v.active and v.verdict in PREAPPROVAL_VERDICTS}
    return [
        person[0] for person in settings.preapprovers
        if person and not answered & {a.casefold() for a in person}
    ]


def same_person(account: str, settings: Settings) -> set[str]:
    """Every account (casefolded) of the pre-approver holding `account`: an answer given on
    one network replaces the one they gave on another."""
    folded = account.casefold()
    for person in settings.preapprovers:
        names = {a.casefold() for a in person}
        if folded in names:
            return names
    return {folded}
