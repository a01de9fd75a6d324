"""The database tables, as SQLAlchemy 2 typed models.

The schema is created and changed only by the Alembic migrations in
``models/migrations``; a test checks that the migrations and these models agree.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out.

    SQLite has no time zone type, so values are stored naive in UTC and the
    zone is put back on the way out. A naive value on the way in is a bug.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


intpk = Annotated[int, mapped_column(primary_key=True)]
utc = Annotated[dt.datetime, mapped_column(UTCDateTime)]
# The longest account any chat network gives (a Matrix user id is at most 255 characters);
# PostgreSQL refuses a longer one, SQLite would keep it (plugins/dispatcher.py takes such a
# sender for not identified).
ACCOUNT_LENGTH = 255
account = Annotated[str, mapped_column(String(ACCOUNT_LENGTH))]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Downtime(Base):
    __tablename__ = "downtimes"

    id: Mapped[intpk]
    state: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(Text)
    start_at: Mapped[utc]
    end_at: Mapped[utc]
    requester: Mapped[account]
    requester_network: Mapped[str] = mapped_column(String(20))
    # Comma-separated tree names; empty means every configured tree.
    trees: Mapped[str] = mapped_column(Text, default="")
    # Comma-separated hosts of the systems registry that the wording names.
    systems: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[utc]
    updated_at: Mapped[utc]
    announced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # Raised on every reschedule/extension: calendar SEQUENCE and reminder keys follow it.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    # True once an announcement went out: later changes must reach the same people.
    was_announced: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    verified_by: Mapped[str | None] = mapped_column(String(255), default=None)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    tree_change_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # Updated notices sent after the announcement (a bug added or dropped, the wording edited):
    # the calendar SEQUENCE is `revision + notice_updates` (see `sequence`).
    notice_updates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The database's token when it was made (models/instance.py): Message-IDs and calendar UIDs
    # carry it, so two databases on one mail domain never share them. Empty: a downtime from
    # before the token existed, which keeps the ids it was announced with.
    id_token: Mapped[str] = mapped_column(String(32), default="", server_default="")

    bugs: Mapped[list[DowntimeBug]] = relationship(
        back_populates="downtime", order_by="DowntimeBug.bug", cascade="all, delete-orphan"
    )
    verdicts: Mapped[list[Verdict]] = relationship(
        back_populates="downtime", order_by="Verdict.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        # The list, the conflict check and the reminder plan all read a time range.
        Index("ix_downtimes_start_at", "start_at"),
        Index("ix_downtimes_state_start_at", "state", "start_at"),
        # The web page's Last-Modified: the latest change of a public downtime (models/public.py).
        Index("ix_downtimes_updated_at", "updated_at"),
    )

    @property
    def duration(self) -> dt.timedelta:
        return self.end_at - self.start_at

    @property
    def tree_names(self) -> list[str]:
        return [t for t in self.trees.split(",") if t]

    @property
    def system_names(self) -> list[str]:
        return [s for s in self.systems.split(",") if s]

    @property
    def sequence(self) -> int:
        """The calendar SEQUENCE of the next invitation: higher after every change people were told of."""
        return self.revision + self.notice_updates


def nobody_assigned(assignee: str) -> bool:
    """Nobody is assigned: empty, or a ``nobody@…`` placeholder (nobody@mozilla.org)."""
    return assignee.strip().lower().partition("@")[0] in ("", "nobody")


class DowntimeBug(Base):
    __tablename__ = "downtime_bugs"

    id: Mapped[intpk]
    downtime_id: Mapped[int] = mapped_column(ForeignKey("downtimes.id", ondelete="CASCADE"))
    bug: Mapped[int] = mapped_column(Integer)
    wording: Mapped[str] = mapped_column(Text, default="")
    security: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="nominated")
    summary: Mapped[str] = mapped_column(Text, default="")
    assignee: Mapped[str] = mapped_column(String(255), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[account]
    # A change to an announced downtime awaiting CiDuty's approval: "add" (the bug joins when
    # approved) or "drop" (it leaves when approved); empty: none.
    pending: Mapped[str] = mapped_column(String(10), default="", server_default="")

    downtime: Mapped[Downtime] = relationship(back_populates="bugs")

    @property
    def unassigned(self) -> bool:
        return nobody_assigned(self.assignee)

    __table_args__ = (
        UniqueConstraint("downtime_id", "bug"),
        Index("ix_downtime_bugs_bug", "bug"),
    )


class Verdict(Base):
    """A pre-approver's answer to the draft notice ("preapproved" | "objected"), or a confirmation
    of the draft by someone working in the downtime ("confirmed"). A reschedule to a new time
    resets pre-approvals and confirmations (inactive); an objection stays until withdrawn."""

    __tablename__ = "verdicts"

    id: Mapped[intpk]
    downtime_id: Mapped[int] = mapped_column(ForeignKey("downtimes.id", ondelete="CASCADE"))
    account: Mapped[account]
    network: Mapped[str] = mapped_column(String(20))
    verdict: Mapped[str] = mapped_column(String(20))  # "preapproved" | "objected" | "confirmed"
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[utc]
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    downtime: Mapped[Downtime] = relationship(back_populates="verdicts")

    __table_args__ = (Index("ix_verdicts_downtime_id", "downtime_id"),)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[intpk]
    downtime_id: Mapped[int | None] = mapped_column(Integer, default=None)
    at: Mapped[utc]
    account: Mapped[account]
    network: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str] = mapped_column(String(20), default="")
    to_state: Mapped[str] = mapped_column(String(20), default="")
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_audit_events_downtime_id_id", "downtime_id", "id"),)


class OutboxMessage(Base):
    """Something the bot must say or do outside: a chat line, a mail, a Bugzilla or tree change.

    Written in the same transaction as the change that causes it; `key` is unique
    so the same message can never be queued twice, and a sender marks it sent
    only after delivery, so a restart or a dropped connection only delays it.
    """

    __tablename__ = "outbox"

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # chat | mail | bugzilla | trees
    network: Mapped[str] = mapped_column(String(20), default="")  # chat: which transport
    target: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    downtime_id: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[utc]
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # [ha] (adapters/leadership.py, adapters/outbox.py): the epoch that started or delivered it. A chat
    # line gets it when marked sent; a change in another system (mail, bugzilla, trees) when a leader
    # claims it, before it acts (still pending: an earlier leader may have died half-way, so the next
    # one redoes it as a retry), then the delivering epoch when marked sent. None without [ha].
    sent_epoch: Mapped[int | None] = mapped_column(BigInteger, default=None)

    __table_args__ = (Index("ix_outbox_status_kind_id", "status", "kind", "id"),)


class Tree(Base):
    """A tree of the built-in registry, following Treestatus's model."""

    __tablename__ = "trees"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(30), default="open")
    reason: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[utc]


class TreeLog(Base):
    __tablename__ = "tree_log"

    id: Mapped[intpk]
    tree: Mapped[str] = mapped_column(String(100))
    at: Mapped[utc]
    who: Mapped[account]
    status: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_tree_log_tree_id", "tree", "id"),)


class TreeChange(Base):
    """One remembered change of several trees (Treestatus's stack entry)."""

    __tablename__ = "tree_changes"

    id: Mapped[intpk]
    at: Mapped[utc]
    who: Mapped[account]
    status: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text, default="")
    downtime_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # active: on the stack; restored or discarded: taken off it.
    state: Mapped[str] = mapped_column(String(20), default="active")
    # The external id when the change was made in Treestatus.
    remote_id: Mapped[int | None] = mapped_column(Integer, default=None)

    items: Mapped[list[TreeChangeItem]] = relationship(
        back_populates="change", order_by="TreeChangeItem.tree", cascade="all, delete-orphan"
    )


class TreeChangeItem(Base):
    """One tree in a remembered change: its state before, and what the change set."""

    __tablename__ = "tree_change_items"

    id: Mapped[intpk]
    change_id: Mapped[int] = mapped_column(ForeignKey("tree_changes.id", ondelete="CASCADE"))
    tree: Mapped[str] = mapped_column(String(100))
    last_status: Mapped[str] = mapped_column(String(30))
    last_reason: Mapped[str] = mapped_column(Text, default="")
    last_tags: Mapped[str] = mapped_column(Text, default="")
    current_status: Mapped[str] = mapped_column(String(30))
    current_reason: Mapped[str] = mapped_column(Text, default="")
    current_tags: Mapped[str] = mapped_column(Text, default="")

    change: Mapped[TreeChange] = relationship(back_populates="items")

    __table_args__ = (Index("ix_tree_change_items_change_id", "change_id"),)


class HandledMessage(Base):
    """A chat message whose command changed something, recorded in that command's transaction.

    A network can deliver the same message again (Matrix replays the events after the last
    saved sync token when the bot was killed mid-batch); its (network, msgid) is found here and
    the replay is ignored, so the change is never made twice. Old rows are pruned: a replay
    comes within minutes, not weeks.
    """

    __tablename__ = "handled_messages"

    network: Mapped[str] = mapped_column(String(20), primary_key=True)
    msgid: Mapped[str] = mapped_column(String(255), primary_key=True)
    handled_at: Mapped[utc]

    __table_args__ = (Index("ix_handled_messages_handled_at", "handled_at"),)


class BotMeta(Base):
    """Facts about this database itself, by name (``id_token``: see models/instance.py)."""

    __tablename__ = "bot_meta"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LeaderLease(Base):
    """[ha]: who leads, until when, and the epoch that fences an old leader (adapters/leadership.py).

    One row per lease (`name` "leader"). The times are the database's own clock in seconds since
    1970 (one clock for every instance, whatever their machines say); `epoch` goes up by one at
    each change of holder, and every delivery is marked sent only while it is still the
    deliverer's epoch.
    """

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[float] = mapped_column(Float)
    renewed_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
