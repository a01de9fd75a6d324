"""IRC round trip: our bot vs Sopel 8 vs a bare irc.client_aio echo bot, on one ngircd.

    cd <checkout> && .venv/bin/python bench/irc_bench.py [--runs 500] [--sopel /tmp/sopel-venv-sys/bin/sopel]

ngircd runs on loopback with penalties off (MaxPenaltyTime = 0) and the bot with
``[irc] pacing = off``. One RawClient per bot sends a command, waits for the whole answer,
and sends the next (sequential): `!downtime show 1` (its whole answer, three lines) for our bot, `.ping` for
Sopel (antiloop_threshold = 0, flood protection off), `!echo` for the floor. Printed per bot:
p50/p99 round trip, resident memory after the run (VmRSS), time from exec to the JOIN of
its last channel as another client sees it. Sopel refuses to run as root: as root it is
started as uid 65534 (nobody), never with its root check patched.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.ircd import Line, Ngircd, RawClient  # noqa: E402

NOBODY = 65534

FLOOR_BOT = """\
import asyncio, sys
import irc.client, irc.client_aio
port, nick, channel = int(sys.argv[1]), sys.argv[2], sys.argv[3]
loop = asyncio.new_event_loop()
reactor = irc.client_aio.AioReactor(loop=loop)
def on_welcome(c, e): c.join(channel)
def on_pubmsg(c, e):
    text = e.arguments[0]
    if text.startswith("!echo "):
        c.privmsg(e.target, "echo: " + text[6:])
async def main():
    c = await reactor.server().connect("127.0.0.1", port, nick)
    c.add_global_handler("welcome", on_welcome)
    c.add_global_handler("pubmsg", on_pubmsg)
loop.run_until_complete(main())
loop.run_forever()
"""


@dataclass
class Result:
    name: str
    command: str
    p50: float
    p99: float
    first_p50: float
    first_p99: float
    rss_mb: float
    joined_s: float


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(
    name: str, port: int, nick: str, channels: list[str], argv: list[str], *, command: str, lines: int,
    runs: int, env: dict[str, str] | None = None, cwd: Path | None = None, preexec: Callable[[], None] | None = None,
    log: Path,
) -> Result:
    client = RawClient(port, f"bench{nick[:6]}")
    await client.connect()
    for channel in channels:
        await client.join(channel)
    mark = client.mark()
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, preexec_fn=preexec)
    try:
        joins = await client.wait_for_count(
            lambda l: l.command == "JOIN" and l.nick == nick, len(channels), timeout=30, since=mark)
        joined = joins[-1].received - started
        channel = channels[0]

        def reply(line: Line) -> bool:
            return line.command == "PRIVMSG" and line.nick == nick and line.params[0] == channel

        if lines == 0:  # calibrate: how many lines one answer has
            start = client.mark()
            await client.privmsg(channel, command)
            await client.wait_for(reply, timeout=10)
            await asyncio.sleep(1.0)
            lines = sum(1 for line in client.lines[start:] if reply(line))
        times, firsts = [], []
        for i in range(runs + 20):
            client.mark()
            sent = time.monotonic()
            await client.privmsg(channel, command)
            got = await client.wait_for_count(reply, lines, timeout=10)
            if i >= 20:  # warm-up
                times.append(got[-1].received - sent)
                firsts.append(got[0].received - sent)
        memory = rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        await client.quit()
    return Result(name, command, statistics.median(times) * 1000, percentile(times, 0.99) * 1000,
                  statistics.median(firsts) * 1000, percentile(firsts, 0.99) * 1000, memory, joined)


def seed_database(tmp: Path) -> str:
    db = f"sqlite:///{tmp / 'bench.db'}"
    env = dict(os.environ, DOWNTIMEBOT_BOT_DATABASE=db, DOWNTIMEBOT_LOG_LEVEL="ERROR")
    subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--console"],
        input="#ci alice: !downtime propose in 3d for 2h bug 123456 -- Upgrade hg.mozilla.org\n",
        text=True, env=env, check=True, stdout=subprocess.DEVNULL, cwd=tmp,
    )
    return db


async def run(args: argparse.Namespace) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="irc-bench-"))
    tmp.chmod(0o777)
    results: list[Result] = []
    with Ngircd(penalties=False) as server:
        db = seed_database(tmp)
        config = tmp / "bot.ini"
        config.write_text(textwrap.dedent(f"""\
            [bot]
            nick = dtbench
            database = {db}
            transports = irc
            # The asker sends one command after another as fast as answers come: a latency
            # measure, not a flood ([bot] rate_limit would ignore it after five).
            rate_limit = off
            [channels]
            requests = #ci
            announce = #developers
            [irc]
            host = 127.0.0.1
            port = {server.port}
            identity = nick
            pacing = off
            """))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNTIMEBOT_")}
        env["DOWNTIMEBOT_LOG_LEVEL"] = "WARNING"
        results.append(await measure(
            "downtime-bot", server.port, "dtbench", ["#ci", "#developers"],
            [sys.executable, str(ROOT / "bot.py"), "--config", str(config)],
            command="!downtime show 1", lines=0, runs=args.runs, env=env, cwd=tmp, log=tmp / "bot.log"))

        floor = tmp / "floor.py"
        floor.write_text(FLOOR_BOT)
        results.append(await measure(
            "irc.client_aio echo (floor)", server.port, "echobench", ["#floor"],
            [sys.executable, str(floor), str(server.port), "echobench", "#floor"],
            command="!echo hi", lines=1, runs=args.runs, log=tmp / "floor.log"))

        sopel = args.sopel if args.sopel and Path(args.sopel).exists() else shutil.which("sopel")
        if sopel:
            home = tmp / "sopel"
            home.mkdir()
            (home / "sopel.cfg").write_text(textwrap.dedent(f"""\
                [core]
                nick = sopelbench
                host = 127.0.0.1
                port = {server.port}
                use_ssl = false
                owner = nobody
                channels = #sopel
                homedir = {home}
                logdir = {home}/logs
                enable = ping
                antiloop_threshold = 0
                flood_burst_lines = 100000
                flood_empty_wait = 0
                flood_max_wait = 0
                flood_refill_rate = 100000
                flood_penalty_ratio = 0
                """))
            preexec = None
            if os.geteuid() == 0:
                for path in (home, home / "sopel.cfg"):
                    os.chown(path, NOBODY, NOBODY)

                def preexec() -> None:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)

            results.append(await measure(
                "Sopel 8 .ping", server.port, "sopelbench", ["#sopel"],
                [sopel, "start", "-c", str(home / "sopel.cfg")],
                command=".ping", lines=1, runs=args.runs, env=dict(os.environ, HOME=str(home)), cwd=home,
                preexec=preexec, log=tmp / "sopel.log"))
        else:
            print("sopel not found: pip install 'sopel>=8,<9' into a venv and pass --sopel", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--sopel", default="/tmp/sopel-venv-sys/bin/sopel")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(f"ngircd, penalties off, loopback; {args.runs} sequential commands after 20 warm-up")
    print("| bot | command | whole answer p50 / p99 ms | first line p50 / p99 ms | RSS MB | exec → joined s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | `{r.command}` | {r.p50:.2f} / {r.p99:.2f} | {r.first_p50:.2f} / {r.first_p99:.2f} "
              f"| {r.rss_mb:.1f} | {r.joined_s:.2f} |")


if __name__ == "__main__":
    main()
