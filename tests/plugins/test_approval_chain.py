"""The approval chain, read like a transcript: the draft goes to the people working in the
downtime (who confirm its wording) and to the pre-approvers (who may object), as the process's
"Who do I notify" asks, and what answers stand through a reschedule and an announcement.

Alice requests; bob (an IRC account linked in [people] to bob@example.org) is assigned bug
123456; dora@example.org, with no chat account, is assigned bug 654321; pat and quinn are the
pre-approvers; carol is CiDuty.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeBugzilla, FakeClock

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

FLAG = "needs-treeclosure"
MAIL = {"host": "smtp.invalid", "preapprovers": "release@example.org", "announce_to": "dev-planning@example.org"}
PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456,654321 -- Upgrade hg.mozilla.org"


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Chat]:
    config = make_config(
        tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"}, mail=MAIL,
        people={"alice": "alice@example.org", "bob": "bob, bob@example.org"}, roles={"preapprovers": "pat, quinn"},
    )
    fake = FakeBugzilla()
    fake.add_bug(123456, "Upgrade the hg servers", "bob@example.org", flags=[(FLAG, "?")])
    fake.add_bug(654321, "Move the build database", "dora@example.org", flags=[(FLAG, "?")])
    harness = Chat(config, FakeClock(NOW), bugzilla=fake)
    harness.say("alice", PROPOSE)
    yield harness
    harness.close()


def approved(chat: Chat) -> list[str]:
    return chat.say("carol", "!downtime approve 1")


def show(chat: Chat) -> list[str]:
    return chat.say("carol", "!downtime show 1")


def history(chat: Chat) -> list[str]:
    return chat.say("carol", "!downtime history 1")


# ----- 1. an objection stands until its objector withdraws it or CiDuty forces over it ----------


def test_an_objection_survives_a_reschedule_to_a_new_time_and_still_blocks_the_announcement(chat: Chat) -> None:
    approved(chat)
    chat.say("pat", "!downtime object 1 -- release day")
    out = chat.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    assert "#ci Note: the objection of pat still stands: announcing needs their !downtime preapprove 1, or --force with a reason" in out

    out = chat.say("carol", "!downtime announce 1")
    assert out == ["#ci cannot announce downtime #1: pat objects: release day "
                   "(to announce anyway: !downtime announce 1 --force -- <reason>)"]
    assert show(chat)[0].startswith("#ci #1 [approved]")
    assert "#ci pat objected: release day" in show(chat)


def test_the_objector_withdraws_their_objection_by_pre_approving_and_ciduty_is_told(chat: Chat) -> None:
    approved(chat)
    chat.say("pat", "!downtime object 1 -- release day")

    out = chat.say("quinn", "!downtime preapprove 1")  # someone else's answer withdraws nothing
    assert out == ["#ci Downtime #1: pre-approved by quinn."]
    assert chat.say("carol", "!downtime announce 1")[0].startswith("#ci cannot announce downtime #1: pat objects")

    out = chat.say("pat", "!downtime preapprove 1")
    assert out[:2] == ["#ci Downtime #1: pre-approved by pat.",
                       "#ci Note: your objection to downtime #1 is withdrawn; CiDuty is told"]
    assert "#ci carol: Pre-approver pat withdrew their objection to downtime #1 (release day)" in out
    assert "#ci pat objected: release day" not in show(chat)
    assert any("preapprove: withdraws the objection: release day" in line for line in history(chat))
    assert chat.say("carol", "!downtime announce 1")[0].startswith("#ci Downtime #1 announced")


def test_ciduty_forces_over_an_objection_the_reason_is_in_the_history_and_the_objector_is_told(chat: Chat) -> None:
    approved(chat)
    chat.say("pat", "!downtime object 1 -- release day")

    out = chat.say("carol", "!downtime announce 1 --force -- chemspill fix must land")
    assert out[0].startswith("#ci Downtime #1 announced")
    assert "#ci Note: announced over: pat objects: release day (reason logged: chemspill fix must land)" in out
    assert ("@pat Downtime #1 was announced by carol over your objection (release day): chemspill fix must land"
            in out)
    assert any("forced: chemspill fix must land (over: pat objects: release day)" in line for line in history(chat))
    # Overridden, it no longer stands: a later announcement needs no --force for it.
    assert "#ci pat objected: release day" not in show(chat)
    chat.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    assert chat.say("carol", "!downtime announce 1")[0].startswith("#ci Downtime #1 announced")


def test_an_objection_to_an_announced_downtime_can_be_withdrawn_too(chat: Chat) -> None:
    approved(chat)
    chat.say("carol", "!downtime announce 1")
    chat.say("pat", "!downtime object 1 -- release day")
    out = chat.say("pat", "!downtime preapprove 1")
    assert out[1] == "#ci Note: your objection to downtime #1 is withdrawn; CiDuty is told"


# ----- 2. a reschedule: a new time resets and re-drafts; the same time changes nothing -----------


def test_a_new_time_resets_pre_approvals_and_confirmations_not_objections_and_mails_the_draft_again(
    chat: Chat,
) -> None:
    approved(chat)
    chat.say("pat", "!downtime preapprove 1")
    chat.say("quinn", "!downtime object 1 -- release day")
    chat.say("bob", "!downtime confirm 1")
    drafts = len(chat.mailer.sent)

    out = chat.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    assert "#ci Note: 1 pre-approval(s) and 1 confirmation(s) reset for the new time: they must answer again" in out
    assert ("#ci Note: the draft went again, for the new time, to the people working in downtime #1 and the "
            "pre-approvers") in out
    assert ("#ci alice, bob: The draft notice of downtime #1 (2026-12-06 14:00 UTC (06:00 America/Los_Angeles) for 2h "
            "(until 16:00 UTC (08:00 America/Los_Angeles))) went out again for its new time: the people working in it, please check its wording "
            "and confirm it with !downtime confirm 1 (see !downtime notice 1); not in chat, told by mail only: "
            "dora@example.org") in out
    (draft,) = chat.mailer.sent[drafts:]
    assert draft.subject == "[DRAFT] Tree-closing downtime #1: 2026-12-06 14:00 UTC for review"
    assert draft.to == ("bob@example.org", "dora@example.org", "alice@example.org", "release@example.org")
    assert "moved to a new time" in draft.body and "!downtime confirm 1" in draft.body

    after = show(chat)
    assert "#ci pat preapproved" not in after
    assert "#ci quinn objected: release day" in after
    assert "#ci Draft confirmed by: nobody yet; not yet: alice, bob, dora@example.org" in after


def test_a_reschedule_to_the_same_start_and_duration_changes_nothing_and_says_so(chat: Chat) -> None:
    approved(chat)
    chat.say("pat", "!downtime preapprove 1")
    chat.say("quinn", "!downtime object 1 -- release day")
    before, mails, trail = show(chat), len(chat.mailer.sent), history(chat)

    for same in ("2026-12-05 14:00 UTC", "2026-12-05 14:00 UTC for 2h", "2026-12-05 06:00 America/Los_Angeles"):
        out = chat.say("carol", f"!downtime reschedule 1 {same}")
        assert out == ["#ci downtime #1 is already at 2026-12-05 14:00 UTC (06:00 America/Los_Angeles) for 2h: "
                       "nothing changed"]
    assert show(chat) == before and history(chat) == trail and len(chat.mailer.sent) == mails
    # The objection still blocks: the same time did not clear it.
    assert chat.say("carol", "!downtime announce 1")[0].startswith("#ci cannot announce downtime #1: quinn objects")


def test_a_new_duration_at_the_same_start_is_a_new_time(chat: Chat) -> None:
    approved(chat)
    mails = len(chat.mailer.sent)
    out = chat.say("carol", "!downtime reschedule 1 2026-12-05 14:00 UTC for 3h")
    assert out[0].startswith("#ci Downtime #1 rescheduled to 2026-12-05 14:00 UTC")
    (draft,) = chat.mailer.sent[mails:]
    assert draft.subject.startswith("[DRAFT] Tree-closing downtime #1") and "for 3h" in draft.body


# ----- 3. announce names who has not answered (a warning, not a refusal) -------------------------


def test_announce_names_the_pre_approvers_who_have_not_answered_and_the_workers_who_have_not_confirmed(
    chat: Chat,
) -> None:
    approved(chat)
    chat.say("pat", "!downtime preapprove 1")
    chat.say("alice", "!downtime confirm 1")

    out = chat.say("carol", "!downtime announce 1")
    assert out[0].startswith("#ci Downtime #1 announced")
    assert ("#ci Note: no answer yet from the pre-approver(s) quinn (the process asks them for objections, "
            "not for sign-off)") in out
    assert ("#ci Note: the draft is not confirmed yet by bob, dora@example.org (working in the downtime: "
            "!downtime confirm)") in out


def test_announce_warns_of_nobody_once_everyone_has_answered(chat: Chat) -> None:
    approved(chat)
    for who, command in (("pat", "preapprove"), ("quinn", "preapprove"), ("alice", "confirm"), ("bob", "confirm")):
        chat.say(who, f"!downtime {command} 1")
    chat.say("root", "!downtime confirm 1")  # an admin is not dora: refused
    out = chat.say("carol", "!downtime announce 1")
    assert not any("no answer yet" in line for line in out)
    assert ("#ci Note: the draft is not confirmed yet by dora@example.org (working in the downtime: "
            "!downtime confirm)") in out


# ----- 4. the people working in the downtime confirm the draft --------------------------------


def test_the_draft_asks_the_people_working_in_the_downtime_to_confirm_in_chat_and_by_mail(chat: Chat) -> None:
    out = approved(chat)
    assert ("#ci alice, bob: The draft notice of downtime #1 (2026-12-05 14:00 UTC (06:00 America/Los_Angeles) for 2h "
            "(until 16:00 UTC (08:00 America/Los_Angeles))) went out: the people working in it, please check its wording and confirm it with "
            "!downtime confirm 1 (see !downtime notice 1); not in chat, told by mail only: dora@example.org") in out
    draft = chat.mailer.sent[-1]
    assert draft.to == ("bob@example.org", "dora@example.org", "alice@example.org", "release@example.org")
    assert "Working in this downtime (alice, bob, dora@example.org)" in draft.body
    assert "!downtime confirm 1" in draft.body


def test_a_worker_confirms_the_draft_and_show_lists_who_has_and_who_has_not(chat: Chat) -> None:
    approved(chat)
    assert "#ci Draft confirmed by: nobody yet; not yet: alice, bob, dora@example.org" in show(chat)

    out = chat.say("bob", "!downtime confirm 1")
    assert out == ["#ci Downtime #1: draft confirmed by bob.",
                   "#ci Note: the draft is not confirmed yet by alice, dora@example.org (working in the downtime: "
                   "!downtime confirm)"]
    assert "#ci Draft confirmed by: bob; not yet: alice, dora@example.org" in show(chat)
    chat.say("alice", "!downtime confirm 1")
    assert "#ci Draft confirmed by: alice, bob; not yet: dora@example.org" in show(chat)
    assert any(") confirm" in line for line in history(chat))


def test_a_confirm_from_someone_not_working_in_the_downtime_is_refused_in_one_line(chat: Chat) -> None:
    approved(chat)
    before = show(chat)
    for who in ("mallory", "pat", "carol"):
        out = chat.say(who, "!downtime confirm 1")
        assert out == ["#ci only the people working in downtime #1 confirm its draft: alice, bob, dora@example.org"]
    assert show(chat) == before


def test_a_confirm_before_there_is_a_draft_is_refused_in_one_line(chat: Chat) -> None:
    out = chat.say("alice", "!downtime confirm 1")
    assert out == ["#ci downtime #1 is proposed; its draft can be confirmed only when it is approved or announced"]
    assert not any("confirm" in line for line in history(chat))


def test_an_unidentified_sender_cannot_confirm(chat: Chat) -> None:
    approved(chat)
    out = chat.say(None, "!downtime confirm 1")
    assert out == ["#ci identify with services first: anon is not logged in to an account, and changes are made by account"]


def test_the_assignee_of_a_security_bug_is_neither_named_nor_mentioned_in_public(tmp_path: Path) -> None:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"}, mail=MAIL,
                         people={"sec": "sec, sec@example.org"})
    fake = FakeBugzilla()
    fake.add_bug(888888, "Heap overflow", "sec@example.org", flags=[(FLAG, "?")], groups=["core-security"])
    chat = Chat(config, FakeClock(NOW), bugzilla=fake)
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 888888 -- Upgrade hg.mozilla.org")
    out = chat.say("carol", "!downtime approve 1")
    said = [line for line in out if "draft notice of downtime" in line]
    assert said and all("sec" not in line for line in said)
    assert "the assignee of bug 888888" in said[0]
    assert chat.say("sec", "!downtime confirm 1")[0] == "#ci Downtime #1: draft confirmed by sec."
    assert "#ci Draft confirmed by: the assignee of bug 888888; not yet: alice" in chat.say("carol", "!downtime show 1")
    chat.close()


def test_the_help_of_confirm_does_not_promise_it_to_admins_who_are_not_working_in_the_downtime(chat: Chat) -> None:
    out = chat.say("bob", "!downtime help confirm")
    assert "#ci Who: the people working in the downtime." in out
    assert "#ci Who: ciduty (admins may do everything)." in chat.say("bob", "!downtime help approve")
