"""A clock that stands still until a test moves it (the Clock port)."""
from __future__ import annotations

import datetime as dt


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: dt.datetime):
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.current = start.astimezone(dt.timezone.utc)

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, delta: dt.timedelta) -> None:
        self.current += delta

    def set(self, when: dt.datetime) -> None:
        self.current = when.astimezone(dt.timezone.utc)
