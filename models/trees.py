"""The trees of a downtime: closed at its start, restored at its end, and changed by hand.

builtin: the trees live in this database (Tree, TreeLog) and a downtime's closure is one
remembered TreeChange, restored at the end. treestatus and advisory: the change is made outside
(an outbox job of kind "trees", see adapters/tree_jobs.py); the local TreeChange row stands for
it (state pending/requested → active → restoring → restored) so that !trees and !downtime show
can name it. These use cases are part of `models.service.Core`.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.lifecycle import DomainError, Role
from models.orm import Downtime, Tree, TreeChange, TreeChangeItem, TreeLog
from models.wording import clean_wording

if TYPE_CHECKING:
    from models.outbox import Outbox
    from models.service import Actor, Outcome, Settings


class TreeUseCases:
    """Mixed into Core, whose session, clock, settings, actor and audit trail it uses."""

    session: Session
    now: dt.datetime
    settings: Settings
    actor: Actor
    outbox: Outbox
    changed: bool

    if TYPE_CHECKING:  # provided by Core
        def _audit(self, downtime_id: int | None, action: str, before: str = "", after: str = "",
                   detail: str = "") -> None: ...
        def _require(self, what: str, *roles: Role) -> None: ...
        def _check_trees(self, trees: Sequence[str]) -> None: ...

    def _downtime_trees(self, downtime: Downtime) -> list[str]:
        return downtime.tree_names or list(self.settings.trees)

    def _close_trees(self, downtime: Downtime, outcome: Outcome) -> None:
        names = self._downtime_trees(downtime)
        reason = tree_reason(downtime)
        if self.settings.tree_backend == "builtin":
            change = self.close_trees(names, reason, downtime_id=downtime.id)
            downtime.tree_change_id = change.id
            outcome.notes.append(f"closed {', '.join(names)} (tree change {change.id})")
            return
        advisory = self.settings.tree_backend == "advisory"
        change = TreeChange(
            at=self.now, who=self.actor.who, status="closed", reason=reason, tags="planned",
            downtime_id=downtime.id, state="requested" if advisory else "pending",
        )
        for name in names:
            # The state before is not known here: Treestatus remembers it (treestatus), or the
            # person who makes the change does (advisory).
            change.items.append(
                TreeChangeItem(tree=name, last_status="", current_status="closed", current_reason=reason,
                               current_tags="planned")
            )
        self.session.add(change)
        self.session.flush()
        downtime.tree_change_id = change.id
        self.outbox.job(
            "trees",
            f"dt{downtime.id}:trees-close",
            f"close {', '.join(names)} with the reason \"{reason}\"",
            {"op": "close", "trees": names, "reason": reason, "tags": ["planned"], "change": change.id},
            downtime_id=downtime.id,
        )
        if advisory:
            outcome.notes.append(
                f"sheriffs and CiDuty are asked to close {', '.join(names)} in Treestatus (tree change {change.id}; "
                f"confirm with !trees confirm {change.id})"
            )
        else:
            outcome.notes.append(f"closing {', '.join(names)} in Treestatus (tree change {change.id})")

    def _restore_trees(self, downtime: Downtime, outcome: Outcome) -> None:
        change = self.session.get(TreeChange, downtime.tree_change_id) if downtime.tree_change_id else None
        if self.settings.tree_backend == "builtin":
            if change is None:
                return
            if change.state != "active":
                # A sheriff or CiDuty restored it by hand while the downtime ran.
                outcome.notes.append(f"tree change {change.id} was already {change.state}: no tree touched")
                return
            restored, left = self.restore_trees(change.id)
            outcome.notes.append(f"restored {', '.join(restored)}" if restored else "no tree needed restoring")
            if left:
                outcome.notes.append(f"left alone (changed during the downtime): {'; '.join(left)}")
            return
        self.outbox.job(
            "trees",
            f"dt{downtime.id}:trees-restore",
            f"restore the trees closed for downtime #{downtime.id}",
            {"op": "restore", "downtime": downtime.id, "change": change.id if change else None},
            downtime_id=downtime.id,
        )
        if self.settings.tree_backend == "advisory":
            outcome.notes.append("sheriffs and CiDuty are asked to restore the trees in Treestatus")
        else:
            outcome.notes.append("restoring the trees in Treestatus; CiDuty is told what was restored")

    def _builtin_only(self, what: str) -> None:
        if self.settings.tree_backend != "builtin":
            raise DomainError(
                f"the trees are kept in Treestatus ([trees] backend = {self.settings.tree_backend}): "
                f"{what} there; the bot only changes them for downtimes"
            )

    def close_trees_by_hand(self, names: Sequence[str], reason: str) -> TreeChange:
        self._require("close trees", Role.SHERIFF, Role.CIDUTY)
        self._builtin_only("close trees")
        return self.close_trees(names, clean_wording(reason), tags="other")

    def open_trees_by_hand(self, names: Sequence[str], reason: str) -> list[str]:
        """Reopen trees without remembering it (a sheriff reopening early): logged, not on the stack."""
        self._require("open trees", Role.SHERIFF, Role.CIDUTY)
        self._builtin_only("open trees")
        names = list(dict.fromkeys(names))
        if not names:
            raise DomainError("name the trees to open, comma-separated")
        self._check_trees(names)
        self._ensure_trees()
        reason = clean_wording(reason) if reason.strip() else ""
        opened = []
        for name in names:
            tree = self.session.get(Tree, name)
            assert tree is not None
            if tree.status != "open" or tree.reason != reason:
                self._set_tree(tree, "open", reason, "")
                opened.append(name)
        self._audit(None, "trees open", "", "open", f"{', '.join(names)}" + (f": {reason}" if reason else ""))
        return opened

    def restore_trees_by_hand(self, change_id: int) -> tuple[list[str], list[str]]:
        self._require("restore trees", Role.SHERIFF, Role.CIDUTY)
        self._builtin_only("restore trees")
        return self.restore_trees(change_id)

    def confirm_tree_change(self, change_id: int) -> tuple[TreeChange, str]:
        """Advisory backend: a sheriff or CiDuty says the asked-for change is made in Treestatus."""
        self._require("confirm tree changes", Role.SHERIFF, Role.CIDUTY)
        change = self.session.get(TreeChange, change_id)
        if change is None:
            raise DomainError(f"there is no tree change {change_id} (see !trees)")
        if change.state == "requested":
            what, change.state = "closed", "active"
            change.who = self.actor.who  # who made it in Treestatus
        elif change.state == "restoring":
            what, change.state = "restored", "restored"
        else:
            raise DomainError(f"tree change {change_id} waits for no confirmation (it is {change.state})")
        trees = ", ".join(i.tree for i in change.items)
        self._audit(change.downtime_id, "trees confirm", "", what, f"change {change.id}: {trees} {what} in Treestatus")
        return change, what

    def tree_changes(self) -> list[TreeChange]:
        """The changes not yet undone (on the stack, or waiting for Treestatus), newest first."""
        return list(
            self.session.scalars(
                select(TreeChange)
                .where(TreeChange.state.in_(["active", "pending", "requested", "restoring"]))
                .order_by(TreeChange.id.desc())
                .limit(10)
            )
        )

    def trees(self) -> list[Tree]:
        self._ensure_trees()
        return list(self.session.scalars(select(Tree).order_by(Tree.name)))

    def _ensure_trees(self) -> None:
        known = set(self.session.scalars(select(Tree.name)))
        for name in self.settings.trees:
            if name not in known:
                self.session.add(Tree(name=name, status="open", reason="", tags="", updated_at=self.now))
        self.session.flush()

    def close_trees(
        self, names: Sequence[str], reason: str, *, downtime_id: int | None = None, tags: str = "planned"
    ) -> TreeChange:
        """Close trees in one remembered change (each tree's state before is kept)."""
        names = list(dict.fromkeys(names))  # a tree named twice would remember its own closure
        if not names:
            raise DomainError("name the trees to close, comma-separated")
        self._check_trees(names)
        self._ensure_trees()
        change = TreeChange(
            at=self.now, who=self.actor.who, status="closed", reason=reason, tags=tags, downtime_id=downtime_id
        )
        for name in names:
            tree = self.session.get(Tree, name)
            assert tree is not None
            change.items.append(
                TreeChangeItem(
                    tree=name,
                    last_status=tree.status,
                    last_reason=tree.reason,
                    last_tags=tree.tags,
                    current_status="closed",
                    current_reason=reason,
                    current_tags=tags,
                )
            )
            self._set_tree(tree, "closed", reason, tags)
        self.session.add(change)
        self.session.flush()
        self._audit(downtime_id, "trees close", "", "closed", f"{', '.join(names)}: {reason} (change {change.id})")
        return change

    def _set_tree(self, tree: Tree, status: str, reason: str, tags: str) -> None:
        tree.status, tree.reason, tree.tags, tree.updated_at = status, reason, tags, self.now
        self.session.add(TreeLog(tree=tree.name, at=self.now, who=self.actor.who, status=status, reason=reason, tags=tags))
        self.changed = True

    def restore_trees(self, change_id: int) -> tuple[list[str], list[str]]:
        """Undo one remembered change, following Treestatus's stack.

        Returns the trees put back and, for the others, why each was left alone:
        - a later remembered change still on the stack holds the tree (another downtime, a
          bustage closure made with !trees close): that change inherits this one's "before"
          state, so restoring it later gives the tree back its state from before both;
        - someone changed the tree since without remembering it (a sheriff reopened it early):
          their change stands.
        """
        change = self.session.get(TreeChange, change_id)
        if change is None or change.state != "active":
            raise DomainError(f"there is no tree change {change_id} to restore (see !trees)")
        restored: list[str] = []
        left: list[str] = []
        for item in change.items:
            tree = self.session.get(Tree, item.tree)
            if tree is None:
                continue
            made = (item.current_status, item.current_reason)
            later = self.session.scalars(
                select(TreeChangeItem)
                .join(TreeChange)
                .where(TreeChange.state == "active", TreeChange.id > change.id, TreeChangeItem.tree == item.tree)
                .order_by(TreeChange.id)
            ).first()
            if later is not None and (later.last_status, later.last_reason) == made:
                # The later change was made on top of ours: it now remembers what was before ours.
                later.last_status, later.last_reason, later.last_tags = item.last_status, item.last_reason, item.last_tags
                left.append(
                    f"{tree.name} (still {tree.status} under tree change {later.change_id}, whose restore gives it back "
                    f"its state from before)"
                )
                continue
            if (tree.status, tree.reason) != made:
                left.append(f"{tree.name} (now {_tree_state(tree.status, tree.reason)})")
                continue
            self._set_tree(tree, item.last_status, item.last_reason, item.last_tags)
            restored.append(tree.name)
        change.state = "restored"
        self._audit(
            change.downtime_id, "trees restore", "", "",
            f"change {change.id}: restored {', '.join(restored) or 'nothing'}" + (f"; left {'; '.join(left)}" if left else ""),
        )
        return restored, left


def tree_reason(downtime: Downtime) -> str:
    """The reason a downtime's trees are closed with: "Downtime #N: <summary> (bug …)"."""
    bugs = ", ".join(str(b.bug) for b in downtime.bugs)
    summary = downtime.summary if len(downtime.summary) <= 120 else downtime.summary[:117] + "..."
    return f"Downtime #{downtime.id}: {summary}" + (f" (bug {bugs})" if bugs else "")


def _tree_state(status: str, reason: str) -> str:
    return f"{status}: {reason}" if reason else status
