"""The one clock. Everything that needs the time is given a `models.ports.Clock`."""
from __future__ import annotations

import datetime as dt


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)
