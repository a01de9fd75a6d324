"""The token bucket of plugins/ratelimit.py on a fake clock."""
from __future__ import annotations

import datetime as dt

from plugins.ratelimit import RateLimit, RateLimiter, Verdict
from tests.fakes import FakeClock

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)


def never() -> bool:
    return False


def test_a_sender_gets_the_burst_then_one_command_per_refill() -> None:
    clock = FakeClock(NOW)
    limiter = RateLimiter(RateLimit(10, dt.timedelta(minutes=1), 2), clock)
    verdicts = [limiter.check("irc", "mallory", "m", never) for _ in range(4)]
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.SLOW_DOWN, Verdict.IGNORE]
    assert limiter.wait("irc", "mallory", "m") == dt.timedelta(seconds=6)
    clock.advance(dt.timedelta(seconds=6))
    assert limiter.check("irc", "MALLORY", "other-nick", never) is Verdict.ALLOW  # the account, any case
    assert limiter.check("irc", "mallory", "m", never) is Verdict.SLOW_DOWN


def test_exempt_networks_and_exempt_senders_are_never_limited() -> None:
    limiter = RateLimiter(RateLimit(1, dt.timedelta(hours=1), 1), FakeClock(NOW), exempt_networks=frozenset({"console"}))
    assert all(limiter.check("console", "alice", "alice", never) is Verdict.ALLOW for _ in range(10))
    asked = []
    assert limiter.check("irc", "carol", "carol", lambda: asked.append(1) or True) is Verdict.ALLOW
    assert not asked  # the bucket had room: nobody's roles were looked up
    assert all(limiter.check("irc", "carol", "carol", lambda: True) is Verdict.ALLOW for _ in range(10))


def test_the_table_of_senders_stays_bounded_under_a_stream_of_new_nicks() -> None:
    clock = FakeClock(NOW)
    limiter = RateLimiter(RateLimit(10, dt.timedelta(minutes=1), 5), clock)
    for n in range(3 * RateLimiter.MAX_SENDERS):
        limiter.check("irc", None, f"bot{n}", never)
        clock.advance(dt.timedelta(milliseconds=1))
    assert len(limiter._buckets) <= RateLimiter.MAX_SENDERS
