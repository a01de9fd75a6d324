"""Client for Treestatus' JSON API (the lando-api contract).

Paths used: ``GET /trees``, ``GET /trees/<tree>``, ``GET /stack``,
``PATCH /trees``, ``PATCH /stack/<id>``, ``DELETE /stack/<id>?revert=0|1``.
Reads come back as ``{"result": …}``; errors are RFC 7807 problem+json.

The client is synchronous (``requests``): async callers run it in a thread,
e.g. ``await asyncio.to_thread(client.close, trees, reason)``.

Failure policy:

- connection errors, timeouts, 5xx and 429 are retried with exponential
  backoff (``backoff * 2**n`` seconds, or ``Retry-After`` when it is longer);
  when the retries run out the call raises `TreestatusUnavailable` and the
  caller keeps the change pending and tries again later;
- 4xx answers are not retried: `TreestatusError` carries the problem's title
  and detail on one line, fit for a chat reply.

"Nothing lost, nothing doubled": a write whose answer was lost (a 500 after
the server applied it, a timeout) must not be applied twice. `close` and
`set_status` therefore look before they leap: before the first attempt, and
again before every retry, they check whether Treestatus already holds the
change (for a remembered change: a stack entry with the same status, reason
and trees whose trees still carry that entry's log rows; otherwise: every tree
already in the wanted state). Give each change a reason that names its
downtime ("Planned downtime 7: …") so that two changes never look alike.

The token is sent as ``Authorization: Bearer …`` and is never logged; nothing
here logs headers, and exception messages carry no request headers.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import requests

from models.ports import DurationObserver, RestoreReport, TreestatusError, TreestatusUnavailable, TreeState

log = logging.getLogger(__name__)

STATUSES = ("open", "closed", "approval required")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Appended to the reason of a remembered change that was restored while a
# later remembered change still held some of its trees; see `restore`.
WAITING_MARK = " [restored; waiting for a later change]"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state_key(status: str, reason: str, tags: Iterable[str]) -> tuple[str, str, tuple[str, ...]]:
    return status, reason, tuple(sorted(tags))


class TreestatusClient:
    """Reads and changes trees through Treestatus' JSON API."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._session = session or requests.Session()
        # The metrics: seconds per HTTP request.
        self.on_request: DurationObserver | None = None
        # Why Treestatus did not answer the last time it was asked ("" when it did): the heartbeat.
        self.last_error = ""

    def __repr__(self) -> str:  # keep the token out of reprs in tracebacks and logs
        return f"TreestatusClient({self.url!r})"

    # -- reads ----------------------------------------------------------

    def trees(self) -> dict[str, TreeState]:
        """Every tree Treestatus knows, by name."""
        result = self._call("GET", "/trees")
        return {name: self._tree_state(name, data) for name, data in result.items()}

    def tree(self, name: str) -> TreeState:
        """One tree; `TreestatusError` if Treestatus does not know it."""
        return self._tree_state(name, self._call("GET", f"/trees/{name}"))

    def stack(self) -> list[dict[str, Any]]:
        """The undo stack of remembered changes, newest first."""
        return list(self._call("GET", "/stack"))

    # -- writes ---------------------------------------------------------

    def close(
        self,
        names: Sequence[str],
        reason: str,
        tags: Sequence[str] = ("planned",),
        *,
        remember: bool = True,
    ) -> int | None:
        """Close `names` in one change; with `remember`, return its stack entry id.

        Treestatus' ``PATCH /trees`` answer does not carry the stack entry id,
        so the id is found afterwards in ``GET /stack``: the newest entry above
        the stack's top before the change with the same status, reason and
        trees.
        """
        return self._change(names, "closed", reason, tags, remember)

    def set_status(
        self,
        names: Sequence[str],
        status: str,
        reason: str,
        tags: Sequence[str] = (),
        remember: bool = False,
    ) -> None:
        """Set `names` to `status` ("open", "closed", "approval required")."""
        if status not in STATUSES:
            raise TreestatusError(f"Unknown tree status {status!r} (use {', '.join(STATUSES)}).")
        self._change(names, status, reason, tags, remember)

    def restore(self, stack_id: int) -> RestoreReport:
        """Give each tree of a remembered change back its state from before that change.

        Treestatus' own ``DELETE /stack/<id>?revert=1`` overwrites whatever
        happened since, so this looks at the stack and the trees first:

        - a tree that a later remembered change still holds (a sheriff closed
          it for bustage with "remember", or another downtime) is not touched;
          this change stays on the stack, its reason marked, so that restoring
          that later change gives the tree the state from before *this* one;
        - a tree someone changed since without "remember" is left alone and
          reported in `RestoreReport.changed`; so is a tree that a later
          remembered change *reopened* (a sheriff reopening one tree early in
          Treestatus' UI, which remembers by default): nothing holds it closed,
          so there is nothing to wait for;
        - when nothing of that applies, it is exactly ``revert=1``.

        Unless a later closure still holds one of its trees, the change is off
        the stack afterwards: reverted whole, or, when the trees were restored
        one by one, discarded (``revert=0``), so that nobody can "restore" it
        later over what happened since.

        Restoring an entry that is no longer on the stack, or one already
        marked as waiting, does nothing: a retried restore is harmless.
        """
        self._require_token()
        stack = self.stack()
        index = next((i for i, entry in enumerate(stack) if entry["id"] == stack_id), None)
        if index is None:
            log.info("Treestatus change %s is no longer on the stack; nothing to restore", stack_id)
            return RestoreReport()
        entry = stack[index]
        if entry["reason"].endswith(WAITING_MARK):
            log.info("Treestatus change %s was restored already and waits for a later change", stack_id)
            return RestoreReport()
        newer, older = stack[:index], stack[index + 1 :]
        current = self.trees()

        waiting: dict[str, int] = {}
        changed: list[str] = []
        already: list[str] = []
        targets: dict[str, dict[str, Any]] = {}
        for item in entry["trees"]:
            name, state = item["tree"], item["last_state"]
            holder = next(
                (e for e in reversed(newer) if not self._is_waiting(e) and self._item(e, name)),
                None,
            )
            now = current.get(name)
            if holder is not None:
                held = self._item(holder, name)
                assert held is not None
                if held["last_state"]["current_status"] == "closed":
                    waiting[name] = holder["id"]
                elif now is not None:
                    changed.append(name)  # reopened (remembered) since: its change stands
                continue
            if now is None:
                continue  # deleted since; Treestatus skips it too
            target = self._target(name, state, older)
            now_key = _state_key(now.status, now.reason, now.tags)
            if now_key == _state_key(target["status"], target["reason"], target["tags"]):
                already.append(name)  # e.g. a retried restore whose first try got this far
            elif now_key != _state_key(
                state["current_status"], state["current_reason"], state["current_tags"]
            ):
                changed.append(name)
            else:
                targets[name] = target

        plain = not waiting and not changed and not already and all(
            state is item["last_state"]
            for item in entry["trees"]
            if (state := targets.get(item["tree"])) is not None
        )
        if plain:
            self._delete_entry(stack_id, revert=True)
            self._forget_finished_waiters(stack_id)
            log.info("Treestatus change %s restored", stack_id)
            return RestoreReport(restored=tuple(targets))

        groups: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
        for name, state in targets.items():
            groups.setdefault(_state_key(state["status"], state["reason"], state["tags"]), []).append(name)
        for (status, reason, tags), names in groups.items():
            self._change(names, status, reason, tags, remember=False)
        if waiting:
            self._call("PATCH", f"/stack/{stack_id}", json={"reason": entry["reason"] + WAITING_MARK})
        else:
            self._delete_entry(stack_id, revert=False)
        self._forget_finished_waiters(stack_id)
        log.info(
            "Treestatus change %s restored %s; waiting %s; changed since %s",
            stack_id, sorted(targets), sorted(waiting), changed,
        )
        return RestoreReport(restored=(*targets, *already), waiting=waiting, changed=tuple(changed))

    def discard(self, stack_id: int) -> None:
        """Drop a remembered change from the stack without touching the trees."""
        self._require_token()
        self._delete_entry(stack_id, revert=False)

    # -- internals: restore --------------------------------------------------

    @staticmethod
    def _is_waiting(entry: dict[str, Any]) -> bool:
        return str(entry["reason"]).endswith(WAITING_MARK)

    @staticmethod
    def _item(entry: dict[str, Any], name: str) -> dict[str, Any] | None:
        return next((item for item in entry["trees"] if item["tree"] == name), None)

    def _target(self, name: str, state: dict[str, Any], older: list[dict[str, Any]]) -> dict[str, Any]:
        """The state `name` goes back to: before this change, or before the
        waiting changes right underneath it (linked by log ids)."""
        for entry in older:  # newest first
            item = self._item(entry, name)
            if item is None:
                continue
            if item["last_state"]["current_log_id"] != state["log_id"] or not self._is_waiting(entry):
                break
            state = item["last_state"]
        return state

    def _forget_finished_waiters(self, restored_id: int) -> None:
        """Drop waiting changes none of whose trees is held by a live later change."""
        stack = self.stack()
        for index, entry in enumerate(stack):
            if entry["id"] == restored_id or not self._is_waiting(entry):
                continue
            live_newer = [e for e in stack[:index] if not self._is_waiting(e)]
            names = {item["tree"] for item in entry["trees"]}
            if not any(self._item(e, name) for e in live_newer for name in names):
                self._delete_entry(entry["id"], revert=False)

    def _delete_entry(self, stack_id: int, *, revert: bool) -> None:
        try:
            self._call("DELETE", f"/stack/{stack_id}", params={"revert": int(revert)})
        except TreestatusError as error:
            # A 404 here means the entry is gone: deleted by an earlier attempt
            # whose answer was lost, or by a sheriff. Either way it is done.
            if error.status != 404:
                raise
            log.info("Treestatus change %s was already gone from the stack", stack_id)

    # -- internals: changes ------------------------------------------------

    def _change(
        self,
        names: Sequence[str],
        status: str,
        reason: str,
        tags: Sequence[str],
        remember: bool,
    ) -> int | None:
        self._require_token()
        names = list(dict.fromkeys(names))
        if not names:
            raise TreestatusError("No trees given.")
        body = {"trees": names, "status": status, "reason": reason, "tags": list(tags), "remember": remember}

        # Look before the first attempt too: a caller retrying a change that
        # raised TreestatusUnavailable may find it applied after all.
        stack = self.stack() if remember else []
        done, entry_id = self._applied(names, status, reason, tags, remember, stack, baseline=None)
        if done:
            log.info("Treestatus already shows %s %s; not changing it again", ", ".join(names), status)
            return entry_id
        baseline = max((entry["id"] for entry in stack), default=0)

        retry_after: float | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._pause(attempt - 1, retry_after)
                try:
                    done, entry_id = self._applied(names, status, reason, tags, remember, None, baseline)
                except TreestatusUnavailable:
                    done = False
                if done:
                    log.info("Treestatus applied %s %s before its answer was lost", ", ".join(names), status)
                    return entry_id
            try:
                self._send("PATCH", "/trees", json=body)
            except _Retryable as failure:
                retry_after = failure.retry_after
                log.warning("Treestatus PATCH /trees failed (%s); attempt %d", failure, attempt + 1)
                continue
            log.info("Treestatus set %s to %s", ", ".join(names), status)
            if not remember:
                return None
            entry = self._matching_entry(self.stack(), names, status, reason, baseline)
            if entry is None:
                raise TreestatusError("Treestatus changed the trees but shows no stack entry for it.")
            return int(entry["id"])
        raise TreestatusUnavailable(
            f"Treestatus did not answer after {self.retries + 1} attempts; the change to "
            f"{', '.join(names)} is still to be made."
        )

    def _applied(
        self,
        names: Sequence[str],
        status: str,
        reason: str,
        tags: Sequence[str],
        remember: bool,
        stack: list[dict[str, Any]] | None,
        baseline: int | None,
    ) -> tuple[bool, int | None]:
        """Whether Treestatus already shows this change (and its stack entry id)."""
        if remember:
            stack = self.stack() if stack is None else stack
            entry = self._matching_entry(stack, names, status, reason, baseline or 0)
            if entry is None:
                return False, None
            if baseline is None:
                # Before the first attempt an older identical entry only counts
                # if it is still in force: each tree still carries its log row.
                trees = self._call("GET", "/trees")
                for item in entry["trees"]:
                    data = trees.get(item["tree"])
                    if data is None or data.get("log_id") != item["last_state"]["current_log_id"]:
                        return False, None
            return True, int(entry["id"])
        if baseline is None:
            return False, None  # a plain change is simply made
        trees = self.trees()
        wanted = _state_key(status, reason, tags)
        return all(
            n in trees and _state_key(trees[n].status, trees[n].reason, trees[n].tags) == wanted
            for n in names
        ), None

    @staticmethod
    def _matching_entry(
        stack: list[dict[str, Any]], names: Sequence[str], status: str, reason: str, baseline: int
    ) -> dict[str, Any] | None:
        wanted = set(names)
        for entry in stack:  # newest first
            if (
                entry["id"] > baseline
                and entry["status"] == status
                and entry["reason"] == reason
                and {item["tree"] for item in entry["trees"]} == wanted
            ):
                return entry
        return None

    # -- internals: HTTP -----------------------------------------------------

    def _require_token(self) -> None:
        if not self._token:
            raise TreestatusError("No Treestatus token is configured, so trees cannot be changed.")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request with retries; returns the unwrapped result."""
        retry_after: float | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._pause(attempt - 1, retry_after)
            try:
                result = self._send(method, path, **kwargs)
            except _Retryable as failure:
                retry_after = failure.retry_after
                log.warning("Treestatus %s %s failed (%s); attempt %d", method, path, failure, attempt + 1)
                self.last_error = f"{method} {path}: {failure}"
            else:
                self.last_error = ""
                return result
        raise TreestatusUnavailable(
            f"Treestatus did not answer {method} {path} after {self.retries + 1} attempts."
        )

    def _pause(self, retry: int, retry_after: float | None) -> None:
        delay = self.backoff * 2**retry
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._sleep(delay)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Accept": "application/json"}
        if method != "GET":
            self._require_token()
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        started = time.perf_counter()
        try:
            response = self._session.request(
                method, self.url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            raise _Retryable(type(error).__name__) from None
        finally:
            if self.on_request is not None:
                self.on_request(time.perf_counter() - started)
        if response.status_code in RETRY_STATUSES:
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code >= 400:
            raise TreestatusError(self._problem(method, path, response), status=response.status_code)
        try:
            data = response.json()
        except ValueError:
            raise TreestatusError(f"Treestatus answered {method} {path} with something other than JSON.") from None
        return data["result"] if isinstance(data, dict) and "result" in data else data

    @staticmethod
    def _problem(method: str, path: str, response: requests.Response) -> str:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        title = str(problem.get("title") or response.reason or "error")
        detail = str(problem.get("detail") or "")
        text = title if not detail or detail == title else f"{title} ({detail})"
        return _one_line(f"Treestatus refused {method} {path}: {response.status_code} {text}")

    @staticmethod
    def _tree_state(name: str, data: dict[str, Any]) -> TreeState:
        return TreeState(
            name=data.get("tree", name),
            status=data.get("status", ""),
            reason=data.get("reason") or "",
            tags=tuple(data.get("tags") or ()),
        )


class _Retryable(Exception):
    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.retry_after = retry_after


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
