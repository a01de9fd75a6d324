"""What a command handler is given: the message, the actor, the use cases and the helpers."""
from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.confidential import Audience, audience_of
from models.lifecycle import DomainError
from models.ports import BugInfo, BugLookup, Incoming, TreeState
from models.queries import Queries
from models.reactions import Told
from models.service import Downtimes
from models.trees import Trees
from models.work import Actor, Outcome, Work
from plugins.registry import Command

Render = Callable[..., str]


class NoBugzilla:
    """Used when [bugzilla] is off: the bot does the local part and says what to do by hand."""

    enabled = False

    async def lookup(self, bug: int) -> BugInfo | None:
        return None

    async def lookup_many(self, bugs: Sequence[int]) -> dict[int, BugInfo]:
        return {}

    async def nominated(self) -> list[BugInfo]:
        raise DomainError("bugzilla_off")


@dataclass
class Preflight:
    """What a command's `prepare` step sees: it runs before the dispatcher's lock, with no
    database session open, and may ask outside services. `rights` runs a rights check of the
    use cases in a short session of its own (so a refused sender costs no outside request)."""

    actor: Actor
    now: dt.datetime
    bugzilla: BugLookup
    rights: Callable[[Callable[[Downtimes], None]], None]
    trees_remote: Callable[[], Awaitable[Mapping[str, TreeState]]] | None = None
    # What the look-ups found:
    bugs: dict[int, BugInfo] = field(default_factory=dict)  # none when Bugzilla could not answer
    nominated: list[BugInfo] = field(default_factory=list)
    trees: Mapping[str, TreeState] = field(default_factory=dict)
    refusal: DomainError | None = None  # what a look-up refused (a bug that is not visible, ...)

    def checked(self) -> Preflight:
        """For the handler: what was found, or the refusal a look-up met."""
        if self.refusal is not None:
            raise self.refusal
        return self


@dataclass
class CommandContext:
    message: Incoming
    actor: Actor
    work: Work
    now: dt.datetime
    prefix: str
    commands: dict[str, Command]
    render: Render
    bugzilla: BugLookup = field(default_factory=NoBugzilla)
    push: Mapping[str, dt.timedelta] = field(default_factory=dict)
    systems: Mapping[str, str] = field(default_factory=dict)
    requests_channel: str = "#ci"
    # [trees] backend = treestatus: reads the trees from Treestatus (raises a DomainError when it cannot).
    trees_remote: Callable[[], Awaitable[Mapping[str, TreeState]]] | None = None
    # What the command's `prepare` step found before the lock (see `Preflight`).
    prepared: Preflight | None = None
    replies: list[str] = field(default_factory=list)
    failed: bool = False
    # Why it failed, when `run` knows: "usage" (bad arguments), "error" (a bug); else "".
    failure: str = ""
    # The answer of a command that changed something: said once the reactions have run.
    _outcome: tuple[str, Outcome, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.downtimes = Downtimes(self.work)
        self.trees: Trees = self.downtimes.trees
        self.queries: Queries = self.downtimes.queries

    @property
    def audience(self) -> Audience:
        """Who reads the answer: a channel (everyone) or the asker privately."""
        return audience_of(self.actor)

    def looked_up(self) -> Preflight:
        """What the command's `prepare` step found (or the refusal it met)."""
        if self.prepared is None:
            raise RuntimeError("this command has no prepare step, or was not run by the dispatcher")
        return self.prepared.checked()

    def reply(self, text: str) -> None:
        self.replies.append(text.rstrip("\n"))

    def say(self, template: str, **context: Any) -> None:
        """Reply with a template."""
        self.reply(self.render(template, **context))

    def fail(self) -> None:
        self.failed = True

    def refuse(self, err: DomainError) -> None:
        """Say why nothing was done (``templates/refusals/<reason>.txt``)."""
        self.fail()
        self.say("refusal.txt", refusal=err.reason, **err.facts)

    def outcome(self, headline: str, outcome: Outcome, **context: Any) -> None:
        """Answer with ``templates/replies/<headline>.txt``, the rules the downtime breaks, the
        downtimes it could be consolidated with, and what the reactions tell the person who
        acted (notes, and what to do by hand)."""
        self._outcome = (headline, outcome, context)

    def finish(self, told: Told) -> None:
        """Say the answer of a command that changed something, with what the reactions told."""
        if self._outcome is None:
            if told.notes or told.manual:
                self.say("outcome.txt", headline=None, outcome=None, told=told)
            return
        headline, outcome, context = self._outcome
        self._outcome = None
        self.say("outcome.txt", headline=headline, outcome=outcome, told=told, d=outcome.downtime,
                 actor=self.actor.who, **context)
