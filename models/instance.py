"""This database's id token: a random word made once per database and kept in it.

Why: Message-IDs (``<dt1.r0.announce.mail.<token>@domain>``) and calendar UIDs
(``downtime-1-<token>@domain``) are made from the downtime's number, and two databases on the
same mail domain (a staging bot, a rebuilt one) number their downtimes from 1 again. Without
the token mail clients would thread, and calendars merge, two different downtimes as one.
Migration 0003 makes the token; `database_token` makes it too when a database has none.
Each downtime keeps the token it was made with (`Downtime.id_token`); downtimes announced
before the token existed keep an empty one and so the ids they were announced with.

Several instances on one database ([ha]) may both find no token and make one at the same moment:
the token is added with INSERT … ON CONFLICT DO NOTHING and then read back, so the second waits
for the first's row (its key is taken) and uses it, instead of failing on the key.
"""
from __future__ import annotations

import secrets
import weakref

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from models.orm import BotMeta

KEY = "id_token"
# The token never changes once it is in the database: it is read once per engine, not at every
# proposal (an ORM read of its own, a third of a millisecond).
_KNOWN: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
# Both databases read it (SQLite since 3.24): whoever comes second keeps the first one's token.
_ADD = text("INSERT INTO bot_meta (key, value) VALUES (:key, :value) ON CONFLICT (key) DO NOTHING")


def database_token(session: Session) -> str:
    """The token of the database `session` writes to (made and added on first use)."""
    engine = session.get_bind().engine
    known = _KNOWN.get(engine)
    if known is not None:
        return known
    row = session.get(BotMeta, KEY)
    if row is None:  # made here (or by another instance just now): remembered once read back committed
        session.execute(_ADD, {"key": KEY, "value": secrets.token_hex(6)})
        token = session.scalar(select(BotMeta.value).where(BotMeta.key == KEY))
        assert token is not None
        return token
    _KNOWN[engine] = row.value
    return row.value


def id_suffix(token: str) -> str:
    """What Message-IDs and UIDs append for a downtime's token ("" for the old ones)."""
    return f".{token}" if token else ""


def event_uid(downtime_id: int, token: str, domain: str) -> str:
    """The UID of a downtime's calendar entry, the same in the mailed invitations and the feed."""
    return f"downtime-{downtime_id}{id_suffix(token)}@{domain}"
