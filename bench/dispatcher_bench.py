"""Commands per second and p50/p99 latency through the dispatcher, with 10,000 and 100,000 downtimes.

    .venv/bin/python bench/dispatcher_bench.py [--sizes 10000,100000] [--runs 300]
                                               [--databases sqlite,postgresql]

Each command goes through the whole path a chat line takes (parse, transaction, core, template,
reply to a transport), on a SQLite file in WAL mode and on a local PostgreSQL 15 (a throwaway
server on 127.0.0.1 over TCP, tests/servers/postgres.py; fsync off, as in the tests) in the same
run. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from adapters import config as configuration  # noqa: E402
from tests.fakes import FakeClock  # noqa: E402
from tests.fakes import FakeMailer  # noqa: E402
from models.ports import Incoming  # noqa: E402
from tests.fakes import FakeTransport  # noqa: E402
from tests.servers.postgres import PASSWORD_ENV, PostgresServer  # noqa: E402
from bot import Bot  # noqa: E402
from models.orm import Downtime  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
MSGIDS = itertools.count()  # every chat line has its own id, as on a real network


def fill(bot: Bot, count: int, upcoming: int = 200, *, announced: bool = False) -> None:
    """`count` downtimes: all but `upcoming` finished in the past ten years, the rest in the next year.
    `announced`: every one of them was announced (public on the web page), the future ones still are."""
    rng = random.Random(7)
    future_states, past_states = (["announced"], ["finished"] * 3 + ["cancelled"]) if announced else (
        ["proposed", "approved", "announced"], ["finished", "cancelled"])
    rows = []
    for i in range(count):
        future = i >= count - upcoming
        offset = dt.timedelta(minutes=rng.randrange(60, 365 * 24 * 60)) if future else -dt.timedelta(
            minutes=rng.randrange(60, 10 * 365 * 24 * 60))
        start = (NOW + offset).replace(second=0, microsecond=0)
        rows.append(dict(
            state=rng.choice(future_states if future else past_states),
            summary=f"Maintenance {i}", start_at=start, end_at=start + dt.timedelta(hours=rng.choice([1, 2, 4])),
            requester="alice", requester_network="irc", trees="", systems="", created_at=start, updated_at=start,
            revision=0, was_announced=announced, announced_at=start if announced else None,
        ))
    with bot.sessions() as session, session.begin():
        for chunk in range(0, len(rows), 5000):
            session.execute(insert(Downtime), rows[chunk : chunk + 5000])


def measure(bot: Bot, loop: asyncio.AbstractEventLoop, lines: list[str]) -> list[float]:
    times = []
    for n, line in enumerate(lines):
        message = Incoming("irc", "#ci", "carol", "carol", line, msgid=f"b{next(MSGIDS)}")
        t0 = time.perf_counter()
        loop.run_until_complete(bot.dispatcher.answer(message))
        times.append((time.perf_counter() - t0) * 1000)
    return times


def report(name: str, size: int, database: str, times: list[float]) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    rate = 1000 / statistics.mean(ordered)
    return f"| {size:,} | {database} | {name:<26} | {rate:>8,.0f} | {p50:>7.2f} | {p99:>7.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    databases = args.databases.split(",")
    print("| downtimes | database | command | cmds/s | p50 ms | p99 ms |")
    print("|---:|---|---|---:|---:|---:|")
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(PostgresServer()) if "postgresql" in databases else None
        if postgres is not None:
            os.environ[PASSWORD_ENV] = postgres.role_password
        for size in (int(s) for s in args.sizes.split(",")):
            for database in databases:
                with tempfile.TemporaryDirectory() as tmp:
                    if database == "sqlite":
                        bot_section = {"database": f"sqlite:///{tmp}/bench.db"}
                    else:
                        assert postgres is not None
                        url = postgres.create_database(f"bench_{size}")
                        bot_section = {"database": url, "database_password_env": PASSWORD_ENV}
                    run(size, database, bot_section, args.runs)
                    if postgres is not None and database != "sqlite":
                        postgres.drop_database(f"bench_{size}")


def run(size: int, database: str, bot_section: dict[str, str], runs: int) -> None:
    raw = {"bot": bot_section, "roles": {"ciduty": "carol"}}
    config = configuration._build(raw, "bench")
    loop = asyncio.new_event_loop()
    bot = Bot(config, transports={"irc": FakeTransport("irc")}, clock=FakeClock(NOW), mailer=FakeMailer())
    fill(bot, size)
    if bot.engine.dialect.name == "postgresql":
        with bot.engine.begin() as connection:  # fresh planner statistics, as autovacuum would give
            connection.exec_driver_sql("ANALYZE")
    # As in the running bot: SQLite's write-ahead log is checkpointed in a thread, not by commits.
    checkpoints = loop.create_task(bot.checkpointer.run()) if bot.engine.dialect.name == "sqlite" else None
    ids = list(range(1, size + 1))
    rng = random.Random(1)
    cases = {
        "!downtime list": ["!downtime list"] * runs,
        "!downtime show <id>": [f"!downtime show {rng.choice(ids)}" for _ in range(runs)],
        "!downtime propose (checked)": [
            f"!downtime propose 2027-0{1 + n % 9}-{1 + n % 28:02d} 05:00 UTC for 2h -- bench {n}"
            for n in range(runs)
        ],
        "!downtime suggest 2h": ["!downtime suggest 2h"] * max(50, runs // 5),
    }
    # Warm up every command (statements compiled, templates loaded): the figures are the
    # running bot's, not its first minute's. The first propose of a process costs ~15-25 ms.
    warm_up = ["!downtime propose 2028-01-01 05:00 UTC for 2h -- warm up", "!downtime suggest 2h"]
    measure(bot, loop, ["!downtime list", "!downtime show 1"] * 10 + warm_up * 3)
    for name, lines in cases.items():
        print(report(name, size, database, measure(bot, loop, lines)), flush=True)
    if checkpoints is not None:
        checkpoints.cancel()
    loop.run_until_complete(bot.stop())
    loop.close()


if __name__ == "__main__":
    main()
