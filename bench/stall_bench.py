"""Nobody can stall the bot: the worst parse time of long crafted lines, and how long a
`!downtime list` waits while another sender's command waits on a slow Bugzilla.

    .venv/bin/python bench/stall_bench.py [--latency 5] [--lengths 2000,60000]

Parse: crafted lines of each length (the propose head that made the old regular expression
backtrack, and others) go through the whole dispatcher path; a line over [bot] max_line (2000)
is refused unread, so the parser itself (`plugins.args.proposal`) is also timed on heads of that
length. List: alice proposes with one bug against the local Bugzilla server answering every
request after `--latency` seconds; bob asks `!downtime list` 50 ms later, both handed on by
per-sender ordering (`plugins.senders.PerSender`) as a transport does. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.bugzilla import BugzillaClient  # noqa: E402
from bot import Bot  # noqa: E402
from models.ports import Incoming  # noqa: E402
from plugins import args  # noqa: E402
from plugins.registry import UsageError  # noqa: E402
from tests.conftest import make_config  # noqa: E402
from tests.fakes import FakeClock, FakeMailer, FakeTransport  # noqa: E402
from tests.servers.bugzilla import BugzillaServer  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
KEY = "bot-key-0123456789abcdef"
PIECES = ["for 2h bug 1 trees ", "for ", "bug 1 ", "trees a ", "2026-12-05 14:00 ", "1d2h", "a-"]


def crafted(length: int) -> list[str]:
    """Propose heads of about `length` characters, built to make a regular expression try every split."""
    return [("x " + piece * (length // len(piece) + 1))[:length] + "!" for piece in PIECES]


def worst_parse(lengths: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        transport = FakeTransport("irc")
        # The rate limit off: every crafted line comes from one sender, and each must be read.
        config = make_config(Path(tmp), bot={"rate_limit": "off"})
        bot = Bot(config, transports={"irc": transport}, clock=FakeClock(NOW), mailer=FakeMailer())
        loop = asyncio.new_event_loop()
        print("worst time of crafted lines (7 kinds per length)")
        print(f"{'characters':>10} {'whole line, dispatcher':>24} {'propose head, parser':>22}")
        for length in lengths:
            line_worst = parser_worst = 0.0
            for head in crafted(length):
                line = f"!downtime propose {head} -- w"
                t = time.perf_counter()
                loop.run_until_complete(bot.dispatcher.answer(Incoming("irc", "#ci", "mallory", "mallory", line)))
                line_worst = max(line_worst, time.perf_counter() - t)
                t = time.perf_counter()
                try:
                    args.proposal(head, NOW)
                except UsageError:
                    pass
                parser_worst = max(parser_worst, time.perf_counter() - t)
            print(f"{length:>10} {line_worst * 1000:>21.2f} ms {parser_worst * 1000:>19.2f} ms")
        loop.run_until_complete(bot.stop())
        loop.close()


async def list_delay(latency: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, BugzillaServer(latency=latency) as server:
        server.add_account("downtime-bot@example.org", KEY, groups=["infra"])
        server.add_bug(7, "Move the build database", "eng@example.org")
        config = make_config(Path(tmp), bugzilla={"url": server.url, "enabled": "on"})
        transport = FakeTransport("irc")
        client = BugzillaClient(server.url, KEY, timeout=latency * 4, retries=0, sleep=lambda s: None)
        bot = Bot(config, transports={"irc": transport}, clock=FakeClock(NOW), mailer=FakeMailer(), bugzilla=client)
        await bot.dispatcher.answer(Incoming("irc", "#ci", "bob", "bob", "!downtime list past"))  # warm up
        senders = getattr(bot, "senders", None)
        # Before per-sender ordering a transport awaited each line before handing on the next.
        queue: asyncio.Queue[Incoming] = asyncio.Queue()

        async def in_order() -> None:
            while True:
                await bot.dispatcher.handle(await queue.get())
                queue.task_done()

        hand_on = senders.submit if senders is not None else queue.put_nowait
        reader = asyncio.create_task(in_order())
        start = time.perf_counter()
        hand_on(Incoming("irc", "#ci", "alice", "alice",
                         "!downtime propose 2026-12-05 14:00 UTC for 2h bug 7 -- Move the build database"))
        await asyncio.sleep(0.05)
        asked = time.perf_counter()
        hand_on(Incoming("irc", "#ci", "bob", "bob", "!downtime list"))
        answered = None
        while answered is None:
            await asyncio.sleep(0.001)
            if any(m.text.startswith("No upcoming") or m.text.startswith("#1") for m in transport.sent):
                answered = time.perf_counter()
        await (senders.idle() if senders is not None else queue.join())
        reader.cancel()
        done = time.perf_counter()
        print(f"\n!downtime list while alice's proposal waits on a {latency:g} s Bugzilla:")
        print(f"  list answered {(answered - asked) * 1000:.1f} ms after it was asked; "
              f"the proposal took {done - start:.2f} s")
        await bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="2000,60000")
    parser.add_argument("--latency", type=float, default=5.0)
    opts = parser.parse_args()
    worst_parse([int(n) for n in opts.lengths.split(",")])
    asyncio.run(list_delay(opts.latency))


if __name__ == "__main__":
    main()
