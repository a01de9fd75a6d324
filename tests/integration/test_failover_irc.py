"""[ha] failover drills: two real `bot.py` processes on one database and a real ngircd.

A watcher (a RawClient in the requests channel) counts every line the bot says, whichever
instance says it. The database is a parameter (`ha_database`): a SQLite file shared by the two
processes (WAL), and PostgreSQL when the session's server fixture exists (tests/conftest.py
`postgres`). lease_seconds is 3 (the smallest the configuration takes).

- both start together: exactly one joins the channels, the other stands by (and says so at
  /__heartbeat__);
- the leader is SIGKILLed while it delivers 20 queued lines: the other takes over within
  lease_seconds + 5 s and every line arrives, at most one of them twice (the line being written
  when the leader died: IRC cannot confirm it); the repeated lines are counted and printed;
- the leader is SIGSTOPped for 3 × lease_seconds: the standby takes over; after SIGCONT the old
  leader finds it no longer leads and says nothing more.
"""
from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_irc_transport import _require
from tests.servers.instances import LEASE, Instance, lines_from_bot, queue, wait_until
from tests.servers.ircd import Ngircd, RawClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]



@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    _require("ngircd")
    with Ngircd(penalties=True) as server:  # default flood rules
        yield server


def test_two_instances_one_voice_through_a_kill_and_a_pause(
    ngircd: Ngircd, tmp_path: Path, ha_database: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str],
) -> None:
    database, env = ha_database
    t = uuid.uuid4().hex[:6]
    channel = f"#ci-{t}"
    a, b = (Instance(tmp_path, n, port=ngircd.port, tag=t, database=database, env=env) for n in ("a", "b"))
    instances = {"a": a, "b": b}
    report: list[str] = []

    async def scenario() -> None:
        watcher = RawClient(ngircd.port, f"watch{t}")
        await watcher.connect()
        await watcher.join(channel)
        try:
            # Both start together: exactly one leads and joins, the other stands by.
            a.start()
            b.start()
            await wait_until(lambda: a.count(r"instance a leads") + b.count(r"instance b leads") == 1, 30, "a leader")
            await asyncio.sleep(LEASE)  # the standby has tried a few times meanwhile
            leader, standby = (a, b) if a.count(r"instance a leads") else (b, a)
            await leader.wait_log(rf"IRC joined #ci-{t}\b")
            await standby.wait_log(rf"instance {standby.name} stands by \(leader: {leader.name}\)")
            assert standby.count("IRC joined") == 0 and standby.count(r"leads \(epoch") == 0
            beat = standby.heartbeat()
            assert (beat["status"], beat["role"], beat["leader"]) == ("ok", "standby", leader.name), beat
            assert leader.heartbeat()["role"] == "leader"

            # SIGKILL the leader while it delivers 20 queued lines.
            bodies = [f"drill {t} line {n:02d}" for n in range(20)]
            mark = len(watcher.lines)
            queue(database, env, channel, bodies)
            await wait_until(lambda: len(lines_from_bot(watcher, t, mark)) >= 1, 3 * LEASE + 10, "the first line")
            leader.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            before = len(lines_from_bot(watcher, t, mark))
            await standby.wait_log(rf"instance {standby.name} leads", timeout=LEASE + 5)
            await wait_until(lambda: len(lines_from_bot(watcher, t, mark)) > before or
                             len({l.text for l in lines_from_bot(watcher, t, mark)}) == 20,
                             LEASE + 5, "the first line from the new leader")
            first_from_new = time.monotonic() - killed_at
            await wait_until(lambda: {l.text for l in lines_from_bot(watcher, t, mark)} >= set(bodies), 60,
                             "every queued line")
            await asyncio.sleep(2)  # anything said twice would come now
            said = [l.text for l in lines_from_bot(watcher, t, mark)]
            repeated = sorted({s for s in said if said.count(s) > 1})
            report.append(f"SIGKILL: {len(said)} lines seen for 20 queued; repeated: {len(repeated)} {repeated}; "
                          f"{before} before the kill; kill -> first line from the new leader {first_from_new:.1f} s")
            assert sorted(set(said)) == bodies
            assert len(repeated) <= 1 and all(said.count(s) == 2 for s in repeated), said

            # The killed one comes back as a standby; the survivor leads on.
            survivor, back = standby, leader
            leads, joins = back.count(rf"instance {back.name} leads"), back.count(rf"IRC joined #ci-{t}\b")
            back.start()
            await back.wait_log(rf"instance {back.name} stands by \(leader: {survivor.name}\)")

            # SIGSTOP the leader for 3 x lease_seconds; the other takes over; SIGCONT: nothing more from it.
            survivor.signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            # Queued while the leader is stopped: the old leader would find them pending when it wakes.
            paused = [f"drill {t} pause {n:02d}" for n in range(5)]
            mark2 = len(watcher.lines)
            queue(database, env, channel, paused)
            await back.wait_log(rf"instance {back.name} leads", count=leads + 1, timeout=LEASE + 5)
            await back.wait_log(rf"IRC joined #ci-{t}\b", count=joins + 1)
            await asyncio.sleep(max(0.0, 3 * LEASE - (time.monotonic() - stopped_at)))
            survivor.signal(signal.SIGCONT)
            resumed = len(watcher.lines)
            await survivor.wait_log(rf"instance {survivor.name} lost the lead", timeout=LEASE + 5)
            await wait_until(lambda: {l.text for l in lines_from_bot(watcher, t, mark2)} >= set(paused), 60,
                             "the lines queued during the pause")
            await asyncio.sleep(2)
            said2 = [l.text for l in lines_from_bot(watcher, t, mark2)]
            after = [l.text for l in lines_from_bot(watcher, t, resumed)]
            report.append(f"SIGSTOP: {len(said2)} lines seen for 5 queued, {len(after)} of them after SIGCONT")
            # Each once: the old leader, waking with them pending, sent none of them again.
            assert sorted(said2) == paused, said2
            for instance in (a, b):  # (a migration that raced the other's prints its child's traceback)
                running = instance.text().split("downtime-bot running as instance", 1)[-1]
                assert "Traceback" not in running, running[-3000:]
        finally:
            await watcher.quit()

    try:
        asyncio.run(scenario())
    finally:
        for instance in instances.values():
            instance.stop()
        with capsys.disabled():
            for line in report:
                print(f"\n[failover drill, {database.split(':')[0]}] {line}")
