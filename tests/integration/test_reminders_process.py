"""Real time, real scheduler, real process: a reminder missed while the bot was killed comes late, once.

`python bot.py --console` runs with a SQLite file and `reminders = 1m`; a downtime is
announced to start 75 s ahead, so its 1m reminder falls due ~15 s later. The bot is
killed with SIGKILL before that, started again after it, and must then say the
missed reminder once, marked late, and the start reminder once, on time. About 80 s.
"""
from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc


class BotProcess:
    """bot.py --console with stdin held open (a pipe the test writes to) and stdout read line by line."""

    def __init__(self, config: Path, log: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNTIMEBOT_")}
        env["DOWNTIMEBOT_LOG_LEVEL"] = "INFO"
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bot.py"), "--console", "--config", str(config)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"the bot did not say {text!r} within {timeout}s; it said: {self.seen}")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.lines.get(timeout=0.1))
            except queue.Empty:
                pass

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def finish(self) -> None:
        """Close stdin: the console-only bot delivers what is queued and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.drain(0.5)
        self.log.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(
        f"""
[bot]
nick = downtimebot
database = sqlite:///{tmp_path / 'bot.db'}
transports = console
display_timezones = UTC

[roles]
ciduty = carol
sheriffs = sam

[policy]
min_notice = 1m
min_gap = 1m
reminders = 1m
low_impact = daily 00:00-24:00 UTC
ciduty_hours = daily 00:00-24:00 UTC
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def processes() -> Iterator[list[BotProcess]]:
    started: list[BotProcess] = []
    yield started
    for bot in started:
        if bot.proc.poll() is None:
            bot.proc.kill()
            bot.proc.wait(10)


def test_a_reminder_missed_while_the_bot_was_killed_is_sent_late_once_and_nothing_repeats(
    config: Path, tmp_path: Path, processes: list[BotProcess],
) -> None:
    log = tmp_path / "bot.log"
    first = BotProcess(config, log)
    processes.append(first)
    start = (dt.datetime.now(UTC) + dt.timedelta(seconds=75)).replace(microsecond=0)
    first.say(f"#ci alice: !downtime propose {start:%Y-%m-%d %H:%M:%S} UTC for 10m bug 4242 -- Move the build database")
    first.say("#ci carol: !downtime approve 1")
    first.say("#ci carol: !downtime announce 1")
    first.wait_for("#developers downtimebot: Downtime #1 announced", timeout=30)
    first.drain(1.0)  # let the outbox mark what it delivered as sent
    reminder_due = start - dt.timedelta(minutes=1)
    assert dt.datetime.now(UTC) < reminder_due - dt.timedelta(seconds=2), "too slow to kill before the reminder"
    first.kill()

    time.sleep(max(0.0, (reminder_due - dt.datetime.now(UTC)).total_seconds()) + 2)
    second = BotProcess(config, log)
    processes.append(second)
    late = second.wait_for("Reminder: downtime #1", timeout=30)
    on_time = second.wait_for("is due to start now", timeout=(start - dt.datetime.now(UTC)).total_seconds() + 20)
    second.drain(1.0)
    second.finish()

    assert late.startswith("#developers downtimebot: carol, sam: Reminder: downtime #1 closes")
    assert late.endswith("(late: the bot was not running when this was due)")
    assert "late" not in on_time
    said = first.seen + second.seen
    bot_lines = [line for line in said if " downtimebot: " in line]
    assert [line for line in bot_lines if "Reminder: downtime #1" in line] == [
        late, late.replace("#developers", "#ci", 1),
    ]
    assert len([line for line in bot_lines if "is due to start now" in line]) == 2  # #developers and #ci
    # Nothing said twice: the announcement, the replies and the reminders each once.
    repeated = sorted({line for line in bot_lines if bot_lines.count(line) > 1})
    assert repeated == [], repeated
    assert not any(line.startswith("#") and "Reminder" in line for line in first.seen)
    assert "fell due while the bot was down" not in log.read_text()  # nothing dropped: it still meant something
