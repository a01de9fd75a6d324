"""A local Treestatus server that speaks the lando-api JSON contract, for tests.

It follows ``landoapi/api/treestatus.py`` and ``landoapi/spec/treestatus.yml``
(mozilla-conduit/lando-api): the same paths, the same ``{"result": …}``
wrapping of reads, the same RFC 7807 problem+json errors and the same stack
semantics. Trees, logs and the undo stack live in memory.

    with TreestatusServer(token="s3cret") as server:
        server.add_tree("autoland")
        requests.get(server.url + "/trees")

Test knobs: `requests` (what the server received), `fail_with` (answer the
next N requests with an error status, before or after applying a write),
`down` / `up` (refuse connections, or answer 503 to everything).
"""
from __future__ import annotations

import copy
import datetime
import json
import logging
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

STATUSES = ("open", "closed", "approval required")
# The tag list Treestatus offers when closing a tree. lando-api itself only
# checks that `tags` is present when closing; this server is stricter on
# purpose (at least one tag, all from this list) so the bot is tested against
# what the sheriffs' UI lets people choose.
TAGS = (
    "checkin_compilation",
    "checkin_test",
    "infra",
    "backlog",
    "planned",
    "merges",
    "waiting_for_coverage",
    "other",
)
WRITE_METHODS = frozenset({"PATCH", "PUT", "DELETE", "POST"})
LOG_LIMIT = 5  # lando-api's TREE_SUMMARY_LOG_LIMIT for GET /trees/<tree>/logs


class Problem(Exception):
    """An RFC 7807 error answer."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/{self.status}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (never the token itself)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorized: bool


@dataclass
class _Fault:
    status: int
    remaining: int
    methods: frozenset[str] | None
    after_apply: bool

    def matches(self, method: str) -> bool:
        return self.remaining > 0 and (self.methods is None or method in self.methods)


@dataclass
class _State:
    trees: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    stack: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    next_log_id: int = 1
    next_change_id: int = 1
    next_change_tree_id: int = 1


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


class TreestatusServer:
    """Treestatus on 127.0.0.1:<free port>, served from a background thread."""

    def __init__(self, token: str | None = "test-token", *, who: str = "ad|Example-LDAP|bot") -> None:
        self.token = token
        self.who = who
        self.requests: list[RecordedRequest] = []
        self._state = _State()
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._mode = "up"  # "up", "503" (answer 503) or "refuse" (listener closed)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- life cycle -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> TreestatusServer:
        self._listen(self._port)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> TreestatusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self, port: int) -> None:
        handler = type("Handler", (_Handler,), {"server_api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        # A short poll interval keeps stop() and down() quick (the default is 0.5 s).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"treestatus:{self._port}",
            daemon=True,
        )
        self._thread.start()

    # -- test knobs -------------------------------------------------------

    def add_tree(
        self,
        name: str,
        status: str = "open",
        reason: str = "",
        tags: Iterable[str] = (),
        *,
        message_of_the_day: str = "",
        category: str = "other",
    ) -> None:
        """Create a tree (like `PUT /trees/<tree>`, with tags; no log entry)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            self._state.trees[name] = {
                "tree": name,
                "status": status,
                "reason": reason,
                "message_of_the_day": message_of_the_day,
                "tags": list(tags),
                "log_id": None,
                "category": category,
            }

    def set_tree(self, name: str, status: str, reason: str, tags: Iterable[str] = ()) -> None:
        """Change a tree behind the bot's back, as a sheriff would (logged, not remembered)."""
        with self._lock:
            self._set_state(self._state.trees[name], status, reason, list(tags))

    def tree_state(self, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._state.trees[name])

    def stack_entries(self) -> list[dict[str, Any]]:
        """The undo stack, newest first (as `GET /stack` shows it)."""
        with self._lock:
            return copy.deepcopy(self._state.stack[::-1])

    def fail_with(
        self,
        status: int,
        count: int = 1,
        *,
        methods: Collection[str] | None = None,
        after_apply: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with `status`.

        With `after_apply`, a write is carried out first and only its answer
        is replaced: the client sees a failure for a change that happened.
        """
        with self._lock:
            self._faults.append(
                _Fault(status, count, frozenset(methods) if methods else None, after_apply)
            )

    def down(self, mode: str = "refuse") -> None:
        """Stop answering: "refuse" closes the listener, "503" answers 503 to everything."""
        if mode not in ("refuse", "503"):
            raise ValueError(mode)
        with self._lock:
            self._mode = mode
        if mode == "refuse" and self._httpd is not None:
            self.stop()

    def up(self) -> None:
        """Answer again, on the same port."""
        with self._lock:
            was = self._mode
            self._mode = "up"
        if was == "refuse" and self._httpd is None:
            self._listen(self._port)

    # -- request handling (called from handler threads) ---------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        path = unquote(parts.path).rstrip("/") or "/"
        query = parse_qs(parts.query)
        authorized = self.token is not None and headers.get("authorization") == f"Bearer {self.token}"
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("latin-1")
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, copy.deepcopy(body), authorized))
            if self._mode == "503":
                return 503, Problem(503, "Service Unavailable", "Treestatus is down.").body(), {}
            fault = next((f for f in self._faults if f.matches(method)), None)
            if fault is not None:
                fault.remaining -= 1
                if not fault.after_apply:
                    return self._fault_answer(fault.status)
            try:
                if method in WRITE_METHODS and not authorized:
                    raise Problem(401, "Unauthorized", "A valid bearer token is required.")
                if isinstance(body, str):
                    raise Problem(400, "Bad Request", "The body is not JSON.")
                status, result = self._route(method, path, query, body)
                answer: tuple[int, Any, dict[str, str]] = (status, result, {})
            except Problem as problem:
                answer = (problem.status, problem.body(), {})
            if fault is not None:
                return self._fault_answer(fault.status)
            return answer

    @staticmethod
    def _fault_answer(status: int) -> tuple[int, Any, dict[str, str]]:
        headers = {"Retry-After": "0"} if status in (429, 503) else {}
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        return status, Problem(status, title, "Injected failure.").body(), headers

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        match method, segments:
            case "GET", ["trees"]:
                return 200, {"result": {name: self._public(t) for name, t in self._state.trees.items()}}
            case "GET", ["trees2"]:
                return 200, {"result": [self._public(t) for t in self._state.trees.values()]}
            case "GET", ["trees", name]:
                return 200, {"result": self._public(self._tree(name))}
            case "GET", ["trees", name, "logs"]:
                return 200, {"result": self._logs(name)[:LOG_LIMIT]}
            case "GET", ["trees", name, "logs_all"]:
                return 200, {"result": self._logs(name)}
            case "GET", ["stack"]:
                return 200, {"result": copy.deepcopy(self._state.stack[::-1])}
            case "PATCH", ["trees"]:
                return 200, self._update_trees(body or {})
            case "PATCH", ["stack", change_id]:
                return 200, self._update_stack(self._int(change_id), body or {})
            case "DELETE", ["stack", change_id]:
                return 200, self._delete_stack(self._int(change_id), query)
        raise Problem(404, "Not Found", f"No route for {method} {path}.")

    # -- the lando-api behaviour --------------------------------------------

    @staticmethod
    def _int(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise Problem(404, "Not Found", f"{text!r} is not a change id.") from None

    @staticmethod
    def _public(tree: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(tree)

    def _tree(self, name: str) -> dict[str, Any]:
        tree = self._state.trees.get(name)
        if tree is None:
            raise Problem(404, f"No tree {name} found.", "The tree does not exist.")
        return tree

    def _logs(self, name: str) -> list[dict[str, Any]]:
        if name not in self._state.trees:
            raise Problem(404, f"No tree {name} found.", f"Could not find the requested tree {name}.")
        return [copy.deepcopy(entry) for entry in reversed(self._state.logs) if entry["tree"] == name]

    def _set_state(self, tree: dict[str, Any], status: str | None, reason: str | None, tags: list[str]) -> None:
        """Change a tree and write its log row, as lando-api's update_tree_status does."""
        if status is not None:
            tree["status"] = status
        if reason is not None:
            tree["reason"] = reason
        if status is not None or reason is not None:
            entry = {
                "id": self._state.next_log_id,
                "tree": tree["tree"],
                "when": _now(),
                "who": self.who,
                "status": tree["status"],
                "reason": tree["reason"],
                "tags": list(tags),
            }
            self._state.next_log_id += 1
            self._state.logs.append(entry)
            # lando-api shows the tags and log id of the newest log row.
            tree["tags"] = list(tags)
            tree["log_id"] = entry["id"]

    def _update_trees(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        names = body.get("trees")
        if not isinstance(names, list) or not names:
            raise Problem(400, "Bad Request", "`trees` must be a non-empty list of tree names.")
        unknown = sorted(set(names) - set(self._state.trees))
        if unknown:
            raise Problem(
                404,
                f"Could not fetch the following trees: {', '.join(unknown)}",
                "Could not fetch all the requested trees.",
            )
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise Problem(400, f"Unknown status {status!r}.", f"Status must be one of {', '.join(STATUSES)}.")
        tags: list[str] = list(body.get("tags") or [])
        if status == "closed" and not tags:
            raise Problem(400, "Tags are required when closing a tree.", "Tags are required when closing a tree.")
        if status == "closed" and any(tag not in TAGS for tag in tags):
            bad = ", ".join(tag for tag in tags if tag not in TAGS)
            raise Problem(400, f"Unknown tags: {bad}.", f"Tags must be among {', '.join(TAGS)}.")
        remember = body.get("remember") is True
        if remember and any(key not in body for key in ("status", "reason", "tags")):
            message = "Must specify status, reason and tags to remember the change."
            raise Problem(400, message, message)

        before = {name: copy.deepcopy(self._state.trees[name]) for name in names}
        for name in names:
            tree = self._state.trees[name]
            if "message_of_the_day" in body:
                tree["message_of_the_day"] = body["message_of_the_day"]
            self._set_state(tree, status, body.get("reason"), tags)

        if remember:
            change_trees = []
            for name in names:
                old, new = before[name], self._state.trees[name]
                change_trees.append(
                    {
                        "id": self._state.next_change_tree_id,
                        "tree": name,
                        "last_state": {
                            "status": old["status"],
                            "reason": old["reason"],
                            "tags": old["tags"],
                            "log_id": old["log_id"],
                            "current_status": new["status"],
                            "current_reason": new["reason"],
                            "current_tags": new["tags"],
                            "current_log_id": new["log_id"],
                        },
                    }
                )
                self._state.next_change_tree_id += 1
            self._state.stack.append(
                {
                    "id": self._state.next_change_id,
                    "who": self.who,
                    "when": _now(),
                    "status": status,
                    "reason": body["reason"],
                    "trees": change_trees,
                }
            )
            self._state.next_change_id += 1

        # Like lando-api: a bare list (not wrapped in "result") and no stack id.
        return [
            {
                "tree": name,
                "status": self._state.trees[name]["status"],
                "reason": self._state.trees[name]["reason"],
                "message_of_the_day": self._state.trees[name]["message_of_the_day"],
            }
            for name in names
        ]

    def _change(self, change_id: int) -> dict[str, Any]:
        for change in self._state.stack:
            if change["id"] == change_id:
                return change
        raise Problem(404, f"No change {change_id} found.", "The change could not be found.")

    def _update_stack(self, change_id: int, body: dict[str, Any]) -> str:
        """PATCH /stack/<id>: edit the reason/tags of a remembered change and of its log rows."""
        change = self._change(change_id)
        for changed in change["trees"]:
            state = changed["last_state"]
            state["current_tags"] = body.get("tags", state["current_tags"])
            state["current_reason"] = body.get("reason", state["current_reason"])
            for entry in self._state.logs:
                if entry["id"] == state["current_log_id"]:
                    entry["tags"], entry["reason"] = list(state["current_tags"]), state["current_reason"]
            tree = self._state.trees.get(changed["tree"])
            if tree is not None and tree["log_id"] == state["current_log_id"]:
                # lando-api derives a tree's reason and tags from its newest log row.
                tree["tags"], tree["reason"] = list(state["current_tags"]), state["current_reason"]
        change["reason"] = body.get("reason", change["reason"])
        return str(change["status"])

    def _delete_stack(self, change_id: int, query: dict[str, list[str]]) -> str:
        revert = query.get("revert", ["0"])[-1]
        if revert not in ("0", "1"):
            raise Problem(400, "Unexpected value for `revert`.", "Unexpected value for `revert`.")
        change = self._change(change_id)
        if revert == "1":
            for changed in change["trees"]:
                tree = self._state.trees.get(changed["tree"])
                if tree is None:
                    continue  # lando-api skips trees deleted since the change.
                # lando-api (revert_change) restores the remembered previous
                # state unconditionally: it does not compare the tree with
                # `current_log_id`, so a change made since (a bustage closure,
                # a later remembered change) is overwritten. This server does
                # the same, so the client has to be the careful one.
                state = changed["last_state"]
                self._set_state(tree, state["status"], state["reason"], list(state.get("tags") or []))
        self._state.stack.remove(change)
        return str(change["status"])


class _Handler(BaseHTTPRequestHandler):
    server_api: TreestatusServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, body, extra = self.server_api.handle(self.command, self.path, headers, raw)
        data = json.dumps(body).encode()
        self.send_response(status)
        content_type = "application/problem+json" if status >= 400 else "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_PUT = do_DELETE = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("treestatus server: " + format, *args)


BUSTAGE = "Bustage from bug 1234567 (xpcshell failures)"
APPROVAL = "Release candidate: approval needed for uplifts"


def add_mixed_trees(server: TreestatusServer) -> None:
    """The trees the tests start from: open, closed for bustage, approval required, open."""
    server.add_tree("autoland")
    server.add_tree("mozilla-central", "closed", BUSTAGE, ("checkin_test",))
    server.add_tree("mozilla-beta", "approval required", APPROVAL)
    server.add_tree("try")
