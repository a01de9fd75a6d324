"""Public changes: the count of commits that changed something the web site shows.

The answer cache (answers.py) keeps an answer while this count is unchanged, instead of while the
database's commit count is: most commits change nothing public (a proposal, a pre-approval, a
delivered chat line, a confirmation), and rebuilding every page after each of them cost the chat
round trip up to half its p99 while the page was fetched 100 times a second (bench/web_bench.py).

How a public change is seen: every row the site shows is written through the ORM (the downtime,
its bugs, the trees, the tree changes), so before each flush the session's new, changed and
deleted objects are looked at (`PublicChanges._flushing`): a downtime that is public before or
after the change (models/public.py `Visibility`), a bug or an audit row of such a downtime, or
any tree row marks the transaction; when it commits, the count goes up. A rolled-back transaction
counts nothing. The rows written as Core statements (outbox, handled messages, audit rows) are
never public by themselves: an audit row comes with the change of the downtime it tells of.

With several instances on one database ([ha] enabled, `shared`), a transaction that changed a
public fact also adds one to the ``public_changes`` row of `bot_meta` before it commits, and the
count includes that row, read at most once a second (adapters/change_token.py): a standby's page
follows the leader's changes within about a second.

It errs towards counting: a changed public downtime counts even when only something private of
it changed (its verdicts move its `updated_at`). `tests/web/test_public_changes.py` runs a whole
downtime and checks after every step that each cached answer is the one a fresh build gives.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from adapters import change_token
from adapters.change_token import ChangeToken
from models.orm import AuditEvent, Downtime, DowntimeBug, Tree, TreeChange, TreeChangeItem, TreeLog
from models.public import Visibility

_TREES = (Tree, TreeLog, TreeChange, TreeChangeItem)
_MARK = "downtimebot_public_change"


class PublicChanges:
    """Counts the commits through `sessions` that changed a public fact; call it for the count."""

    def __init__(self, sessions: sessionmaker[Session], visibility: Visibility, *, shared: bool = False):
        self.value = 0
        self.visibility = visibility
        event.listen(sessions, "before_flush", self._flushing)
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_rollback", self._forget)
        self.token: ChangeToken | None = None
        if shared:
            engine = sessions.kw["bind"]
            change_token.ensure_rows(engine)
            self.token = ChangeToken(engine, change_token.PUBLIC_CHANGES)
            event.listen(sessions, "before_commit", self._committing)

    def __call__(self) -> int:
        # Both only grow: their sum changes whenever either does.
        return self.value + (self.token() if self.token is not None else 0)

    def _committing(self, session: Session) -> None:
        session.flush()  # the commit's own last flush comes after this hook: mark it now
        if session.info.get(_MARK):
            change_token.bump(session.connection(), change_token.PUBLIC_CHANGES)

    def _flushing(self, session: Session, _context: Any, _instances: Any) -> None:
        if session.info.get(_MARK):
            return
        for obj in (*session.new, *session.dirty, *session.deleted):
            if self._public(session, obj):
                session.info[_MARK] = True
                return

    def _committed(self, session: Session) -> None:
        if session.info.pop(_MARK, False):
            self.value += 1

    def _forget(self, session: Session) -> None:
        session.info.pop(_MARK, None)

    def _public(self, session: Session, obj: object) -> bool:
        if isinstance(obj, _TREES):
            return True
        if isinstance(obj, Downtime):
            return self._shown(obj, before=True) or self._shown(obj, before=False)
        if isinstance(obj, DowntimeBug):
            return self._shown_by_id(session, obj.downtime if obj.downtime is not None else obj.downtime_id)
        if isinstance(obj, AuditEvent):
            return obj.downtime_id is None or self._shown_by_id(session, obj.downtime_id)
        return False  # verdicts, outbox rows, handled messages, the database's token

    def _shown(self, downtime: Downtime, *, before: bool) -> bool:
        state, announced = downtime.state, downtime.was_announced
        if before:
            attrs = inspect(downtime).attrs
            state = next(iter(attrs.state.history.deleted), state)
            announced = next(iter(attrs.was_announced.history.deleted), announced)
        return self.visibility.shows(state, bool(announced))

    def _shown_by_id(self, session: Session, downtime: Downtime | int | None) -> bool:
        if downtime is None:
            return True  # not known: count it
        if isinstance(downtime, int):
            found = session.get(Downtime, downtime)
            if found is None:
                return True
            downtime = found
        return self._shown(downtime, before=True) or self._shown(downtime, before=False)
