"""!trees and !canipush: the state of the trees, and whether to push now."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from models.lifecycle import DomainError, State
from plugins import args as a
from plugins.context import CommandContext as Ctx
from plugins.context import Preflight
from plugins.registry import UsageError, close_match, command, next_words


@dataclass(frozen=True)
class TreeRow:
    """One tree as `trees.txt` shows it, whichever backend it comes from."""

    name: str
    status: str
    reason: str


async def _remote_trees(pre: Preflight, args: str) -> None:
    if pre.trees_remote is None:
        return
    try:
        pre.trees = await pre.trees_remote()  # raises a DomainError when Treestatus cannot answer
    except DomainError as err:
        pre.refusal = err


@command("trees", prepare=_remote_trees, examples=["!trees", "!trees autoland"], read_only=True)
async def trees(ctx: Ctx, args: str) -> None:
    """trees [<tree>]

    The status and reason of each tree (or one), and the remembered changes that can be restored.
    """
    words = args.split()
    settings = ctx.work.settings
    if words and words[0] not in settings.trees:
        # "!trees clsoe autoland -- …": a misspelt subcommand, not a tree.
        close = close_match(words[0], [w for w in next_words(ctx.commands, "trees") if w != "help"])
        if close:
            raise DomainError("unknown_subcommand", sub=words[0][:30], top="trees", close=f"trees {close}")
    a.exactly(words[1:], 0, "")
    if ctx.trees_remote is not None:
        remote = ctx.looked_up().trees  # read before the lock (see _remote_trees)
        names = [n for n in settings.trees if n in remote] or sorted(remote)
        rows = [TreeRow(n, remote[n].status, remote[n].reason) for n in names]
        source = "Treestatus"
    elif settings.tree_backend != "builtin":
        rows, source = [], "unread"  # advisory without a Treestatus to read
    else:
        rows = [TreeRow(t.name, t.status, t.reason) for t in ctx.trees.trees()]
        source = ""
    if words:
        known = [r.name for r in rows]
        rows = [r for r in rows if r.name == words[0]]
        if not rows and source != "unread":
            raise DomainError("unknown_trees", unknown=[words[0][:40]], count=1, known=known)
    changes = [] if words else ctx.queries.tree_changes()
    ctx.say("trees.txt", tree_rows=rows, changes=changes, source=source,
            builtin=ctx.trees_remote is None and settings.tree_backend == "builtin")


def _tree_names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    if not names:
        raise UsageError("no_trees")
    return names


@command("trees close", role="sheriffs or ciduty", examples=["!trees close autoland,try -- bustage on linux64"])
async def trees_close(ctx: Ctx, args: str) -> None:
    """trees close <tree>[,<tree>…] -- <reason>

    Close trees in one remembered change (restore it later with !trees restore).
    """
    head, reason = a.split_wording(args)
    (names,) = a.exactly(head.split(), 1, "trees")
    if not reason:
        raise UsageError("no_reason")
    ctx.say("trees_closed.txt", change=ctx.trees.close_by_hand(_tree_names(names), reason))


@command("trees open", role="sheriffs or ciduty", examples=["!trees open autoland -- reopened early, all green"])
async def trees_open(ctx: Ctx, args: str) -> None:
    """trees open <tree>[,<tree>…] [-- <reason>]

    Open trees now without remembering it (e.g. reopening early during a downtime);
    the downtime's end then leaves them alone.
    """
    head, reason = a.split_wording(args)
    (names,) = a.exactly(head.split(), 1, "trees")
    ctx.say("trees_opened.txt", opened=ctx.trees.open_by_hand(_tree_names(names), reason or ""))


@command("trees restore", role="sheriffs or ciduty", examples=["!trees restore 3"])
async def trees_restore(ctx: Ctx, args: str) -> None:
    """trees restore <change>

    Put the trees of a remembered change back as they were before it.
    """
    done = ctx.trees.restore_by_hand(_change_id(args))
    ctx.say("trees_restored.txt", change=done.change_id, restored=done.restored, left=done.left)


@command("trees confirm", role="sheriffs or ciduty", examples=["!trees confirm 3"])
async def trees_confirm(ctx: Ctx, args: str) -> None:
    """trees confirm <change>

    With [trees] backend = advisory: say that the change the bot asked for is made in Treestatus.
    """
    change, what = ctx.trees.confirm(_change_id(args))
    ctx.say("trees_confirmed.txt", change=change, what=what, actor=ctx.actor.who)


def _change_id(args: str) -> int:
    (token,) = a.exactly(args.split(), 1, "change")
    found = a.number(token)
    if found is None:
        raise UsageError("not_a_change", token=token[:20])
    return found


# The names people give branches, each meaning the [push] branch it names when that is configured.
BRANCH_ALIASES = {
    "m-c": "mozilla-central", "central": "mozilla-central",
    "m-i": "mozilla-inbound", "inbound": "mozilla-inbound",
    "m-b": "mozilla-beta", "beta": "mozilla-beta",
    "m-r": "mozilla-release", "release": "mozilla-release",
}


def branch_named(word: str, known: Iterable[str]) -> str | None:
    """The configured branch `word` names, in any case or by an alias (m-c, central, beta …)."""
    by_case = {b.lower(): b for b in known}
    word = word.lower()
    return by_case.get(word) or by_case.get(BRANCH_ALIASES.get(word, ""))


@command("canipush", examples=["!canipush", "!canipush autoland"], read_only=True)
async def canipush(ctx: Ctx, args: str) -> None:
    """canipush [<branch>]

    Whether a push now gets its results before the next downtime closes the trees.
    """
    words = args.split()
    a.exactly(words[1:], 0, "")
    if not ctx.push:
        raise DomainError("no_push_times")
    branch = branch_named(words[0], ctx.push) if words else next(iter(ctx.push))
    if branch is None:
        raise DomainError("unknown_branch", branch=words[0][:40], known=list(ctx.push))
    e2e = ctx.push[branch]
    results = ctx.now + e2e
    d = ctx.queries.next_downtime()
    if d is None:
        case = "none"
    elif d.tree_names and branch in ctx.work.settings.trees and branch not in d.tree_names:
        case = "not_closed"
    elif d.state == State.IN_PROGRESS.value:
        case = "running" if ctx.now <= d.end_at else "overrunning"
    elif d.start_at <= ctx.now:
        case = "due"
    elif results <= d.start_at:
        case = "in_time"
    else:
        case = "too_late"
    ctx.reply(
        ctx.render(
            "canipush.txt", case=case, d=d, branch=branch, e2e=a.format_duration(e2e), now=ctx.now,
            results=results, start=d.start_at if d else None, end=d.end_at if d else None,
        )
    )
