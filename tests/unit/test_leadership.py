"""[ha] leadership (adapters/leadership.py): the lease row on a SQLite file shared by two engines
(two instances), and the loop that leads or stands by. The database URL is the only thing these
tests know of it, so they run unchanged on PostgreSQL (`lease_url`)."""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from adapters.db import make_engine, migrate
from adapters.leadership import Fence, Lease, Leadership

_names = itertools.count(1)
LEASE = 1.0  # seconds: the class takes any lease ([ha] lease_seconds is 3..600 in the config)


@pytest.fixture(params=["sqlite", "postgresql"])
def lease_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database both instances share: a SQLite file (WAL), or a fresh PostgreSQL database
    from the session's server (tests/conftest.py `postgres`, tests/servers/postgres.py)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ha.db'}"
        return
    server = request.getfixturevalue("postgres")
    name = f"lease_{os.getpid()}_{next(_names)}"
    yield server.create_database(name)
    server.drop_database(name)


def password(url: str) -> str | None:
    if url.startswith("sqlite"):
        return None
    from tests.servers.postgres import PASSWORD_ENV  # type: ignore[import-not-found,unused-ignore]

    return os.environ.get(PASSWORD_ENV)


@pytest.fixture
def engines(lease_url: str) -> Iterator[tuple[Engine, Engine]]:
    first = make_engine(lease_url, password=password(lease_url))
    migrate(first)
    second = make_engine(lease_url, password=password(lease_url))
    yield first, second
    first.dispose()
    second.dispose()


def expire(engine: Engine) -> None:
    """As if lease_seconds had passed since the last renew (no waiting in the tests)."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE leader_lease SET expires_at = 0"))


def take_over(engine: Engine, holder: str) -> None:
    """Another instance takes the lease behind the holder's back (as after an expiry it missed)."""
    with engine.begin() as connection:
        connection.execute(text(
            "UPDATE leader_lease SET holder = :holder, epoch = epoch + 1, expires_at = expires_at + 1000"
        ), {"holder": holder})


# ---- Lease -----------------------------------------------------------------------------------

def test_the_first_instance_takes_the_lease_and_the_second_is_refused(engines: tuple[Engine, Engine]) -> None:
    a, b = Lease(engines[0]), Lease(engines[1])
    assert a.acquire("a", 30) == 1
    assert b.acquire("b", 30) is None
    holding = b.read()
    assert holding is not None and holding.holder == "a" and holding.epoch == 1 and holding.live


def test_only_the_holder_renews_and_only_under_its_epoch(engines: tuple[Engine, Engine]) -> None:
    a, b = Lease(engines[0]), Lease(engines[1])
    epoch = a.acquire("a", 30)
    assert epoch is not None
    assert a.renew("a", epoch, 30)
    assert not a.renew("a", epoch + 1, 30)
    assert not b.renew("b", epoch, 30)


def test_an_expired_lease_goes_to_the_next_instance_under_a_higher_epoch(engines: tuple[Engine, Engine]) -> None:
    a, b = Lease(engines[0]), Lease(engines[1])
    first = a.acquire("a", 30)
    expire(engines[0])
    second = b.acquire("b", 30)
    assert first is not None and second is not None and second > first
    assert not a.renew("a", first, 30), "the old leader renewed a lease that is no longer its own"
    assert a.acquire("a", 30, epoch=first) is None


def test_a_released_lease_is_taken_at_once_by_the_standby(engines: tuple[Engine, Engine]) -> None:
    a, b = Lease(engines[0]), Lease(engines[1])
    epoch = a.acquire("a", 600)
    assert epoch is not None and b.acquire("b", 600) is None
    assert a.release("a", epoch)
    assert b.acquire("b", 600) == epoch + 1


def test_an_instance_takes_its_own_last_term_back_under_a_new_epoch(engines: tuple[Engine, Engine]) -> None:
    a = Lease(engines[0])
    epoch = a.acquire("a", 600)
    assert epoch is not None
    assert a.acquire("a", 600) is None, "a second process of the same name took a live lease"
    assert a.acquire("a", 600, epoch=epoch) == epoch + 1


def test_two_instances_racing_for_a_free_lease_never_both_win(engines: tuple[Engine, Engine]) -> None:
    leases = {"a": Lease(engines[0]), "b": Lease(engines[1])}
    for _ in range(20):
        expire(engines[0])
        won: dict[str, int | None] = {}
        barrier = threading.Barrier(2)

        def race(name: str) -> None:
            barrier.wait()
            won[name] = leases[name].acquire(name, 600)

        threads = [threading.Thread(target=race, args=(n,)) for n in leases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        winners = [n for n, epoch in won.items() if epoch is not None]
        assert len(winners) == 1, won


# ---- Leadership ------------------------------------------------------------------------------

class Roles:
    """Records the callbacks of one instance."""

    def __init__(self) -> None:
        self.changes: list[str] = []

    async def elected(self, epoch: int) -> None:
        self.changes.append(f"elected {epoch}")

    async def deposed(self) -> None:
        self.changes.append("deposed")


class LocalClock:
    """The leader's local clock, which a test can jump forward (a paused process)."""

    def __init__(self) -> None:
        self.jumped = 0.0

    def __call__(self) -> float:
        return asyncio.get_running_loop().time() + self.jumped


def leadership(engine: Engine, name: str, roles: Roles, clock: Callable[[], float] | None = None) -> Leadership:
    options = {} if clock is None else {"clock": clock}
    return Leadership(Lease(engine), name, LEASE, on_elected=roles.elected, on_deposed=roles.deposed, **options)


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `condition` holds (a failure bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.02)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_of_two_instances_one_leads_and_the_other_stands_by(
    engines: tuple[Engine, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "downtimebot.leadership")

    async def scenario() -> None:
        ra, rb = Roles(), Roles()
        a = leadership(engines[0], "a", ra)
        a.start()
        await until(lambda: ra.changes == ["elected 1"])
        b = leadership(engines[1], "b", rb)
        b.start()
        await until(lambda: b.leader == "a")
        assert a.fence.check() and a.fence.epoch == 1 and a.role == "leader"
        assert not b.fence.check() and b.fence.epoch is None and b.role == "standby"
        assert rb.changes == []
        await b.stop()
        await a.stop()

    run(scenario)
    assert "instance a leads (epoch 1)" in caplog.text
    assert "instance b stands by (leader: a)" in caplog.text


def test_a_standby_tries_again_right_after_the_lease_it_read_ends_not_a_tick_later(
    engines: tuple[Engine, Engine],
) -> None:
    """A leader died just after renewing: its lease ends in a second. The standby (lease 30 s, so
    a try every 10 s) tries again when that lease ends, and leads long before its next tick."""
    assert Lease(engines[0]).acquire("dead", 1.0) == 1

    async def scenario() -> None:
        roles = Roles()
        b = Leadership(Lease(engines[1]), "b", 30.0, on_elected=roles.elected, on_deposed=roles.deposed)
        b.start()
        await until(lambda: b.leader == "dead")
        await until(lambda: roles.changes == ["elected 2"], within=6.0)  # the next tick would be at 10 s
        assert b.fence.check()
        await b.stop()

    run(scenario)


def test_a_leader_that_stops_hands_over_to_the_standby_at_once(engines: tuple[Engine, Engine]) -> None:
    async def scenario() -> None:
        ra, rb = Roles(), Roles()
        a = leadership(engines[0], "a", ra)
        a.start()
        await until(lambda: a.is_leader)
        b = leadership(engines[1], "b", rb)
        b.start()
        await until(lambda: b.leader == "a")
        await a.stop()
        assert ra.changes == ["elected 1", "deposed"]
        await until(lambda: rb.changes == ["elected 2"])
        assert b.fence.check() and not a.fence.check()
        await b.stop()

    run(scenario)


def test_a_leader_that_cannot_reach_the_database_steps_down_before_its_lease_ends(
    engines: tuple[Engine, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "downtimebot.leadership")

    async def scenario() -> None:
        roles = Roles()
        a = leadership(engines[0], "a", roles)
        a.start()
        await until(lambda: a.is_leader)

        def unreachable(*args: object, **kwargs: object) -> bool:
            raise ConnectionError("connection refused")

        a.lease.renew = unreachable  # type: ignore[method-assign]
        a.lease.acquire = unreachable  # type: ignore[method-assign]
        await until(lambda: roles.changes == ["elected 1", "deposed"])
        assert not a.fence.check()
        # Stepped down on its own clock, before the database's lease ended.
        holding = Lease(engines[1]).read()
        assert holding is not None and holding.live
        await a.stop()

    run(scenario)
    assert "instance a lost the lead: could not renew the lease within 1 s" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_paused_leader_is_fenced_the_moment_it_wakes_with_no_query(engines: tuple[Engine, Engine]) -> None:
    async def scenario() -> None:
        roles, clock = Roles(), LocalClock()
        a = leadership(engines[0], "a", roles, clock)
        a.start()
        await until(lambda: a.is_leader)
        assert a.fence.check()
        clock.jumped = 3 * LEASE  # SIGSTOP for three leases, then SIGCONT
        assert not a.fence.check(), "a leader that slept past its deadline was still allowed to send"
        await until(lambda: "deposed" in roles.changes)
        await a.stop(release=False)

    run(scenario)


def test_a_leader_whose_lease_was_taken_steps_down_at_its_next_renew(engines: tuple[Engine, Engine]) -> None:
    async def scenario() -> None:
        roles = Roles()
        a = leadership(engines[0], "a", roles)
        a.start()
        await until(lambda: a.is_leader)
        take_over(engines[1], "b")
        await until(lambda: roles.changes == ["elected 1", "deposed"])
        assert not a.fence.check()
        await a.stop()
        holding = Lease(engines[1]).read()
        assert holding is not None and holding.holder == "b" and holding.live, "the old leader released b's lease"

    run(scenario)


def test_a_fence_told_of_a_refused_epoch_closes_at_once(engines: tuple[Engine, Engine]) -> None:
    async def scenario() -> None:
        roles = Roles()
        a = leadership(engines[0], "a", roles)
        a.start()
        await until(lambda: a.is_leader)
        take_over(engines[1], "b")  # a's next renew is a lease/3 away: a sender finds out first
        a.fence.lost("the database refused epoch 1")
        assert not a.fence.check()
        await until(lambda: roles.changes == ["elected 1", "deposed"])
        await a.stop()

    run(scenario)


def test_without_ha_the_fence_is_always_open_and_has_no_epoch() -> None:
    fence = Fence.always()
    assert fence.check() and fence.epoch is None and not fence.enabled
