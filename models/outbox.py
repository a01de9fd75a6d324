"""Queuing things to say or do outside, in the caller's transaction (the outbox).

Only the reactions (`models/reactions.py`) and the dispatcher's replies write here. Every row
has a unique key derived from what caused it, so queuing the same thing twice adds nothing;
`made_by` ("Announced announce_chat.txt") records which reaction and template made it.

The rows are inserted as rows (a prebuilt statement, see models/prebuilt.py), not as ORM
objects: nothing in the transaction reads them back, and the delivery workers read them in
their own sessions.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence, Set
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from models import jobs
from models.orm import OutboxMessage
from models.prebuilt import run, table_of

_TABLE = table_of(OutboxMessage)
_QUEUED = select(_TABLE.c.id).where(_TABLE.c.key == bindparam("key"))
_INSERT = insert(_TABLE)


class Outbox:
    """Adds outbox rows to a session; the unique key makes queuing idempotent."""

    def __init__(
        self, session: Session, *, now: dt.datetime, networks: Sequence[str], queued: Set[str] | None = None
    ):
        self.session = session
        self.now = now
        self.networks = tuple(networks)
        self.added: list[dict[str, Any]] = []  # the rows to insert, in order
        self._keys: set[str] = set()
        # The keys already in the table, when the caller looked them up in bulk (a burst of
        # reminders): saves one query per row.
        self.queued = queued

    def _add(self, key: str, *, first: bool = False, **fields: Any) -> int:
        """Keep a row for `write`; 0 when a row with this key exists (already queued), else 1.

        A reply (`first`) is never looked up: its key holds the message id, which the dispatcher
        has just found not handled (or a fresh uuid), so no row can have it yet."""
        if key in self._keys:
            return 0
        if not first and (
            key in self.queued if self.queued is not None else run(self.session, _QUEUED, {"key": key}).first()
        ):
            return 0
        self._keys.add(key)
        row = {
            "key": key, "network": "", "downtime_id": None, "status": "pending", "attempts": 0, "last_error": "",
            "created_at": self.now, "sent_at": None, **fields,
        }
        if first:
            self.added.insert(sum(1 for r in self.added if r["payload"].get("first")), row)
        else:
            self.added.append(row)
        return 1

    def write(self) -> None:
        """Insert the kept rows in the session's transaction, in order (replies first), before the commit."""
        if self.added:
            run(self.session, _INSERT, self.added)
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
        made_by: str = "",
    ) -> int:
        """Say `text` to `target` ("#ci" or "@account") on each network (all by default).

        `first`: a reply to the command, delivered before what the command announces.
        Returns the number of rows added.
        """
        added = 0
        for network in self.networks if networks is None else networks:
            payload: dict[str, Any] = {"mentions": list(mentions), "first": first}
            if made_by:
                payload["made_by"] = made_by
            added += self._add(
                f"{key}:{network}:{target}",
                first=first,
                kind="chat",
                network=network,
                target=target,
                body=text.strip("\n"),
                payload=payload,
                downtime_id=downtime_id,
            )
        return added

    def mail(self, key: str, mail: jobs.SendMail, body: str, *, downtime_id: int | None, made_by: str = "") -> int:
        """Queue a mail; `mail.thread` is the key of the mail this one answers (In-Reply-To)."""
        payload = jobs.dump(mail)
        if made_by:
            payload["made_by"] = made_by
        return self._add(key, kind="mail", target=", ".join(mail.to), body=body, payload=payload,
                         downtime_id=downtime_id)

    def job(self, key: str, job: jobs.Job, description: str, *, downtime_id: int | None) -> int:
        """Queue a change in another system (Bugzilla, the trees), described for people."""
        return self._add(key, kind=job.kind, target=job.kind, body=description, payload=jobs.dump(job),
                         downtime_id=downtime_id)
