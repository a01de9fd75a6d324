"""Queuing things to say or do outside, in the caller's transaction (the outbox)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.orm import OutboxMessage


class Outbox:
    """Adds outbox rows to a session; the unique key makes queuing idempotent."""

    def __init__(self, session: Session, *, now: dt.datetime, networks: Sequence[str]):
        self.session = session
        self.now = now
        self.networks = tuple(networks)
        self.added: list[OutboxMessage] = []

    def _add(self, key: str, **fields: Any) -> OutboxMessage | None:
        if any(m.key == key for m in self.added) or self.session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.key == key)
        ):
            return None
        row = OutboxMessage(key=key, created_at=self.now, **fields)
        self.session.add(row)
        self.added.append(row)
        return row

    def chat(
        self,
        key: str,
        target: str,
        text: str,
        *,
        networks: Iterable[str] | None = None,
        mentions: Sequence[str] = (),
        downtime_id: int | None = None,
    ) -> None:
        """Say `text` to `target` ("#ci" or "@account") on each network (all by default)."""
        for network in self.networks if networks is None else networks:
            self._add(
                f"{key}:{network}:{target}",
                kind="chat",
                network=network,
                target=target,
                body=text,
                payload={"mentions": list(mentions)},
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
