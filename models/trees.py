"""The tree use cases: a downtime's trees closed at its start and restored at its end, and
trees changed by hand (`!trees close|open|restore|confirm`).

builtin: the trees live in this database (Tree, TreeLog) and a downtime's closure is one
remembered TreeChange, restored at the end. treestatus and advisory: the change is made outside
(a tree job, see `models/jobs.py` and `adapters/tree_jobs.py`); the local TreeChange row stands
for it (state pending/requested → active → restoring → restored) so that `!trees` and
`!downtime show` can name it. Like the downtime use cases, these record events and never
queue anything themselves.

Several instances on one PostgreSQL: a change locks the rows of the trees it touches first, all in
one statement, in name order (`Trees._locked`). Two downtimes whose trees overlap, started at the
same moment, then never wait for each other in a circle (PostgreSQL would abort one: a deadlock),
and the second reads the trees as the first left them (its "before" is the first's closure).
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from models import events
from models.events import LeftTree
from models.lifecycle import DomainError, Role
from models.orm import Downtime, Tree, TreeChange, TreeChangeItem, TreeLog
from models.wording import clean_reason
from models.work import Work

# The longest downtime summary a tree's reason repeats.
REASON_SUMMARY = 120


class Trees:
    def __init__(self, work: Work):
        self.work = work
        self.session = work.session
        self.settings = work.settings

    # ----- a downtime's trees ---------------------------------------------------------------

    def close_for(self, downtime: Downtime) -> None:
        """Close the downtime's trees (all configured trees unless it names some)."""
        names = downtime.tree_names or list(self.settings.trees)
        reason = tree_reason(downtime)
        if self.settings.tree_backend == "builtin":
            change = self.close(names, reason, downtime_id=downtime.id)
            downtime.tree_change_id = change.id
            return
        advisory = self.settings.tree_backend == "advisory"
        change = TreeChange(
            at=self.work.now, who=self.work.actor.who, status="closed", reason=reason, tags="planned",
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
        self.work.record(
            events.TreesCloseRequested(downtime.id, change_id=change.id, trees=tuple(names), reason=reason,
                                       tags=("planned",))
        )

    def restore_for(self, downtime: Downtime) -> events.TreesRestored | None:
        """Put the downtime's trees back as they were before it (what changed since stays).
        Returns what the built-in registry did (None: nothing now; other backends do it in a job)."""
        change = self.session.get(TreeChange, downtime.tree_change_id) if downtime.tree_change_id else None
        if self.settings.tree_backend != "builtin":
            self.work.record(events.TreesRestoreRequested(downtime.id, change_id=change.id if change else None))
            return None
        if change is None:
            return None
        if change.state != "active":
            # A sheriff or CiDuty restored it by hand while the downtime ran.
            self.work.record(events.TreesRestoreSkipped(downtime.id, change_id=change.id, state=change.state))
            return None
        return self.restore(change.id)

    def not_open(self, downtime: Downtime, left: Sequence[LeftTree] = ()) -> tuple[LeftTree, ...]:
        """The built-in registry's trees of a downtime that are not open after its end, and
        who holds each: those its restore `left` under someone else's change, and those given
        back a closure from before the downtime (a bustage closure in force when it began),
        also when its change was restored by hand before the end. Other backends: ()."""
        if self.settings.tree_backend != "builtin" or not downtime.tree_change_id:
            return ()
        change = self.session.get(TreeChange, downtime.tree_change_id)
        if change is None:
            return ()
        known = {t.tree: t for t in left}
        found = []
        for item in change.items:
            tree = self.session.get(Tree, item.tree)
            if tree is None or tree.status == "open":
                continue
            if item.tree in known:
                found.append(known[item.tree])
                continue
            # Who made that state: the last log row that set it before the downtime's closure.
            closure = self.session.scalars(
                select(TreeLog.id).where(TreeLog.tree == item.tree, TreeLog.status == item.current_status,
                                         TreeLog.reason == item.current_reason)
                .order_by(TreeLog.id.desc()).limit(1)
            ).first()
            log = self.session.scalars(
                select(TreeLog).where(TreeLog.tree == item.tree, TreeLog.status == tree.status,
                                      TreeLog.reason == tree.reason, TreeLog.id < (closure or 0))
                .order_by(TreeLog.id.desc()).limit(1)
            ).first()
            found.append(LeftTree(tree.name, tree.status, tree.reason, held_by=None, who=log.who if log else ""))
        return tuple(sorted(found, key=lambda t: t.tree))

    # ----- by hand ----------------------------------------------------------------------------

    def _builtin_only(self, what: str) -> None:
        if self.settings.tree_backend != "builtin":
            raise DomainError("trees_elsewhere", backend=self.settings.tree_backend, what=what)

    def close_by_hand(self, names: Sequence[str], reason: str) -> TreeChange:
        self.work.require("close trees", Role.SHERIFF, Role.CIDUTY)
        self._builtin_only("close trees")
        return self.close(names, clean_reason(reason), tags="other", by_hand=True)

    def open_by_hand(self, names: Sequence[str], reason: str) -> list[str]:
        """Reopen trees without remembering it (a sheriff reopening early): logged, not on the stack."""
        self.work.require("open trees", Role.SHERIFF, Role.CIDUTY)
        self._builtin_only("open trees")
        names = list(dict.fromkeys(names))
        if not names:
            raise DomainError("no_trees_named", verb="open")
        self.work.check_trees(names)
        self._ensure()
        reason = clean_reason(reason) if reason.strip() else ""
        opened = []
        trees = self._locked(names)
        for name in names:
            tree = trees[name]
            if tree.status != "open" or tree.reason != reason:
                self._set(tree, "open", reason, "")
                opened.append(name)
        self.work.audit(None, "trees open", "", "open", f"{', '.join(names)}" + (f": {reason}" if reason else ""))
        self.work.record(events.TreesOpened(None, trees=tuple(opened)))
        return opened

    def restore_by_hand(self, change_id: int) -> events.TreesRestored:
        self.work.require("restore trees", Role.SHERIFF, Role.CIDUTY)
        self._builtin_only("restore trees")
        return self.restore(change_id, by_hand=True)

    def confirm(self, change_id: int) -> tuple[TreeChange, str]:
        """Advisory backend: a sheriff or CiDuty says the asked-for change is made in Treestatus."""
        self.work.require("confirm tree changes", Role.SHERIFF, Role.CIDUTY)
        change = self.session.get(TreeChange, change_id)
        if change is None:
            raise DomainError("no_tree_change", change=change_id)
        if change.state == "requested":
            what, change.state = "closed", "active"
            change.who = self.work.actor.who  # who made it in Treestatus
        elif change.state == "restoring":
            what, change.state = "restored", "restored"
        else:
            raise DomainError("nothing_to_confirm", change=change_id, state=change.state)
        trees = ", ".join(i.tree for i in change.items)
        self.work.audit(change.downtime_id, "trees confirm", "", what, f"change {change.id}: {trees} {what} in Treestatus")
        self.work.record(events.TreeChangeConfirmed(change.downtime_id, change_id=change.id, what=what))
        return change, what

    # ----- the built-in registry --------------------------------------------------------------

    def trees(self) -> list[Tree]:
        self._ensure()
        return list(self.session.scalars(select(Tree).order_by(Tree.name)))

    def _ensure(self) -> None:
        known = set(self.session.scalars(select(Tree.name)))
        missing = [name for name in self.settings.trees if name not in known]
        if not missing:
            return
        # Another instance may be adding them at the same moment: the second keeps the first's rows.
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.session.execute(
            insert(Tree)
            .values([dict(name=name, status="open", reason="", tags="", updated_at=self.work.now) for name in missing])
            .on_conflict_do_nothing(index_elements=["name"])
        )

    def _locked(self, names: Sequence[str]) -> dict[str, Tree]:
        """The trees `names` by name, read as they are now and locked until the transaction ends,
        in one statement in name order (FOR UPDATE on PostgreSQL; SQLite has one writer anyway)."""
        rows = self.session.scalars(
            select(Tree).where(Tree.name.in_(sorted(set(names)))).order_by(Tree.name)
            .with_for_update().execution_options(populate_existing=True)
        )
        return {tree.name: tree for tree in rows}

    def close(
        self, names: Sequence[str], reason: str, *, downtime_id: int | None = None, tags: str = "planned",
        by_hand: bool = False,
    ) -> TreeChange:
        """Close trees in one remembered change (each tree's state before is kept)."""
        names = list(dict.fromkeys(names))  # a tree named twice would remember its own closure
        if not names:
            raise DomainError("no_trees_named", verb="close")
        self.work.check_trees(names)
        self._ensure()
        change = TreeChange(
            at=self.work.now, who=self.work.actor.who, status="closed", reason=reason, tags=tags, downtime_id=downtime_id
        )
        trees = self._locked(names)
        for name in names:
            tree = trees[name]
            change.items.append(
                TreeChangeItem(
                    tree=name, last_status=tree.status, last_reason=tree.reason, last_tags=tree.tags,
                    current_status="closed", current_reason=reason, current_tags=tags,
                )
            )
            self._set(tree, "closed", reason, tags)
        self.session.add(change)
        self.session.flush()
        self.work.audit(downtime_id, "trees close", "", "closed", f"{', '.join(names)}: {reason} (change {change.id})")
        self.work.record(events.TreesClosed(downtime_id, change_id=change.id, trees=tuple(names), by_hand=by_hand))
        return change

    def _set(self, tree: Tree, status: str, reason: str, tags: str) -> None:
        now = self.work.now
        tree.status, tree.reason, tree.tags, tree.updated_at = status, reason, tags, now
        self.session.add(TreeLog(tree=tree.name, at=now, who=self.work.actor.who, status=status, reason=reason, tags=tags))
        self.work.changed = True

    def restore(self, change_id: int, *, by_hand: bool = False) -> events.TreesRestored:
        """Undo one remembered change, following Treestatus's stack.

        The event says which trees were put back and, for the others, why each was left alone:
        - a later remembered change still on the stack holds the tree (another downtime, a
          bustage closure made with !trees close): that change inherits this one's "before"
          state, so restoring it later gives the tree back its state from before both;
        - someone changed the tree since without remembering it (a sheriff reopened it early):
          their change stands.
        """
        change = self.session.get(TreeChange, change_id, with_for_update=True, populate_existing=True)
        if change is None or change.state != "active":
            raise DomainError("no_tree_change_to_restore", change=change_id)
        restored: list[str] = []
        left: list[LeftTree] = []
        trees = self._locked([item.tree for item in change.items])
        for item in change.items:
            tree = trees.get(item.tree)
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
                holder = self.session.get(TreeChange, later.change_id)
                left.append(LeftTree(tree.name, tree.status, tree.reason, held_by=later.change_id,
                                     who=holder.who if holder else ""))
                continue
            if (tree.status, tree.reason) != made:
                last = self.session.scalars(
                    select(TreeLog).where(TreeLog.tree == tree.name).order_by(TreeLog.id.desc()).limit(1)
                ).first()
                left.append(LeftTree(tree.name, tree.status, tree.reason, held_by=None, who=last.who if last else ""))
                continue
            self._set(tree, item.last_status, item.last_reason, item.last_tags)
            restored.append(tree.name)
        change.state = "restored"
        self.work.audit(
            change.downtime_id, "trees restore", "", "",
            f"change {change.id}: restored {', '.join(restored) or 'nothing'}"
            + (f"; left {', '.join(t.tree for t in left)}" if left else ""),
        )
        event = events.TreesRestored(
            change.downtime_id, change_id=change.id, restored=tuple(restored), left=tuple(left), by_hand=by_hand
        )
        self.work.record(event)
        return event


def tree_reason(downtime: Downtime) -> str:
    """The reason a downtime's trees are closed with: "Downtime #N: <summary> (bug …)".

    Not a chat sentence but the change's name in Treestatus, where it must name its downtime:
    the Treestatus client tells its own earlier change by it (look before you leap).
    """
    bugs = ", ".join(str(b.bug) for b in downtime.bugs)
    summary = downtime.summary
    if len(summary) > REASON_SUMMARY:
        summary = summary[: REASON_SUMMARY - 3] + "..."
    return f"Downtime #{downtime.id}: {summary}" + (f" (bug {bugs})" if bugs else "")
