"""Roles follow an account on its own network: [people] joins one person's accounts, and never
lends a role to a same-named account on a network where that person does not list it."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Chat, make_config
from tests.fakes import FakeClock

PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org"


def _chat(tmp_path: Path, clock: FakeClock, people: dict[str, str]) -> Chat:
    config = make_config(
        tmp_path, roles={"ciduty": "@carol:mozilla.org", "sheriffs": "sam"}, people=people,
    )
    return Chat(config, clock, networks=("console", "irc", "matrix"))


def say(chat: Chat, who: str, text: str, network: str, room: str = "#ci") -> list[str]:
    """One line from `who` on `network`; what the bot said there."""
    out = chat.say(who, text, room=room, network=network)  # what it said on the first network
    return out if network == next(iter(chat.transports)) else chat.new_lines(network)


def refused(out: list[str]) -> bool:
    """The one-line refusal for want of the CiDuty role."""
    return len(out) == 1 and out[0].startswith("#ci only CiDuty") and "approve" in out[0]


@pytest.fixture
def carol_on_matrix_only(tmp_path: Path, clock: FakeClock) -> Iterator[Chat]:
    chat = _chat(tmp_path, clock, {"carol": "@carol:mozilla.org, carol@mozilla.org"})
    yield chat
    chat.close()


def test_a_console_account_named_like_a_person_listed_only_on_matrix_is_not_ciduty(carol_on_matrix_only: Chat) -> None:
    chat = carol_on_matrix_only
    say(chat, "alice", PROPOSE, "console")
    out = say(chat, "carol", "!downtime approve 1", "console")
    assert refused(out)


def test_an_irc_account_named_like_a_person_listed_only_on_matrix_is_not_ciduty(carol_on_matrix_only: Chat) -> None:
    chat = carol_on_matrix_only
    say(chat, "alice", PROPOSE, "irc")
    out = say(chat, "carol", "!downtime approve 1", "irc")
    assert refused(out)


def test_the_matrix_id_the_role_names_is_ciduty(carol_on_matrix_only: Chat) -> None:
    chat = carol_on_matrix_only
    say(chat, "alice", PROPOSE, "matrix")
    out = say(chat, "@carol:mozilla.org", "!downtime approve 1", "matrix")
    assert out[0].startswith("#ci Downtime #1 approved")


def test_a_bare_role_name_is_an_irc_account_and_never_a_matrix_one(tmp_path: Path, clock: FakeClock) -> None:
    chat = _chat(tmp_path, clock, {})
    try:
        say(chat, "alice", PROPOSE, "matrix")
        out = say(chat, "sam", "!downtime verify 1", "matrix", room="#developers")
        assert out[0].startswith("#developers only ") and "may verify" in out[0]
    finally:
        chat.close()


def test_people_lend_a_role_to_each_account_they_list_on_its_own_network(tmp_path: Path, clock: FakeClock) -> None:
    chat = _chat(tmp_path, clock, {"carol": "carolirc, @carol:mozilla.org"})
    try:
        say(chat, "alice", PROPOSE, "irc")
        assert refused(say(chat, "carol", "!downtime approve 1", "irc"))
        out = say(chat, "carolirc", "!downtime approve 1", "irc")
        assert out[0].startswith("#ci Downtime #1 approved")
    finally:
        chat.close()
