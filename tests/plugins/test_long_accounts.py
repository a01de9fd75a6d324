"""An account longer than any chat network gives (only the console could send one) is taken for
not identified, on every database: PostgreSQL could not store it, SQLite would."""
from __future__ import annotations

import pytest

from tests.conftest import Chat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)


def test_a_sender_with_an_account_of_300_characters_is_told_to_identify_and_nothing_is_stored(chat: Chat) -> None:
    who = "a" * 300
    answer = chat.say(who, "!downtime propose 2026-12-05 14:00 UTC for 2h bug 5 -- Upgrade hg")
    assert len(answer) == 1 and "identif" in answer[0] and "went wrong" not in answer[0]
    assert chat.say("carol", "!downtime show 1") == ["#ci there is no downtime #1 (see !downtime list)"]


def test_a_sender_with_an_account_of_255_characters_is_identified(chat: Chat) -> None:
    who = "a" * 255
    answer = chat.say(who, "!downtime propose 2026-12-05 14:00 UTC for 2h bug 5 -- Upgrade hg")
    assert answer[0].startswith(f"#ci Downtime #1 proposed by {who}")
