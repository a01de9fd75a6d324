"""Instructions per proposal, for callgrind (deterministic where the wall clock is too noisy).

Run it twice under callgrind, with N proposals and with none, and divide the difference by N:

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.100 .venv/bin/python bench/propose_callgrind.py 100
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.0 .venv/bin/python bench/propose_callgrind.py 0

Each proposal takes the test harness's whole path: the dispatcher, the reactions and the
delivery of its replies to a fake transport. Five proposals warm up first in both runs.
"""
from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import NOW, Chat, make_config  # noqa: E402
from tests.fakes import FakeClock  # noqa: E402


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        chat = Chat(make_config(Path(tmp), bot={"rate_limit": "off"}), FakeClock(NOW))
        out: list[str] = []
        for i in range(5 + n):
            day = dt.date(2027, 1, 1) + dt.timedelta(days=i)
            out = chat.say("alice", f"!downtime propose {day.isoformat()} 05:00 UTC for 2h -- bench {i}")
        assert "proposed" in out[0], out
        chat.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
