"""A Bugzilla in memory (the BugTracker port)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.bugzilla import DEFAULT_FLAG, whiteboard_with_tag, whiteboard_without_tag
from models.ports import BugInfo, BugNotVisible, BugzillaError, FlagDenied


@dataclass
class FakeBugzilla:
    """In-memory BugTracker for unit tests; records every call in `.calls`.

    `hidden` bugs exist but the bot cannot read them; `denied` bugs refuse flag
    changes; exceptions put in `failures` are raised, in order, by the next calls.
    """

    bugs: dict[int, BugInfo] = field(default_factory=dict)
    flag: str = DEFAULT_FLAG
    hidden: set[int] = field(default_factory=set)
    denied: set[int] = field(default_factory=set)
    failures: list[BugzillaError] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    comments_on: dict[int, list[str]] = field(default_factory=dict)

    def add_bug(self, id: int, summary: str = "", assignee: str = "someone@example.org",
                *, status: str = "NEW", resolution: str = "", whiteboard: str = "",
                flags: Iterable[tuple[str, str]] = (), groups: Iterable[str] = (),
                hidden: bool = False) -> BugInfo:
        bug = BugInfo(id, summary or f"Bug {id}", assignee, status, resolution, whiteboard,
                      tuple(flags), tuple(groups))
        self.bugs[id] = bug
        if hidden:
            self.hidden.add(id)
        return bug

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if self.failures:
            raise self.failures.pop(0)

    def _visible(self, bug_id: int) -> BugInfo | None:
        return None if bug_id in self.hidden else self.bugs.get(bug_id)

    def check(self, product: str | None = None) -> None:
        self._record("check", product=product)

    def get_bugs(self, ids: Sequence[int]) -> dict[int, BugInfo | None]:
        self._record("get_bugs", ids=tuple(ids))
        return {i: self._visible(i) for i in dict.fromkeys(ids)}

    def search_nominated(self) -> list[BugInfo]:
        self._record("search_nominated")
        return sorted((b for b in self.bugs.values() if b.id not in self.hidden
                       and not b.resolution and b.flag_status(self.flag) == "?"),
                      key=lambda b: b.id)

    def comments(self, ids: Sequence[int]) -> dict[int, list[str]]:
        self._record("comments", ids=tuple(ids))
        for bug_id in ids:
            if self._visible(bug_id) is None:
                raise BugNotVisible(bug_id, "missing" if bug_id not in self.bugs else "no access")
        return {i: list(self.comments_on.get(i, [])) for i in dict.fromkeys(ids)}

    def update(self, ids: Sequence[int], *, flag_status: str | None = None,
               whiteboard: str | None = None, whiteboard_tag: str | None = None,
               comment: str | None = None) -> None:
        self._record("update", ids=tuple(ids), flag_status=flag_status, whiteboard=whiteboard,
                     whiteboard_tag=whiteboard_tag, comment=comment)
        for bug_id in ids:
            if self._visible(bug_id) is None:
                raise BugNotVisible(bug_id, "missing" if bug_id not in self.bugs else "no access")
        if flag_status is not None and (refused := [i for i in ids if i in self.denied]):
            raise FlagDenied(f"Bugzilla refused the {self.flag} change on bug "
                             f"{', '.join(map(str, refused))}.", refused, 130)
        for bug_id in ids:
            bug = self.bugs[bug_id]
            flags = tuple(f for f in bug.flags if f[0] != self.flag)
            if flag_status not in (None, "X"):
                flags += ((self.flag, flag_status),)
            new_whiteboard = bug.whiteboard if whiteboard is None else whiteboard
            if whiteboard_tag:
                new_whiteboard = whiteboard_with_tag(bug.whiteboard, whiteboard_tag)
            elif whiteboard_tag == "":
                new_whiteboard = whiteboard_without_tag(bug.whiteboard)
            self.bugs[bug_id] = replace(bug, whiteboard=new_whiteboard,
                                        flags=flags if flag_status is not None else bug.flags)
            if comment:
                self.comments_on.setdefault(bug_id, []).append(comment)
