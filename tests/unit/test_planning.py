"""Each planning rule with its own message, the windows, and the slot search.

The rules are pure; their messages come from the ``rule`` macro of templates/_macros.txt,
rendered here with the command prefix "?" to show that the hint follows the configuration."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.templates import Renderer
from models import planning
from models.planning import Policy, PolicyError, Slot

MACROS = Renderer(prefix="?").env.get_template("_macros.txt").module


def message(failure: planning.RuleFailure) -> str:
    return str(MACROS.rule(failure))  # type: ignore[attr-defined]

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # a Tuesday
SAT = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
H = dt.timedelta(hours=1)

POLICY = Policy(
    low_impact=planning.parse_windows("mon-fri 04:00-08:00 UTC, sat-sun 00:00-24:00 UTC"),
    ciduty_hours=planning.parse_windows("daily 04:00-22:00 UTC"),
    blackouts=planning.parse_blackouts("2026-12-15/2026-12-16 Firefox 147 release"),
)


def rules(start: dt.datetime, end: dt.datetime, *, now: dt.datetime = NOW, others=()) -> dict[str, planning.RuleFailure]:  # type: ignore[no-untyped-def]
    return {f.rule: f for f in planning.check(start, end, now=now, policy=POLICY, others=others)}


def test_a_saturday_afternoon_with_notice_passes_every_rule() -> None:
    assert rules(SAT, SAT + 2 * H) == {}


def test_less_than_min_notice_fails_the_notice_rule_counted_to_the_announcement() -> None:
    failure = rules(SAT, SAT + 2 * H, now=SAT - 5 * H)["notice"]
    assert failure.hard
    assert message(failure) == "only 5h notice before 2026-12-05 14:00 UTC; the process asks for at least 24h"


def test_an_overlap_with_another_downtime_is_a_hard_failure_naming_it() -> None:
    other = Slot(4, SAT + H, SAT + 3 * H)
    failure = rules(SAT, SAT + 2 * H, others=[other])["overlap"]
    assert failure.hard and failure.other_ids == (4,)
    assert message(failure) == "overlaps downtime #4"


def test_a_downtime_near_another_is_a_warning_offering_consolidation() -> None:
    other = Slot(9, SAT + 10 * H, SAT + 11 * H)
    failures = rules(SAT, SAT + 2 * H, others=[other])
    assert "overlap" not in failures
    assert not failures["near"].hard
    assert message(failures["near"]) == "within 24h of downtime #9: consider consolidating (?downtime merge)"


def test_a_weekday_afternoon_is_outside_the_low_impact_times() -> None:
    tuesday = dt.datetime(2026, 12, 8, 14, 0, tzinfo=UTC)
    failure = rules(tuesday, tuesday + H)["low_impact"]
    assert not failure.hard
    assert "mon-fri 04:00-08:00 UTC" in message(failure)


def test_low_impact_windows_that_touch_cover_a_downtime_across_midnight() -> None:
    late_saturday = dt.datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
    assert "low_impact" not in rules(late_saturday, late_saturday + 2 * H)


def test_a_downtime_in_a_blackout_is_a_hard_failure_with_its_label() -> None:
    day = dt.datetime(2026, 12, 16, 5, 0, tzinfo=UTC)
    failure = rules(day, day + H)["blackout"]
    assert failure.hard
    assert "Firefox 147 release" in message(failure)


def test_outside_ciduty_hours_is_a_warning() -> None:
    night = dt.datetime(2026, 12, 5, 22, 30, tzinfo=UTC)
    failure = rules(night, night + H)["ciduty_hours"]
    assert not failure.hard and "daily 04:00-22:00 UTC" in message(failure)


def test_windows_follow_daylight_saving_in_their_zone() -> None:
    windows = planning.parse_windows("daily 09:00-10:00 America/New_York")
    winter = dt.datetime(2026, 12, 2, 14, 0, tzinfo=UTC)  # 09:00 EST
    summer = dt.datetime(2026, 7, 2, 13, 0, tzinfo=UTC)  # 09:00 EDT
    assert planning.covered(winter, winter + H, windows)
    assert planning.covered(summer, summer + H, windows)
    assert not planning.covered(summer + H, summer + 2 * H, windows)


@pytest.mark.parametrize(
    "text",
    ["mon-fri 25:00-26:00 UTC", "someday 04:00-08:00 UTC", "mon 08:00-04:00 UTC", "mon 04:00-08:00 Mars/Olympus", "04:00"],
)
def test_bad_windows_in_the_policy_are_refused_with_the_entry(text: str) -> None:
    with pytest.raises(PolicyError):
        planning.parse_windows(text)


def test_blackouts_cover_whole_utc_days() -> None:
    (blackout,) = planning.parse_blackouts("2026-12-24 Christmas Eve")
    assert blackout.start == dt.datetime(2026, 12, 24, tzinfo=UTC)
    assert blackout.end == dt.datetime(2026, 12, 25, tzinfo=UTC)
    with pytest.raises(PolicyError):
        planning.parse_blackouts("24/12/2026 Christmas")


def test_suggest_finds_three_slots_that_pass_every_rule_one_per_day() -> None:
    slots = planning.suggest(2 * H, now=NOW, policy=POLICY, others=[])
    assert len(slots) == 3
    assert len({s.date() for s in slots}) == 3
    for start in slots:
        assert planning.check(start, start + 2 * H, now=NOW, policy=POLICY, others=[]) == []
    assert slots[0] == dt.datetime(2026, 12, 3, 4, 0, tzinfo=UTC)


def test_suggest_skips_slots_taken_or_near_other_downtimes() -> None:
    taken = Slot(1, dt.datetime(2026, 12, 3, 4, 0, tzinfo=UTC), dt.datetime(2026, 12, 3, 8, 0, tzinfo=UTC))
    slots = planning.suggest(2 * H, now=NOW, policy=POLICY, others=[taken])
    for start in slots:
        assert abs(start - taken.start) > dt.timedelta(hours=24)


def _suggest_by_brute_force(duration: dt.timedelta, policy: Policy, others: list[Slot]) -> list[dt.datetime]:
    """Every half hour for 90 days, checked with `check` alone: what `suggest` must agree with."""
    step, found = dt.timedelta(minutes=30), []
    candidate = planning._step_at_or_after(NOW + policy.min_notice, step)
    while len(found) < 3 and candidate < NOW + dt.timedelta(days=90):
        if not planning.check(candidate, candidate + duration, now=NOW, policy=policy, others=others):
            found.append(candidate)
            candidate = dt.datetime.combine(candidate.date() + dt.timedelta(days=1), dt.time(), UTC)
        else:
            candidate += step
    return found


WINDOWS = ["mon-fri 04:00-08:00 UTC, sat-sun 00:00-24:00 UTC", "daily 02:00-05:00 Europe/Berlin", "",
           "mon-fri 22:00-24:00 America/Los_Angeles, tue-sat 00:00-03:00 America/Los_Angeles"]


@settings(max_examples=40, deadline=None)
@given(low=st.sampled_from(WINDOWS), ciduty=st.sampled_from(["daily 04:00-22:00 UTC", "", "mon-fri 00:00-24:00 UTC"]),
       half_hours=st.integers(1, 96), starts=st.lists(st.integers(0, 2000), max_size=4))
def test_suggest_finds_what_checking_every_half_hour_finds(low: str, ciduty: str, half_hours: int, starts: list[int]) -> None:
    policy = Policy(low_impact=planning.parse_windows(low), ciduty_hours=planning.parse_windows(ciduty),
                    blackouts=planning.parse_blackouts("2026-12-15/2026-12-16 release"))
    others = [Slot(i, NOW + s * dt.timedelta(minutes=30), NOW + s * dt.timedelta(minutes=30) + 3 * H)
              for i, s in enumerate(starts)]
    duration = half_hours * dt.timedelta(minutes=30)
    assert planning.suggest(duration, now=NOW, policy=policy, others=others) == _suggest_by_brute_force(
        duration, policy, others
    )
