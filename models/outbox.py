"""Queuing things to say or do outside, in the caller's transaction (the outbox)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence, Set
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.orm import OutboxMessage


class Outbox:
    """Adds outbox rows to a session; the unique key makes queuing idempotent."""

    def __init__(
        self, session: Session, *, now: dt.datetime, networks: Sequence[str], queued: Set[str] | None = None
    ):
        self.session = session
        self.now = now
        self.networks = tuple(networks)
        self.added: list[OutboxMessage] = []
        # The keys already in the table, when the caller looked them up in bulk (a burst of
        # reminders): saves one query per row.
        self.queued = queued

    def _add(self, key: str, *, first: bool = False, **fields: Any) -> OutboxMessage | None:
        """Keep a row for `write`; None when a row with this key exists (already queued)."""
        if any(m.key == key for m in self.added):
            return None
        if key in self.queued if self.queued is not None else self.session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.key == key)
        ):
            return None
        row = OutboxMessage(key=key, created_at=self.now, **fields)
        if first:
            self.added.insert(sum(1 for r in self.added if r.payload.get("first")), row)
        else:
            self.added.append(row)
        return row

    def write(self) -> None:
        """Add the kept rows to the session, in order (replies first), before the commit."""
        self.session.add_all(self.added)
        self.added = []

    def chat(
        self,
        key: str,
        target: str,
        text: str,
        *,
        networks: Iterable[str] | None = None,
        mentions: Sequence[str] = (),
        downtime_id: int | None = None,
        first: bool = False,
    ) -> None:
        """Say `text` to `target` ("#ci" or "@account") on each network (all by default).

        `first`: a reply to the command, delivered before what the command announces.
        """
        for network in self.networks if networks is None else networks:
            self._add(
                f"{key}:{network}:{target}",
                first=first,
                kind="chat",
                network=network,
                target=target,
                body=text.strip("\n"),
                payload={"mentions": list(mentions), "first": first},
                downtime_id=downtime_id,
            )

    def mail(
        self,
        key: str,
        *,
        to: Sequence[str],
        cc: Sequence[str] = (),
        subject: str,
        body: str,
        downtime_id: int | None,
        thread: str | None = None,
        calendar: dict[str, Any] | None = None,
    ) -> None:
        """Queue a mail. `thread` is the key of the mail this one answers (In-Reply-To)."""
        self._add(
            key,
            kind="mail",
            target=", ".join(to),
            body=body,
            payload={"to": list(to), "cc": list(cc), "subject": subject, "thread": thread, "calendar": calendar},
            downtime_id=downtime_id,
        )

    def job(self, kind: str, key: str, description: str, payload: dict[str, Any], *, downtime_id: int | None) -> None:
        """Queue a change in another system (kind: bugzilla, trees), described for people in `description`."""
        self._add(key, kind=kind, target=kind, body=description, payload=payload, downtime_id=downtime_id)
