"""Start times, durations and zones as typed in chat, read by models.timeparse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from models.timeparse import (
    TimeParseError,
    format_duration,
    format_time,
    parse_duration,
    parse_start,
    validate_zone,
)

# Friday 2026-12-04 10:00 UTC unless a test says otherwise.
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def refusal(text: str, now: datetime = NOW) -> str:
    with pytest.raises(TimeParseError) as caught:
        parse_start(text, now)
    return str(caught.value)


def duration_refusal(text: str, **bounds: timedelta) -> str:
    with pytest.raises(TimeParseError) as caught:
        parse_duration(text, **bounds)
    return str(caught.value)


# --- absolute start times -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05 14:00 UTC", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05 14:00 Z", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05T14:00Z", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05T14:00:00Z", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05T14:00:30Z", utc(2026, 12, 5, 14, 0, 30)),
        ("2026-12-05T14:00+01:00", utc(2026, 12, 5, 13, 0)),
        ("2026-12-05 14:00 +0100", utc(2026, 12, 5, 13, 0)),
        ("2026-12-05 14:00 -08:00", utc(2026, 12, 5, 22, 0)),
        ("2026-12-05 14:00 +05:30", utc(2026, 12, 5, 8, 30)),
        ("2026-12-05 14:00 +1", utc(2026, 12, 5, 13, 0)),
        ("2026-12-05 14:00 UTC+1", utc(2026, 12, 5, 13, 0)),
        ("2026-12-05 06:00 America/Los_Angeles", utc(2026, 12, 5, 14, 0)),
        ("2026-07-05 06:00 America/Los_Angeles", utc(2026, 7, 5, 13, 0)),
        ("2026-12-05 15:00 Europe/Berlin", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05 14:00 GMT", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05 14:00 Etc/UTC", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05 2pm UTC", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05 2:30pm UTC", utc(2026, 12, 5, 14, 30)),
        ("2026-12-05 12am UTC", utc(2026, 12, 5, 0, 0)),
        ("2026-12-05 12pm UTC", utc(2026, 12, 5, 12, 0)),
        ("2026-12-05 9:05 UTC", utc(2026, 12, 5, 9, 5)),
        ("2026-12-05 00:00 UTC", utc(2026, 12, 5, 0, 0)),
        ("2026-12-05 23:59 UTC", utc(2026, 12, 5, 23, 59)),
    ],
)
def test_reads_absolute_start_times_in_every_documented_form(text: str, expected: datetime) -> None:
    assert parse_start(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05t14:00z", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05 14:00 utc", utc(2026, 12, 5, 14, 0)),
        ("2026-12-05 14:00 europe/berlin", utc(2026, 12, 5, 13, 0)),
        ("2026-12-05 2PM Europe/Berlin", utc(2026, 12, 5, 13, 0)),
        ("  2026-12-05   14:00\tEurope/Berlin  ", utc(2026, 12, 5, 13, 0)),
    ],
)
def test_reads_letters_in_any_case_and_extra_whitespace(text: str, expected: datetime) -> None:
    assert parse_start(text, NOW) == expected


def test_returns_an_aware_utc_datetime_even_for_a_local_zone() -> None:
    start = parse_start("2026-12-05 06:00 America/Los_Angeles", NOW)

    assert start.tzinfo is UTC
    assert start.utcoffset() == timedelta(0)


def test_returns_times_in_the_past_unrefused_for_the_caller_to_judge() -> None:
    assert parse_start("2020-01-01 00:00 UTC", NOW) == utc(2020, 1, 1, 0, 0)


def test_refuses_a_naive_now_as_a_programming_error_not_as_user_input() -> None:
    with pytest.raises(ValueError) as caught:
        parse_start("in 2h", datetime(2026, 12, 4, 10, 0))

    assert not isinstance(caught.value, TimeParseError)


# --- relative start times -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 2h", NOW + timedelta(hours=2)),
        ("in 1h30m", NOW + timedelta(hours=1, minutes=30)),
        ("in 3d", NOW + timedelta(days=3)),
        ("in 45 minutes", NOW + timedelta(minutes=45)),
        ("IN 2H", NOW + timedelta(hours=2)),
        ("in 1m", NOW + timedelta(minutes=1)),
    ],
)
def test_reads_in_durations_relative_to_now_without_a_zone(text: str, expected: datetime) -> None:
    assert parse_start(text, NOW) == expected


def test_in_durations_count_elapsed_time_across_a_dst_change() -> None:
    before_spring_forward = utc(2026, 3, 7, 17, 0)

    assert parse_start("in 1d", before_spring_forward) == utc(2026, 3, 8, 17, 0)


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        ("today 14:00 UTC", NOW, utc(2026, 12, 4, 14, 0)),
        ("tomorrow 14:00 UTC", NOW, utc(2026, 12, 5, 14, 0)),
        ("Tomorrow 2pm UTC", NOW, utc(2026, 12, 5, 14, 0)),
        # 23:30 UTC is already 00:30 the next day in Berlin: Berlin's tomorrow is two UTC days on.
        ("tomorrow 08:00 Europe/Berlin", utc(2026, 12, 4, 23, 30), utc(2026, 12, 6, 7, 0)),
        ("today 08:00 Europe/Berlin", utc(2026, 12, 4, 23, 30), utc(2026, 12, 5, 7, 0)),
        # 03:00 UTC on the 6th is still the evening of the 5th in Los Angeles.
        ("tomorrow 14:00 America/Los_Angeles", utc(2026, 12, 6, 3, 0), utc(2026, 12, 6, 22, 0)),
        ("today 20:00 America/Los_Angeles", utc(2026, 12, 6, 3, 0), utc(2026, 12, 6, 4, 0)),
        ("tomorrow 00:00 UTC", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1, 0, 0)),
        ("today 23:00 +14:00", utc(2026, 12, 4, 10, 0), utc(2026, 12, 5, 9, 0)),
    ],
)
def test_resolves_today_and_tomorrow_in_the_given_zone(
    text: str, now: datetime, expected: datetime
) -> None:
    assert parse_start(text, now) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sat 08:00 Europe/Berlin", utc(2026, 12, 5, 7, 0)),
        ("saturday 08:00 Europe/Berlin", utc(2026, 12, 5, 7, 0)),
        ("SAT 08:00 Europe/Berlin", utc(2026, 12, 5, 7, 0)),
        ("sun 14:00 UTC", utc(2026, 12, 6, 14, 0)),
        ("mon 14:00 UTC", utc(2026, 12, 7, 14, 0)),
        ("tues 14:00 UTC", utc(2026, 12, 8, 14, 0)),
        ("wednesday 14:00 UTC", utc(2026, 12, 9, 14, 0)),
        ("thurs 14:00 UTC", utc(2026, 12, 10, 14, 0)),
    ],
)
def test_reads_short_and_long_weekday_names_as_the_next_such_day(
    text: str, expected: datetime
) -> None:
    assert parse_start(text, NOW) == expected  # NOW is a Friday


def test_a_weekday_typed_on_that_weekday_means_a_week_later() -> None:
    friday_morning = NOW

    assert parse_start("fri 23:00 UTC", friday_morning) == utc(2026, 12, 11, 23, 0)


def test_weekdays_are_counted_in_the_given_zone_near_midnight() -> None:
    friday_late_utc = utc(2026, 12, 4, 23, 30)  # already Saturday 08:30 in Tokyo

    assert parse_start("sat 10:00 UTC", friday_late_utc) == utc(2026, 12, 5, 10, 0)
    assert parse_start("sat 10:00 Asia/Tokyo", friday_late_utc) == utc(2026, 12, 12, 1, 0)


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        # New York springs forward on Sunday 2026-03-08: noon is EST on Saturday, EDT on Sunday.
        ("today 12:00 America/New_York", utc(2026, 3, 7, 15, 0), utc(2026, 3, 7, 17, 0)),
        ("tomorrow 12:00 America/New_York", utc(2026, 3, 7, 15, 0), utc(2026, 3, 8, 16, 0)),
        ("sun 12:00 America/New_York", utc(2026, 3, 7, 15, 0), utc(2026, 3, 8, 16, 0)),
        # Berlin falls back on Sunday 2026-10-25.
        ("tomorrow 12:00 Europe/Berlin", utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 11, 0)),
        ("today 12:00 Europe/Berlin", utc(2026, 10, 24, 12, 0), utc(2026, 10, 24, 10, 0)),
    ],
)
def test_relative_days_keep_the_wall_clock_time_across_dst_changes(
    text: str, now: datetime, expected: datetime
) -> None:
    assert parse_start(text, now) == expected


# --- daylight saving time -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "gap"),
    [
        ("2026-03-08 02:30 America/New_York", "clocks jump from 02:00 to 03:00"),
        ("2026-03-08 02:00 America/New_York", "clocks jump from 02:00 to 03:00"),
        ("2026-03-29 02:30 Europe/Berlin", "clocks jump from 02:00 to 03:00"),
        ("2026-10-04 02:15 Australia/Lord_Howe", "clocks jump from 02:00 to 02:30"),
    ],
)
def test_refuses_a_local_time_skipped_by_spring_forward_naming_the_gap(text: str, gap: str) -> None:
    message = refusal(text)

    assert "does not exist" in message
    assert gap in message
    assert text.split()[-1] in message


def test_the_example_in_a_gap_refusal_is_itself_accepted() -> None:
    message = refusal("2026-03-08 02:30 America/New_York")
    example = message.split("e.g. '")[1].rstrip("'")

    assert example == "2026-03-08 03:30 America/New_York"
    assert parse_start(example, NOW) == utc(2026, 3, 8, 7, 30)


def test_refuses_a_relative_time_that_lands_in_a_gap() -> None:
    saturday_before_spring_forward = utc(2026, 3, 7, 15, 0)

    assert "does not exist" in refusal("tomorrow 02:30 America/New_York",
                                       saturday_before_spring_forward)


@pytest.mark.parametrize(
    ("text", "offsets"),
    [
        ("2026-11-01 01:30 America/New_York", ("-0400", "-0500")),
        ("2026-10-25 02:30 Europe/Berlin", ("+0200", "+0100")),
        ("2026-04-05 01:45 Australia/Lord_Howe", ("+1100", "+1030")),
    ],
)
def test_refuses_a_local_time_repeated_by_fall_back_asking_for_an_offset(
    text: str, offsets: tuple[str, str]
) -> None:
    message = refusal(text)

    assert "happens twice" in message
    assert "UTC or an offset" in message
    for offset in offsets:
        assert offset in message


def test_an_offset_settles_a_time_repeated_by_fall_back() -> None:
    assert parse_start("2026-11-01 01:30 -0400", NOW) == utc(2026, 11, 1, 5, 30)
    assert parse_start("2026-11-01 01:30 -0500", NOW) == utc(2026, 11, 1, 6, 30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-08 01:59 America/New_York", utc(2026, 3, 8, 6, 59)),
        ("2026-03-08 03:00 America/New_York", utc(2026, 3, 8, 7, 0)),
        ("2026-11-01 00:59 America/New_York", utc(2026, 11, 1, 4, 59)),
        ("2026-11-01 02:00 America/New_York", utc(2026, 11, 1, 7, 0)),
    ],
)
def test_accepts_the_times_either_side_of_a_dst_change(text: str, expected: datetime) -> None:
    assert parse_start(text, NOW) == expected


# --- refusals -------------------------------------------------------------------------------

def test_refuses_a_time_without_a_zone_with_examples_that_add_one() -> None:
    assert refusal("2026-12-05 14:00") == (
        "no time zone in '2026-12-05 14:00': add one, e.g. '2026-12-05 14:00 UTC' "
        "or '2026-12-05 14:00 America/Los_Angeles'"
    )


@pytest.mark.parametrize("text", ["tomorrow 14:00", "sat 8am", "2026-12-05T14:00"])
def test_never_guesses_a_zone_for_any_form(text: str) -> None:
    assert refusal(text).startswith("no time zone in")


def test_refuses_an_unknown_zone_with_iana_examples() -> None:
    message = refusal("2026-12-05 14:00 Mars/Olympus")

    assert message.startswith("unknown time zone 'Mars/Olympus'")
    assert "Europe/Berlin" in message


def test_suggests_the_nearest_zone_for_a_misspelt_one() -> None:
    assert "did you mean 'Europe/Berlin'?" in refusal("2026-12-05 14:00 Europe/Berln")


@pytest.mark.parametrize(
    ("abbreviation", "suggestion"),
    [
        ("PST", "America/Los_Angeles"),
        ("pdt", "America/Los_Angeles"),
        ("EST", "America/New_York"),
        ("CET", "Europe/Berlin"),
        ("CST", "Asia/Shanghai"),
        ("IST", "Asia/Kolkata"),
        ("BST", "Europe/London"),
    ],
)
def test_refuses_ambiguous_abbreviations_suggesting_an_iana_name(
    abbreviation: str, suggestion: str
) -> None:
    message = refusal(f"2026-12-05 14:00 {abbreviation}")

    assert f"'{abbreviation}' is ambiguous" in message
    assert suggestion in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2026-02-30 14:00 UTC", "invalid date '2026-02-30'"),
        ("2026-13-01 14:00 UTC", "invalid date '2026-13-01'"),
        ("0000-01-01 14:00 UTC", "invalid date '0000-01-01'"),
        ("2026-12-05 24:00 UTC", "invalid time of day '24:00'"),
        ("2026-12-05 14:60 UTC", "invalid time of day '14:60'"),
        ("2026-12-05 14:00:61 UTC", "invalid time of day '14:00:61'"),
        ("2026-12-05 13pm UTC", "invalid time of day '13pm'"),
        ("2026-12-05 0am UTC", "invalid time of day '0am'"),
        ("2026-12-05 14 UTC", "invalid time of day '14'"),
        ("2026-12-05 14:00 +15:00", "invalid UTC offset '+15:00'"),
        ("2026-12-05 14:00 +123", "invalid UTC offset '+123'"),
        ("2026-12-05 14:00 +01:75", "invalid UTC offset '+01:75'"),
        ("someday 14:00 UTC", "unknown day 'someday'"),
        ("sa 14:00 UTC", "unknown day 'sa'"),
        ("garbage", "can't read 'garbage' as a start time"),
        ("", "can't read '' as a start time"),
        ("2026-12-05", "can't read '2026-12-05' as a start time"),
        ("2026-12-05 14:00 UTC please", "can't read"),
        ("in soon", "can't read 'soon' as a duration"),
        ("in 0m", "longer than zero"),
        ("in -2h", "cannot be negative"),
        ("in 400d", "at most 366d"),
        ("0001-01-01 00:00 +05:00", "out of range"),
    ],
)
def test_refuses_bad_start_times_with_a_specific_one_line_message_and_an_example(
    text: str, fragment: str
) -> None:
    message = refusal(text)

    assert fragment in message
    assert "e.g." in message
    assert len(message.splitlines()) == 1


def test_refusals_shorten_long_input_and_keep_it_on_one_line() -> None:
    message = refusal("x" * 500 + "\n" + "y" * 500)

    assert len(message) < 200
    assert len(message.splitlines()) == 1


# --- durations ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1d2h", timedelta(days=1, hours=2)),
        ("1d2h30m", timedelta(days=1, hours=2, minutes=30)),
        ("7d", timedelta(days=7)),
        ("2 h", timedelta(hours=2)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("0.5d", timedelta(hours=12)),
        ("2 hours", timedelta(hours=2)),
        ("1 hour 30 minutes", timedelta(hours=1, minutes=30)),
        ("1 day", timedelta(days=1)),
        ("3 days", timedelta(days=3)),
        ("2hrs 15mins", timedelta(hours=2, minutes=15)),
        ("45 min", timedelta(minutes=45)),
        ("2H", timedelta(hours=2)),
    ],
)
def test_reads_durations_in_every_documented_form(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0m", "longer than zero"),
        ("0h0m", "longer than zero"),
        ("-2h", "cannot be negative"),
        ("3m", "'3m' is too short: at least 5m"),
        ("8d", "'8d' is too long: at most 7d"),
        ("7d1m", "at most 7d"),
        ("1.33h", "not a whole number of minutes"),
        ("30s", "can't read '30s' as a duration"),
        ("30m2h", "can't read '30m2h'"),
        ("2h2h", "can't read '2h2h'"),
        ("h", "can't read 'h'"),
        ("", "can't read '' as a duration"),
        ("two hours", "can't read 'two hours'"),
        ("9999999999d", "can't read"),
        ("999999999d", "at most 7d"),
    ],
)
def test_refuses_bad_durations_with_a_specific_one_line_message_and_an_example(
    text: str, fragment: str
) -> None:
    message = duration_refusal(text)

    assert fragment in message
    assert "e.g. '2h'" in message
    assert len(message.splitlines()) == 1


def test_honours_the_callers_bounds_and_gives_an_example_within_them() -> None:
    bounds = {"minimum": timedelta(hours=3), "maximum": timedelta(days=1)}

    assert parse_duration("3h", **bounds) == timedelta(hours=3)
    assert "at least 3h; e.g. '3h'" in duration_refusal("2h", **bounds)
    assert "at most 1d; e.g. '3h'" in duration_refusal("1d1m", **bounds)


# --- showing durations and times ------------------------------------------------------------

@pytest.mark.parametrize(
    ("d", "text"),
    [
        (timedelta(hours=2), "2h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=1), "1d"),
        (timedelta(minutes=45), "45m"),
        (timedelta(days=1, hours=2), "1d2h"),
        (timedelta(days=1, minutes=5), "1d5m"),
        (timedelta(0), "0m"),
        (timedelta(minutes=1, seconds=30), "1m30s"),
        (timedelta(hours=-2), "-2h"),
        (timedelta(days=14), "14d"),
    ],
)
def test_formats_durations_compactly(d: timedelta, text: str) -> None:
    assert format_duration(d) == text


def test_formats_a_time_in_utc_then_in_each_display_zone() -> None:
    shown = format_time(utc(2026, 12, 5, 14, 0), ["America/Los_Angeles", "Europe/Berlin"])

    assert shown == "2026-12-05 14:00 UTC (06:00 America/Los_Angeles, 15:00 Europe/Berlin)"


def test_a_time_later_today_leaves_out_its_utc_date_but_not_a_zone_s_other_date() -> None:
    now = utc(2026, 12, 5, 1, 0)

    assert format_time(utc(2026, 12, 5, 3, 30), ["America/Los_Angeles"], now=now) == (
        "03:30 UTC (Fri 2026-12-04 19:30 America/Los_Angeles)")
    assert format_time(utc(2026, 12, 6, 14, 0), ["America/Los_Angeles"], now=now) == (
        "2026-12-06 14:00 UTC (06:00 America/Los_Angeles)")


def test_shows_weekday_and_date_for_a_zone_whose_date_differs_from_utc() -> None:
    shown = format_time(utc(2026, 12, 5, 15, 30), ["Asia/Tokyo", "America/Los_Angeles"])

    assert shown == (
        "2026-12-05 15:30 UTC (Sun 2026-12-06 00:30 Asia/Tokyo, 07:30 America/Los_Angeles)"
    )


def test_shows_the_previous_day_for_a_zone_behind_utc() -> None:
    shown = format_time(utc(2026, 12, 5, 3, 30), ["America/Los_Angeles"])

    assert shown == "2026-12-05 03:30 UTC (Fri 2026-12-04 19:30 America/Los_Angeles)"


def test_does_not_repeat_utc_or_its_aliases_nor_a_zone_listed_twice() -> None:
    shown = format_time(
        utc(2026, 12, 5, 14, 0), ["UTC", "Etc/UTC", "GMT", "Europe/Berlin", "Europe/Berlin"])

    assert shown == "2026-12-05 14:00 UTC (15:00 Europe/Berlin)"


def test_shows_only_utc_without_display_zones() -> None:
    assert format_time(utc(2026, 12, 5, 14, 0), []) == "2026-12-05 14:00 UTC"


def test_converts_an_aware_time_in_another_zone_to_utc_before_showing_it() -> None:
    berlin = datetime(2026, 12, 5, 15, 0, tzinfo=ZoneInfo("Europe/Berlin"))

    assert format_time(berlin, ["Europe/Berlin"]) == "2026-12-05 14:00 UTC (15:00 Europe/Berlin)"


def test_shows_summer_and_winter_offsets_of_the_same_zone() -> None:
    assert "(16:00 Europe/Berlin)" in format_time(utc(2026, 7, 1, 14, 0), ["Europe/Berlin"])
    assert "(15:00 Europe/Berlin)" in format_time(utc(2026, 1, 1, 14, 0), ["Europe/Berlin"])


# --- zones ----------------------------------------------------------------------------------

def test_validates_an_iana_zone_in_any_case_to_its_canonical_name() -> None:
    assert validate_zone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert validate_zone("america/los_angeles").key == "America/Los_Angeles"
    assert validate_zone("UTC").key == "UTC"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("PST", "'PST' is ambiguous"),
        ("EST", "'EST' is ambiguous"),
        ("CET", "'CET' is ambiguous"),
        ("localtime", "unknown time zone 'localtime'"),
        ("Europe", "unknown time zone 'Europe'"),
        ("../../etc/passwd", "unknown time zone"),
        ("", "unknown time zone ''"),
    ],
)
def test_refuses_unknown_machine_dependent_and_ambiguous_zones(name: str, fragment: str) -> None:
    with pytest.raises(TimeParseError) as caught:
        validate_zone(name)

    assert fragment in str(caught.value)


# --- properties -----------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "2026-12-05", "2026-02-30", "9999-12-31", "0001-01-01", "today", "tomorrow", "sat", "fri",
    "in", "14:00", "2pm", "12am", "24:00", "1:5", "T", "t", "Z", "UTC", "GMT", "PST", "+01:00",
    "-0800", "+14", "-99:99", "America/New_York", "Europe/Berlin", "Mars/Olympus", "localtime",
    "2h", "1h30m", "1.5h", "-2h", "0m", "99999999d", "d", "h", "m", ":", "-", " ", "\n", "٣",
    "²", "\u2028", "ǅ", "İ", "../..", "\x00",
])
_NOWS = st.datetimes(timezones=st.just(UTC))
_REALISTIC_NOWS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@settings(max_examples=300)
@given(text=st.one_of(st.text(), st.lists(_FRAGMENTS, max_size=6).map("".join),
                      st.lists(_FRAGMENTS, max_size=6).map(" ".join)),
       now=st.one_of(_NOWS, _REALISTIC_NOWS))
def test_parse_start_raises_nothing_but_one_line_time_parse_errors(
    text: str, now: datetime
) -> None:
    try:
        start = parse_start(text, now)
    except TimeParseError as err:
        assert len(str(err).splitlines()) == 1
    else:
        assert start.tzinfo is UTC


@settings(max_examples=300)
@given(text=st.one_of(st.text(), st.lists(_FRAGMENTS, max_size=6).map("".join)))
def test_parse_duration_raises_nothing_but_one_line_time_parse_errors(text: str) -> None:
    try:
        d = parse_duration(text)
    except TimeParseError as err:
        assert len(str(err).splitlines()) == 1
    else:
        assert timedelta(minutes=5) <= d <= timedelta(days=7)


@given(minutes=st.integers(min_value=5, max_value=7 * 24 * 60))
def test_format_duration_round_trips_through_parse_duration(minutes: int) -> None:
    d = timedelta(minutes=minutes)

    assert parse_duration(format_duration(d)) == d


@given(days=st.integers(0, 6), hours=st.integers(0, 23), minutes=st.integers(0, 59),
       spelling=st.sampled_from([("d", "h", "m"), (" days", " hours", " minutes"),
                                 (" d ", " h ", " m")]))
def test_typed_durations_round_trip_to_the_canonical_form(
    days: int, hours: int, minutes: int, spelling: tuple[str, str, str]
) -> None:
    expected = timedelta(days=days, hours=hours, minutes=minutes)
    assume(expected >= timedelta(minutes=5))
    text = "".join(
        f"{n}{unit}" for n, unit in zip((days, hours, minutes), spelling, strict=True) if n)

    d = parse_duration(text)

    assert d == expected
    assert parse_duration(format_duration(d)) == d


_ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago",
          "Pacific/Chatham", "Asia/Kolkata", "America/St_Johns"]


@given(instant=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                            timezones=st.just(UTC)).map(lambda t: t.replace(second=0,
                                                                            microsecond=0)),
       zone=st.sampled_from(_ZONES))
def test_a_shown_local_time_reads_back_as_the_same_instant_unless_it_happens_twice(
    instant: datetime, zone: str
) -> None:
    local = instant.astimezone(ZoneInfo(zone))
    text = f"{local:%Y-%m-%d %H:%M} {zone}"

    try:
        assert parse_start(text, NOW) == instant
    except TimeParseError as err:
        assert "happens twice" in str(err)
        assert parse_start(f"{local:%Y-%m-%d %H:%M %z}", NOW) == instant


def test_in_durations_are_read_to_the_minute_so_the_same_words_a_moment_later_name_the_same_time() -> None:
    first = parse_start("in 4d", NOW + timedelta(seconds=12, microseconds=5))
    again = parse_start("in 4d", NOW + timedelta(seconds=41))
    assert first == again == NOW + timedelta(days=4)
