"""[ha] failover drill on Matrix: two real `bot.py` processes on one PostgreSQL and a real Synapse.

Both instances log in with one access token (from the environment), so they are one device:
the homeserver drops a message sent again with the same transaction id (the outbox row's key)
whoever of the two sends it. Each instance reaches Synapse through a proxy of its own
(tests/servers/synapse.py `CountingProxy`): what each one sends and syncs is counted apart, and
the leader's proxy can lose the answers to its sends (the message is posted; the sender cannot
know). Two people (eve, carol) read the requests room; lease_seconds is 3.

- both start together: exactly one syncs and joins the rooms, the other stands by (no request
  through its proxy at all);
- queued lines are being delivered, the answers to the leader's sends are lost, the leader is
  SIGKILLed, and people send commands meanwhile: the other instance takes over, resumes from the
  sync position in the database, answers every command once (one downtime each: the handled
  message ids) and every queued line arrives once (resent lines are dropped by the homeserver);
- the leader is SIGSTOPped for 3 x lease_seconds with lines queued and commands sent meanwhile:
  the other takes over; after SIGCONT the old leader sends nothing, soon stops syncing, and the
  sync position in the database (bot_meta) never goes back.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from adapters.db import make_engine
from adapters.matrix import NEXT_BATCH_KEY, STATE_FILE
from tests.servers.instances import LEASE, Instance, queue, wait_until
from tests.servers.synapse import MatrixTestUser, Synapse, running_synapse

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "correct horse"
TOKEN_ENV = "DTB_DRILL_MATRIX_TOKEN"


@pytest.fixture(scope="module")
def synapse() -> Iterator[Synapse]:
    yield from running_synapse("raised")


def stream_position(token: str) -> tuple[int, ...]:
    """A Synapse sync token's stream positions, to compare two tokens part by part."""
    return tuple(int(n) for n in re.findall(r"\d+", token))


def not_before(later: str, earlier: str) -> bool:
    a, b = stream_position(later), stream_position(earlier)
    return len(a) == len(b) and all(x >= y for x, y in zip(a, b))


@pytest.mark.parametrize("ha_database", ["postgresql"], indirect=True)
def test_two_instances_on_matrix_one_voice_through_a_kill_and_a_pause(
    synapse: Synapse, tmp_path: Path, ha_database: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str],
) -> None:
    database, db_env = ha_database
    t = secrets.token_hex(3)
    bot_id = synapse.register(f"dtbot-{t}", PASSWORD)
    token = synapse.tokens[bot_id]  # one device for both instances
    eve_id = synapse.register(f"eve-{t}", PASSWORD)
    carol_id = synapse.register(f"carol-{t}", PASSWORD)
    proxies = {name: synapse.proxy() for name in ("a", "b")}
    channel = f"#ci-{t}"

    def instance(name: str) -> Instance:
        extra = (
            "[matrix]\n"
            f"homeserver = {proxies[name].url}\nuser_id = {bot_id}\naccess_token_env = {TOKEN_ENV}\n"
            f"requests_room = #ci-{t}:{synapse.server_name}\nannounce_room = #dev-{t}:{synapse.server_name}\n"
            f"store_path = {tmp_path / (name + '-store')}\n"
            "sync_timeout_ms = 2000\nbackoff_min = 0.5\nbackoff_max = 2\n"
            "[policy]\nlow_impact = daily 00:00-24:00 UTC\nciduty_hours = daily 00:00-24:00 UTC\n"
        )
        return Instance(tmp_path, name, port=1, tag=t, database=database, env={**db_env, TOKEN_ENV: token},
                        transports="matrix", extra=extra)

    a, b = instance("a"), instance("b")
    engine = make_engine(database, password=next(iter(db_env.values()), None))
    report: list[str] = []
    day = time.gmtime()

    def propose(n: int) -> tuple[str, str]:
        """A command that changes something, and the date its answer names (one per command)."""
        when = time.strftime("%Y-%m-%d", time.gmtime(time.mktime(day) + (3 + 2 * n) * 86400))
        return f"!downtime propose {when} 14:00 UTC for 1h -- drill {t} command {n}", f"{when} 14:00 UTC"

    def sql(query: str) -> list[Any]:
        with engine.connect() as connection:
            return list(connection.execute(text(query)))

    def position() -> str:
        rows = sql(f"SELECT value FROM bot_meta WHERE key = '{NEXT_BATCH_KEY}'")
        return str(rows[0][0]) if rows else ""

    async def scenario() -> None:
        eve, carol = MatrixTestUser(synapse.url, eve_id, PASSWORD), MatrixTestUser(synapse.url, carol_id, PASSWORD)
        await eve.__aenter__()
        await carol.__aenter__()
        try:
            ci = await eve.create_room(alias=f"ci-{t}")
            await eve.create_room(alias=f"dev-{t}")
            await carol.join(ci)

            def said() -> list[str]:
                return [e.source["content"]["body"] for e in eve.messages_from(bot_id, ci)]

            def answers(day_of: str) -> int:
                return sum(1 for s in said() if s.startswith("Downtime #") and "proposed by" in s and day_of in s)

            # Both start together: exactly one syncs and joins, the other stands by.
            a.start()
            b.start()
            await wait_until(lambda: a.count(r"instance a leads") + b.count(r"instance b leads") == 1, 30, "a leader")
            await asyncio.sleep(LEASE)  # the standby has tried a few times meanwhile
            leader, standby = (a, b) if a.count(r"instance a leads") else (b, a)
            await leader.wait_log(r"Matrix: joined #ci-")
            await eve.wait_for(lambda e: getattr(e, "state_key", None) == bot_id
                               and getattr(e, "membership", None) == "join", ci, timeout=30)
            await standby.wait_log(rf"instance {standby.name} stands by \(leader: {leader.name}\)")
            assert standby.count("Matrix: joined") == 0 and standby.count("Matrix sync is working") == 0
            assert proxies[standby.name].requests == [], proxies[standby.name].requests
            assert standby.heartbeat()["role"] == "standby" and leader.heartbeat()["role"] == "leader"
            first, first_day = propose(0)
            await eve.send(ci, first)
            await wait_until(lambda: answers(first_day) == 1, 30, "the answer to the first command")
            await wait_until(position, 10, "a sync position in the database")

            # Lines queued; the answers to the leader's sends lost; the leader SIGKILLed; commands meanwhile.
            bodies = [f"drill {t} line {n:02d}" for n in range(10)]
            queue(database, db_env, channel, bodies, networks=["matrix"])
            await wait_until(lambda: any(s in bodies for s in said()), 3 * LEASE + 10, "the first queued line")
            lost = proxies[leader.name]
            lost.fault("/send/", "lose_reply")  # posted, but the leader cannot know: it sends it again
            await wait_until(lambda: lost.count("/send/", status=0) >= 1, 30, "a send whose answer was lost")
            leader.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            lost_replies = lost.count("/send/", status=0)
            lost_lines = len({r.path for r in lost.requests if "/send/" in r.path and r.status == 0})  # by txn id
            await asyncio.sleep(1)  # eve's sync catches up with what the dead leader posted (reported below)
            lines_before = sum(s in bodies for s in said())  # in the room: marked sent or not
            commands = [propose(n) for n in range(1, 7)]
            for n, (command, _) in enumerate(commands):
                await (eve if n % 2 else carol).send(ci, command)
            await standby.wait_log(rf"instance {standby.name} leads", timeout=LEASE + 5)
            # Timed at the new leader's own proxy: eve's view of the room may still bring the dead
            # leader's last posts after the kill (in one run that raced the new leader's resume).
            await wait_until(lambda: proxies[standby.name].count("/send/", status=200) >= 1, LEASE + 10,
                             "the first message from the new leader")
            first_from_new = time.monotonic() - killed_at
            await standby.wait_log("Matrix: resuming from the sync position in the database", timeout=10)
            assert standby.count("Matrix: resuming from the sync position in the database") == 1
            await wait_until(lambda: set(said()) >= set(bodies) and all(answers(d) for _, d in commands), 60,
                             "every queued line and every answer")
            await asyncio.sleep(3)  # anything said twice would come now
            lines = said()
            repeated = sorted({s for s in lines if lines.count(s) > 1})
            sends_by_new = proxies[standby.name].count("/send/")
            # The new leader's sends of queued lines, beyond those missing from the room: lines the
            # dead leader had posted without knowing, sent again under their transaction ids.
            resent = sends_by_new - len(commands) - (len(bodies) - lines_before)
            report.append(
                f"SIGKILL: {sum(s in bodies for s in lines)} lines seen for {len(bodies)} queued, "
                f"{sum(answers(d) for _, d in commands)} answers for {len(commands)} commands sent in the gap; "
                f"repeated: {len(repeated)} {repeated}; {lost_replies} sends ({lost_lines} messages) of the dead leader "
                f"posted with their answers lost; the new leader made {sends_by_new} sends, {resent} of them lines already posted (dropped by "
                f"the homeserver: same device, same transaction id); kill -> first message from the new leader "
                f"{first_from_new:.1f} s")
            assert repeated == [], lines
            assert sorted(s for s in lines if s in bodies) == bodies
            assert all(answers(d) == 1 for _, d in [*commands, (first, first_day)])
            summaries = [r[0] for r in sql(f"SELECT summary FROM downtimes WHERE summary LIKE 'drill {t} command %'")]
            assert sorted(summaries) == sorted(f"drill {t} command {n}" for n in range(7)), summaries
            handled = sql("SELECT count(*) FROM handled_messages WHERE network = 'matrix'")[0][0]
            assert handled == 7

            # The killed one comes back as a standby.
            survivor, back = standby, leader
            leads = back.count(rf"instance {back.name} leads")
            lost.fault("/send/", None)
            back.start()
            await back.wait_log(rf"instance {back.name} stands by \(leader: {survivor.name}\)")

            # SIGSTOP the leader for 3 x lease_seconds, lines queued and commands sent meanwhile; SIGCONT.
            old = proxies[survivor.name]
            survivor.signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            paused = [f"drill {t} pause {n:02d}" for n in range(5)]
            queue(database, db_env, channel, paused, networks=["matrix"])
            later = [propose(n) for n in range(7, 9)]
            for command, _ in later:
                await eve.send(ci, command)
            await back.wait_log(rf"instance {back.name} leads", count=leads + 1, timeout=LEASE + 5)
            await wait_until(lambda: set(said()) >= set(paused) and all(answers(d) for _, d in later), 30,
                             "the lines and answers of the pause, from the new leader")
            await asyncio.sleep(max(0.0, 3 * LEASE - (time.monotonic() - stopped_at)))
            sends, syncs, before = old.count("/send/"), old.count("/sync"), position()
            survivor.signal(signal.SIGCONT)
            positions = [before]
            deadline = time.monotonic() + LEASE + 4
            while time.monotonic() < deadline:  # the database's position, read while the old leader wakes
                positions.append(position())
                await asyncio.sleep(0.05)
            await survivor.wait_log(rf"instance {survivor.name} lost the lead", timeout=1)
            await asyncio.sleep(3)  # a sync long-poll (2 s) started before it noticed comes back meanwhile
            syncs_after = old.count("/sync") - syncs
            await asyncio.sleep(3)
            lines = said()
            store = json.loads((tmp_path / f"{survivor.name}-store" / STATE_FILE).read_text())
            refused = survivor.count("its sync position is not written to the database")
            report.append(
                f"SIGSTOP: {sum(s in paused for s in lines)} lines seen for {len(paused)} queued, "
                f"{sum(answers(d) for _, d in later)} answers for {len(later)} commands; after SIGCONT the old leader "
                f"made {old.count('/send/') - sends} sends and {syncs_after} syncs (then "
                f"{old.count('/sync') - syncs - syncs_after} more), {refused} writes of its sync position refused; "
                f"the database's position moved back: {any(not not_before(q, p) for p, q in pairwise(positions))}")
            assert old.count("/send/") == sends
            assert syncs_after <= 2 and old.count("/sync") - syncs == syncs_after  # and then no more
            assert sorted(s for s in lines if s in paused) == paused
            assert all(answers(d) == 1 for _, d in later)
            assert all(not_before(q, p) for p, q in pairwise(positions)), positions
            assert not_before(position(), store["next_batch"]), (position(), store["next_batch"])
            for instance in (a, b):
                running = instance.text().split("downtime-bot running as instance", 1)[-1]
                assert "Traceback" not in running, running[-3000:]
        finally:
            await eve.__aexit__()
            await carol.__aexit__()

    try:
        asyncio.run(scenario())
    finally:
        a.stop()
        b.stop()
        engine.dispose()
        with capsys.disabled():
            for line in report:
                print(f"\n[failover drill, matrix, postgresql] {line}")
