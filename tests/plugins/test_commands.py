"""The commands through the dispatcher, as chat transcripts: rules, roles, and every kind of bad input."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from models.orm import AuditEvent, Downtime, DowntimeBug, Verdict
from tests.conftest import Chat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade the hg servers"


def count(chat: Chat, model) -> int:  # type: ignore[no-untyped-def]
    with chat.bot.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def snapshot(chat: Chat) -> tuple:  # type: ignore[type-arg]
    with chat.bot.sessions() as session:
        rows = session.scalars(select(Downtime).order_by(Downtime.id)).all()
        state = tuple((d.id, d.state, d.start_at, d.end_at, d.revision, len(d.bugs)) for d in rows)
    return state, count(chat, AuditEvent), count(chat, Verdict), count(chat, DowntimeBug)


def announced(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    chat.say("carol", "!downtime approve 1")
    chat.say("carol", "!downtime announce 1")


def test_a_proposal_that_breaks_soft_rules_warns_everyone_in_the_channel(chat: Chat) -> None:
    out = chat.say("alice", "!downtime propose 2026-12-01 15:00 UTC for 1h -- Reboot nagios.mozilla.org")
    assert out[0].startswith("#ci Downtime #1 proposed by alice")
    assert "#ci Warning (notice): only 5h notice before 2026-12-01 15:00 UTC (07:00 America/Los_Angeles); the process asks for at least 24h" in out
    assert any(line.startswith("#ci Warning (low impact): outside the low-impact times") for line in out)


def test_a_proposal_near_another_is_offered_for_consolidation_and_merge_moves_the_bugs(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    out = chat.say("bob", "!downtime propose 2026-12-05 20:00 UTC for 1h bug 777 -- Reboot nagios")
    assert "#ci Warning (near): within 24h of downtime #1: consider consolidating (!downtime merge)" in out
    out = chat.say("carol", "!downtime merge 1 2")
    assert out[0] == "#ci Downtime #1 now holds the work of #2."
    assert "#ci Note: moved bug 777 from #2" in out
    assert "#ci Note: downtime #2 is cancelled (merged into #1)" in out
    show = chat.say("alice", "!downtime show 2")
    assert show[0].startswith("#ci #2 [cancelled]")


def test_announce_refuses_a_hard_rule_unless_forced_and_the_reason_is_logged(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-01 20:00 UTC for 1h bug 1 -- Quick fix")
    chat.say("carol", "!downtime approve 1")
    out = chat.say("carol", "!downtime announce 1")
    assert out == [
        "#ci cannot announce downtime #1: only 10h notice before 2026-12-01 20:00 UTC (12:00 America/Los_Angeles); the process asks for at least 24h "
        "(to announce anyway: !downtime announce 1 --force -- <reason>)"
    ]
    out = chat.say("carol", "!downtime announce 1 --force -- chemspill fix must land")
    assert out[0].startswith("#ci Downtime #1 announced")
    history = chat.say("alice", "!downtime history 1")
    assert any("announce approved → announced: forced: chemspill fix must land" in line for line in history)


def test_an_open_objection_blocks_the_announcement_until_withdrawn(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    chat.say("carol", "!downtime approve 1")
    out = chat.say("pat", "!downtime object 1 -- release day")
    assert out[0] == "#ci Downtime #1: objection by pat recorded; CiDuty is told."
    assert "#ci carol: Pre-approver pat objects to downtime #1: release day" in out
    out = chat.say("carol", "!downtime announce 1")
    assert out[0].startswith("#ci cannot announce downtime #1: pat objects: release day")
    chat.say("pat", "!downtime preapprove 1")
    assert chat.say("carol", "!downtime announce 1")[0].startswith("#ci Downtime #1 announced")


def test_rescheduling_an_announced_downtime_resets_preapprovals_and_needs_a_new_announcement(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    chat.say("carol", "!downtime approve 1")
    chat.say("pat", "!downtime preapprove 1")
    chat.say("carol", "!downtime announce 1")
    out = chat.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC for 3h")
    assert out[0].startswith("#ci Downtime #1 rescheduled to 2026-12-06 14:00 UTC")
    assert "#ci Note: 1 pre-approval(s) reset for the new time: they must answer again" in out
    assert "#ci Note: announce it again with !downtime announce 1" in out
    assert any(l.startswith("#developers Downtime #1 is rescheduled: it was 2026-12-05 14:00 UTC") for l in out)
    assert chat.say("alice", "!downtime show 1")[0].startswith("#ci #1 [approved] 2026-12-06 14:00 UTC")
    assert chat.mailer.sent[-2].subject.startswith("Re: Tree-closing downtime #1: rescheduled")
    assert chat.mailer.sent[-1].subject.startswith("[DRAFT] Tree-closing downtime #1: 2026-12-06 14:00 UTC")


def test_starting_more_than_an_hour_early_needs_force(chat: Chat) -> None:
    announced(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    out = chat.say("carol", "!downtime start 1")
    assert out == [
        "#ci downtime #1 is announced for 2026-12-05 14:00 UTC (06:00 America/Los_Angeles), more than an hour from now: "
        "use !downtime start 1 --force to start it early"
    ]
    assert chat.say("carol", "!downtime start 1 --force")[0] == "#ci Downtime #1 started; sheriffs notified."


def test_cancelling_an_announced_downtime_tells_every_channel_and_list_again(chat: Chat) -> None:
    announced(chat)
    out = chat.say("carol", "!downtime cancel 1 -- chemspill release")
    assert out[0] == "#ci Downtime #1 cancelled."
    assert "#developers Downtime #1 (2026-12-05 14:00 UTC (06:00 America/Los_Angeles)) is CANCELLED: chemspill release" in out
    assert chat.mailer.sent[-1].subject == "Re: Tree-closing downtime #1: CANCELLED"
    assert chat.mailer.sent[-1].in_reply_to == chat.mailer.sent[-2].message_id


def test_extend_moves_the_end_and_tells_everyone(chat: Chat) -> None:
    announced(chat)
    out = chat.say("carol", "!downtime extend 1 30m")
    assert out[0].startswith("#ci Downtime #1 now ends at 2026-12-05 16:30 UTC")
    assert any("trees reopen at about 2026-12-05 16:30 UTC" in l for l in out)
    assert chat.say("carol", "!downtime extend 1 7d")[0] == "#ci a downtime lasts at most 7d, extensions included"


def test_suggest_lists_three_start_times_in_utc_and_the_display_zone(chat: Chat) -> None:
    out = chat.say("alice", "!downtime suggest 2h")
    assert out == [
        "#ci 1. 2026-12-03 04:00 UTC (Wed 2026-12-02 20:00 America/Los_Angeles)",
        "#ci 2. 2026-12-04 04:00 UTC (Thu 2026-12-03 20:00 America/Los_Angeles)",
        "#ci 3. 2026-12-05 04:00 UTC (Fri 2026-12-04 20:00 America/Los_Angeles)",
    ]


def test_list_is_paged_ten_at_a_time(chat: Chat) -> None:
    for day in range(12):
        chat.clock.advance(dt.timedelta(seconds=10))  # within [bot] rate_limit
        chat.say("alice", f"!downtime propose 2026-12-{10 + day:02d} 05:00 UTC for 1h -- work {day}")
    out = chat.say("alice", "!downtime list")
    assert len(out) == 11 and out[-1] == "#ci Page 1 of 2: next !downtime list upcoming 2"
    out = chat.say("alice", "!downtime list upcoming 2")
    assert out == [
        "#ci #11 [proposed] 2026-12-20 05:00 UTC (Sat 2026-12-19 21:00 America/Los_Angeles), 1h: work 10",
        "#ci #12 [proposed] 2026-12-21 05:00 UTC (Sun 2026-12-20 21:00 America/Los_Angeles), 1h: work 11",
        "#ci Page 2 of 2",
    ]


def test_someone_not_identified_gets_identify_with_services_first(chat: Chat) -> None:
    out = chat.say(None, PROPOSE)
    assert out == ["#ci identify with services first: anon is not logged in to an account, and changes are made by account"]
    assert count(chat, Downtime) == 0


def test_help_lists_the_commands_and_explains_one_with_an_example(chat: Chat) -> None:
    out = chat.say("alice", "!downtime help")
    assert out == [
        "#ci Commands: !downtime propose, list, show, bug add, bug drop, approve, reject, preapprove, object, confirm, notice, "
        "announce, reschedule, extend, cancel, edit, start, done, end, verify, queue, suggest, merge, systems, history, help; "
        "also !trees, !trees close, !trees open, !trees restore, !trees confirm, !canipush, !help. Usage and an example: "
        "!downtime help <subcommand>"
    ]
    out = chat.say("alice", "!downtime help approve")
    assert out == [
        "#ci !downtime approve <id>",
        "#ci CiDuty approves a proposal: its bugs get needs-treeclosure+ and the time in the whiteboard, and the draft "
        "notice goes to the pre-approvers. Once approved or announced, it approves the bugs and changes added since "
        "(a bug with nobody assigned waits); an announced downtime's updated notice goes to everyone told before.",
        "#ci Who: ciduty (admins may do everything).",
        "#ci Example: !downtime approve 7",
    ]


BAD_INPUT = [
    ("alice", "!downtime frobnicate", "no subcommand frobnicate of !downtime: see !downtime help"),
    ("alice", "!downtime show", "missing the downtime id (usage: !downtime show <id>)"),
    ("alice", "!downtime show 1 2", "unexpected '2' (usage: !downtime show <id>)"),
    ("alice", "!downtime show 99", "there is no downtime #99 (see !downtime list)"),
    ("alice", "!downtime show abc", "'abc' is not a downtime id (a number such as 7) (usage: !downtime show <id>)"),
    ("alice", "!downtime propose 2020-01-01 10:00 UTC for 1h -- old", "2020-01-01 10:00 UTC (02:00 America/Los_Angeles) is in the past (it is now 2026-12-01 10:00 UTC (02:00 America/Los_Angeles))"),
    ("alice", "!downtime propose 2026-12-05 14:00 for 1h -- x", "no time zone in '2026-12-05 14:00'"),
    ("alice", "!downtime propose 2026-12-05 14:00 Mars/Olympus for 1h -- x", "Mars/Olympus"),
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 0m -- x", "(usage: !downtime propose"),
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 8d -- x", "(usage: !downtime propose"),
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h --", "the notice wording is empty"),
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h", "the notice wording is missing"),
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug abc -- x", "'abc' is not a bug number"),
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h trees nope -- x", "unknown tree nope"),
    ("alice", "!downtime bug add 1 12x", "'12x' is not a bug number"),
    ("alice", "!downtime done 1 123456 exploded", "'exploded' is not an outcome"),
    ("alice", "!downtime approve 1", "only CiDuty may approve downtime #1"),
    ("carol", "!downtime start 1", "downtime #1 is proposed; it can be started only when it is announced"),
    ("carol", "!downtime reject 1", "say why after ' -- '"),
    ("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- a\x03bold\x00", "control characters"),
    ("alice", "!downtime list sideways", "'sideways' is not a page number"),
    ("carol", "!downtime announce 1 -- because", "a reason after -- goes with --force"),
]


@pytest.mark.parametrize(("who", "line", "answer"), BAD_INPUT, ids=[b[1][:40] for b in BAD_INPUT])
def test_bad_input_gets_one_specific_line_and_changes_nothing(chat: Chat, who: str, line: str, answer: str) -> None:
    chat.say("alice", PROPOSE)
    before = snapshot(chat)
    out = chat.say(who, line)
    assert len(out) == 1
    assert answer in out[0]
    assert snapshot(chat) == before


def test_an_unexpected_error_is_logged_with_a_reference_and_no_traceback_reaches_the_channel(chat: Chat, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    from models.queries import Queries

    def boom(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database on fire")

    monkeypatch.setattr(Queries, "listing", boom)
    out = chat.say("alice", "!downtime list")
    assert len(out) == 1 and out[0].startswith("#ci sorry, something went wrong (ref ")
    ref = out[0].split("(ref ")[1][:8]
    assert "Traceback" not in out[0] and "database on fire" not in out[0]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)


def test_lines_for_other_bots_or_chatter_get_no_answer(chat: Chat) -> None:
    assert chat.say("alice", "hello everyone") == []
    assert chat.say("alice", "!weather Berlin") == []
    assert chat.say("alice", "! downtime list") == []
