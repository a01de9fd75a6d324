"""What every web handler reads (`Site`), and `Site.answer`, the one way a handler answers.

A handler gives `answer` a function that builds its answer from the public read model
(models/public.py). That function runs in a worker thread with its own short session, so the
chat goes on while a page is built: the event loop only looks the answer up in the answer cache
(answers.py) and writes it out. aiohttp writes to each client on its own, so a slow client holds
neither the loop nor the others.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from adapters.web.answers import Answer, AnswerCache, respond
from adapters.web.problems import BadParameter, NotFound, problem
from models.planning import Policy
from models.ports import Clock
from models.public import PublicReader, Visibility
from models.timeparse import format_duration, format_time

log = logging.getLogger("downtimebot.web")
TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates" / "web"
# Answers built at once, each in a worker thread: a burst of misses queues instead of taking the CPU.
BUILDERS = 2


# Longest id accepted in a path: more digits than any SQLite integer cannot name a downtime.
MAX_ID_DIGITS = 18


def downtime_id_of(text: str) -> int | None:
    """A path's downtime id: ASCII digits only (as chat reads numbers), else None (a 404)."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS:
        return int(text)
    return None


def rfc3339(t: dt.datetime | None) -> str | None:
    """A time as RFC 3339 in UTC, to the second ("2026-12-05T14:00:00Z")."""
    if t is None:
        return None
    return t.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Site:
    sessions: sessionmaker[Session]
    clock: Clock
    visibility: Visibility
    generation: Callable[[], int]  # the database's commit count (adapters.db.CommitCounter)
    policy: Policy = field(default_factory=Policy)
    trees: Sequence[str] = ()
    tree_backend: str = "builtin"
    zones: Sequence[str] = ()
    base_url: str = ""  # [web] base_url; empty: links are relative to the page
    mail_domain: str = "downtimebot.localhost"  # the calendar UIDs' (adapters.mail.mail_domain)
    name: str = "downtime-bot"
    cache: AnswerCache = field(init=False)
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.cache = AnswerCache(self.generation)
        self._builders = asyncio.Semaphore(BUILDERS)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,  # every web template is HTML or XML: every value is escaped
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        zones = tuple(self.zones)
        self.templates.globals.update(
            when=lambda t, now=None: format_time(t, zones, now=now),
            dur=format_duration,
            rfc3339=rfc3339,
            base_url=self.base_url,
            site_name=self.name,
        )

    def link(self, path: str) -> str:
        """An absolute link when [web] base_url is set, else one relative to the site's root."""
        return f"{self.base_url}{path}"

    def html(self, name: str, **context: Any) -> str:
        return self.templates.get_template(name).render(**context)

    def read(self, build: Callable[[PublicReader], Answer]) -> Answer:
        """Run `build` over a short session of its own (in the calling thread)."""
        with self.sessions() as session:
            return build(PublicReader(session, self.visibility, now=self.clock.now()))

    async def answer(
        self, request: web.Request, build: Callable[[PublicReader], Answer],
        *, bucket: Callable[[dt.datetime], object] | None = None, params: Sequence[str] | None = None,
    ) -> web.Response:
        """The response to `request`: cached while the database and the time bucket are unchanged,
        else built by `build` in a worker thread; 304 when the client holds it already; a
        `NotFound` or `BadParameter` that `build` raises is a 404 or a 400 problem.

        `params`: the query parameters the answer depends on (the others are not part of the
        cache key); None: the whole query string."""
        if params is None:
            asked: object = request.query_string
        else:
            asked = tuple((name, tuple(request.query.getall(name, ()))) for name in params)
        key = self.cache.key((request.path, asked), bucket(self.clock.now()) if bucket else None)

        async def make() -> Answer:
            async with self._builders:
                return await asyncio.to_thread(self.read, build)

        try:
            found = await self.cache.build(key, make)
        except NotFound as err:
            return problem(request, 404, "Not found", err.detail)
        except BadParameter as err:
            return problem(request, 400, f"Bad value of {err.name}", err.detail, parameter=err.name)
        return respond(request, found)
