"""One piece of work in one transaction: who acts, when, in what session, and what happened.

A command (or a reminder, or a job that reports back) makes one `Work`, gives it to the use
cases it calls (`Downtimes`, `Trees`), and after them hands `work.events` to the reactions.
The use cases check rights through it, write the audit trail through it and record events
on it; they never send or queue anything themselves.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from models import lifecycle, planning
from models.events import Event
from models.lifecycle import DomainError, Role, State
from models.orm import AuditEvent, Downtime
from models.prebuilt import run, table_of
from models.wording import SHOWN

_ADD_AUDIT = insert(table_of(AuditEvent))


@dataclass(frozen=True)
class Actor:
    account: str | None
    network: str
    nick: str
    roles: frozenset[Role]
    reply_target: str = ""

    @property
    def who(self) -> str:
        return self.account or self.nick

    @property
    def in_private(self) -> bool:
        """Whether they spoke privately: answered at "@<account>" (or "~<nick>" when not identified)."""
        return self.reply_target.startswith(("@", "~"))


def bot_actor(nick: str) -> Actor:
    """The bot itself, when it acts on its own ([policy] auto_start, jobs): audited under its nick."""
    return Actor(account=nick, network="bot", nick=nick, roles=frozenset({Role.CIDUTY}))


@dataclass(frozen=True)
class MailRouting:
    configured: bool = False
    remind_lists: bool = False
    preapprovers: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    announce_to: tuple[str, ...] = ()
    copy_to: tuple[str, ...] = ()
    people: Mapping[str, str] = field(default_factory=dict)  # casefolded account -> mail address
    # casefolded mail address -> that person's accounts ([people]): a bug's assignee in chat
    accounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """What the core and the reactions need to know of the configuration."""

    policy: planning.Policy = planning.Policy()
    requests_channel: str = "#ci"
    announce_channel: str = "#developers"
    networks: tuple[str, ...] = ("console",)
    trees: tuple[str, ...] = ("autoland", "mozilla-central")
    tree_backend: str = "builtin"
    systems: Mapping[str, str] = field(default_factory=dict)
    bugzilla_enabled: bool = False
    bugzilla_flag: str = "needs-treeclosure"
    mail: MailRouting = MailRouting()
    ciduty: tuple[str, ...] = ()
    sheriffs: tuple[str, ...] = ()
    # The pre-approvers, each person as their accounts on every network ([roles] with [people]).
    preapprovers: tuple[tuple[str, ...], ...] = ()
    # [bugzilla] nominate_roles: who may have the bot nominate a bug (set the flag to "?");
    # empty: anyone identified.
    nominate_roles: frozenset[Role] = frozenset()

    @property
    def channels(self) -> list[str]:
        """The announce channel, then the requests channel (once if they are the same)."""
        return list(dict.fromkeys([self.announce_channel, self.requests_channel]))


@dataclass
class Outcome:
    """What a use case did, for the command's reply: the downtime, the rules it breaks
    (warnings), and other downtimes it could be consolidated with."""

    downtime: Downtime
    warnings: list[planning.RuleFailure] = field(default_factory=list)
    offers: list[Consolidation] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # what else the reply says (approve: what it approved)


@dataclass(frozen=True)
class Consolidation:
    """Another active downtime that works on the same hosts or overlaps in time."""

    other: int
    shared: tuple[str, ...]
    overlap: tuple[dt.datetime, dt.datetime] | None
    # The merge that can consolidate them now, (into, away); None: neither can be merged into the
    # other in their states (`lifecycle.may_merge`).
    merge: tuple[int, int] | None = None


class Work:
    def __init__(self, session: Session, *, now: dt.datetime, settings: Settings, actor: Actor):
        self.session = session
        self.now = now
        self.settings = settings
        self.actor = actor
        self.events: list[Event] = []
        self.changed = False

    def record(self, event: Event) -> None:
        self.events.append(event)
        self.changed = True

    def audit(self, downtime_id: int | None, action: str, before: str = "", after: str = "", detail: str = "") -> None:
        """The audit row: who (account and network), what, when, from → to, why. Inserted at once
        as a row (prebuilt, see models/prebuilt.py): nothing reads it back as an object."""
        self.changed = True
        run(self.session, _ADD_AUDIT, {
            "downtime_id": downtime_id, "at": self.now, "account": self.actor.who, "network": self.actor.network,
            "action": action[:40], "from_state": before, "to_state": after, "detail": detail,
        })

    # ----- rights -----------------------------------------------------------------------------

    def identified(self) -> None:
        if not self.actor.account:
            raise lifecycle.Forbidden("not_identified", nick=self.actor.nick)

    def require(self, what: str, *roles: Role) -> None:
        """Refuse unless the actor holds one of `roles` (or is an admin)."""
        self.identified()
        if Role.ADMIN not in self.actor.roles and not set(roles) & self.actor.roles:
            raise lifecycle.Forbidden("forbidden", roles=sorted(roles), requester=False, action=what, id=None)

    def may_nominate(self) -> None:
        """Refuse unless the actor may make the bot nominate bugs in Bugzilla: identified, and
        holding one of [bugzilla] nominate_roles when that is set (admins always may)."""
        self.identified()
        wanted = self.settings.nominate_roles
        if wanted and Role.ADMIN not in self.actor.roles and not wanted & self.actor.roles:
            raise lifecycle.Forbidden("nominate_forbidden", roles=sorted(wanted), flag=self.settings.bugzilla_flag)

    def is_requester(self, downtime: Downtime) -> bool:
        return bool(self.actor.account) and downtime.requester.casefold() == (self.actor.account or "").casefold()

    def may(self, action: str, downtime: Downtime) -> State:
        """The state after `action`, or a refusal: not identified, no role, wrong state."""
        self.identified()
        return lifecycle.check(
            action, State(downtime.state), self.actor.roles,
            downtime_id=downtime.id, is_requester=self.is_requester(downtime),
        )

    def transition(self, action: str, downtime: Downtime, detail: str = "") -> State:
        """Take `action` (checked), move the state and write the audit row."""
        before = State(downtime.state)
        after = self.may(action, downtime)
        downtime.state = after.value
        downtime.updated_at = self.now
        self.audit(downtime.id, action, before.value, after.value, detail)
        return after

    def check_trees(self, trees: Sequence[str]) -> None:
        unknown = list(dict.fromkeys(t for t in trees if t not in self.settings.trees))
        if unknown:
            # The first few, and how many: a line naming thousands of trees gets a short answer.
            raise DomainError(
                "unknown_trees", unknown=[t[:40] for t in unknown[:SHOWN]], count=len(unknown),
                known=list(self.settings.trees),
            )
