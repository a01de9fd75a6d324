"""Chat messages already acted on: a replayed message must not change anything twice."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.orm import HandledMessage

# A network replays a message after a crash or a reconnect, within minutes; a week is ample.
KEPT_FOR = dt.timedelta(days=7)


def already_handled(session: Session, network: str, msgid: str) -> bool:
    """True when a command of this message (network, msgid) changed something before."""
    found = session.scalar(
        select(HandledMessage.msgid).where(HandledMessage.network == network, HandledMessage.msgid == msgid)
    )
    return found is not None


def mark_handled(session: Session, network: str, msgid: str, now: dt.datetime) -> None:
    """Record the message in the caller's transaction (the one that holds its change); prune old rows."""
    session.execute(delete(HandledMessage).where(HandledMessage.handled_at < now - KEPT_FOR))
    session.add(HandledMessage(network=network, msgid=msgid, handled_at=now))
