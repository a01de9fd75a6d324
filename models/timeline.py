"""The geometry of the status page's timeline (templates/web/index.html draws it as SVG).

Pure: given the time and what to draw, it says where everything goes, in the SVG's own units
(`Layout`). Each UTC day is a row, from today's midnight on; across a row run its 24 hours.
- the low-impact windows shade a row's whole height, CiDuty's hours a strip at its foot;
- a blackout is a hatched span with its label;
- a downtime is a bar, split where it crosses midnight, in a lane of its own where downtimes
  overlap (a cancelled one can overlap the one that replaced it); its first piece (or the next
  day's, when the first is too near midnight) carries the label "#<id> <headline>", the
  headline cut to the room left in the row;
- "now" is a line across today's row.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from models.public import PublicDowntime

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
# The least room (in characters) a label takes on a bar's first piece before moving to its next.
MIN_LABEL_CHARS = 16


@dataclass(frozen=True)
class Layout:
    """The SVG's units: `width` across, a `gutter` for the day names, rows of `row_height`."""

    width: float = 960.0
    gutter: float = 88.0
    top: float = 22.0  # room for the hours above the first row
    row_height: float = 40.0
    strip: float = 5.0  # CiDuty's hours: a strip at the foot of a row
    char_width: float = 6.6  # an average character of the labels (font-size 12)

    @property
    def plot_width(self) -> float:
        return self.width - self.gutter

    def x(self, seconds: float) -> float:
        """The x of a time `seconds` after its row's midnight."""
        return round(self.gutter + self.plot_width * seconds / 86400, 2)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Row:
    day: dt.date
    y: float
    today: bool


@dataclass(frozen=True)
class Shade:
    kind: str  # low-impact | ciduty | blackout
    box: Box
    label: str = ""  # blackout: its label, cut to the room it has


@dataclass(frozen=True)
class Bar:
    downtime: PublicDowntime
    pieces: tuple[Box, ...]  # one per day it touches, first to last
    label: str  # "#7 Upgrade hg.mozilla.org", cut to the room left in its first row
    label_x: float
    label_y: float


@dataclass(frozen=True)
class Tick:
    x: float
    hour: int


@dataclass(frozen=True)
class Timeline:
    since: dt.datetime  # today's midnight, UTC
    until: dt.datetime
    layout: Layout
    rows: tuple[Row, ...]
    ticks: tuple[Tick, ...]
    shades: tuple[Shade, ...]
    bars: tuple[Bar, ...]
    now: Box | None  # the "now" line (zero width), within today's row

    @property
    def height(self) -> float:
        return self.layout.top + self.layout.row_height * len(self.rows) + 2


def cut(text: str, chars: int) -> str:
    """The first line of `text`, at most `chars` characters, with "…" where it was cut."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if chars <= 0:
        return ""
    return line if len(line) <= chars else line[: max(chars - 1, 0)].rstrip() + "…"


def _pieces(start: dt.datetime, end: dt.datetime, since: dt.datetime, until: dt.datetime,
            layout: Layout) -> list[tuple[int, float, float]]:
    """(row, x, width) of each day's piece of [start, end) within [since, until)."""
    start, end = max(start, since), min(end, until)
    pieces = []
    while start < end:
        row = (start - since) // DAY
        midnight = since + row * DAY
        stop = min(end, midnight + DAY)
        x0 = layout.x((start - midnight).total_seconds())
        x1 = layout.x((stop - midnight).total_seconds())
        pieces.append((row, x0, round(x1 - x0, 2)))
        start = stop
    return pieces


def build(
    now: dt.datetime,
    downtimes: Sequence[PublicDowntime],
    *,
    low_impact: Sequence[tuple[dt.datetime, dt.datetime]] = (),
    ciduty_hours: Sequence[tuple[dt.datetime, dt.datetime]] = (),
    blackouts: Sequence[tuple[dt.datetime, dt.datetime, str]] = (),
    days: int = 14,
    layout: Layout = Layout(),
) -> Timeline:
    """The timeline of `days` UTC days from today's midnight (see the module's docstring).
    The spans are the ones models/public.py `window_spans` and `blackout_spans` give."""
    now = now.astimezone(UTC)
    since = dt.datetime.combine(now.date(), dt.time(), UTC)
    until = since + days * DAY
    top, height = layout.top, layout.row_height

    def y(row: int) -> float:
        return top + row * height

    rows = tuple(Row((since + i * DAY).date(), y(i), i == 0) for i in range(days))
    ticks = tuple(Tick(layout.x(h * 3600), h) for h in range(0, 25, 3))
    shades: list[Shade] = []
    for s, e in low_impact:
        shades += [Shade("low-impact", Box(x, y(r), w, height)) for r, x, w in _pieces(s, e, since, until, layout)]
    for s, e in ciduty_hours:
        shades += [Shade("ciduty", Box(x, y(r) + height - layout.strip, w, layout.strip))
                   for r, x, w in _pieces(s, e, since, until, layout)]
    for s, e, label in blackouts:
        shades += [Shade("blackout", Box(x, y(r), w, height), cut(label, int((w - 6) // layout.char_width)))
                   for r, x, w in _pieces(s, e, since, until, layout)]

    # Lanes: a downtime takes the first lane free at its start; each row is split among the lanes.
    shown = sorted((d for d in downtimes if d.shown_end(now) > since and d.start_at < until),
                   key=lambda d: (d.start_at, d.id))
    lane_ends: list[dt.datetime] = []
    lanes: dict[int, int] = {}
    for d in shown:
        lane = next((i for i, end in enumerate(lane_ends) if end <= d.start_at), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(d.shown_end(now))
        else:
            lane_ends[lane] = d.shown_end(now)
        lanes[d.id] = lane
    count = max(len(lane_ends), 1)
    usable = height - layout.strip - 6  # a margin above, the CiDuty strip below
    lane_height = round(usable / count, 2)
    bars = []
    for d in shown:
        pieces = _pieces(d.start_at, d.shown_end(now), since, until, layout)
        if not pieces:
            continue
        boxes = tuple(Box(x, y(r) + 3 + lanes[d.id] * lane_height, max(w, 2.0), lane_height)
                      for r, x, w in pieces)
        # The label goes on the first piece, or on the next day's when the first is too near midnight.
        first = boxes[0]
        if len(boxes) > 1 and layout.width - first.x < MIN_LABEL_CHARS * layout.char_width:
            first = boxes[1]
        room = layout.width - first.x - 4
        label = f"#{d.id} {cut(d.summary, int(room // layout.char_width) - len(str(d.id)) - 2)}".rstrip()
        bars.append(Bar(d, boxes, label, round(first.x + 3, 2), round(first.y + min(lane_height, 20) / 2 + 4, 2)))
    now_line = None
    if since <= now < until:
        now_line = Box(layout.x((now - since).total_seconds()), y(0), 0, height)
    return Timeline(since, until, layout, rows, ticks, tuple(shades), tuple(bars), now_line)
