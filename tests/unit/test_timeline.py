"""The timeline's geometry (models/timeline.py): days as rows, bars, shades and the now line."""
from __future__ import annotations

import datetime as dt

from models import timeline
from models.public import PublicDowntime

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # a Tuesday
LAYOUT = timeline.Layout()


def at(day: int, hour: float) -> dt.datetime:
    return dt.datetime(2026, 12, day, tzinfo=UTC) + dt.timedelta(hours=hour)


def downtime(id: int, start: dt.datetime, end: dt.datetime, state: str = "announced",
             summary: str = "Upgrade hg.mozilla.org") -> PublicDowntime:
    return PublicDowntime(
        id=id, state=state, summary=summary, start_at=start, end_at=end,
        started_at=start if state in ("in_progress", "finished") else None, ended_at=None, verified_at=None,
        announced_at=NOW, updated_at=NOW, created_at=NOW, trees=(), systems=(), was_announced=True, sequence=0,
        id_token="abc",
    )


def x(hour: float) -> float:
    return LAYOUT.x(hour * 3600)


def test_each_utc_day_is_a_row_from_todays_midnight() -> None:
    drawn = timeline.build(NOW, [])
    assert [r.day for r in drawn.rows] == [dt.date(2026, 12, d) for d in range(1, 15)]
    assert [r.today for r in drawn.rows[:2]] == [True, False]
    assert drawn.rows[1].y - drawn.rows[0].y == LAYOUT.row_height
    assert drawn.since == at(1, 0) and drawn.until == at(15, 0)
    assert drawn.height == LAYOUT.top + 14 * LAYOUT.row_height + 2


def test_a_downtime_is_a_bar_from_its_start_to_its_end_in_its_days_row() -> None:
    drawn = timeline.build(NOW, [downtime(7, at(5, 14), at(5, 16))])
    (bar,) = drawn.bars
    (piece,) = bar.pieces
    assert piece.x == x(14) and round(piece.x + piece.width, 2) == x(16)
    assert drawn.rows[4].y < piece.y < drawn.rows[4].y + LAYOUT.row_height
    assert bar.label == "#7 Upgrade hg.mozilla.org"


def test_a_downtime_across_midnight_is_split_into_one_piece_per_day() -> None:
    (bar,) = timeline.build(NOW, [downtime(7, at(5, 22), at(6, 2))]).bars
    first, second = bar.pieces
    assert (first.x, round(first.x + first.width, 2)) == (x(22), LAYOUT.width)
    assert (second.x, round(second.x + second.width, 2)) == (LAYOUT.gutter, x(2))
    assert second.y - first.y == LAYOUT.row_height


def test_a_downtime_starting_just_before_midnight_is_labelled_on_the_next_days_row() -> None:
    (bar,) = timeline.build(NOW, [downtime(7, at(5, 23.5), at(6, 2))]).bars
    assert bar.label == "#7 Upgrade hg.mozilla.org"
    assert bar.label_x == bar.pieces[1].x + 3 and bar.pieces[1].y < bar.label_y < bar.pieces[1].y + bar.pieces[1].height


def test_only_the_days_shown_are_drawn_and_a_downtime_outside_them_is_left_out() -> None:
    drawn = timeline.build(NOW, [downtime(1, at(14, 22), at(15, 3)), downtime(2, at(20, 1), at(20, 2)),
                                 downtime(3, at(1, 1) - dt.timedelta(days=1), at(1, 2))])
    assert [b.downtime.id for b in drawn.bars] == [3, 1]
    assert len(drawn.bars[0].pieces) == 1 and drawn.bars[0].pieces[0].x == LAYOUT.gutter  # clipped at midnight
    assert round(drawn.bars[1].pieces[0].x + drawn.bars[1].pieces[0].width, 2) == LAYOUT.width


def test_a_running_downtime_past_its_planned_end_reaches_now() -> None:
    (bar,) = timeline.build(NOW, [downtime(7, at(1, 6), at(1, 8), state="in_progress")]).bars
    assert round(bar.pieces[0].x + bar.pieces[0].width, 2) == x(10)


def test_overlapping_downtimes_take_lanes_of_their_own() -> None:
    drawn = timeline.build(NOW, [downtime(1, at(5, 14), at(5, 16), state="cancelled"),
                                 downtime(2, at(5, 15), at(5, 17)), downtime(3, at(6, 14), at(6, 15))])
    one, two, three = (b.pieces[0] for b in drawn.bars)
    assert one.height == two.height == three.height
    assert two.y == one.y + one.height
    assert three.y - drawn.rows[5].y == one.y - drawn.rows[4].y  # the first lane again


def test_a_long_headline_is_cut_to_the_room_left_in_its_row() -> None:
    (late,) = timeline.build(NOW, [downtime(7, at(5, 21), at(5, 22), summary="x" * 200 + "\nsecond line")]).bars
    room = LAYOUT.width - x(21)
    assert late.label.endswith("…") and len(late.label) * LAYOUT.char_width <= room
    (short,) = timeline.build(NOW, [downtime(7, at(5, 1), at(5, 2), summary="Two\nlines")]).bars
    assert short.label == "#7 Two"


def test_the_windows_shade_their_hours_and_a_blackout_carries_its_label() -> None:
    drawn = timeline.build(
        NOW, [], low_impact=[(at(2, 4), at(2, 8))], ciduty_hours=[(at(2, 4), at(2, 22))],
        blackouts=[(at(10, 0), at(11, 0), "Firefox 147 release")],
    )
    low, ciduty, blackout = drawn.shades
    assert (low.kind, low.box.x, low.box.height) == ("low-impact", x(4), LAYOUT.row_height)
    assert (ciduty.kind, ciduty.box.height) == ("ciduty", LAYOUT.strip)
    assert ciduty.box.y + ciduty.box.height == drawn.rows[1].y + LAYOUT.row_height  # at the row's foot
    assert (blackout.kind, blackout.box.x, blackout.box.width) == ("blackout", LAYOUT.gutter, LAYOUT.plot_width)
    assert blackout.label == "Firefox 147 release" and blackout.box.y == drawn.rows[9].y


def test_the_now_line_crosses_todays_row_at_the_time() -> None:
    drawn = timeline.build(NOW + dt.timedelta(hours=2, minutes=30), [])
    assert drawn.now is not None
    assert drawn.now.x == x(12.5) and drawn.now.y == drawn.rows[0].y and drawn.now.height == LAYOUT.row_height


def test_cut_keeps_the_first_line_and_marks_a_cut() -> None:
    assert timeline.cut("Short", 10) == "Short"
    assert timeline.cut("A long headline", 7) == "A long…"
    assert timeline.cut("one\ntwo", 10) == "one"
    assert timeline.cut("   ", 5) == "" and timeline.cut("abc", 0) == ""
