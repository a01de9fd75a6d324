"""Bugzilla (BMO) for the bot: read nominated bugs, approve them, comment on them.

`BugzillaClient` drives python-bugzilla 3.3 over BMO's REST API and satisfies the
`models.ports.BugTracker` port (tests use `tests.fakes.FakeBugzilla`).

Every method is **synchronous** and may block for up to ``timeout * (retries + 1)``
plus back-off: callers run them in a thread (``asyncio.to_thread``), never on the
event loop.

Errors are `BugzillaError` subclasses (from the port) whose text is one line fit for chat:

- `BugNotVisible`: the bug is missing or restricted and unreadable to the bot;
- `BugzillaUnavailable`: down, 5xx, 429 or timeouts after the retries; queue the change;
- `InvalidApiKey`: the key was refused (never retried: BMO blocks IPs that keep
  sending bad keys) or a login is needed and no key is configured;
- `FlagDenied`: Bugzilla refused the flag change (codes 129, 130, 132, 133, 134).

The API key travels only in the ``X-BUGZILLA-API-KEY`` header, never in a URL, and
is never logged.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import bugzilla
import requests

from models.ports import (
    DurationObserver,
    BugInfo, BugNotVisible, BugzillaError, BugzillaUnavailable, FlagDenied, InvalidApiKey,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

API_KEY_HEADER = "X-BUGZILLA-API-KEY"
DEFAULT_FLAG = "needs-treeclosure"
TAG_PREFIX = "[tree-closure"
FIELDS = ("id", "summary", "assigned_to", "status", "resolution", "whiteboard", "flags", "groups")
FLAG_STATUSES = frozenset({"?", "+", "-", "X"})  # "X" clears the flag
FLAG_ERROR_CODES = frozenset({129, 130, 132, 133, 134})
# BMO answers a request target over 8 KiB with 414; keep the id= part of a bug read
# well under that, leaving room for the path and include_fields.
ID_PARAMS_BUDGET = 6000
# A Retry-After longer than this is not slept through (BMO's 429 lasts an hour):
# the call fails as unavailable and the caller queues the change.
MAX_RETRY_AFTER = 60.0


# ---- whiteboard tags -------------------------------------------------------------------

def _tag_pattern(prefix: str) -> re.Pattern[str]:
    # The prefix followed by "]" or by a space and anything up to "]": "[tree-closure]",
    # "[tree-closure 2026-12-05 14:00 UTC]", but not "[tree-closures]".
    return re.compile(re.escape(prefix) + r"(?:\s[^\]]*)?\]")


def whiteboard_without_tag(whiteboard: str, prefix: str = TAG_PREFIX) -> str:
    """The whiteboard with every ``[tree-closure …]`` tag taken out; the rest is kept."""
    return " ".join(_tag_pattern(prefix).sub(" ", whiteboard).split())


def whiteboard_with_tag(whiteboard: str, tag: str, prefix: str = TAG_PREFIX) -> str:
    """The whiteboard with `tag` in place of any ``[tree-closure …]`` tag (never two of them).

    >>> whiteboard_with_tag("[infra] [tree-closure 2026-01-01] x", "[tree-closure 2026-02-02]")
    '[infra] [tree-closure 2026-02-02] x'
    """
    if not _tag_pattern(prefix).fullmatch(tag):
        raise ValueError(f"{tag!r} is not a {prefix}…] tag")
    pattern = _tag_pattern(prefix)
    first = pattern.search(whiteboard)
    if first is None:
        return " ".join(f"{whiteboard} {tag}".split())
    before = whiteboard[:first.start()]
    after = pattern.sub(" ", whiteboard[first.end():])
    return " ".join(f"{before} {tag} {after}".split())


# ---- the real client -------------------------------------------------------------------

class _Session(requests.Session):
    """The `requests` session python-bugzilla uses: adds our timeout and keeps the key safe.

    python-bugzilla has no timeout parameter, only the process-wide
    PYTHONBUGZILLA_REQUESTS_TIMEOUT variable (default 300 s), so the timeout is set here.
    """

    def __init__(self, api_key: str | None, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self.on_request: DurationObserver | None = None  # the metrics: seconds per HTTP request
        if api_key:
            self.headers[API_KEY_HEADER] = api_key

    def request(
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["timeout"] = self._timeout
        if self.on_request is None:
            return super().request(method, url, *args, **kwargs)
        started = time.perf_counter()
        try:
            return super().request(method, url, *args, **kwargs)
        finally:
            self.on_request(time.perf_counter() - started)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest,
                     response: requests.Response) -> None:
        # requests drops Authorization on a redirect to another host, but not our header.
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url or "", prepared_request.url or ""):
            prepared_request.headers.pop(API_KEY_HEADER, None)


class BugzillaClient:
    """BMO through python-bugzilla's REST backend. Synchronous: call it from a thread."""

    def __init__(self, url: str, api_key: str | None, *, flag: str = DEFAULT_FLAG,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        base = url.rstrip("/")
        self.rest_url = (base if base.endswith("/rest") else base + "/rest") + "/"
        self.flag = flag
        self._api_key = api_key
        self._retries, self._backoff, self._sleep = retries, backoff, sleep
        self._session = _Session(api_key, timeout)
        self._bz: bugzilla.Bugzilla | None = None
        self._connect_lock = threading.Lock()

    def observe(self, on_request: DurationObserver | None) -> None:
        """Be told how many seconds each HTTP request to Bugzilla took (the metrics)."""
        self._session.on_request = on_request

    def __repr__(self) -> str:  # never show the key
        return f"BugzillaClient({self.rest_url!r}, flag={self.flag!r})"

    # ---- public API ---------------------------------------------------------------------

    def check(self, product: str | None = None) -> None:
        """Check at start-up that Bugzilla answers, the key works and, given a product,
        that the flag type exists there. Raises InvalidApiKey or BugzillaError."""
        if self._api_key:
            # python-bugzilla has no call for BMO's /rest/whoami (its `logged_in` asks
            # /rest/user?ids=1, which says nothing about whose key this is).
            me = self._call("checking the API key", lambda: self._raw_get("whoami", {}))
            log.info("Bugzilla at %s: logged in as %s", self.rest_url, me.get("name"))
        else:
            self._call("connecting", self._connection)
            log.info("Bugzilla at %s: no API key, read-only and public bugs only", self.rest_url)
        if product is None:
            return
        # python-bugzilla's product_get() asks /rest/product/get, which BMO routes as
        # "the product named 'get'"; /rest/product?names= is the documented form.
        params = {"names": product, "include_fields": "name,components.name,components.flag_types"}
        found = self._call(f"reading product {product}", lambda: self._raw_get("product", params))
        products = found.get("products", [])
        if not products:
            raise BugzillaError(f"Bugzilla has no product {product!r} that the bot can see.")
        types = [t for c in products[0].get("components", [])
                 for t in c.get("flag_types", {}).get("bug", [])]
        if not any(t.get("name") == self.flag and t.get("is_active", True) for t in types):
            raise BugzillaError(f"Bugzilla product {product!r} has no active flag {self.flag!r}; "
                                "check [bugzilla] flag.")

    def get_bugs(self, ids: Sequence[int]) -> dict[int, BugInfo | None]:
        """Read bugs in one request (more only to keep URLs under 8 KiB).

        Every id is in the answer; None means missing or not readable by the bot."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        found: dict[int, BugInfo] = {}
        for chunk in _id_chunks(wanted):
            bugs = self._call(
                f"reading {_plural(len(chunk), 'bug')}",
                lambda: self._connection().getbugs(chunk, include_fields=list(FIELDS),
                                                   permissive=True))
            found.update((b.id, BugInfo.from_json(_raw(b))) for b in bugs if b)
        return {i: found.get(i) for i in wanted}

    def search_nominated(self) -> list[BugInfo]:
        """Open bugs with ``<flag>?`` that the bot can see, in one request, by id."""
        def search() -> list[Any]:
            bz = self._connection()
            query = bz.build_query(flag=f"{self.flag}?", include_fields=list(FIELDS))
            query["resolution"] = "---"
            bugs: list[Any] = bz.query(query)
            return bugs

        found = self._call("searching nominations", search)
        bugs = [BugInfo.from_json(_raw(b)) for b in found]
        # build_query's flag search is a substring match; keep the exact flag only.
        return sorted((b for b in bugs if b.flag_status(self.flag) == "?"), key=lambda b: b.id)

    def comments(self, ids: Sequence[int]) -> dict[int, list[str]]:
        """The text of every comment on each bug: one request per bug (REST has no bulk
        form), so callers ask only when they must (a retry checking what already landed)."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            return {}
        found = self._call(f"reading the comments of {_plural(len(wanted), 'bug')}",
                           lambda: self._connection().get_comments(wanted), wanted)
        bugs = found.get("bugs", {})
        return {i: [str(c.get("text", "")) for c in bugs.get(str(i), {}).get("comments", [])]
                for i in wanted}

    def update(self, ids: Sequence[int], *, flag_status: str | None = None,
               whiteboard: str | None = None, whiteboard_tag: str | None = None,
               comment: str | None = None) -> None:
        """Change bugs in one PUT: the flag's status ("+", "-", "?", or "X" to clear), the
        whiteboard, a public comment. Every change applies to every bug, and one bug the
        bot cannot read fails the whole call (BugNotVisible), so leave those out.

        `whiteboard` replaces each bug's whole whiteboard with the same text.
        `whiteboard_tag` instead puts a ``[tree-closure …]`` tag into each bug's own
        whiteboard (``""`` removes it). The bugs are read first; when their new
        whiteboards differ, each distinct whiteboard takes one more PUT, sent before the
        PUT with the flag and comment, so a failure part-way leaves only idempotent
        whiteboard changes behind and the whole call can be retried safely.
        """
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if flag_status is not None and flag_status not in FLAG_STATUSES:
            raise ValueError(f"flag status must be one of {sorted(FLAG_STATUSES)}")
        if whiteboard is not None and whiteboard_tag is not None:
            raise ValueError("give whiteboard or whiteboard_tag, not both")
        if not wanted:
            return
        if whiteboard_tag is not None:
            new_whiteboards: dict[str, list[int]] = {}
            for bug_id, bug in self.get_bugs(wanted).items():
                if bug is None:
                    # A permissive read cannot tell missing from unreadable; either way
                    # the PUT would fail as a whole.
                    raise BugNotVisible(bug_id, "no access")
                new = (whiteboard_with_tag(bug.whiteboard, whiteboard_tag) if whiteboard_tag
                       else whiteboard_without_tag(bug.whiteboard))
                if new != bug.whiteboard:
                    new_whiteboards.setdefault(new, []).append(bug_id)
            groups = list(new_whiteboards.items())
            if len(groups) == 1 and len(groups[0][1]) == len(wanted):
                whiteboard = groups[0][0]
            else:
                for new, group in new_whiteboards.items():
                    self._put(group, None, new, None)
        self._put(wanted, flag_status, whiteboard, comment)

    # ---- plumbing -----------------------------------------------------------------------

    def _put(self, ids: list[int], flag_status: str | None, whiteboard: str | None,
             comment: str | None) -> None:
        def put() -> Any:
            bz = self._connection()
            flags = [{"name": self.flag, "status": flag_status}] if flag_status else None
            changes = bz.build_update(flags=flags, whiteboard=whiteboard, comment=comment)
            return bz.update_bugs(ids, changes)

        if flag_status is None and whiteboard is None and comment is None:
            return
        # A 5xx or a timeout does not say whether the change was made: repeating a flag
        # or whiteboard is harmless, repeating a comment is not. So an update with a
        # comment is tried once; the caller retries after checking what landed.
        self._call(f"updating {_plural(len(ids), 'bug')}", put, ids,
                   retries=0 if comment else None)
        log.info("Bugzilla: updated bugs %s (flag %s, whiteboard %s, comment %s)",
                 ",".join(map(str, ids)), flag_status or "unchanged",
                 "set" if whiteboard is not None else "unchanged", "added" if comment else "none")

    def _connection(self) -> bugzilla.Bugzilla:
        # Connecting asks /rest/version, so it happens lazily, inside the retries.
        with self._connect_lock:
            if self._bz is None:
                # api_key=None on purpose: given a key, python-bugzilla 3.3 appends it to
                # every URL as Bugzilla_api_key; the session sends it as a header instead.
                # use_creds=False: no ~/.config/python-bugzilla rc file or token cache.
                self._bz = bugzilla.Bugzilla(self.rest_url, api_key=None, use_creds=False,
                                             force_rest=True, requests_session=self._session)
            return self._bz

    def _raw_get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        response = self._session.get(self.rest_url + path, params=params)
        if response.status_code in (400, 401, 404):
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("error"):
                raise bugzilla.BugzillaError(str(data.get("message", "")), code=data.get("code"))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def _call(self, what: str, fn: Callable[[], T], bug_ids: Sequence[int] = (),
              retries: int | None = None) -> T:
        retries = self._retries if retries is None else retries
        attempt = 0
        while True:
            delay = self._backoff * 2 ** attempt
            try:
                return fn()
            except bugzilla.BugzillaError as e:
                raise self._translate(e, what, bug_ids) from e
            except requests.HTTPError as e:
                status = e.response.status_code if e.response is not None else 0
                if status != 429 and status < 500:
                    raise BugzillaError(f"Bugzilla answered HTTP {status} while {what}.") from e
                reason = f"HTTP {status}"
                retry_after = _retry_after(e.response)
                if retry_after is not None:
                    if retry_after > MAX_RETRY_AFTER:
                        raise BugzillaUnavailable(
                            f"Bugzilla is rate-limiting the bot (retry after {retry_after:.0f} s) "
                            f"while {what}.") from e
                    delay = retry_after
            except (requests.RequestException, json.JSONDecodeError) as e:
                reason = type(e).__name__
            if attempt >= retries:
                raise BugzillaUnavailable(f"Bugzilla is unavailable ({reason}) while {what}; "
                                          f"gave up after {_plural(attempt + 1, 'attempt')}.")
            attempt += 1
            log.warning("Bugzilla: %s failed (%s); retry %d of %d in %.1f s",
                        what, reason, attempt, retries, delay)
            self._sleep(delay)

    def _translate(self, e: bugzilla.BugzillaError, what: str,
                   bug_ids: Sequence[int]) -> BugzillaError:
        code = e.code
        message = self._scrub(str(e).removesuffix(f" (code={code})"))
        named = [int(n) for n in re.findall(r"\b\d+\b", message) if int(n) in bug_ids]
        if code == 306:
            return InvalidApiKey("Bugzilla refused the bot's API key (invalid or revoked); "
                                 "check [bugzilla] api_key_env.")
        if code == 410:
            return InvalidApiKey(f"Bugzilla needs a login for {what} "
                                 "and no API key is configured.")
        if code in (101, 102):
            if named:
                bug_id: int | None = named[0]
            else:
                bug_id = bug_ids[0] if len(bug_ids) == 1 else _first_number(message)
            return BugNotVisible(bug_id, "missing" if code == 101 else "no access")
        if code in FLAG_ERROR_CODES:
            denied = named or list(bug_ids)
            bugs = ", ".join(map(str, denied))
            return FlagDenied(f"Bugzilla refused the {self.flag} change on bug {bugs}: {message}",
                              denied, code)
        return BugzillaError(f"Bugzilla error {code} while {what}: {message}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "<api key>") if self._api_key else text


def _raw(bug: Any) -> dict[str, Any]:
    """A python-bugzilla Bug's data. get_raw_data() deep-copies it, which costs more than
    the request for a few hundred bugs; BugInfo.from_json only reads it and copies what
    it keeps into immutable values, so the Bug's own dict is read when it is there."""
    raw = getattr(bug, "_rawdata", None)
    return raw if isinstance(raw, dict) else bug.get_raw_data()


def _first_number(text: str) -> int | None:
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


def _retry_after(response: requests.Response | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (plain back-off is used)."""
    value = response.headers.get("Retry-After", "") if response is not None else ""
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _id_chunks(ids: list[int]) -> Iterator[list[int]]:
    chunk: list[int] = []
    size = 0
    for bug_id in ids:
        cost = len(f"&id={bug_id}")
        if chunk and size + cost > ID_PARAMS_BUDGET:
            yield chunk
            chunk, size = [], 0
        chunk.append(bug_id)
        size += cost
    if chunk:
        yield chunk


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


