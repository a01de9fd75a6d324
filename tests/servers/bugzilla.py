"""A local Bugzilla for tests that speaks the part of BMO's REST API the bot uses.

It follows BMO's documented contract (``docs/en/rst/api/core/v1``) closely enough
that the real python-bugzilla client can be driven against it over HTTP:

- ``GET /rest/version``, ``GET /rest/whoami`` (401/410 without a login);
- ``GET /rest/bug/<id>`` (404/101 missing, 401/102 when the caller is not in all of
  the bug's groups; with ``permissive=1`` those go into ``faults`` instead);
- ``GET /rest/bug`` — a search. ``id=`` (repeated or comma-separated) is how clients
  fetch many bugs; ``f1/o1/v1`` custom search and python-bugzilla's boolean charts
  ``field0-0-0/type0-0-0/value0-0-0`` (``flagtypes.name`` matches name+status, e.g.
  ``needs-treeclosure?``); ``status``/``bug_status``, ``resolution`` (``---`` = open),
  ``product``, ``component``; unreadable bugs are silently left out; with
  ``permissive=1`` they are listed in ``faults`` (BMO's Bug.get behaviour);
- ``PUT /rest/bug/<id>`` with ``ids``, ``flags``, ``whiteboard``, ``comment``;
  all bugs are validated before any is changed;
- ``GET``/``POST /rest/bug/<id>/comment``;
- ``GET /rest/product?names=…`` and ``/rest/product/<name-or-id>`` with
  ``include_fields`` such as ``components.name,components.flag_types``.

Every component of every product carries every flag type (a simplification).
Request targets over 8 KiB get a plain-text 414. Errors are
``{"error": true, "code": N, "message": "…"}``.

The request log keeps each request target verbatim (so a test can prove that no
API key ever travelled in a URL) and the headers with the key's value redacted.
"""
from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-BUGZILLA-API-KEY"
MAX_TARGET = 8192
FLAG_STATUSES = {"?", "+", "-", "X"}
# Request parameters that are not search terms.
NON_SEARCH_PARAMS = {
    "include_fields", "exclude_fields", "query_format", "permissive", "Bugzilla_api_key",
    "api_key", "limit", "offset", "order", "extra_fields",
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status, self.code, self.message = http_status, code, message


@dataclass
class Flag:
    id: int
    name: str
    status: str
    setter: str
    creation_date: str = field(default_factory=_now)
    modification_date: str = field(default_factory=_now)

    def as_json(self, type_id: int) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type_id": type_id, "status": self.status,
                "setter": self.setter, "creation_date": self.creation_date,
                "modification_date": self.modification_date}


@dataclass
class Bug:
    id: int
    summary: str
    assigned_to: str
    status: str
    resolution: str
    whiteboard: str
    product: str
    component: str
    groups: list[str]
    flags: list[Flag] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    last_change_time: str = field(default_factory=_now)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    target: str  # path and query exactly as received
    path: str
    query: dict[str, list[str]]
    json: Any
    headers: dict[str, str]  # the API key header's value is redacted
    login: str | None  # the account the request authenticated as


@dataclass
class _Fault:
    status: int
    count: int | None
    until: float | None  # time.monotonic() deadline
    retry_after: str | None
    after: int = 0  # let this many requests through first
    apply: bool = False  # do the request, then answer with the error anyway
    methods: frozenset[str] = frozenset()  # only these methods (all if empty)


class BugzillaServer:
    """An in-memory Bugzilla on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[LoggedRequest] = []
        self.bugs: dict[int, Bug] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.flag_types: list[dict[str, Any]] = []
        self._accounts: dict[str, tuple[str, frozenset[str]]] = {}  # key -> (login, groups)
        self._denied_flags: set[tuple[str, int | None]] = set()
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_flag_type("needs-treeclosure")

    # ---- set-up -------------------------------------------------------------------------

    def add_account(self, login: str, api_key: str, groups: Iterable[str] = ()) -> None:
        """Make `api_key` a valid key for `login`, a member of `groups`."""
        self._accounts[api_key] = (login, frozenset(groups))

    def add_flag_type(self, name: str, *, active: bool = True) -> None:
        """Add a bug flag type; adding a second one of the same name makes it ambiguous (133)."""
        self.flag_types.append({
            "id": next(self._ids), "name": name, "description": name, "type": "bug",
            "is_active": active, "is_requestable": True, "is_requesteeble": False,
            "is_multiplicable": False,
        })

    def deny_flag(self, name: str, bug_id: int | None = None) -> None:
        """Refuse (code 130) changes to flag `name` on `bug_id`, or on every bug if None."""
        self._denied_flags.add((name, bug_id))

    def add_product(self, name: str, components: Iterable[str] = ()) -> None:
        product = self.products.setdefault(
            name, {"id": next(self._ids), "name": name, "components": {}})
        for component in components:
            product["components"].setdefault(component, {"id": next(self._ids), "name": component})

    def add_bug(self, id: int, summary: str, assigned_to: str, status: str = "NEW",
                whiteboard: str = "", flags: Iterable[tuple[str, str]] = (),
                groups: Iterable[str] = (), product: str = "Infrastructure & Operations",
                component: str = "RelOps: General", resolution: str = "") -> Bug:
        """Add a bug; `flags` are (name, status) pairs, `groups` make it restricted."""
        self.add_product(product, [component])
        bug = Bug(id=id, summary=summary, assigned_to=assigned_to, status=status,
                  resolution=resolution, whiteboard=whiteboard, product=product,
                  component=component, groups=list(groups))
        bug.flags = [Flag(next(self._ids), name, st, assigned_to) for name, st in flags]
        with self._lock:
            self.bugs[id] = bug
        return bug

    def fail_with(self, status: int, count: int | None = None, until: float | None = None,
                  retry_after: str | None = None, *, after: int = 0, apply: bool = False,
                  methods: Iterable[str] = ()) -> None:
        """Answer the next `count` requests (or all until time.monotonic() > `until`, or all
        until clear_faults()) with HTTP `status` and a non-JSON body, like a proxy would.

        `after`: let that many requests through first. `apply`: carry the request out and
        answer with the error anyway (a proxy timing out on a change that went through).
        `methods`: only requests with these methods count (e.g. ``["PUT"]``)."""
        with self._lock:
            self._faults.append(_Fault(status, count, until, retry_after, after, apply,
                                       frozenset(methods)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, method: str, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> BugzillaServer:
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True, name="bugzilla-test-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> BugzillaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request handling (called from handler threads) ---------------------------------

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            while self._faults:
                fault = self._faults[0]
                if fault.until is not None and time.monotonic() > fault.until:
                    self._faults.pop(0)
                    continue
                if fault.methods and method not in fault.methods:
                    return None
                if fault.after > 0:
                    fault.after -= 1
                    return None
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.pop(0)
                return fault
            return None

    def _login(self, headers: Any,
               query: dict[str, list[str]]) -> tuple[str | None, frozenset[str]]:
        key = (headers.get(API_KEY_HEADER) or _first(query, "Bugzilla_api_key")
               or _first(query, "api_key"))
        if not key:
            return None, frozenset()
        if key not in self._accounts:
            raise ApiError(400, 306, "The API key you specified is invalid. Please check that "
                                     "you typed it correctly.")
        return self._accounts[key]

    def dispatch(self, method: str, path: str, query: dict[str, list[str]], body: Any,
                 login: str | None, groups: frozenset[str]) -> tuple[int, Any]:
        parts = path.removeprefix("/rest").strip("/").split("/")
        with self._lock:
            match method, parts:
                case "GET", ["version"]:
                    return 200, {"version": "20240729.1"}
                case "GET", ["whoami"]:
                    _require_login(login)
                    return 200, {"id": 1, "name": login, "login": login, "real_name": "Bot",
                                 "nick": login.split("@")[0] if login else ""}
                case "GET", ["bug", bug_id] if bug_id.isdigit():
                    return 200, self._get_bugs([int(bug_id)], query, groups, single=True)
                case "GET", ["bug"]:
                    return 200, self._search(query, groups)
                case "PUT", ["bug", bug_id] if bug_id.isdigit():
                    _require_login(login)
                    return 200, self._update(int(bug_id), body or {}, login, groups)
                case "GET", ["bug", bug_id, "comment"] if bug_id.isdigit():
                    bug = self._readable(int(bug_id), groups)
                    return 200, {"bugs": {str(bug.id): {"comments": bug.comments}}, "comments": {}}
                case "POST", ["bug", bug_id, "comment"] if bug_id.isdigit():
                    _require_login(login)
                    bug = self._readable(int(bug_id), groups)
                    text = (body or {}).get("comment", "")
                    private = bool((body or {}).get("is_private"))
                    comment = self._add_comment(bug, text, private, login or "")
                    return 201, {"id": comment["id"]}
                case "GET", ["product"]:
                    return 200, self._products(_values(query, "names"), _values(query, "ids"),
                                               query)
                case "GET", ["product", name_or_id]:
                    by_id = name_or_id.isdigit()
                    return 200, self._products([] if by_id else [name_or_id],
                                               [name_or_id] if by_id else [], query)
        raise ApiError(404, 32614, f"A REST API resource was not found for '{method} {path}'.")

    # ---- bugs ---------------------------------------------------------------------------

    def _readable(self, bug_id: int, groups: frozenset[str]) -> Bug:
        bug = self.bugs.get(bug_id)
        if bug is None:
            raise ApiError(404, 101, f"Bug #{bug_id} does not exist.")
        if not set(bug.groups) <= groups:
            raise ApiError(401, 102, f"You are not authorized to access bug #{bug_id}.")
        return bug

    def _bug_json(self, bug: Bug, query: dict[str, list[str]]) -> dict[str, Any]:
        type_ids = {t["name"]: t["id"] for t in self.flag_types}
        data = {
            "id": bug.id, "summary": bug.summary, "assigned_to": bug.assigned_to,
            "status": bug.status, "resolution": bug.resolution, "whiteboard": bug.whiteboard,
            "product": bug.product, "component": bug.component, "groups": list(bug.groups),
            "flags": [f.as_json(type_ids.get(f.name, 0)) for f in bug.flags],
            "is_open": bug.resolution == "", "last_change_time": bug.last_change_time,
        }
        return _pick(data, _values(query, "include_fields"), _values(query, "exclude_fields"))

    def _get_bugs(self, ids: list[int], query: dict[str, list[str]], groups: frozenset[str],
                  single: bool = False) -> dict[str, Any]:
        permissive = _first(query, "permissive") not in (None, "", "0")
        bugs, faults = [], []
        for bug_id in ids:
            try:
                bugs.append(self._bug_json(self._readable(bug_id, groups), query))
            except ApiError as e:
                if single and not permissive:
                    raise
                faults.append({"id": bug_id, "faultString": e.message, "faultCode": e.code})
        return {"bugs": bugs, "faults": faults if permissive else []}

    def _search(self, query: dict[str, list[str]], groups: frozenset[str]) -> dict[str, Any]:
        conditions: list[tuple[str, str, str]] = []  # (field, operator, value), all ANDed
        for key in query:
            if m := re.fullmatch(r"f(\d+)", key):
                n = m.group(1)
                conditions.append((_first(query, key) or "", _first(query, f"o{n}") or "equals",
                                   _first(query, f"v{n}") or ""))
            elif m := re.fullmatch(r"field(\d+-\d+-\d+)", key):
                n = m.group(1)
                conditions.append((_first(query, key) or "",
                                   _first(query, f"type{n}") or "substring",
                                   _first(query, f"value{n}") or ""))
            elif (key not in NON_SEARCH_PARAMS and _values(query, key)
                  and not re.fullmatch(r"[ov]\d+|(type|value)[\d-]+", key)):
                # Like Bugzilla, empty simple parameters are ignored.
                conditions.append((key, "anyexact", ",".join(_values(query, key))))
        candidates = sorted(self.bugs.values(), key=lambda b: b.id)
        for name, operator, value in conditions:
            if name in ("id", "bug_id") and operator == "anyexact":
                # Fetching bugs by id is the common case: look them up, don't scan.
                wanted = {int(v) for v in value.split(",") if v.isdigit()}
                candidates = [b for b in candidates if b.id in wanted]
        found = [b for b in candidates if all(_matches(b, *c) for c in conditions)]
        visible = [b for b in found if set(b.groups) <= groups]
        limit = int(_first(query, "limit") or 0)
        if limit:
            visible = visible[:limit]
        result: dict[str, Any] = {"bugs": [self._bug_json(b, query) for b in visible]}
        if _first(query, "permissive") not in (None, "", "0") and "id" in query:
            result["faults"] = [
                {"id": i, "faultCode": 101 if i not in self.bugs else 102,
                 "faultString": "missing" if i not in self.bugs else "no access"}
                for i in map(int, _values(query, "id")) if i not in {b.id for b in visible}]
        return result

    def _update(self, url_id: int, body: dict[str, Any], login: str | None,
                groups: frozenset[str]) -> dict[str, Any]:
        bugs = [self._readable(int(i), groups) for i in body.get("ids") or [url_id]]
        flag_changes = body.get("flags") or []
        for bug in bugs:  # validate everything before changing anything
            for change in flag_changes:
                self._check_flag_change(bug, change)
        comment = body.get("comment")
        result = []
        for bug in bugs:
            changes: dict[str, dict[str, str]] = {}
            if "whiteboard" in body and body["whiteboard"] != bug.whiteboard:
                changes["whiteboard"] = {"added": body["whiteboard"], "removed": bug.whiteboard}
                bug.whiteboard = body["whiteboard"]
            for change in flag_changes:
                added, removed = self._apply_flag(bug, change, login or "")
                if added or removed:
                    old = changes.setdefault("flagtypes.name", {"added": "", "removed": ""})
                    old["added"] = ", ".join(filter(None, [old["added"], added]))
                    old["removed"] = ", ".join(filter(None, [old["removed"], removed]))
            if comment:
                text = comment.get("body", comment.get("comment", ""))
                self._add_comment(bug, text, bool(comment.get("is_private")), login or "")
            if changes or comment:
                bug.last_change_time = _now()
            result.append({"id": bug.id, "alias": [], "last_change_time": bug.last_change_time,
                           "changes": changes})
        return {"bugs": result}

    def _check_flag_change(self, bug: Bug, change: dict[str, Any]) -> None:
        name, status = change.get("name", ""), change.get("status", "")
        if status not in FLAG_STATUSES:
            raise ApiError(400, 129, f"The flag status {status!r} is invalid.")
        types = [t for t in self.flag_types if t["name"] == name and t["is_active"]]
        if not types:
            raise ApiError(400, 134, f"The flag type '{name}' is inactive or does not exist "
                                     f"for bug {bug.id}.")
        if len(types) > 1:
            raise ApiError(400, 133, f"The flag type '{name}' is not unique for bug {bug.id}.")
        if sum(f.name == name for f in bug.flags) > 1:
            raise ApiError(400, 132, f"The flag '{name}' on bug {bug.id} is not unique.")
        if (name, bug.id) in self._denied_flags or (name, None) in self._denied_flags:
            raise ApiError(400, 130, f"You tried to set {name}{status} on bug {bug.id}, but you "
                                     "are not allowed to modify this flag.")

    def _apply_flag(self, bug: Bug, change: dict[str, Any], login: str) -> tuple[str, str]:
        name, status = change["name"], change["status"]
        existing = next((f for f in bug.flags if f.name == name), None)
        if existing is None:
            if status == "X":
                return "", ""
            bug.flags.append(Flag(next(self._ids), name, status, login))
            return f"{name}{status}", ""
        if status == "X":
            bug.flags.remove(existing)
            return "", f"{name}{existing.status}"
        if existing.status == status:
            return "", ""
        removed = f"{name}{existing.status}"
        existing.status, existing.setter, existing.modification_date = status, login, _now()
        return f"{name}{status}", removed

    def _add_comment(self, bug: Bug, text: str, private: bool, login: str) -> dict[str, Any]:
        comment = {"id": next(self._ids), "bug_id": bug.id, "count": len(bug.comments),
                   "text": text, "creator": login, "creation_time": _now(), "time": _now(),
                   "is_private": private, "tags": []}
        bug.comments.append(comment)
        return comment

    # ---- products -----------------------------------------------------------------------

    def _products(self, names: list[str], ids: list[str],
                  query: dict[str, list[str]]) -> dict[str, Any]:
        wanted = [p for p in self.products.values()
                  if p["name"] in names or str(p["id"]) in ids]
        flag_types = [dict(t) for t in self.flag_types]
        products = [{"id": p["id"], "name": p["name"], "is_active": True,
                     "components": [{**c, "is_active": True,
                                     "flag_types": {"bug": flag_types, "attachment": []}}
                                    for c in p["components"].values()]}
                    for p in wanted]
        return {"products": [_pick(p, _values(query, "include_fields"),
                                   _values(query, "exclude_fields")) for p in products]}


class _Handler(BaseHTTPRequestHandler):
    app: BugzillaServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("bugzilla test server: " + format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        app = self.app
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k: ("<redacted>" if k.lower() == API_KEY_HEADER.lower() else v)
                   for k, v in self.headers.items()}
        login, groups = None, frozenset[str]()
        status: int
        payload: Any
        try:
            login, groups = app._login(self.headers, query)
        except ApiError as e:
            status, payload = e.http_status, _error(e)
        else:
            status, payload = 0, None
        with app._lock:
            app.requests.append(LoggedRequest(method, self.path, split.path, query, body,
                                              headers, login))
        if app.latency:
            time.sleep(app.latency)
        if len(self.path) > MAX_TARGET:
            return self._send(414, "Request-URI Too Long\n", "text/plain")
        if fault := app._take_fault(method):
            if fault.apply and status == 0:
                try:
                    app.dispatch(method, split.path, query, body, login, groups)
                except ApiError:
                    pass
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return self._send(fault.status, f"HTTP {fault.status}\n", "text/plain", extra)
        if status == 0:
            try:
                status, payload = app.dispatch(method, split.path, query, body, login, groups)
            except ApiError as e:
                status, payload = e.http_status, _error(e)
        self._send(status, json.dumps(payload), "application/json")

    def _send(self, status: int, text: str, content_type: str,
              extra_headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            log.debug("bugzilla test server: client went away before the answer")


def _error(e: ApiError) -> dict[str, Any]:
    return {"error": True, "code": e.code, "message": e.message, "documentation": ""}


def _require_login(login: str | None) -> None:
    if not login:
        raise ApiError(401, 410, "You must log in before using this part of Bugzilla.")


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _values(query: dict[str, list[str]], key: str) -> list[str]:
    """All values of a repeated and/or comma-separated parameter."""
    return [v for raw in query.get(key, []) for v in raw.split(",") if v != ""]


def _field_values(bug: Bug, name: str) -> list[str]:
    match name:
        case "flagtypes.name":
            return [f"{f.name}{f.status}" for f in bug.flags]
        case "id" | "bug_id":
            return [str(bug.id)]
        case "status" | "bug_status":
            return [bug.status]
        case "resolution":
            return [bug.resolution or "---"]
        case "whiteboard" | "status_whiteboard":
            return [bug.whiteboard]
        case "summary" | "short_desc":
            return [bug.summary]
        case "assigned_to" | "product" | "component":
            return [getattr(bug, name)]
    raise ApiError(400, 108, f"Can't use {name} as a field name.")


def _matches(bug: Bug, name: str, operator: str, value: str) -> bool:
    values = _field_values(bug, name)
    match operator:
        case "equals":
            return value in values
        case "notequals":
            return value not in values
        case "anyexact":
            return bool(set(value.split(",")) & set(values))
        case "substring":
            return any(value.lower() in v.lower() for v in values)
        case "casesubstring":
            return any(value in v for v in values)
        case "notsubstring":
            return not any(value.lower() in v.lower() for v in values)
        case "isempty":
            return not any(values)
        case "isnotempty":
            return any(values)
    raise ApiError(400, 108, f"Unknown search operator {operator!r}.")


def _pick(data: dict[str, Any], include: list[str], exclude: list[str]) -> dict[str, Any]:
    """Apply include_fields/exclude_fields, one level of ``a.b`` nesting into lists of dicts."""
    if include and not {"_all", "_default"} & set(include):
        out: dict[str, Any] = {}
        for key, value in data.items():
            subfields = [f.split(".", 1)[1] for f in include if f.startswith(key + ".")]
            if key in include:
                out[key] = value
            elif subfields and isinstance(value, list):
                out[key] = [_pick(v, subfields, []) for v in value]
        data = out
    return {k: v for k, v in data.items() if k not in exclude}
