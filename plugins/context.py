"""What a command handler is given: the message, the actor, the core and the helpers."""
from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.ports import BugLookup, Incoming
from models.service import Actor, Core
from plugins.registry import Command


class NoBugzilla:
    """Used when [bugzilla] is off: the bot does the local part and says what to do by hand."""

    enabled = False

    async def lookup(self, bug: int) -> None:
        return None

    async def nominated(self) -> list[Any]:
        from models.lifecycle import DomainError

        raise DomainError("Bugzilla is not configured: search for needs-treeclosure? in Bugzilla by hand")


@dataclass
class CommandContext:
    message: Incoming
    actor: Actor
    core: Core
    now: dt.datetime
    prefix: str
    commands: dict[str, Command]
    render: Any
    bugzilla: BugLookup = field(default_factory=NoBugzilla)
    push: Mapping[str, dt.timedelta] = field(default_factory=dict)
    systems: Mapping[str, str] = field(default_factory=dict)
    requests_channel: str = "#ci"
    # [trees] backend = treestatus: reads the trees from Treestatus (raises a DomainError when it cannot).
    trees_remote: Callable[[], Awaitable[Mapping[str, Any]]] | None = None
    replies: list[str] = field(default_factory=list)
    failed: bool = False

    def reply(self, text: str) -> None:
        self.replies.append(text.rstrip("\n"))

    def fail(self) -> None:
        self.failed = True

    def outcome(self, headline: str, outcome: Any) -> None:
        """Reply with a headline and the outcome's warnings, notes and manual steps."""
        self.reply(
            self.render(
                "outcome.txt",
                headline=headline,
                warnings=outcome.warnings,
                notes=outcome.notes,
                manual=outcome.manual,
            )
        )
