"""Reminders at scale: start-up with 10,000 upcoming downtimes, and 1,000 reminders due in one minute.

    python bench/reminders_bench.py [--downtimes 10000] [--burst 1000] [--spread 60]

Prints:
- start-up: the bot built (migrations included) and started, up to the scheduler ready,
  with 10,000 announced downtimes in a SQLite file (one an hour from tomorrow on);
- the APScheduler jobs that start-up created, and the resident memory after it;
- lateness (queued minus planned) of `burst` 1h reminders planned `spread` seconds apart
  in total (60: the same minute; 0: the same instant), on the real scheduler and clock,
  plus when they reached the chat transport (the outbox's delivery, for information).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from adapters import config as configuration  # noqa: E402
from adapters.db import make_engine, migrate  # noqa: E402
from models.ports import Outgoing, Transport  # noqa: E402
from models.orm import AuditEvent, Downtime  # noqa: E402

UTC = dt.timezone.utc


class TimedTransport(Transport):
    network = "bench"

    def __init__(self) -> None:
        self.sent: list[tuple[float, Outgoing]] = []

    async def start(self, on_message) -> None:  # type: ignore[no-untyped-def]
        pass

    async def stop(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True

    async def send(self, message: Outgoing) -> None:
        self.sent.append((time.time(), message))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(url: str, rows: list[tuple[dt.datetime, dt.datetime]], now: dt.datetime, first_id: int, announced: dt.datetime) -> None:
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(Downtime),
            [
                {
                    "id": first_id + i, "state": "announced", "summary": f"Bench downtime {first_id + i}",
                    "start_at": start, "end_at": end, "requester": "alice", "requester_network": "bench",
                    "trees": "", "systems": "", "created_at": now - dt.timedelta(days=2),
                    "updated_at": announced, "announced_at": announced,
                    "revision": 0, "was_announced": True,
                }
                for i, (start, end) in enumerate(rows)
            ],
        )
        connection.execute(
            insert(AuditEvent),
            [
                {"downtime_id": first_id + i, "at": announced - dt.timedelta(hours=1), "account": "carol",
                 "network": "bench", "action": "approve", "from_state": "proposed", "to_state": "approved", "detail": ""}
                for i in range(len(rows))
            ],
        )
    engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def run(args: argparse.Namespace, directory: Path) -> None:
    from bot import Bot

    url = f"sqlite:///{directory / 'bench.db'}"
    now = dt.datetime.now(UTC)
    tomorrow = now + dt.timedelta(days=1, hours=2)
    upcoming = [(tomorrow + dt.timedelta(hours=i), tomorrow + dt.timedelta(hours=i, minutes=30)) for i in range(args.downtimes)]
    # The burst: 1h reminders due from `lead` seconds after start-up, `spread` seconds in all.
    lead = 8.0
    first_due = now + dt.timedelta(seconds=lead)
    step = args.spread / max(1, args.burst)
    burst = [
        (first_due + dt.timedelta(hours=1, seconds=i * step), first_due + dt.timedelta(hours=1, seconds=i * step, minutes=30))
        for i in range(args.burst)
    ]
    fill(url, upcoming, now, 1, announced=now - dt.timedelta(days=1))
    # Announced 30 min ago, so the burst's 24h reminders were never due.
    fill(url, burst, now, args.downtimes + 1, announced=now - dt.timedelta(minutes=30))
    config = configuration._build(  # noqa: SLF001 - the bench builds its config in code
        {
            "bot": {"database": url, "transports": "console", "display_timezones": "UTC"},
            "roles": {"ciduty": "carol", "sheriffs": "sam"},
            "channels": {"requests": "#ci", "announce": "#developers"},
        },
        "bench",
    )
    transport = TimedTransport()
    rss_before = rss_mb()
    t0 = time.perf_counter()
    bot = Bot(config, transports={"bench": transport})
    await bot.start()
    await bot.reminders.ready.wait()
    startup = time.perf_counter() - t0
    jobs = len(bot.reminders.job_ids())
    rss_after = rss_mb()
    print(f"downtimes in the database: {args.downtimes} upcoming + {args.burst} in the burst")
    print(f"start-up to scheduler ready: {startup * 1000:.0f} ms (Bot built, migrations, first plan)")
    print(f"APScheduler jobs after start-up: {jobs} (horizon {bot.reminders.horizon}, replan every {bot.reminders.replan_every})")
    print(f"resident memory: {rss_after:.1f} MB after start-up ({rss_after - rss_before:+.1f} MB for the bot)")

    planned = {f"downtime:{args.downtimes + 1 + i}:r0:remind-1h": s - dt.timedelta(hours=1) for i, (s, _) in enumerate(burst)}
    deadline = time.monotonic() + lead + args.spread + 30
    while time.monotonic() < deadline and len(bot.reminders.queued_at.keys() & planned.keys()) < len(planned):
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    for _ in range(200):
        if len(transport.sent) >= 2 * len(planned):
            break
        await asyncio.sleep(0.1)
    queued = [(bot.reminders.queued_at[j] - due).total_seconds() * 1000 for j, due in planned.items() if j in bot.reminders.queued_at]
    delivered_at: dict[str, float] = {}
    for at, message in transport.sent:
        if "Reminder: downtime #" in message.text:
            number = int(message.text.split("#", 1)[1].split(" ", 1)[0])
            delivered_at.setdefault(f"downtime:{number}:r0:remind-1h", at)
    delivered = [(delivered_at[j] - due.timestamp()) * 1000 for j, due in planned.items() if j in delivered_at]
    print(f"burst: {args.burst} 1h reminders planned over {args.spread:g} s")
    print(
        f"  queued (outbox row committed) minus planned: p50 {statistics.median(queued):.1f} ms, "
        f"p99 {percentile(queued, 99):.1f} ms, max {max(queued):.1f} ms ({len(queued)}/{len(planned)} queued)"
    )
    if delivered:
        print(
            f"  first chat line delivered minus planned: p50 {statistics.median(delivered):.1f} ms, "
            f"p99 {percentile(delivered, 99):.1f} ms ({len(delivered)} delivered)"
        )
    await bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--downtimes", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the burst falls due")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(args, Path(directory)))


if __name__ == "__main__":
    main()
