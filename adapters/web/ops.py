"""The operations endpoints: Mozilla's Dockerflow names plus the Kubernetes ones, and /metrics.

- `/__version__`: name, version and commit of the running bot (`VersionInfo.read`, once at start).
- `/__lbheartbeat__` and `/livez`: 200 while the event loop answers; nothing else is checked.
- `/__heartbeat__` and `/readyz`: one check per part (`Operations.heartbeat`), in Dockerflow's shape
  ``{"status", "checks": {name: level}, "details": {name: {"status", "level", "messages"}}}``
  (details only for the checks that are not ok); 200 unless a check is an error, 500 then.
  With [ha] it also says ``"instance"``, its ``"role"`` (leader or standby) and which instance
  ``"leader"`` leads; a standby is healthy: its chat and scheduler checks say "standby" (they run on
  the leader only), never an error.
- `/metrics`: Prometheus' text format (adapters/metrics.py).

None of these go through `Site.answer`'s cache: they say how things are now (Cache-Control:
no-store). The database is read in a worker thread over a short session with a time limit, and
the outside services (Bugzilla, Treestatus, SMTP) are judged from what the bot last saw of them,
never asked anew: a heartbeat costs no outside request and never holds the loop.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
import logging
import os
from collections.abc import Callable, Mapping
from configparser import ConfigParser
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.web.site import Site
from models.orm import Downtime, OutboxMessage
from models.ports import Clock, Transport

if TYPE_CHECKING:
    from adapters.metrics import Metrics

log = logging.getLogger("downtimebot.web")

DISTRIBUTION = "downtime-bot"
NO_STORE = {"Cache-Control": "no-store"}
OUTBOX_KINDS = ("chat", "mail", "bugzilla", "trees")
# Chat waiting this long means people are not told; the other kinds wait on an outside service,
# which is a warning (that service's own check says which).
OUTBOX_LIMIT = dt.timedelta(minutes=15)
DATABASE_TIMEOUT = 5.0
LEVELS = {"ok": 0, "warning": 30, "error": 40}  # Dockerflow's (Django's check framework) levels


# ---- /__version__ ----------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    commit: str | None
    source: str | None = None
    build: str | None = None

    def as_json(self) -> dict[str, str | None]:
        shown: dict[str, str | None] = {"name": self.name, "version": self.version, "commit": self.commit}
        if self.source:
            shown["source"] = self.source
        if self.build:
            shown["build"] = self.build
        return shown

    @classmethod
    def read(cls, root: Path, environ: Mapping[str, str] | None = None) -> VersionInfo:
        """The running version: from the installed distribution (else setup.cfg beside bot.py);
        the commit from DOWNTIMEBOT_COMMIT, else Dockerflow's version.json beside bot.py, else
        .git (read as files: git is never run); None when none says."""
        environ = os.environ if environ is None else environ
        stamp = _version_json(root / "version.json")
        version = _distribution_version() or str(stamp.get("version") or "") or _setup_cfg_version(root) or "unknown"
        commit = environ.get("DOWNTIMEBOT_COMMIT") or _str(stamp.get("commit")) or git_commit(root)
        return cls(DISTRIBUTION, version, commit or None, _str(stamp.get("source")), _str(stamp.get("build")))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _distribution_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _setup_cfg_version(root: Path) -> str | None:
    parser = ConfigParser()
    try:
        parser.read(root / "setup.cfg", encoding="utf-8")
    except Exception:  # a broken setup.cfg must not stop the bot from answering
        return None
    return parser.get("metadata", "version", fallback=None)


def _version_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def git_commit(root: Path) -> str | None:
    """The commit checked out at `root`, from .git/HEAD and the ref it names (loose or packed);
    a worktree's `.git` file (``gitdir: …``) is followed, with its `commondir`."""
    git = root / ".git"
    try:
        if git.is_file():
            pointer = git.read_text(encoding="utf-8").strip()
            if not pointer.startswith("gitdir:"):
                return None
            git = (root / pointer.removeprefix("gitdir:").strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if _is_sha(head) else None
        ref = head.removeprefix("ref:").strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for base in (git, common):
            loose = base / ref
            if loose.is_file():
                sha = loose.read_text(encoding="utf-8").strip()
                return sha if _is_sha(sha) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref and _is_sha(sha):
                    return sha
    except OSError:
        return None
    return None


def _is_sha(value: str) -> bool:
    return len(value) in (40, 64) and all(c in "0123456789abcdef" for c in value)


# ---- what the database says ----------------------------------------------------------------

@dataclass(frozen=True)
class Waiting:
    """Outbox rows of one kind waiting for delivery: how many, and since when (the oldest)."""

    pending: int
    oldest: dt.datetime | None

    def age(self, now: dt.datetime) -> dt.timedelta:
        return max(now - self.oldest, dt.timedelta(0)) if self.oldest is not None else dt.timedelta(0)


def outbox_waiting(session: Session) -> dict[str, Waiting]:
    """Per outbox kind, the rows pending: two reads through ix_outbox_status_kind_id each."""
    found: dict[str, Waiting] = {}
    for kind in OUTBOX_KINDS:
        where = (OutboxMessage.status == "pending", OutboxMessage.kind == kind)
        first = select(OutboxMessage.created_at).where(*where).order_by(OutboxMessage.id).limit(1)
        oldest = session.scalar(first)
        count = session.scalar(select(func.count()).select_from(OutboxMessage).where(*where)) if oldest is not None else 0
        found[kind] = Waiting(int(count or 0), oldest)
    return found


def downtimes_by_state(session: Session) -> dict[str, int]:
    """How many downtimes are in each state (one grouped read of ix_downtimes_state_start_at)."""
    rows = session.execute(select(Downtime.state, func.count()).group_by(Downtime.state))
    return {str(state): int(n) for state, n in rows}


# ---- the heartbeat ---------------------------------------------------------------------------

@dataclass
class Check:
    level: str = "ok"  # ok | warning | error
    messages: list[str] = field(default_factory=list)
    shown: str = ""  # what "checks" says instead of the level ("standby": not this instance's part)

    def fail(self, level: str, message: str) -> None:
        if LEVELS[level] > LEVELS[self.level]:
            self.level = level
        self.messages.append(message)


@dataclass
class Operations:
    """What the operations endpoints read from the running bot (built by bot.py).

    `services`: per outside service (bugzilla, treestatus, smtp), a function saying why the bot
    last failed to reach it ("" when it did, or has not tried): warnings only, the bot runs
    without them and its queued changes wait. `scheduler_running`: the reminder scheduler's state.
    `role`: with [ha], (this instance, "leader" or "standby", the instance that leads or None).
    """

    sessions: sessionmaker[Session]
    clock: Clock
    transports: Mapping[str, Transport]
    version: VersionInfo
    scheduler_running: Callable[[], bool] = lambda: True
    services: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    metrics: Metrics | None = None
    role: Callable[[], tuple[str, str, str | None]] | None = None
    outbox_limit: dt.timedelta = OUTBOX_LIMIT
    database_timeout: float = DATABASE_TIMEOUT

    def _read(self) -> dict[str, Waiting]:
        with self.sessions() as session:
            session.execute(text("SELECT 1"))
            return outbox_waiting(session)

    async def heartbeat(self) -> tuple[str, dict[str, Check]]:
        """Every check, and the overall level (the worst of them)."""
        checks: dict[str, Check] = {"database": Check()}
        waiting: dict[str, Waiting] | None = None
        try:
            waiting = await asyncio.wait_for(asyncio.to_thread(self._read), self.database_timeout)
        except asyncio.TimeoutError:
            checks["database"].fail("error", f"no answer within {self.database_timeout:g} s")
        except Exception as err:  # the database's own error says why; never a traceback
            log.warning("heartbeat: the database check failed: %s", err)
            checks["database"].fail("error", f"cannot read the database ({type(err).__name__})")
        standby = self.role is not None and self.role()[1] != "leader"
        for network, transport in self.transports.items():
            check = checks.setdefault(network, Check())
            if standby:
                check.shown = "standby"
            elif not transport.connected:
                check.fail("error", f"{network} is not connected (what the bot says waits in the outbox)")
        checks["scheduler"] = Check(shown="standby" if standby else "")
        if not standby and not self.scheduler_running():
            checks["scheduler"].fail("error", "the reminder scheduler is not running")
        checks["outbox"] = Check()
        if waiting is None:
            checks["outbox"].fail("warning", "not read: the database did not answer")
        else:
            now = self.clock.now()
            for kind, w in waiting.items():
                age = w.age(now)
                if age > self.outbox_limit:
                    checks["outbox"].fail(
                        "error" if kind == "chat" else "warning",
                        f"{kind}: {w.pending} waiting, the oldest for {int(age.total_seconds()) // 60} min "
                        f"(limit {int(self.outbox_limit.total_seconds()) // 60} min)",
                    )
        for service, problem in self.services.items():
            checks[service] = Check()
            why = problem()
            if why:
                checks[service].fail("warning", f"unreachable the last time the bot asked: {why}"[:300])
        worst = max((c.level for c in checks.values()), key=LEVELS.__getitem__, default="ok")
        return worst, checks

    async def scrape(self) -> bytes:
        """The metrics, with the gauges read now (the database in a worker thread)."""
        assert self.metrics is not None
        metrics = self.metrics

        def read() -> tuple[dict[str, int], dict[str, Waiting]]:
            with self.sessions() as session:
                return downtimes_by_state(session), outbox_waiting(session)

        try:
            states, waiting = await asyncio.wait_for(asyncio.to_thread(read), self.database_timeout)
        except Exception as err:  # the counters still answer; the gauges keep their last values
            log.warning("metrics: the database could not be read: %s", err)
        else:
            now = self.clock.now()
            metrics.refresh(
                states, {k: (w.pending, w.age(now).total_seconds()) for k, w in waiting.items()},
                {n: t.connected for n, t in self.transports.items()},
            )
        metrics.leads(self.role is None or self.role()[1] == "leader")
        return metrics.exposition()


# ---- the routes ------------------------------------------------------------------------------

def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=NO_STORE)


def routes(site: Site, operations: Operations | None) -> list[web.RouteDef]:
    """The operations endpoints (none without `operations`)."""
    if operations is None:
        return []
    ops = operations
    version = ops.version.as_json()

    async def version_view(request: web.Request) -> web.Response:
        return _json(version)

    async def lbheartbeat(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def heartbeat(request: web.Request) -> web.Response:
        status, checks = await ops.heartbeat()
        body: dict[str, object] = {
            "status": status,
            "checks": {name: c.shown or c.level for name, c in checks.items()},
            "details": {
                name: {"status": c.level, "level": LEVELS[c.level], "messages": c.messages}
                for name, c in checks.items() if c.level != "ok"
            },
        }
        if ops.role is not None:
            instance, role, leader = ops.role()
            body.update(instance=instance, role=role, leader=leader)
        return _json(body, 500 if status == "error" else 200)

    async def metrics(request: web.Request) -> web.Response:
        if ops.metrics is None:
            raise web.HTTPNotFound()
        from adapters.metrics import CONTENT_TYPE

        response = web.Response(body=await ops.scrape(), headers=NO_STORE)
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    return [
        web.get("/__version__", version_view),
        web.get("/__lbheartbeat__", lbheartbeat),
        web.get("/livez", lbheartbeat),
        web.get("/__heartbeat__", heartbeat),
        web.get("/readyz", heartbeat),
        web.get("/metrics", metrics),
    ]
