"""[ha] failover drills, the rest of issue 14's: two real `bot.py` processes, a real ngircd, a
real PostgreSQL (and SQLite where it applies), lease_seconds 3.

A watcher (a RawClient in the channels) is the tap on the ircd: it keeps every line the bot says
with the time it arrived and the connection's prefix (nick!user@host; each instance has its own
[irc] username, so the prefix tells the instances apart whatever nick they hold).

- in the middle of a downtime (started through chat, its trees closed in a local Treestatus),
  with 20 lines queued and a reminder due 1 s after the leader's SIGKILL (in the gap): the
  standby takes over within lease_seconds + 5 s, each line and the reminder arrive once (at most
  one repeated line, counted and printed), the reminder marked late; the downtime is ended from
  the new leader: the trees are back as they were in Treestatus and the TREE OPEN is said once;
- the leader loses the database while it keeps running (each instance logs in as its own role;
  the leader's connections are ended with pg_terminate_backend and its logins refused for
  2.5 x lease_seconds): it stops sending within lease_seconds, the other takes over and delivers
  what is queued, and the tap never sees the two connections speak in the same window (every
  line of the old one comes before every line of the new one); once it may log in again, the old
  leader stands by;
- PostgreSQL restarted (a server of the drill's own: the session's is shared): both instances
  reconnect, exactly one leads, and the lines queued before and right after the restart arrive
  once each (at most one repeated, counted).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_irc_transport import _require
from tests.servers.instances import LEASE, Instance, lines_from_bot, queue, wait_until
from tests.servers.ircd import Line, Ngircd, RawClient
from tests.servers.postgres import PASSWORD_ENV, PostgresServer, running_postgres
from tests.servers.treestatus import TreestatusServer, add_mixed_trees

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UTC = dt.timezone.utc
TREES = ("autoland", "mozilla-central", "mozilla-beta", "try")
TREESTATUS_TOKEN = "tok-failover-drill"


@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    _require("ngircd")
    with Ngircd(penalties=True) as server:  # default flood rules: the bot paces itself
        yield server


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own, for the drill that restarts it (the session's
    `postgres` is shared by every other test of the session)."""
    yield from running_postgres()


def repeats(said: list[str]) -> list[str]:
    return sorted({s for s in said if said.count(s) > 1})


def speaker(line: Line) -> str:
    """The instance whose connection said the line ([irc] username bot<name>), whatever nick it held."""
    return line.source.split("!", 1)[1].split("@", 1)[0].lstrip("~").removeprefix("bot")


def snapshot(server: TreestatusServer) -> dict[str, tuple[str, str, list[str]]]:
    return {n: (s["status"], s["reason"], s["tags"]) for n in TREES for s in [server.tree_state(n)]}


def leader_of(a: Instance, b: Instance, count: int = 1) -> tuple[Instance, Instance]:
    """(the leader, the standby) once exactly one of them has said it leads `count` times."""
    return (a, b) if a.count(rf"instance {a.name} leads") >= count else (b, a)


def report_lines(report: list[str], drill: str, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        for line in report:
            print(f"\n[failover drill {drill}, {database.split(':')[0].split('+')[0]}] {line}")


# --- a. in the middle of a downtime ---------------------------------------------------------------


def test_a_leader_killed_in_the_middle_of_a_downtime_loses_no_line_no_reminder_and_the_new_leader_ends_it(
    ngircd: Ngircd, tmp_path: Path, ha_database: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str],
) -> None:
    database, env = ha_database
    t = uuid.uuid4().hex[:6]
    requests, announce = f"#ci-{t}", f"#dev-{t}"
    alice, carol, sam = f"alice{t}", f"carol{t}", f"sam{t}"
    trees = TreestatusServer(token=TREESTATUS_TOKEN)
    trees.start()
    add_mixed_trees(trees)
    before = snapshot(trees)
    extra = (
        "[trees]\n"
        f"backend = treestatus\ntreestatus_url = {trees.url}\n"
        "[policy]\n"
        "min_notice = 1m\nmin_gap = 1m\nreminders = 1m\n"
        "low_impact = daily 00:00-24:00 UTC\nciduty_hours = daily 00:00-24:00 UTC\n"
    )
    roles = f"ciduty = {carol}\nsheriffs = {sam}\n"
    a, b = (Instance(tmp_path, n, port=ngircd.port, tag=t, database=database, env=env, extra=extra, roles=roles,
                     irc=f"username = bot{n}\n") for n in ("a", "b"))
    for instance in (a, b):
        instance.env["TREESTATUS_TOKEN"] = TREESTATUS_TOKEN
    report: list[str] = []

    async def scenario() -> None:
        watcher = RawClient(ngircd.port, f"watch{t}")
        people = {nick: RawClient(ngircd.port, nick) for nick in (alice, carol)}
        for client in (watcher, *people.values()):
            await client.connect()
            await client.join(requests)
        await watcher.join(announce)

        def bot_says(since: int, pattern: str, channel: str | None = None) -> list[Line]:
            return [line for line in lines_from_bot(watcher, t, since)
                    if re.search(pattern, line.text) and (channel is None or line.params[0] == channel)]

        async def command(who: str, text: str, answer: str, channel: str | None = None, timeout: float = 30) -> Line:
            mark = len(watcher.lines)
            await people[who].privmsg(requests, text)
            await wait_until(lambda: bot_says(mark, answer, channel), timeout, f"the answer to {text!r} ({answer!r})")
            return bot_says(mark, answer, channel)[0]

        try:
            a.start()
            b.start()
            await wait_until(lambda: a.count(r"instance a leads") + b.count(r"instance b leads") == 1, 30, "a leader")
            leader, standby = leader_of(a, b)
            await leader.wait_log(rf"IRC joined {requests}\b")
            await leader.wait_log(rf"IRC joined {announce}\b")
            await standby.wait_log(rf"instance {standby.name} stands by \(leader: {leader.name}\)")

            # Downtime #1 proposed, approved, announced and started: its trees close in Treestatus.
            now = dt.datetime.now(UTC).replace(microsecond=0)
            first_start = now + dt.timedelta(minutes=10)
            await command(alice, f"!downtime propose {first_start:%Y-%m-%d %H:%M:%S} UTC for 1h bug 4242 "
                                 "-- Move the build database", r"#1\b")
            await command(carol, "!downtime approve 1", r"#1\b")
            await command(carol, "!downtime announce 1", r"Downtime #1 announced", announce)
            await command(carol, "!downtime start 1", r"#1\b")
            await wait_until(lambda: all(trees.tree_state(n)["status"] == "closed" for n in TREES), 30,
                             "the trees closed in Treestatus")
            closed = snapshot(trees)
            # Downtime #2, approved and not announced: its "announce it" reminder is due 2 h before the
            # last moment that gives the notice period (min_notice 1m), ~18 s from now.
            due = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(seconds=18)
            second_start = due + dt.timedelta(hours=2, minutes=1)
            await command(alice, f"!downtime propose {second_start:%Y-%m-%d %H:%M:%S} UTC for 1h bug 4243 "
                                 "-- Move the try database", r"#2\b")
            await command(carol, "!downtime approve 2", r"#2\b")
            due_in = (due - dt.datetime.now(UTC)).total_seconds()
            assert due_in > 8, f"too slow to kill before the reminder: it is due in {due_in:.1f} s"

            # 20 lines queued; SIGKILL 1 s before the reminder is due, while the lines go out. The lease
            # (renewed every second) ends 2-3 s after the kill: the reminder falls due in the gap.
            bodies = [f"drill {t} line {n:02d}" for n in range(20)]
            mark = len(watcher.lines)
            await asyncio.sleep(max(0.0, due_in - 6))
            queue(database, env, requests, bodies)
            await wait_until(lambda: len(lines_from_bot(watcher, t, mark)) >= 1, LEASE + 10, "the first line")
            await asyncio.sleep(max(0.0, (due - dt.datetime.now(UTC)).total_seconds() - 1))
            leader.signal(signal.SIGKILL)
            killed_at, killed_wall = time.monotonic(), dt.datetime.now(UTC)
            before_kill = len([l for l in lines_from_bot(watcher, t, mark) if l.text in bodies])
            await standby.wait_log(rf"instance {standby.name} leads", timeout=LEASE + 5)
            took_over, took_over_wall = time.monotonic() - killed_at, dt.datetime.now(UTC)
            await wait_until(lambda: len([l for l in lines_from_bot(watcher, t, mark) if l.text in bodies])
                             > before_kill or {l.text for l in lines_from_bot(watcher, t, mark)} >= set(bodies),
                             LEASE + 5, "the first line from the new leader")
            first_from_new = time.monotonic() - killed_at
            await wait_until(lambda: {l.text for l in lines_from_bot(watcher, t, mark)} >= set(bodies), 60,
                             "every queued line")
            await wait_until(lambda: bot_says(mark, r"Downtime #2 is approved but not announced"), 30,
                             "the reminder")
            await asyncio.sleep(2)  # anything said twice would come now
            said = [l.text for l in lines_from_bot(watcher, t, mark) if l.text in bodies]
            reminders = [f"{l.params[0]} {l.text}" for l in bot_says(mark, r"Downtime #2 is approved but not announced")]
            repeated = repeats(said)
            report.append(
                f"SIGKILL {(due - killed_wall).total_seconds():.1f} s before a reminder was due: {len(said)} lines "
                f"seen for 20 queued ({before_kill} before the kill); repeated: {len(repeated)} {repeated}; "
                f"kill -> new leader {took_over:.1f} s, -> first line from it {first_from_new:.1f} s; "
                f"reminder lines {len(reminders)}, late-marked: {all('(late' in r for r in reminders)}")
            assert killed_wall < due < took_over_wall, "the reminder was not due in the gap: the drill missed its point"
            assert sorted(set(said)) == bodies
            assert len(repeated) <= 1 and all(said.count(s) == 2 for s in repeated), said
            assert len(reminders) == 1 and reminders[0].startswith(f"{requests} "), reminders  # CiDuty's, once
            assert all(r.endswith("(late: the bot was not running when this was due)") for r in reminders), reminders
            assert snapshot(trees) == closed  # the takeover left the trees alone

            # Ended from the new leader: the trees come back as they were, TREE OPEN said once.
            ended = len(watcher.lines)
            await command(carol, "!downtime end 1", r"TREE OPEN", announce, timeout=60)
            await wait_until(lambda: snapshot(trees) == before, 30, "the trees restored in Treestatus")
            await asyncio.sleep(2)
            tree_open = bot_says(ended, r"TREE OPEN", announce)
            assert len(tree_open) == 1, [l.raw for l in tree_open]
            after_end = [f"{l.params[0]} {l.text}" for l in lines_from_bot(watcher, t, ended)]
            assert repeats(after_end) == [], after_end  # the end's lines, each once
            assert trees.stack_entries() == []
            assert leader.proc is not None and leader.proc.poll() is not None  # (still dead: the new one ended it)
            spoke = {speaker(l) for l in lines_from_bot(watcher, t, ended)}
            assert spoke == {standby.name}, spoke
            report.append(f"ended from the new leader: trees restored, TREE OPEN said {len(tree_open)} time(s)")
            for instance in (a, b):
                running = instance.text().split("downtime-bot running as instance", 1)[-1]
                assert "Traceback" not in running, running[-3000:]
        finally:
            for client in (watcher, *people.values()):
                await client.quit()

    try:
        asyncio.run(scenario())
    finally:
        for instance in (a, b):
            instance.stop()
        trees.stop()
        report_lines(report, "a", database, capsys)


# --- b. the leader loses the database -------------------------------------------------------------


def test_a_leader_that_loses_the_database_stops_sending_within_the_lease_and_never_speaks_beside_the_new_one(
    ngircd: Ngircd, tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str],
) -> None:
    t = uuid.uuid4().hex[:6]
    channel = f"#ci-{t}"
    name = f"drill_b_{os.getpid()}_{t}"
    database = postgres.create_database(name)
    env = {PASSWORD_ENV: postgres.role_password}
    instances: dict[str, Instance] = {}
    roles: dict[str, str] = {}
    for n in ("a", "b"):
        role, password = f"drill_{t}_{n}", secrets.token_hex(12)
        postgres.create_role(role, password)
        postgres.grant_database(name, role)
        roles[n] = role
        instances[n] = Instance(tmp_path, n, port=ngircd.port, tag=t, database=postgres.url(name, user=role),
                                env={f"DRILL_DATABASE_PASSWORD_{n.upper()}": password}, irc=f"username = bot{n}\n")
    a, b = instances["a"], instances["b"]
    report: list[str] = []
    refused: list[str] = []

    async def scenario() -> None:
        watcher = RawClient(ngircd.port, f"watch{t}")
        await watcher.connect()
        await watcher.join(channel)
        try:
            a.start()
            b.start()
            await wait_until(lambda: a.count(r"instance a leads") + b.count(r"instance b leads") == 1, 30, "a leader")
            leader, standby = leader_of(a, b)
            await leader.wait_log(rf"IRC joined {channel}\b")
            await standby.wait_log(rf"instance {standby.name} stands by \(leader: {leader.name}\)")

            bodies = [f"drill {t} line {n:02d}" for n in range(20)]
            mark = len(watcher.lines)
            queue(database, env, channel, bodies)
            await wait_until(lambda: len(lines_from_bot(watcher, t, mark)) >= 2, LEASE + 10, "the first lines")
            # The leader's database goes away: connections ended, logins refused for 2.5 x lease_seconds.
            role = roles[leader.name]
            postgres.refuse_logins(role)
            refused.append(role)
            lost_at = time.monotonic()
            ended = postgres.terminate_backends(role)
            await leader.wait_log(rf"instance {leader.name} lost the lead", timeout=LEASE + 5)
            lost_logged = time.monotonic() - lost_at
            await standby.wait_log(rf"instance {standby.name} leads", timeout=2 * LEASE + 5)
            took_over = time.monotonic() - lost_at
            await asyncio.sleep(max(0.0, 2.5 * LEASE - (time.monotonic() - lost_at)))
            postgres.allow_logins(role)
            refused.remove(role)
            refused_for = time.monotonic() - lost_at
            await wait_until(lambda: {l.text for l in lines_from_bot(watcher, t, mark)} >= set(bodies), 60,
                             "every queued line")
            await leader.wait_log(rf"instance {leader.name} stands by \(leader: {standby.name}\)", timeout=30)
            await asyncio.sleep(2)  # anything said twice, or by the old leader, would come now

            lines = lines_from_bot(watcher, t, mark)
            said = [l.text for l in lines]
            old = [l for l in lines if speaker(l) == leader.name]
            new = [l for l in lines if speaker(l) == standby.name]
            repeated = repeats(said)
            last_old = max((l.received for l in old), default=lost_at) - lost_at
            first_new = min((l.received for l in new), default=float("nan")) - lost_at
            report.append(
                f"database lost ({ended} connections ended, logins refused {refused_for:.1f} s): "
                f"{len(said)} lines seen for 20 queued, {len(old)} from the old leader, {len(new)} from the new; "
                f"repeated: {len(repeated)} {repeated}; the old leader's last line {last_old:+.1f} s, its "
                f"'lost the lead' {lost_logged:.1f} s, the new leader leads {took_over:.1f} s, "
                f"its first line {first_new:+.1f} s after the loss")
            assert len(old) + len(new) == len(lines), [l.source for l in lines]
            assert sorted(set(said)) == bodies
            assert len(repeated) <= 1 and all(said.count(s) == 2 for s in repeated), said
            # One voice at a time: every line of the old connection before every line of the new one.
            assert new and max((l.received for l in old), default=0.0) < min(l.received for l in new)
            # It stopped sending within lease_seconds of losing the database.
            assert last_old <= LEASE, f"the old leader spoke {last_old:.1f} s after losing the database"
            assert leader.count(rf"instance {leader.name} leads") == 1  # it came back as a standby only
            # It left chat: the tap saw its connection quit.
            assert any(l.command == "QUIT" and "!" in l.source and speaker(l) == leader.name
                       for l in watcher.lines[mark:]), [l.raw for l in watcher.lines[mark:] if l.command != "PRIVMSG"]
            for instance in (a, b):
                running = instance.text().split("downtime-bot running as instance", 1)[-1]
                assert "Traceback" not in running, running[-3000:]
        finally:
            await watcher.quit()

    try:
        asyncio.run(scenario())
    finally:
        for role in refused:
            postgres.allow_logins(role)
        for instance in (a, b):
            instance.stop()
        postgres.drop_database(name)
        report_lines(report, "b", database, capsys)


# --- c. PostgreSQL restarted ----------------------------------------------------------------------


def test_both_instances_come_back_after_postgresql_restarts_one_leads_and_nothing_is_lost(
    ngircd: Ngircd, tmp_path: Path, own_postgres: PostgresServer, capsys: pytest.CaptureFixture[str],
) -> None:
    t = uuid.uuid4().hex[:6]
    channel = f"#ci-{t}"
    name = f"drill_c_{t}"
    database = own_postgres.create_database(name)
    env = {"DRILL_DATABASE_PASSWORD": own_postgres.role_password}
    a, b = (Instance(tmp_path, n, port=ngircd.port, tag=t, database=database, env=env, irc=f"username = bot{n}\n")
            for n in ("a", "b"))
    report: list[str] = []

    async def scenario() -> None:
        watcher = RawClient(ngircd.port, f"watch{t}")
        await watcher.connect()
        await watcher.join(channel)
        try:
            a.start()
            b.start()
            await wait_until(lambda: a.count(r"instance a leads") + b.count(r"instance b leads") == 1, 30, "a leader")
            leader, standby = leader_of(a, b)
            await leader.wait_log(rf"IRC joined {channel}\b")
            await standby.wait_log(rf"instance {standby.name} stands by \(leader: {leader.name}\)")
            # A quick restart (the pool reconnects), then one with the server down 2.5 x lease_seconds
            # (both lose it; the leader steps down; one of them leads again once it is back).
            for down in (0.0, 2.5 * LEASE):
                terms = {i.name: i.count(rf"instance {i.name} leads") for i in (a, b)}
                losses = {i.name: i.count(rf"instance {i.name} lost the lead") for i in (a, b)}
                leader = next(i for i in (a, b) if i.heartbeat()["role"] == "leader")
                before = [f"drill {t} down {down:g} before {n:02d}" for n in range(10)]
                after = [f"drill {t} down {down:g} after {n:02d}" for n in range(10)]
                mark = len(watcher.lines)
                queue(database, env, channel, before)
                await wait_until(lambda: len(lines_from_bot(watcher, t, mark)) >= 2, LEASE + 10, "the first lines")
                restart_at = time.monotonic()
                await asyncio.to_thread(own_postgres.stop)
                await asyncio.sleep(down)
                await asyncio.to_thread(own_postgres.start)
                restarted = time.monotonic() - restart_at
                queue(database, env, channel, after)
                await wait_until(lambda: {l.text for l in lines_from_bot(watcher, t, mark)} >= {*before, *after}, 60,
                                 "every queued line")
                await asyncio.sleep(2 * LEASE)  # both have renewed or stood by again meanwhile

                beats = {i.name: i.heartbeat() for i in (a, b)}
                roles = sorted(str(beat["role"]) for beat in beats.values())
                leading = [i.name for i in (a, b) if beats[i.name]["role"] == "leader"]
                said = [l.text for l in lines_from_bot(watcher, t, mark)]
                repeated = repeats(said)
                new_terms = {i.name: i.count(rf"instance {i.name} leads") - terms[i.name] for i in (a, b)}
                lost = {i.name: i.count(rf"instance {i.name} lost the lead") - losses[i.name] for i in (a, b)}
                report.append(
                    f"PostgreSQL down {restarted:.1f} s: {len(said)} lines seen for 20 queued (10 before, 10 right "
                    f"after); repeated: {len(repeated)} {repeated}; leader before {leader.name}, after {leading}; "
                    f"new terms {new_terms}; lost the lead {lost}")
                assert roles == ["leader", "standby"], beats
                assert all(beat["status"] == "ok" for beat in beats.values()), beats
                assert sorted(set(said)) == sorted([*before, *after])
                assert len(repeated) <= 1 and all(said.count(s) == 2 for s in repeated), said
                # One voice at a time: the connections speak in turns, never interleaved.
                turns = [speaker(l) for l in lines_from_bot(watcher, t, mark)]
                turns = [who for n, who in enumerate(turns) if n == 0 or turns[n - 1] != who]
                assert len(turns) == len(set(turns)), turns
                assert sum(new_terms.values()) <= sum(lost.values()), (new_terms, lost)
            for instance in (a, b):
                running = instance.text().split("downtime-bot running as instance", 1)[-1]
                assert "Traceback" not in running, running[-3000:]
        finally:
            await watcher.quit()

    try:
        asyncio.run(scenario())
    finally:
        for instance in (a, b):
            instance.stop()
        if own_postgres.running:
            own_postgres.drop_database(name)
        report_lines(report, "c", database, capsys)
