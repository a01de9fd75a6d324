"""Where one command's time goes, through the dispatcher: SQL statements, and time per layer.

    .venv/bin/python bench/dispatcher_profile.py [--size 100000] [--runs 500] [--command show]

Builds the bench database (bench/dispatcher_bench.py), then runs one kind of command `--runs`
times twice: once counting the SQL statements (SQLAlchemy's before/after_cursor_execute events,
so the DB-API time of each), once under cProfile, whose own time per function is summed by
layer (SQLite's C calls, SQLAlchemy's ORM and its Core/engine, Jinja2, asyncio, the bot's own
code). cProfile slows Python code down more than C calls, so the layers are shares, not
milliseconds; the wall-clock figure comes from the first pass. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import itertools
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event  # noqa: E402

from adapters import config as configuration  # noqa: E402
from bench.dispatcher_bench import NOW, fill  # noqa: E402
from bot import Bot  # noqa: E402
from models.ports import Incoming  # noqa: E402
from tests.fakes import FakeClock, FakeMailer, FakeTransport  # noqa: E402

ROOT = str(Path(__file__).resolve().parent.parent)
LINES = {
    "list": lambda n, rng, size: "!downtime list",
    "show": lambda n, rng, size: f"!downtime show {rng.randrange(1, size + 1)}",
    "propose": lambda n, rng, size: f"!downtime propose 2027-0{1 + n % 9}-{1 + n % 28:02d} 05:00 UTC for 2h -- bench {n}",
    "suggest": lambda n, rng, size: "!downtime suggest 2h",
}


OTHER = "other (stdlib, builtins)"


def layer(filename: str, function: str) -> str:
    if "sqlite3" in function or "_sqlite3" in filename:
        return "SQLite (the C library's calls)"
    if "/sqlalchemy/orm/" in filename:
        return "SQLAlchemy ORM"
    if "/sqlalchemy/" in filename:
        return "SQLAlchemy Core and engine"
    if "/jinja2/" in filename or filename.startswith(("<template>", ROOT + "/templates")):
        return "Jinja2 (templates included)"
    if "/asyncio/" in filename:
        return "asyncio"
    if filename.startswith(ROOT + "/bench/"):
        return "the benchmark's loop"
    if filename.startswith(ROOT):
        return "the bot's own code"
    return OTHER


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--command", choices=sorted(LINES), default="show")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = {"bot": {"database": f"sqlite:///{tmp}/bench.db"}, "roles": {"ciduty": "carol"}}
        bot = Bot(configuration._build(raw, "bench"), transports={"irc": FakeTransport("irc")},
                  clock=FakeClock(NOW), mailer=FakeMailer())
        fill(bot, args.size)
        loop = asyncio.new_event_loop()
        checkpoints = loop.create_task(bot.checkpointer.run())
        rng, ids, counter = random.Random(1), itertools.count(), itertools.count()

        def say(line: str) -> None:
            message = Incoming("irc", "#ci", "carol", "carol", line, msgid=f"p{next(ids)}")
            loop.run_until_complete(bot.dispatcher.answer(message))

        def lines() -> list[str]:
            return [LINES[args.command](next(counter), rng, args.size) for _ in range(args.runs)]

        for line in ["!downtime list", "!downtime show 1"] * 10:
            say(line)
        statements: dict[str, list[float]] = collections.defaultdict(list)
        started: list[float] = []

        def before(*_args: object) -> None:
            started.append(time.perf_counter())

        def after(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            statements[" ".join(statement.split())[:100]].append(time.perf_counter() - started.pop())

        event.listen(bot.engine, "before_cursor_execute", before)
        event.listen(bot.engine, "after_cursor_execute", after)
        wall = []
        for line in lines():
            t0 = time.perf_counter()
            say(line)
            wall.append(time.perf_counter() - t0)
        event.remove(bot.engine, "before_cursor_execute", before)
        event.remove(bot.engine, "after_cursor_execute", after)
        n = args.runs
        print(f"{args.command} at {args.size:,} downtimes, {n} commands: p50 {1000 * statistics.median(wall):.2f} ms, "
              f"mean {1000 * statistics.mean(wall):.2f} ms")
        # The checkpointer's PRAGMA runs in its own thread, beside the commands: shown apart.
        background = {k: v for k, v in statements.items() if k.startswith("PRAGMA wal_checkpoint")}
        mine = {k: v for k, v in statements.items() if k not in background}
        total_sql = sum(sum(v) for v in mine.values())
        print(f"\nSQL: {sum(len(v) for v in mine.values()) / n:.1f} statements per command, "
              f"DB-API time {1000 * total_sql / n:.3f} ms per command (median per statement below)")
        for text, times in sorted(mine.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {len(times) / n:5.2f} x  {1000 * statistics.median(times):.3f} ms  {text}")
        for text, times in background.items():
            print(f"  in the checkpoint thread: {len(times)} x {text}, {1000 * max(times):.1f} ms at most")
        profile = cProfile.Profile()
        profile.enable()
        for line in lines():
            say(line)
        profile.disable()
        shares: dict[str, float] = collections.defaultdict(float)
        for (filename, _line, function), (_cc, _nc, tottime, _ct, callers) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
            own = layer(filename, function)
            if own != OTHER or not callers:
                shares[own] += tottime
                continue
            # A builtin or stdlib function counts for the layer that called it (dict.get, str.join, ...).
            for (caller_file, _l, caller_function), (_c, _n, caller_tottime, _t) in callers.items():
                shares[layer(caller_file, caller_function)] += caller_tottime
        whole = sum(shares.values())
        print("\nOwn time by layer (cProfile, second pass; builtins and stdlib count for their caller):")
        for name, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"  {100 * seconds / whole:5.1f} %  {name}")
        checkpoints.cancel()
        loop.run_until_complete(bot.stop())
        loop.close()


if __name__ == "__main__":
    main()
