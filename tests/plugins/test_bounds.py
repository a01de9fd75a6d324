"""Bounds on what people can make the bot store, repeat or compute (issue 12, items 10 and 11)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from models import planning
from models.orm import AuditEvent, Downtime, Verdict
from tests.conftest import Chat, make_config
from tests.fakes import FakeClock

PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade the hg servers"
# Bidirectional overrides and isolates, zero-width spaces, joiners and marks.
INVISIBLE = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u200e\u200f"


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """[bot] max_line raised, so that the limits on what a line carries are reached at all."""
    return make_config(tmp_path, bot={"max_line": "100000"})


def stored_texts(chat: Chat) -> list[str]:
    with chat.bot.sessions() as session:
        texts = [d.summary for d in session.scalars(select(Downtime))]
        texts += [v.reason for v in session.scalars(select(Verdict))]
        texts += [a.detail for a in session.scalars(select(AuditEvent))]
    return texts


def announced(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    chat.say("carol", "!downtime approve 1")


def test_a_reason_that_forces_an_announcement_is_bounded_like_notice_wording(chat: Chat) -> None:
    announced(chat)
    chat.say("pat", "!downtime object 1 -- the release is that day")
    out = chat.say("carol", "!downtime announce 1 --force -- " + "y" * 20_000)
    assert out == ["#ci the reason is too long (20000 characters; at most 2000)"]
    assert not any("yyyy" in text for text in stored_texts(chat))


def test_with_the_default_line_limit_a_long_reason_is_refused_unread(tmp_path: Path, clock: FakeClock) -> None:
    chat = Chat(make_config(tmp_path), clock)
    try:
        chat.say("alice", PROPOSE)
        out = chat.say("pat", "!downtime object 1 -- " + "x" * 20_000)
        assert out == ["#ci the line is 20022 characters long, over the 2000 this bot reads: say it in shorter parts"]
        assert not any("xxxx" in text for text in stored_texts(chat))
    finally:
        chat.close()


def test_an_objection_longer_than_notice_wording_is_refused_as_a_reason(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    out = chat.say("pat", "!downtime object 1 -- " + "x" * 20_000)
    assert out == ["#ci the reason is too long (20000 characters; at most 2000)"]
    assert not any("xxxx" in text for text in stored_texts(chat))


def test_bidi_overrides_and_zero_width_characters_are_removed_from_wording_and_reasons(chat: Chat) -> None:
    chat.say("alice", f"!downtime propose 2026-12-05 14:00 UTC for 2h -- Up{INVISIBLE}grade the hg servers")
    out = chat.say("pat", f"!downtime object 1 -- not on{INVISIBLE} release day")
    assert out[-1] == "#ci carol: Pre-approver pat objects to downtime #1: not on release day"
    chat.say("carol", f"!downtime cancel 1 -- chem{INVISIBLE}spill")
    texts = stored_texts(chat)
    assert "Upgrade the hg servers" in texts and "not on release day" in texts and "chemspill" in texts
    assert not [t for t in texts if any(c in t for c in INVISIBLE)]


def test_a_line_naming_thousands_of_unknown_trees_gets_a_short_answer(chat: Chat) -> None:
    names = ",".join(f"tree{i}" for i in range(8000))
    out = chat.say("alice", f"!downtime propose 2026-12-05 14:00 UTC for 2h trees {names} -- Upgrade")
    assert out == [
        "#ci 8000 unknown trees (tree0, tree1, tree2, tree3, tree4, …): "
        "the trees are autoland, mozilla-central, mozilla-beta, try"
    ]


def test_one_unknown_tree_is_still_named_alone(chat: Chat) -> None:
    out = chat.say("carol", "!trees close nope -- test")
    assert out == ["#ci unknown tree nope: the trees are autoland, mozilla-central, mozilla-beta, try"]


@pytest.mark.parametrize(
    "line",
    [
        "!downtime propose 9999-12-31 20:00 UTC for 2h -- Upgrade",
        "!downtime propose 9999-12-31 23:59 UTC for 7d -- Upgrade",
        "!downtime propose 2027-12-02 10:00 UTC for 2h -- Upgrade",
        "!downtime propose in 366d for 2h -- Upgrade",
    ],
)
def test_a_start_beyond_the_horizon_is_refused_in_one_line(chat: Chat, line: str) -> None:
    out = chat.say("alice", line)
    assert out == ["#ci a downtime starts at most 365d ahead (until 2027-12-01 10:00 UTC (02:00 America/Los_Angeles)): pick an earlier start"]


@pytest.mark.parametrize("args", ["9999-12-31 20:00 UTC", "9999-12-31 20:00 UTC for 7d", "2030-01-01 00:00 UTC"])
def test_rescheduling_beyond_the_horizon_is_refused_in_one_line(chat: Chat, args: str) -> None:
    chat.say("alice", PROPOSE)
    out = chat.say("carol", f"!downtime reschedule 1 {args}")
    assert out == ["#ci a downtime starts at most 365d ahead (until 2027-12-01 10:00 UTC (02:00 America/Los_Angeles)): pick an earlier start"]


@pytest.fixture
def near_horizon(tmp_path: Path) -> Iterator[Chat]:
    harness = Chat(make_config(tmp_path, policy={"max_horizon": "30d"}), FakeClock(dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)))
    yield harness
    harness.close()


def test_the_horizon_is_configured_in_policy(near_horizon: Chat) -> None:
    out = near_horizon.say("alice", "!downtime propose 2027-01-05 14:00 UTC for 2h -- Upgrade")
    assert out == ["#ci a downtime starts at most 30d ahead (until 2026-12-31 10:00 UTC (02:00 America/Los_Angeles)): pick an earlier start"]


def test_suggest_for_a_week_long_downtime_lays_out_the_windows_once(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work done, not time: the windows' days are laid out once per search, and no start time
    that the windows cannot cover is checked against the other rules."""
    calls = {"occurrences": 0, "check": 0}
    occurrences, check = planning.Window.occurrences, planning.check

    def counted_occurrences(self: planning.Window, since: dt.datetime, until: dt.datetime):  # type: ignore[no-untyped-def]
        calls["occurrences"] += 1
        return occurrences(self, since, until)

    def counted_check(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["check"] += 1
        return check(*args, **kwargs)

    monkeypatch.setattr(planning.Window, "occurrences", counted_occurrences)
    monkeypatch.setattr(planning, "check", counted_check)
    out = chat.say("bob", "!downtime suggest 7d")
    assert out == ["#ci No start time in the next 90 days passes every rule for 7d."]
    assert calls["occurrences"] <= 3  # one per configured window (today: ~13,000)
    assert calls["check"] == 0  # no week fits the low-impact times (today: 4,320 checks)
    out = chat.say("bob", "!downtime suggest 2h")
    assert len(out) == 3 and out[0].startswith("#ci 1. 2026-12-03 04:00 UTC")  # the search still finds slots


def test_suggest_checks_at_most_a_bounded_number_of_start_times() -> None:
    now = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)
    policy = planning.Policy(blackouts=planning.parse_blackouts("2026-12-01/2027-12-31 freeze"))
    search = planning.Search()
    assert planning.suggest(dt.timedelta(days=7), now=now, policy=policy, others=[], search=search,
                            horizon=dt.timedelta(days=365)) == []
    assert search.examined == planning.MAX_CANDIDATES


def test_a_downtime_holds_a_bounded_number_of_bugs(chat: Chat) -> None:
    many = ",".join(str(100_000 + i) for i in range(1000))
    out = chat.say("alice", f"!downtime propose 2026-12-05 14:00 UTC for 2h bug {many} -- Upgrade")
    assert out == [
        "#ci a downtime holds at most 50 bugs (this would make 1000): track the others in one bug, "
        "or ask for another downtime"
    ]
    fifty = ",".join(str(100_000 + i) for i in range(50))
    assert chat.say("alice", f"!downtime propose 2026-12-05 14:00 UTC for 2h bug {fifty} -- Upgrade")[0].startswith(
        "#ci Downtime #1 proposed"
    )
    assert chat.say("alice", "!downtime bug add 1 654321")[0].startswith("#ci a downtime holds at most 50 bugs")


def test_a_bugzilla_summary_is_stored_without_bidi_or_zero_width_characters(tmp_path: Path) -> None:
    from models.orm import DowntimeBug
    from tests.fakes import FakeBugzilla

    bugzilla = FakeBugzilla()
    bugzilla.add_bug(123456, summary=f"Move the\u202e build{INVISIBLE} database " + "z" * 5000)
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    chat = Chat(config, FakeClock(dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)), bugzilla=bugzilla)
    try:
        chat.say("alice", PROPOSE)
        with chat.bot.sessions() as session:
            (summary,) = session.scalars(select(DowntimeBug.summary))
        assert summary.startswith("Move the build database zzz") and len(summary) == 2000
    finally:
        chat.close()


def test_invisible_characters_in_a_command_line_are_dropped_before_it_is_read(chat: Chat) -> None:
    out = chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h trees auto\u200bland -- Up\u202egrade")
    assert out[0].startswith("#ci Downtime #1 proposed by alice")
    assert chat.say("bob", "!downtime show 1\u200b")[0].endswith("for 2h (until 16:00 UTC (08:00 America/Los_Angeles)): Upgrade")
