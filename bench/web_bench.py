"""The web server under load, with 10,000 and 100,000 downtimes, and the chat beside it.

    .venv/bin/python bench/web_bench.py [--sizes 10000,100000] [--requests 2000] [--chat 400]

For each size, a real bot core (fake chat transport, SQLite file in WAL mode) with its web
server on a loopback port, in one asyncio loop as in the running bot. A second process (this
script with --client) makes the HTTP requests, so that the client's work is not the bot's:

- `/`, `/api/v1/downtimes`, `/calendar.ics`: p50/p99 of sequential requests on one keep-alive
  connection, and requests per second with 8 connections at once;
- the same three after every public change ("cold": each request follows a new wording of an
  announced downtime, so the answer is built again rather than taken from the answer cache),
  measured in the bot's process;
- the chat round trip (a command through the dispatcher to the transport, as
  bench/dispatcher_bench.py) p50/p99, alone and while `/` is fetched 100 times a second (in
  turn, three times each, as the machine's speed drifts): once
  with proposals as the changes (nothing public changes, the pages stay cached), once with new
  wordings of announced downtimes (every third command makes every page be built again).

The downtimes: all but 200 in the past ten years (finished or cancelled after their
announcement, so public), 200 in the next year (announced). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
PATHS = ("/", "/api/v1/downtimes", "/calendar.ics")
MSGIDS = itertools.count()
PROPOSALS = itertools.count()
EDITS = itertools.count()  # every new wording is new
ROUNDS = 3


# ---- the client (a process of its own) ----------------------------------------------------------


async def _client(url: str, mode: str, path: str, amount: float, seconds: float) -> dict[str, object]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(url, connector=connector) as http:
        async def get() -> float:
            t0 = time.perf_counter()
            async with http.get(path) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}")
            return (time.perf_counter() - t0) * 1000

        await get()  # the connection, and the answer in the cache
        if mode == "latency":
            return {"ms": [await get() for _ in range(int(amount))]}
        if mode == "throughput":
            done = 0
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await get()
                    done += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(int(amount))))
            return {"rps": done / (time.perf_counter() - t0)}
        # rate: `amount` requests a second, on schedule (open loop), for `seconds`
        interval = 1 / amount
        start = time.perf_counter()
        tasks = []
        for n in range(int(amount * seconds)):
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(get()))
        times = await asyncio.gather(*tasks)
        return {"ms": list(times), "rate": len(times) / (time.perf_counter() - start)}


# ---- the bot ------------------------------------------------------------------------------------


def pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def client(url: str, mode: str, path: str, amount: float, seconds: float = 0.0) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", url, mode, path, str(amount), str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise SystemExit(f"the client failed on {path}")
    return dict(json.loads(out))


async def chat_round_trips(
    bot: object, count: int, ids: list[int], rng: random.Random, public: list[int] | None = None
) -> list[float]:
    """`count` commands, one every 20 ms (a busy channel), each timed from the line to the reply:
    two questions (show, list) for each change. The change is a proposal (nothing public changes),
    or with `public` the new wording of one of these announced downtimes (every page is built again)."""
    from models.ports import Incoming

    def change(n: int) -> str:
        if public:
            return f"!downtime edit {rng.choice(public)} -- Maintenance of hg.mozilla.org, take {next(EDITS)}"
        return f"!downtime propose {free_time(n):%Y-%m-%d %H:%M} UTC for 1h -- bench {n}"

    lines = [
        f"!downtime show {rng.choice(ids)}" if n % 3 else "!downtime list" if n % 2 else change(n)
        for n in range(count)
    ]
    times = []
    for line in lines:
        message = Incoming("irc", "#ci", "carol", "carol", line, msgid=f"w{next(MSGIDS)}")
        t0 = time.perf_counter()
        await bot.dispatcher.answer(message)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.02)
    return times


def free_time(n: int) -> dt.datetime:
    """A start of its own for the n-th proposal of a run (within [policy] max_horizon), so that
    every proposal is made (commits) rather than refused for overlapping an earlier one."""
    return NOW + dt.timedelta(days=3, hours=3 * next(PROPOSALS))


async def cold(bot: object, url: str, path: str, runs: int, announced: list[int]) -> list[float]:
    """Each request after a public change (a new wording of an announced downtime): the answer is
    built again, not taken from the answer cache (measured in the bot's process)."""
    import aiohttp

    from models.ports import Incoming

    times = []
    async with aiohttp.ClientSession(url) as http:
        for n in range(runs):
            line = f"!downtime edit {announced[n % len(announced)]} -- Maintenance of hg.mozilla.org, cold {next(EDITS)}"
            generation = bot.web.site.generation()  # type: ignore[attr-defined]
            await bot.dispatcher.answer(Incoming("irc", "#ci", "carol", "carol", line, msgid=f"c{next(MSGIDS)}"))  # type: ignore[attr-defined]
            if bot.web.site.generation() == generation:  # type: ignore[attr-defined]
                raise SystemExit(f"not cold: {line!r} changed nothing public")
            t0 = time.perf_counter()
            async with http.get(path) as response:
                await response.read()
            times.append((time.perf_counter() - t0) * 1000)
    return times


class OtherServer:
    def __init__(self, process: asyncio.subprocess.Process, url: str):
        self.process = process
        self.url = url


async def other_server(folder: str) -> OtherServer:
    """Python's http.server in a process of its own, serving a page of about the size of `/`."""
    import socket

    Path(folder, "www").mkdir()
    Path(folder, "www", "index.html").write_text("<!doctype html><p>control</p>\n" * 1000)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", f"{folder}/www",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return OtherServer(process, f"http://127.0.0.1:{port}")


async def run_size(size: int, requests: int, chat: int) -> None:
    from dispatcher_bench import fill  # the same downtimes as the dispatcher's benchmark, all announced

    from adapters import config as configuration
    from bot import Bot
    from tests.fakes import FakeClock, FakeMailer, FakeTransport

    with tempfile.TemporaryDirectory() as tmp:
        raw = {
            "bot": {"database": f"sqlite:///{tmp}/bench.db"}, "roles": {"ciduty": "carol"},
            "web": {"listen": "127.0.0.1:0"},
        }
        config = configuration._build(raw, "bench")
        bot = Bot(config, transports={"irc": FakeTransport("irc")}, clock=FakeClock(NOW), mailer=FakeMailer())
        fill(bot, size, announced=True)
        assert bot.web is not None
        url = (await bot.web.start()).rstrip("/")
        checkpoints = asyncio.create_task(bot.checkpointer.run())
        rng = random.Random(1)
        ids = list(range(1, size + 1))
        announced = list(range(size - 199, size + 1))  # fill(): the last 200 are announced
        await chat_round_trips(bot, 30, ids, rng)  # warm up: statements compiled, templates loaded
        for path in PATHS:
            latency = await client(url, "latency", path, requests)
            rps = await client(url, "throughput", path, 8, 5.0)
            built = await cold(bot, url, path, 20, announced)
            ms = list(latency["ms"])  # type: ignore[call-overload]
            print(f"| {size:,} | `{path}` | {statistics.median(ms):.2f} / {pct(ms, 0.99):.2f} | "
                  f"{rps['rps']:,.0f} | {statistics.median(built):.1f} / {max(built):.1f} |")
        # The control: the same load on another process (Python's own http.server), not the bot:
        # what a second busy process costs the chat on this 2-core machine by itself.
        other = await other_server(tmp)
        for name, public, target in (("", None, url), (", public changes", announced, url),
                                     (" (control: the load on another server)", None, other.url)):
            # Alone and loaded in turn, three times: the machine's speed drifts over minutes.
            alone: list[float] = []
            loaded: list[float] = []
            page_ms: list[float] = []
            rates = []
            for _ in range(ROUNDS):
                alone += await chat_round_trips(bot, chat // ROUNDS, ids, rng, public)
                load = asyncio.create_task(client(target, "rate", "/", 100, chat // ROUNDS * 0.025 + 4))
                await asyncio.sleep(1.0)
                loaded += await chat_round_trips(bot, chat // ROUNDS, ids, rng, public)
                fetched = await load
                page_ms += list(fetched["ms"])  # type: ignore[call-overload]
                rates.append(float(fetched["rate"]))  # type: ignore[arg-type]
            print(f"| {size:,} | chat round trip{name} alone | {statistics.median(alone):.2f} / "
                  f"{pct(alone, 0.99):.2f} | | |")
            print(f"| {size:,} | chat round trip{name}, `/` at {statistics.mean(rates):.0f}/s | "
                  f"{statistics.median(loaded):.2f} / {pct(loaded, 0.99):.2f} | | (the page meanwhile: "
                  f"{statistics.median(page_ms):.2f} / {pct(page_ms, 0.99):.2f} ms) |")
        other.process.terminate()
        await other.process.wait()
        checkpoints.cancel()
        await bot.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, mode, path, amount, seconds = sys.argv[2:7]
        print(json.dumps(asyncio.run(_client(url, mode, path, float(amount), float(seconds)))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--chat", type=int, default=600)
    args = parser.parse_args()
    print("| downtimes | request | p50 / p99 ms | req/s (8 at once) | cold p50 / max ms |")
    print("|---:|---|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        asyncio.run(run_size(size, args.requests, args.chat))


if __name__ == "__main__":
    main()
