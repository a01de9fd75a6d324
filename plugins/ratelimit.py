"""The rate limit: one sender cannot flood the bot (and, through it, CiDuty) with commands.

A token bucket per sender: `burst` commands at once, then `commands` per `period` refilled.
A sender is the account on its network, or the nick when not identified (``~nick``), so an
account on IRC and the same name on Matrix count apart, and so do two nicks without an account.
The first command over the limit is answered once ("slow down"); the next ones are ignored,
without an answer, until a command is allowed again. The dispatcher asks before any work (no
transaction, no cache, no outside call), and only for lines that are for the bot. Whom it
exempts (CiDuty, admins) is the dispatcher's call, asked only when a bucket is empty.
"""
from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass

from models.ports import Clock


class Verdict(enum.Enum):
    ALLOW = "allow"
    SLOW_DOWN = "slow_down"  # the first command over the limit: answered once
    IGNORE = "ignore"  # the next ones, until the bucket gives a command again


@dataclass(frozen=True)
class RateLimit:
    """``[bot] rate_limit`` (``<commands>/<period>``, or off) and ``[bot] rate_burst``."""

    commands: int = 10
    period: dt.timedelta = dt.timedelta(minutes=1)
    burst: int = 5

    @property
    def cost(self) -> dt.timedelta:
        """The time one command takes to refill (timedeltas are exact: no rounding drift)."""
        return self.period / self.commands


@dataclass
class _Bucket:
    credit: dt.timedelta  # time banked: each command spends `cost`, at most `burst` of them
    at: dt.datetime
    warned: bool = False


class RateLimiter:
    # Senders whose buckets are full are forgotten once this many are known, so a stream of
    # new nicks cannot grow the table without bound.
    MAX_SENDERS = 10_000

    def __init__(self, limit: RateLimit, clock: Clock, *, exempt_networks: frozenset[str] = frozenset()):
        self.limit = limit
        self.clock = clock
        self.exempt_networks = exempt_networks  # the console: whoever types there runs the bot
        self._cost, self._full = limit.cost, limit.cost * limit.burst
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    @staticmethod
    def sender(network: str, account: str | None, nick: str) -> tuple[str, str]:
        return network, account.casefold() if account else "~" + nick.casefold()

    def check(self, network: str, account: str | None, nick: str, exempt: Callable[[], bool]) -> Verdict:
        """Take one command from the sender's bucket; `exempt` is asked only when it is empty."""
        if network in self.exempt_networks:
            return Verdict.ALLOW
        now = self.clock.now()
        key = self.sender(network, account, nick)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_SENDERS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self._full, now)
        else:
            bucket.credit = min(self._full, bucket.credit + max(now - bucket.at, dt.timedelta()))
            bucket.at = now
        if bucket.credit >= self._cost:
            bucket.credit -= self._cost
            bucket.warned = False
            return Verdict.ALLOW
        if exempt():
            return Verdict.ALLOW
        if bucket.warned:
            return Verdict.IGNORE
        bucket.warned = True
        return Verdict.SLOW_DOWN

    def wait(self, network: str, account: str | None, nick: str) -> dt.timedelta:
        """How long until the sender may give a command again."""
        bucket = self._buckets.get(self.sender(network, account, nick))
        return max(self._cost - bucket.credit, dt.timedelta()) if bucket is not None else dt.timedelta()

    def _forget_full(self, now: dt.datetime) -> None:
        self._buckets = {key: b for key, b in self._buckets.items() if b.credit + (now - b.at) < self._full}
        if len(self._buckets) >= self.MAX_SENDERS:  # all busy: keep the newer half
            self._buckets = dict(list(self._buckets.items())[self.MAX_SENDERS // 2 :])
