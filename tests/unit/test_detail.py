"""`!downtime show` reads a read model (models/detail.py): it must say what the ORM objects say."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from models.confidential import told
from models.detail import load_detail
from models.orm import Downtime, DowntimeBug, OutboxMessage, Verdict
from models.ports import Incoming
from tests.conftest import NOW, Chat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc


def _fill(chat: Chat) -> None:
    start = NOW + dt.timedelta(days=3)
    with chat.bot.sessions() as session, session.begin():
        d = Downtime(
            state="finished", summary="Upgrade hg.mozilla.org", start_at=start, end_at=start + dt.timedelta(hours=2),
            requester="alice", requester_network="irc", trees="autoland,try", systems="hg.mozilla.org",
            created_at=NOW, updated_at=NOW, started_at=start, ended_at=start + dt.timedelta(hours=2),
            verified_by="sam", verified_at=start, tree_change_id=4,
        )
        d.bugs = [
            DowntimeBug(bug=30, wording="Move the database", added_by="alice"),
            DowntimeBug(bug=10, summary="From Bugzilla", assignee="bob@example.com", status="landed", added_by="alice"),
            DowntimeBug(bug=20, security=True, note="rolled back: migration failed", added_by="alice"),
        ]
        d.verdicts = [
            Verdict(account="pat", network="irc", verdict="objected", reason="release day", at=NOW, active=False),
            Verdict(account="pat", network="irc", verdict="preapproved", at=NOW),
        ]
        other = Downtime(
            state="proposed", summary="Other", start_at=start, end_at=start + dt.timedelta(hours=1),
            requester="bob", requester_network="irc", created_at=NOW, updated_at=NOW,
        )
        session.add_all([d, other])
        session.flush()
        rows = [
            ("mail", "pending", {"subject": "Downtime #1 notice"}, d.id, 0, ""),
            ("bugzilla", "failed", {}, d.id, 3, "HTTP 500"),
            ("trees", "sent", {}, d.id, 1, ""),
            ("chat", "pending", {}, d.id, 0, ""),
            ("bugzilla", "pending", {}, other.id, 0, ""),
        ]
        for n, (kind, status, payload, downtime_id, attempts, error) in enumerate(rows):
            session.add(OutboxMessage(
                key=f"k{n}", kind=kind, target=kind, body=f"do {kind} {n}", payload=payload, downtime_id=downtime_id,
                status=status, attempts=attempts, last_error=error, created_at=NOW,
            ))


def _orm_answer(chat: Chat, downtime_id: int) -> str:
    """show.txt as rendered from the ORM objects, before the read model."""
    with chat.bot.sessions() as session:
        d = session.get(Downtime, downtime_id)
        pending = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.downtime_id == downtime_id, OutboxMessage.status != "sent",
                OutboxMessage.kind.in_(["bugzilla", "trees", "mail"]),
            ).order_by(OutboxMessage.id)
        ).all()
        return chat.bot.render("show.txt", d=d, bugs=told(d.bugs, False, "-"), pending=pending)


def test_the_read_model_says_what_the_orm_objects_say(chat: Chat) -> None:
    _fill(chat)
    for downtime_id in (1, 2):
        with chat.bot.sessions() as session:
            d = load_detail(session, downtime_id)
            answer = chat.bot.render("show.txt", d=d, bugs=told(d.bugs, False, "-"), pending=d.pending)
        assert answer == _orm_answer(chat, downtime_id)
    first = _orm_answer(chat, 1)  # every part of the template is exercised
    assert [line.split(" [")[0].split(":")[0] for line in first.strip().splitlines()] == [
        "#1", "Requested by alice on 2026-12-01 10", "Bug 10", "Bug 20", "Bug 30", "pat preapproved",
        "Started 2026-12-04 10", "Pending mail", "Pending bugzilla",
    ]
    assert "Pending mail: Downtime #1 notice (pending)" in first
    assert "Pending bugzilla: do bugzilla 1 (failed, 3 attempt(s): HTTP 500)" in first


def test_show_answers_from_the_read_model(chat: Chat) -> None:
    _fill(chat)
    message = Incoming(network="irc", room="#ci", account="bob", nick="bob", text="!downtime show 1")
    assert chat.loop.run_until_complete(chat.bot.dispatcher.answer(message)) == [_orm_answer(chat, 1).rstrip("\n")]
