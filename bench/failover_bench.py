"""[ha] failover time and the lease's cost, with two real `bot.py` processes.

    .venv/bin/python bench/failover_bench.py [--kills 10] [--lease 15] [--lines 20]
                                             [--databases sqlite,postgresql]
                                             [--cost-leases 15,3] [--cost-window 60]

Failover (on each database): two instances (tests/servers/instances.py) on one database and a
real ngircd with its default flood rules; a watcher (a RawClient) sits in the channel. `--kills`
times: `--lines` chat lines are queued in the outbox; once the first of them is in the channel,
the leader is SIGKILLed after a random pause of 0 to lease_seconds / 3 (seeded: `--seed`), while
it is still delivering them. The pause puts the kill anywhere in the leader's renew cycle: the
leader looks for lines queued by another process (as here) every lease_seconds from the start of
its term, at the same moments as it renews, so without it each kill would fall just after a
renew, the worst case. The killed instance is started again after another
random pause of 0 to lease_seconds / 3, so that the standby's retries fall anywhere in the
leader's cycle too. Measured: SIGKILL -> the new leader's JOIN, and SIGKILL -> the first line
the new leader says (the first PRIVMSG after its JOIN, as the watcher receives it). Then every
queued line must arrive; lines said more than once are counted. The killed instance waits as the
standby before the next kill. Printed: p50 and max over the kills,
the target (lease_seconds + 5 s) and whether every kill met it, the repeated lines.

The lease's cost (PostgreSQL only): two instances, idle (no downtime), each logging in as its own
database role; the server logs every statement of those roles (`log_statement = all`) and the
statements logged during `--cost-window` seconds are counted per instance. One "statement" is
one statement the server executed for that role: BEGIN, COMMIT and ROLLBACK included, as psycopg
sends them, and the pool's pre-ping (`;`, SQLAlchemy's pool_pre_ping, before each checkout). One
"transaction" is BEGIN .. COMMIT/ROLLBACK with the pre-ping before it; a transaction that touches
`leader_lease` is the lease's. `pg_stat_database` (commits + rollbacks of the database, both
instances together; it counts each pre-ping as a transaction of its own) is printed as a check.

Prints figures; asserts nothing (a line that never arrives is printed as missing).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.instances import Instance, lines_from_bot, queue, wait_until  # noqa: E402
from tests.servers.ircd import Line, Ngircd, RawClient  # noqa: E402
from tests.servers.postgres import PASSWORD_ENV, PostgresServer  # noqa: E402


@dataclass
class Kill:
    """One SIGKILL of the leader and what the watcher saw after it."""

    database: str
    number: int
    killed: str
    took_over: str
    join_s: float
    first_line_s: float
    before: int  # lines of this round in the channel when the leader was killed
    seen: int  # lines of this round in the channel in the end (repeats included)
    repeated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def leads(instance: Instance) -> int:
    return instance.count(rf"instance {instance.name} leads")


def stands_by(instance: Instance) -> int:
    return instance.count(rf"instance {instance.name} stands by")


async def first_leader(a: Instance, b: Instance, tag: str, lease: int) -> tuple[Instance, Instance]:
    """Start both; (the leader, the standby) once the leader joined and the standby says so."""
    a.start()
    b.start()
    await wait_until(lambda: leads(a) + leads(b) == 1, 60 + lease, "a leader")
    leader, standby = (a, b) if leads(a) else (b, a)
    await leader.wait_log(rf"IRC joined #ci-{tag}\b", timeout=60)
    await standby.wait_log(rf"instance {standby.name} stands by \(leader: {leader.name}\)", timeout=60 + 2 * lease)
    return leader, standby


def bot_join_after(watcher: RawClient, tag: str, since: int) -> int | None:
    """The index of the first JOIN of a bot connection in the watcher's lines after `since`."""
    for index in range(since, len(watcher.lines)):
        line = watcher.lines[index]
        if line.command == "JOIN" and line.nick.lower().startswith(f"dtbot{tag}"):
            return index
    return None


async def failover(database: str, env: dict[str, str], label: str, args: argparse.Namespace,
                   ngircd: Ngircd, tmp: Path) -> list[Kill]:
    tag = uuid.uuid4().hex[:6]
    channel = f"#ci-{tag}"
    lease = args.lease
    a, b = (Instance(tmp, name, port=ngircd.port, tag=tag, database=database, env=env, lease=lease)
            for name in ("a", "b"))
    kills: list[Kill] = []
    watcher = RawClient(ngircd.port, f"watch{tag}")
    await watcher.connect()
    await watcher.join(channel)
    try:
        leader, standby = await first_leader(a, b, tag, lease)
        rng = random.Random(args.seed)
        for number in range(1, args.kills + 1):
            bodies = [f"kill {number:02d} line {n:02d}" for n in range(args.lines)]
            mark = len(watcher.lines)
            taken = leads(standby)
            queue(database, env, channel, bodies)
            await wait_until(lambda: len(lines_from_bot(watcher, tag, mark)) >= 1, 60, "the first queued line")
            await asyncio.sleep(rng.uniform(0, lease / 3))
            leader.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            at_kill = len(watcher.lines)
            before = len(lines_from_bot(watcher, tag, mark))
            assert leader.proc is not None
            leader.proc.wait(10)
            leader.proc = None
            # The new leader's JOIN, then its first line. Generous bounds: a slow failover is a figure.
            bound = 4 * lease + 60
            await wait_until(lambda: bot_join_after(watcher, tag, at_kill) is not None, bound,
                             f"kill {number}: the new leader's JOIN")
            joined = bot_join_after(watcher, tag, at_kill)
            assert joined is not None
            await wait_until(lambda: len(lines_from_bot(watcher, tag, joined)) >= 1, bound,
                             f"kill {number}: the new leader's first line")
            join_line: Line = watcher.lines[joined]
            first: Line = lines_from_bot(watcher, tag, joined)[0]
            try:
                await wait_until(lambda: {line.text for line in lines_from_bot(watcher, tag, mark)} >= set(bodies),
                                 args.lines * 3 + 60, f"kill {number}: every queued line")
            except AssertionError:
                pass  # printed as missing
            await asyncio.sleep(2)  # a line said twice would come now
            said = [line.text for line in lines_from_bot(watcher, tag, mark)]
            kills.append(Kill(
                database=label, number=number, killed=leader.name,
                took_over=standby.name if leads(standby) > taken else "?",
                join_s=join_line.received - killed_at, first_line_s=first.received - killed_at,
                before=before, seen=len(said),
                repeated=sorted(text for text, count in Counter(said).items() if count > 1),
                missing=[body for body in bodies if body not in said],
            ))
            print(f"  [{label}] kill {number:2d}: {leader.name} killed with {before}/{args.lines} lines said; "
                  f"{standby.name} joined after {kills[-1].join_s:5.2f} s, first line after "
                  f"{kills[-1].first_line_s:5.2f} s; {len(said)} lines seen, repeated {kills[-1].repeated}, "
                  f"missing {len(kills[-1].missing)}", flush=True)
            # The killed one comes back as the standby; the survivor leads on.
            waiting = stands_by(leader)
            await asyncio.sleep(rng.uniform(0, lease / 3))
            leader.start()
            await leader.wait_log(rf"instance {leader.name} stands by \(leader: {standby.name}\)",
                                  count=waiting + 1, timeout=60 + 2 * lease)
            leader, standby = standby, leader
    finally:
        await watcher.quit()
        for instance in (a, b):
            instance.stop()
    return kills


def summary(kills: list[Kill], lease: int, lines: int) -> list[str]:
    firsts = [k.first_line_s for k in kills]
    joins = [k.join_s for k in kills]
    target = lease + 5
    repeated = [(k.number, text) for k in kills for text in k.repeated]
    missing = sum(len(k.missing) for k in kills)
    return [
        f"kill -> first line from the new leader: p50 {statistics.median(firsts):.2f} s, "
        f"max {max(firsts):.2f} s, min {min(firsts):.2f} s over {len(kills)} kills",
        f"kill -> the new leader's JOIN:          p50 {statistics.median(joins):.2f} s, "
        f"max {max(joins):.2f} s",
        f"target lease_seconds + 5 s = {target} s; every time under target: "
        f"{'yes' if all(f < target for f in firsts) else 'no'}"
        + ("" if all(f < target for f in firsts) else f" ({sum(f >= target for f in firsts)} over)"),
        f"lines: {len(kills) * lines} queued, {sum(k.seen for k in kills)} seen, missing {missing}; "
        f"repeated lines: {len(repeated)} in {len(kills)} kills {repeated}",
    ]


# ----- the lease's cost ------------------------------------------------------------------------------

STATEMENT = re.compile(r"\[(?P<pid>\d+)\] (?P<user>\w+)@\S+ LOG:  (?:statement|execute [^:]*): (?P<sql>.*)")
PING = ";"  # SQLAlchemy's pool pre-ping on PostgreSQL: an empty statement on the connection it checks out


def first_word(sql: str) -> str:
    return sql.split(None, 1)[0].upper() if sql.strip() else ""


def what(transaction: list[str]) -> str:
    """A transaction's kind: `lease` when it touches leader_lease, else its first real statement."""
    if any("leader_lease" in sql for sql in transaction):
        return "lease"
    real = [sql for sql in transaction if sql != PING and first_word(sql) not in ("BEGIN", "COMMIT", "ROLLBACK")]
    return " ".join(real[0].split())[:80] if real else "(pre-ping alone)"


def count_statements(text: str, users: dict[str, str]) -> dict[str, dict[str, Counter[str]]]:
    """Per instance and per kind of transaction (`what`): its transactions and their statements.

    A transaction is the statements of one backend from the statement after the last COMMIT or
    ROLLBACK to the next one: the pool's pre-ping (`;`) before BEGIN counts with it."""
    open_: dict[str, list[str]] = {}
    counts: dict[str, dict[str, Counter[str]]] = {name: {} for name in users.values()}

    def close(pid: str, user: str) -> None:
        transaction = open_.pop(pid, [])
        if transaction:
            kind = counts[users[user]].setdefault(what(transaction), Counter())
            kind["transactions"] += 1
            kind["statements"] += len(transaction)
            kind["pings"] += transaction.count(PING)
            kind["writes"] += sum(first_word(sql) in ("INSERT", "UPDATE", "DELETE") for sql in transaction)
            kind["bumps"] += sum("UPDATE bot_meta" in sql for sql in transaction)

    owners: dict[str, str] = {}
    for line in text.splitlines():
        found = STATEMENT.search(line)
        if not found or found["user"] not in users:
            continue
        pid, sql = found["pid"], found["sql"].strip()
        owners[pid] = found["user"]
        open_.setdefault(pid, []).append(sql)
        if first_word(sql) in ("COMMIT", "ROLLBACK"):
            close(pid, found["user"])
    for pid in list(open_):  # cut by the window's end
        close(pid, owners[pid])
    return counts


def xacts(server: PostgresServer, name: str) -> int:
    rows = server.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,))
    return int(rows[0][0])


async def lease_cost(server: PostgresServer, lease: int, window: float, ngircd: Ngircd, tmp: Path,
                     save: Path | None) -> list[str]:
    name = f"bench_cost_{lease}_{os.getpid()}"
    server.create_database(name)
    users: dict[str, str] = {}
    instances: list[Instance] = []
    tag = uuid.uuid4().hex[:6]
    for who in ("a", "b"):
        role, password = f"bench_{who}_{tag}", uuid.uuid4().hex
        server.create_role(role, password)
        server.grant_database(name, role)
        server.execute(f'ALTER ROLE "{role}" SET log_statement = \'all\'')
        users[role] = who
        instances.append(Instance(tmp, f"{who}{lease}", port=ngircd.port, tag=tag, database=server.url(name, role),
                                  env={f"BENCH_PASSWORD_{who.upper()}": password}, lease=lease))
    renamed = {role: inst.name for role, inst in zip(users, instances)}
    try:
        leader, standby = await first_leader(instances[0], instances[1], tag, lease)
        await asyncio.sleep(max(5.0, 2 * lease))  # past the start (migrations check, first reads)
        server.execute("SELECT pg_stat_clear_snapshot()")
        offset = server.log.stat().st_size
        xacts_before = xacts(server, name)
        started = time.monotonic()
        await asyncio.sleep(window)
        minutes = (time.monotonic() - started) / 60
        time.sleep(0.7)  # pg_stat_database is flushed at most every 0.5 s (idle backends: at their next use)
        xacts_after = xacts(server, name)
        with open(server.log, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    finally:
        for instance in instances:
            instance.stop()
        server.drop_database(name)
    if save is not None:
        (save / f"statements-lease{lease}.log").write_text(text)
    counts = count_statements(text, renamed)
    out = [f"lease_seconds {lease}: {window:.0f} s idle window; per minute, transactions / statements:"]
    for role_of, instance in (("leader", leader), ("standby", standby)):
        kinds = counts[instance.name]
        total = sum((kind for kind in kinds.values()), Counter[str]())
        lease_kind = kinds.get("lease", Counter[str]())
        out.append(
            f"  {role_of:7s} all {total['transactions'] / minutes:5.1f} / {total['statements'] / minutes:5.1f}; "
            f"the lease {lease_kind['transactions'] / minutes:5.1f} / {lease_kind['statements'] / minutes:5.1f} "
            f"(of which {lease_kind['pings'] / minutes:.1f} pre-pings and "
            f"{lease_kind['bumps'] / minutes:.1f} `changes` bumps)"
        )
        for name, kind in sorted(kinds.items(), key=lambda item: -item[1]["statements"]):
            if name != "lease":
                out.append(f"          {kind['transactions'] / minutes:5.1f} / {kind['statements'] / minutes:5.1f}  {name}")
    out.append(f"  pg_stat_database: {(xacts_after - xacts_before) / minutes:.1f} transactions/min "
               "(both instances, committed + rolled back, counted by the server: each pre-ping is one)")
    return out


# ----- main ------------------------------------------------------------------------------------------

def machine() -> str:
    cores = os.cpu_count()
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return f"{platform.system()} {platform.machine()}, {cores} cores, Python {platform.python_version()}, commit {commit}"


async def main_async(args: argparse.Namespace) -> None:
    databases = [d for d in args.databases.split(",") if d]
    cost_leases = [int(x) for x in args.cost_leases.split(",") if x]
    print(f"# failover_bench: {machine()}; --kills {args.kills} --lease {args.lease} --lines {args.lines}", flush=True)
    results: dict[str, list[Kill]] = {}
    cost: list[str] = []
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as tmpdir, Ngircd(penalties=True) as ngircd:
        tmp = Path(tmpdir)
        server: PostgresServer | None = None
        try:
            if "postgresql" in databases or cost_leases:
                server = PostgresServer().__enter__()
                server.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] %u@%d '")
                server.execute("SELECT pg_reload_conf()")
            for label in databases:
                run_dir = tmp / label
                run_dir.mkdir(mode=0o700)
                if label == "sqlite":
                    database, env = f"sqlite:///{run_dir / 'bot.db'}", {}
                elif label == "postgresql":
                    assert server is not None
                    database = server.create_database(f"bench_failover_{os.getpid()}")
                    env = {PASSWORD_ENV: server.role_password}
                else:
                    raise SystemExit(f"unknown database {label!r}")
                print(f"\n## failover on {label}, lease_seconds {args.lease}", flush=True)
                results[label] = await failover(database, env, label, args, ngircd, run_dir)
            for lease in cost_leases:
                assert server is not None
                print(f"\n## the lease's cost on PostgreSQL, lease_seconds {lease} ({args.cost_window:.0f} s)", flush=True)
                cost_dir = tmp / f"cost{lease}"
                cost_dir.mkdir()
                cost += await lease_cost(server, lease, args.cost_window, ngircd, cost_dir, args.save_log)
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    print(f"\n# Summary ({machine()})")
    for label, kills in results.items():
        if not kills:
            continue
        print(f"\nfailover on {label}, lease_seconds {args.lease}, {args.lines} lines queued at each kill:")
        for line in summary(kills, args.lease, args.lines):
            print(f"  {line}")
    if cost:
        print("\nthe lease's cost on PostgreSQL (idle instances; a statement is one the server executed, "
              "BEGIN, COMMIT, ROLLBACK and the pool's pre-ping `;` included; a transaction is BEGIN..COMMIT/ROLLBACK "
              "with the pre-ping before it):")
        for line in cost:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease", type=int, default=15, help="lease_seconds (3..600; the config's default 15)")
    parser.add_argument("--lines", type=int, default=20, help="lines queued at each kill")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=1, help="the random pauses before the kills")
    parser.add_argument("--cost-leases", default="15,3",
                        help="lease_seconds values to measure the lease's cost at ('' for none)")
    parser.add_argument("--cost-window", type=float, default=60.0, help="seconds of each idle window")
    parser.add_argument("--save-log", type=Path, help="a directory to keep the statements of each window in")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
