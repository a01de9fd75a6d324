"""[bot] rate_limit through the dispatcher (issue 12, item 9): one sender cannot flood the bot,
nor CiDuty through it."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models.orm import Downtime
from models.ports import Incoming
from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeClock

NONE = "#ci No upcoming downtimes. Propose one: !downtime propose <start> for <duration> -- <wording>"
SLOW_DOWN = "#ci {nick}: slow down, please: at most 10 commands every 1m from one person. Commands are ignored for the next 6s."


def proposals(chat: Chat) -> int:
    with chat.bot.sessions() as session:
        return session.scalar(select(func.count()).select_from(Downtime)) or 0


def test_a_burst_is_answered_then_one_slow_down_then_silence(chat: Chat) -> None:
    for _ in range(5):
        assert chat.say("mallory", "!downtime list") == [NONE]
    assert chat.say("mallory", "!downtime list") == [SLOW_DOWN.format(nick="mallory")]
    for _ in range(20):
        assert chat.say("mallory", "!downtime list") == []
    assert chat.say("bob", "!downtime list") == [NONE]  # others are not slowed down


def test_a_sender_is_answered_again_once_the_bucket_refills(chat: Chat) -> None:
    for _ in range(7):
        chat.say("mallory", "!downtime list")
    chat.clock.advance(dt.timedelta(seconds=5))
    assert chat.say("mallory", "!downtime list") == []
    chat.clock.advance(dt.timedelta(seconds=1))
    assert chat.say("mallory", "!downtime list") == [NONE]
    assert chat.say("mallory", "!downtime list") == [SLOW_DOWN.format(nick="mallory")]  # told again, once
    chat.clock.advance(dt.timedelta(seconds=30))
    for _ in range(5):
        assert chat.say("mallory", "!downtime list") == [NONE]


def test_lines_not_for_the_bot_are_not_counted(chat: Chat) -> None:
    for _ in range(50):
        assert chat.say("mallory", "hello everyone") == []
        assert chat.say("mallory", "!weather") == []
        assert chat.say("mallory", "!weather " + "x" * 3000) == []
    assert chat.say("mallory", "!downtime list") == [NONE]


def test_lines_too_long_to_read_count_like_any_other(chat: Chat) -> None:
    long_line = "!downtime list " + "x" * 3000
    for _ in range(5):
        assert chat.say("mallory", long_line)[0].startswith("#ci the line is 3015 characters long")
    assert chat.say("mallory", long_line) == [SLOW_DOWN.format(nick="mallory")]
    assert chat.say("mallory", long_line) == []


@pytest.mark.parametrize("who", ["carol", "root"])
def test_ciduty_and_admins_are_never_slowed_down(chat: Chat, who: str) -> None:
    for _ in range(30):
        assert chat.say(who, "!downtime list") == [NONE]


def test_senders_without_an_account_are_counted_by_nick(chat: Chat) -> None:
    for _ in range(5):
        chat.say(None, "!downtime list")
    assert chat.say(None, "!downtime list") == [SLOW_DOWN.format(nick="anon")]
    assert chat.say(None, "!downtime list") == []
    # Another nick without an account has its own bucket.
    chat.loop.run_until_complete(chat.bot.dispatcher.answer(Incoming("irc", "#ci", None, "anon2", "!downtime list")))
    assert chat.new_lines() == [NONE]


def test_the_same_account_on_another_network_has_its_own_bucket(tmp_path: Path) -> None:
    chat = Chat(make_config(tmp_path), FakeClock(NOW), networks=("irc", "matrix"))
    try:
        for _ in range(6):
            chat.say("mallory", "!downtime list", network="irc")
        chat.say("mallory", "!downtime list", network="matrix")
        assert chat.new_lines("matrix") == [NONE]
    finally:
        chat.close()


def test_two_hundred_proposals_in_a_second_ping_ciduty_a_bounded_number_of_times(chat: Chat) -> None:
    said: list[str] = []
    for n in range(200):
        said += chat.say("mallory", f"!downtime propose 2026-12-05 14:00 UTC for 2h -- flood {n}")
    pings = [line for line in said if line.startswith("#ci carol:")]
    assert proposals(chat) == 5
    assert len(pings) <= 5
    assert said.count(SLOW_DOWN.format(nick="mallory")) == 1
    assert len(chat.bot.dispatcher.rate_limiter._buckets) == 1  # type: ignore[union-attr]


@pytest.fixture
def unlimited(tmp_path: Path) -> Iterator[Chat]:
    chat = Chat(make_config(tmp_path, bot={"rate_limit": "off"}), FakeClock(NOW))
    yield chat
    chat.close()


def test_rate_limit_off_turns_it_off(unlimited: Chat) -> None:
    for _ in range(30):
        assert unlimited.say("mallory", "!downtime list") == [NONE]


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Chat]:
    chat = Chat(make_config(tmp_path, bot={"rate_limit": "2/1h", "rate_burst": "1"}), FakeClock(NOW))
    yield chat
    chat.close()


def test_rate_limit_and_burst_are_configured_in_bot(strict: Chat) -> None:
    assert strict.say("mallory", "!downtime list") == [NONE]
    assert strict.say("mallory", "!downtime list") == [
        "#ci mallory: slow down, please: at most 2 commands every 1h from one person. "
        "Commands are ignored for the next 1800s."
    ]
