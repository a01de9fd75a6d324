"""Chat messages already acted on: a replayed message must not change anything twice."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from models.orm import HandledMessage
from models.prebuilt import run, table_of

# A network replays a message after a crash or a reconnect, within minutes; a week is ample.
KEPT_FOR = dt.timedelta(days=7)

# Prebuilt (see models/prebuilt.py): every command that may change something makes these.
_TABLE = table_of(HandledMessage)
_FIND = select(_TABLE.c.msgid).where(_TABLE.c.network == bindparam("network"), _TABLE.c.msgid == bindparam("msgid"))
_PRUNE = delete(_TABLE).where(_TABLE.c.handled_at < bindparam("before"))
_ADD = insert(_TABLE)


def already_handled(session: Session, network: str, msgid: str) -> bool:
    """True when a command of this message (network, msgid) changed something before."""
    return run(session, _FIND, {"network": network, "msgid": msgid}).first() is not None


def mark_handled(session: Session, network: str, msgid: str, now: dt.datetime) -> None:
    """Record the message in the caller's transaction (the one that holds its change); prune old rows."""
    run(session, _PRUNE, {"before": now - KEPT_FOR})
    run(session, _ADD, {"network": network, "msgid": msgid, "handled_at": now})
