"""A chat message delivered twice (a network replay after a crash) changes nothing the second time."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from models.ports import Incoming
from models.handled import KEPT_FOR
from models.orm import AuditEvent, Downtime, HandledMessage, OutboxMessage
from tests.conftest import Chat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org"


def _said(chat: Chat, account: str, text: str, msgid: str | None, network: str = "irc") -> list[str]:
    message = Incoming(network=network, room="#ci", account=account, nick=account, text=text, msgid=msgid)
    return chat.loop.run_until_complete(chat.bot.dispatcher.answer(message))


def _count(chat: Chat, model: type, *where: object) -> int:
    with chat.bot.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_a_replayed_command_with_the_same_message_id_changes_nothing_and_queues_nothing(chat: Chat) -> None:
    first = _said(chat, "alice", PROPOSE, "$event1")
    chat.deliver()
    replayed = _said(chat, "alice", PROPOSE, "$event1")
    chat.deliver()
    assert first[0].startswith("Downtime #1 proposed by alice")
    assert replayed == []
    assert _count(chat, Downtime) == 1
    assert _count(chat, AuditEvent, AuditEvent.action == "propose") == 1
    assert [m.text.split(":")[0] for m in chat.transports["irc"].sent] == ["Downtime #1 proposed by alice"]


def test_a_replayed_approval_is_not_refused_as_already_approved(chat: Chat) -> None:
    _said(chat, "alice", PROPOSE.replace(" --", " bug 123456 --"), "$p")
    assert _said(chat, "carol", "!downtime approve 1", "$a")[0].startswith("Downtime #1 approved")
    chat.deliver()
    sent_before = len(chat.transports["irc"].sent)
    assert _said(chat, "carol", "!downtime approve 1", "$a") == []
    chat.deliver()
    assert len(chat.transports["irc"].sent) == sent_before


def test_the_same_message_id_on_another_network_is_another_message(config, clock) -> None:  # type: ignore[no-untyped-def]
    chat = Chat(config, clock, networks=("irc", "matrix"))
    try:
        _said(chat, "alice", PROPOSE, "same-id", network="irc")
        second = _said(chat, "alice", PROPOSE.replace("14:00", "18:00"), "same-id", network="matrix")
        assert second[0].startswith("Downtime #2 proposed")
    finally:
        chat.close()


def test_a_command_that_changed_nothing_is_not_recorded_so_asking_again_answers_again(chat: Chat) -> None:
    assert _said(chat, "alice", "!downtime show 9", "$q")[0].startswith("there is no downtime #9")
    assert _said(chat, "alice", "!downtime show 9", "$q")[0].startswith("there is no downtime #9")
    assert _count(chat, HandledMessage) == 0


def test_messages_without_an_id_are_never_taken_for_replays(chat: Chat) -> None:
    _said(chat, "alice", PROPOSE, None)
    _said(chat, "alice", PROPOSE.replace("14:00", "18:00"), None)
    assert _count(chat, Downtime) == 2
    assert _count(chat, OutboxMessage, OutboxMessage.key.like("reply:%")) >= 2


def test_handled_ids_older_than_the_replay_window_are_pruned(chat: Chat) -> None:
    _said(chat, "alice", PROPOSE, "$old")
    chat.clock.set(chat.clock.now() + KEPT_FOR + dt.timedelta(hours=1))
    _said(chat, "alice", "!downtime propose 2026-12-20 14:00 UTC for 2h -- Later work", "$new")
    with chat.bot.sessions() as session:
        assert list(session.scalars(select(HandledMessage.msgid))) == ["$new"]


def test_a_question_is_not_looked_up_among_the_handled_messages(chat: Chat) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def listener(*args: object) -> None:  # (conn, cursor, statement, ...)
        statements.append(str(args[2]))

    event.listen(chat.bot.engine, "before_cursor_execute", listener)
    try:
        _said(chat, "alice", "!downtime show 9", "$q1")
        _said(chat, "alice", "!downtime list", "$q2")
    finally:
        event.remove(chat.bot.engine, "before_cursor_execute", listener)
    assert statements and not [s for s in statements if "handled_messages" in s]


def test_a_read_only_command_that_changes_something_after_all_is_still_checked_before_the_commit(chat: Chat) -> None:
    from plugins.registry import Command

    async def sneaky(ctx, args: str) -> None:  # type: ignore[no-untyped-def]
        ctx.downtimes.propose(chat.clock.now() + dt.timedelta(days=3), dt.timedelta(hours=1), "sneaky")
        ctx.reply("done")

    commands = chat.bot.dispatcher.commands
    commands["downtime sneaky"] = Command("downtime sneaky", sneaky, "downtime sneaky", "", (), "anyone", read_only=True)
    assert _said(chat, "alice", "!downtime sneaky", "$s") == ["done"]
    assert _said(chat, "alice", "!downtime sneaky", "$s") == []
    assert _count(chat, Downtime) == 1
