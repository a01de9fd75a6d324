"""Round trip through Synapse: the bot against a bare matrix-nio echo bot (the floor), and the bot's memory.

    SYNAPSE_VENV=<venv with synapse> .venv/bin/python bench/matrix_bench.py [--runs 200]

Starts a local Synapse (rate limits raised) and ngircd, runs ``python bot.py --config <file>``
with ``transports = irc,matrix`` and, beside it, a bare matrix-nio echo bot in its own process.
A user sends ``!downtime show 1`` and waits for the answer in their own sync; the same for the
echo bot, alternately, `--runs` times each. Prints p50/p99 of both, their ratio, and the bot's
resident memory (VmRSS) with both networks connected. Asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers.ircd import Ngircd, RawClient  # noqa: E402
from tests.servers.synapse import Synapse  # noqa: E402

PASSWORD = "bench password"
COMMAND = "!downtime show 1"


async def echo_bot(homeserver: str, user_id: str, password: str, room_id: str) -> None:
    """The floor: log in, sync, answer every m.text in `room_id` with its body. Nothing else."""
    client = nio.AsyncClient(homeserver, user_id, config=nio.AsyncClientConfig(encryption_enabled=False))
    await client.login(password, device_name="echo")
    await client.join(room_id)
    first = await client.sync(timeout=0)
    since = first.next_batch if isinstance(first, nio.SyncResponse) else None
    print("ready", flush=True)
    while True:
        reply = await client.sync(timeout=30000, since=since)
        if not isinstance(reply, nio.SyncResponse):
            await asyncio.sleep(0.5)
            continue
        since = reply.next_batch
        info = reply.rooms.join.get(room_id)
        for event in info.timeline.events if info else ():
            if isinstance(event, nio.RoomMessageText) and event.sender != user_id:
                await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": event.body})


class Asker:
    """A user with a tight sync loop; `ask` sends a line and waits for the next answer from `who`."""

    def __init__(self, homeserver: str, user_id: str) -> None:
        self.client = nio.AsyncClient(homeserver, user_id, config=nio.AsyncClientConfig(encryption_enabled=False))
        self.waiting: dict[tuple[str, str], asyncio.Future[float]] = {}
        self.since: str | None = None

    async def start(self, password: str) -> None:
        await self.client.login(password, device_name="asker")
        first = await self.client.sync(timeout=0)
        assert isinstance(first, nio.SyncResponse)
        self.since = first.next_batch
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            reply = await self.client.sync(timeout=30000, since=self.since)
            if not isinstance(reply, nio.SyncResponse):
                await asyncio.sleep(0.2)
                continue
            now = time.perf_counter()
            self.since = reply.next_batch
            for room_id, info in reply.rooms.join.items():
                for event in info.timeline.events:
                    future = self.waiting.pop((room_id, event.sender), None)
                    if future is not None and isinstance(event, nio.RoomMessageText) and not future.done():
                        future.set_result(now)

    async def ask(self, room_id: str, who: str, text: str) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[(room_id, who)] = future
        started = time.perf_counter()
        reply = await self.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
        assert isinstance(reply, nio.RoomSendResponse), reply
        answered = await asyncio.wait_for(future, 30)
        return (answered - started) * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bench(hs: Synapse, ircd: Ngircd, runs: int, work: Path) -> None:
    tag = secrets.token_hex(3)
    bot_id = hs.register(f"dtbot-{tag}", PASSWORD)
    echo_id = hs.register(f"echo-{tag}", PASSWORD)
    alice_id = hs.register(f"alice-{tag}", PASSWORD)
    asker = Asker(hs.url, alice_id)
    await asker.start(PASSWORD)
    ci = await asker.client.room_create(alias=f"ci-{tag}", preset=nio.RoomPreset.public_chat)
    dev = await asker.client.room_create(alias=f"dev-{tag}", preset=nio.RoomPreset.public_chat)
    echo_room = await asker.client.room_create(alias=f"echo-{tag}", preset=nio.RoomPreset.public_chat)
    assert all(isinstance(r, nio.RoomCreateResponse) for r in (ci, dev, echo_room))

    config = work / "config.ini"
    config.write_text(f"""[bot]
nick = dtb{tag}
database = sqlite:///{work / 'bot.db'}
transports = irc,matrix
[roles]
ciduty = {alice_id}
[policy]
min_notice = 1h
low_impact = daily 00:00-24:00 UTC
ciduty_hours = daily 00:00-24:00 UTC
[irc]
host = 127.0.0.1
port = {ircd.port}
identity = nick
pacing = off
[matrix]
homeserver = {hs.url}
user_id = {bot_id}
password_env = BENCH_MATRIX_PASSWORD
requests_room = #ci-{tag}:{hs.server_name}
announce_room = #dev-{tag}:{hs.server_name}
store_path = {work / 'matrix'}
""")
    env = dict(os.environ, BENCH_MATRIX_PASSWORD=PASSWORD, DOWNTIMEBOT_LOG_LEVEL="WARNING")
    log = open(work / "bot.log", "wb")  # noqa: SIM115
    bot = subprocess.Popen([sys.executable, str(REPO / "bot.py"), "--config", str(config)],
                           cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    echo = subprocess.Popen(
        [sys.executable, __file__, "--echo", hs.url, echo_id, PASSWORD, echo_room.room_id],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert echo.stdout is not None
        await asyncio.to_thread(echo.stdout.readline)  # "ready"
        async with RawClient(ircd.port, f"watch{tag}") as watcher:
            await watcher.join("#ci")
            await watcher.wait_for(lambda l: l.command == "JOIN" and l.nick == f"dtb{tag}", timeout=60, since=0)
            day = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=3)
            # The first answer also tells that the bot has joined and synced.
            for _ in range(60):
                try:
                    await asker.ask(ci.room_id, bot_id, f"!downtime propose {day} 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
                    break
                except asyncio.TimeoutError:
                    continue
            for _ in range(10):  # warm-up, both
                await asker.ask(ci.room_id, bot_id, COMMAND)
                await asker.ask(echo_room.room_id, echo_id, COMMAND)
            bot_ms: list[float] = []
            echo_ms: list[float] = []
            for _ in range(runs):
                bot_ms.append(await asker.ask(ci.room_id, bot_id, COMMAND))
                echo_ms.append(await asker.ask(echo_room.room_id, echo_id, COMMAND))
            rss = rss_mb(bot.pid)
            echo_rss = rss_mb(echo.pid)
    finally:
        for process in (bot, echo):
            process.terminate()
            process.wait(timeout=30)
        log.close()
        asker.task.cancel()
        await asker.client.close()

    print(f"round trip through Synapse, {runs} x '{COMMAND}' (ms):")
    print("| client | p50 ms | p99 ms | mean ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("bare matrix-nio echo bot (floor)", echo_ms), ("downtime-bot (irc,matrix)", bot_ms)):
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 99):.1f} | {statistics.fmean(values):.1f} |")
    print(f"p50 ratio bot/floor: {statistics.median(bot_ms) / statistics.median(echo_ms):.2f} (target <= 1.2)")
    print(f"bot resident memory with IRC and Matrix connected: VmRSS {rss:.1f} MB (target < 80); "
          f"echo bot {echo_rss:.1f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--echo", nargs=4, metavar=("HOMESERVER", "USER", "PASSWORD", "ROOM"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.echo:
        asyncio.run(echo_bot(*options.echo))
        return 0
    with Synapse() as hs, Ngircd(penalties=False) as ircd, tempfile.TemporaryDirectory() as work:
        asyncio.run(bench(hs, ircd, options.runs, Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
