"""Who reads a security bug's own words (models/confidential.py), as a table."""
from __future__ import annotations

import pytest

from models.confidential import PUBLIC, Audience, audience_of, named_in, told, told_found
from models.lifecycle import Role
from models.orm import DowntimeBug
from models.ports import BugInfo
from models.work import Actor

REQUESTER = ("alice", "irc")


@pytest.mark.parametrize(("audience", "reads"), [
    (PUBLIC, False),
    (Audience(private=False, account="carol", network="irc", ciduty=True), False),  # CiDuty in a channel
    (Audience(private=True, account="carol", network="matrix", ciduty=True), True),
    (Audience(private=True, account="alice", network="irc"), True),
    (Audience(private=True, account="Alice", network="irc"), True),
    (Audience(private=True, account="alice", network="matrix"), False),  # a namesake elsewhere
    (Audience(private=True, account="mallory", network="irc"), False),
    (Audience(private=True, account=None, network="irc", ciduty=True), False),  # not identified
])
def test_only_ciduty_and_the_requester_privately_read_confidential_words(audience: Audience, reads: bool) -> None:
    assert audience.reads_confidential(*REQUESTER) is reads


def test_a_private_answer_is_one_to_an_at_target_and_admins_count_as_ciduty() -> None:
    admin = frozenset({Role.ADMIN})
    assert audience_of(Actor("root", "irc", "root", admin, reply_target="@root")).reads_confidential()
    assert not audience_of(Actor("root", "irc", "root", admin, reply_target="#ci")).private


def test_a_security_bug_is_told_vaguely_unless_in_full() -> None:
    bugs = [DowntimeBug(bug=1, status="nominated", security=True, wording="secret words", summary="", assignee="a@b.c",
                        note="lag"),
            DowntimeBug(bug=2, status="nominated", security=False, wording="", summary="", assignee="", note="")]
    vague, full = told(bugs, full=False, fallback="the wording"), told(bugs, full=True)
    assert (vague[0].hidden, vague[0].text, vague[0].assignee, vague[0].note) == (True, "", "", "lag")
    assert vague[1].text == "the wording"
    assert (full[0].hidden, full[0].text, full[0].assignee) == (False, "secret words", "a@b.c")


def test_a_restricted_bug_found_in_bugzilla_is_only_its_number_unless_in_full() -> None:
    info = BugInfo(5, "Heap overflow", "sec@x.org", "NEW", "", "", groups=("core-security",))
    assert told_found([info], full=False)[0][:6] == (5, "NEW", True, True, "", "")
    assert told_found([info], full=True)[0].text == "Heap overflow"


def test_a_bug_number_is_named_only_as_a_whole_number() -> None:
    assert named_in("Fix bug 888888 and 12", [888888, 1, 12, 88888]) == [888888, 12]
