"""The answer cache and conditional GET of the read-only endpoints.

**The answer cache.** An answer (the bytes of a page, a feed or an API response) depends on the
database and, for a few endpoints, on the time (the "now" line of the timeline moves each
minute; the calendar feed holds the last 90 days). `AnswerCache` keeps each answer under its
request (path and query), the database's commit count (`adapters.db.CommitCounter`: the bot is
the database's only writer, so an unchanged count means unchanged rows) and the endpoint's time
bucket (`minute`, `day`, or none). A commit makes every older entry unreachable; the cache holds
at most `size` entries and `max_bytes` bytes, and drops the least recently used. So a page
fetched 100 times a second is built once per change, and every other fetch costs a dictionary
lookup. An endpoint names the query parameters it reads (`Site.answer(params=…)`): others (a
`?nocache=<random>`) neither reach a new entry nor start a build.

Two fetches that miss at once share one build (`AnswerCache.build`), so a burst of requests after
a change starts one build, not one per request.

**Conditional GET.** Each answer carries a strong ETag, a hash of its bytes: it changes exactly
when what the answer says changes. Last-Modified is the time of the latest change among the facts
it shows (models/public.py `changed_at`), at most the current minute for the answers that depend
on it. `respond` answers 304 to a matching If-None-Match, or (without one) to an
If-Modified-Since not older than Last-Modified (RFC 9110 13.2.2).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str  # with its charset where it has one
    last_modified: dt.datetime | None = None
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    etag: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.etag:
            object.__setattr__(self, "etag", '"' + hashlib.blake2b(self.body, digest_size=12).hexdigest() + '"')


def text_answer(text: str, content_type: str, last_modified: dt.datetime | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(text.encode("utf-8"), f"{content_type}; charset=utf-8", last_modified, headers=headers)


def minute(now: dt.datetime) -> object:
    return now.replace(second=0, microsecond=0)


def day(now: dt.datetime) -> object:
    return now.date()


def _http_date(t: dt.datetime) -> str:
    return format_datetime(t.astimezone(dt.timezone.utc).replace(microsecond=0), usegmt=True)


def _not_modified(request: web.Request, answer: Answer) -> bool:
    tags = request.headers.get("If-None-Match")
    if tags is not None:
        wanted = {t.strip().removeprefix("W/") for t in tags.split(",")}
        return "*" in wanted or answer.etag in wanted
    since = request.headers.get("If-Modified-Since")
    if since and answer.last_modified is not None:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError, IndexError):
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return answer.last_modified.replace(microsecond=0) <= when
    return False


def respond(request: web.Request, answer: Answer) -> web.Response:
    """The answer as an HTTP response, or 304 when the client holds it already."""
    headers = {"ETag": answer.etag, "Cache-Control": "no-cache", **dict(answer.headers)}
    if answer.last_modified is not None:
        headers["Last-Modified"] = _http_date(answer.last_modified)
    if answer.status == 200 and _not_modified(request, answer):
        return web.Response(status=304, headers=headers)
    response = web.Response(status=answer.status, body=answer.body, headers=headers)
    response.headers["Content-Type"] = answer.content_type
    return response


class AnswerCache:
    """Answers by (request, commit count, time bucket); see the module's docstring."""

    def __init__(self, generation: Callable[[], int], size: int = 512, max_bytes: int = 32 * 1024 * 1024):
        self.generation = generation
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._answers: OrderedDict[Hashable, Answer] = OrderedDict()
        self._building: dict[Hashable, asyncio.Future[Answer]] = {}
        self.hits = 0
        self.misses = 0

    def key(self, request_key: Hashable, bucket: object) -> Hashable:
        return (request_key, self.generation(), bucket)

    async def build(self, key: Hashable, make: Callable[[], Awaitable[Answer]]) -> Answer:
        """The answer under `key`: the cached one, or the one `make` builds (once, however many wait)."""
        found = self._answers.get(key)
        if found is not None:
            self._answers.move_to_end(key)
            self.hits += 1
            return found
        running = self._building.get(key)
        if running is not None:
            self.hits += 1
            return await asyncio.shield(running)
        self.misses += 1
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            answer = await make()
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: nobody else waiting is not an error
            raise
        finally:
            del self._building[key]
        future.set_result(answer)
        if answer.status == 200 and len(answer.body) <= self.max_bytes // 4:
            self._answers[key] = answer
            self.bytes += len(answer.body)
            while len(self._answers) > self.size or self.bytes > self.max_bytes:
                self.bytes -= len(self._answers.popitem(last=False)[1].body)
        return answer

    def __len__(self) -> int:
        return len(self._answers)
