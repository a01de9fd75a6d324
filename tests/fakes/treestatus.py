"""A Treestatus in memory (the TreeService port)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.ports import RestoreReport, TreestatusError, TreestatusUnavailable, TreeState


class FakeTreestatus:
    """A hand-written Treestatus for unit tests: trees in memory, a stack, and failure knobs.

    `unavailable`: the next N calls raise TreestatusUnavailable; `refuse`: every write raises
    TreestatusError with this text. `calls` records what was asked, `changes` what was done.
    """

    def __init__(self, trees: Mapping[str, tuple[str, str, tuple[str, ...]]]):
        self.state = {n: TreeState(n, s, r, tuple(t)) for n, (s, r, t) in trees.items()}
        self.entries: list[dict[str, Any]] = []  # newest first
        self.calls: list[tuple[Any, ...]] = []
        self.changes: list[tuple[str, int]] = []
        self.unavailable = 0
        self.refuse: str | None = None

    def _check(self, write: bool = False) -> None:
        if self.unavailable:
            self.unavailable -= 1
            raise TreestatusUnavailable("Treestatus did not answer (fake)")
        if write and self.refuse:
            raise TreestatusError(self.refuse, status=400)

    def trees(self) -> dict[str, TreeState]:
        self.calls.append(("trees",))
        self._check()
        return dict(self.state)

    def stack(self) -> list[dict[str, Any]]:
        self.calls.append(("stack",))
        self._check()
        return list(self.entries)

    def close(self, names: Sequence[str], reason: str, tags: Sequence[str] = ("planned",), *,
              remember: bool = True) -> int | None:
        self.calls.append(("close", tuple(names), reason, tuple(tags)))
        self._check(write=True)
        for entry in self.entries:  # looks before it leaps, like the real client
            if entry["reason"] == reason and {i["tree"] for i in entry["trees"]} == set(names):
                return int(entry["id"])
        unknown = [n for n in names if n not in self.state]
        if unknown:
            raise TreestatusError(f"Could not fetch the following trees: {', '.join(unknown)}", status=404)
        entry = {"id": len(self.entries) + 1, "status": "closed", "reason": reason, "trees": []}
        for n in names:
            old = self.state[n]
            entry["trees"].append({"tree": n, "last_state": {
                "status": old.status, "reason": old.reason, "tags": list(old.tags),
                "current_status": "closed", "current_reason": reason, "current_tags": list(tags)}})
            self.state[n] = TreeState(n, "closed", reason, tuple(tags))
        self.entries.insert(0, entry)
        self.changes.append(("close", entry["id"]))
        return int(entry["id"])

    def restore(self, stack_id: int) -> RestoreReport:
        self.calls.append(("restore", stack_id))
        self._check(write=True)
        entry = next((e for e in self.entries if e["id"] == stack_id), None)
        if entry is None:
            return RestoreReport()
        restored, changed = [], []
        for item in entry["trees"]:
            n, last = item["tree"], item["last_state"]
            now = self.state[n]
            if (now.status, now.reason) != (last["current_status"], last["current_reason"]):
                changed.append(n)
                continue
            self.state[n] = TreeState(n, last["status"], last["reason"], tuple(last["tags"]))
            restored.append(n)
        self.entries.remove(entry)
        self.changes.append(("restore", stack_id))
        return RestoreReport(restored=tuple(restored), changed=tuple(changed))
