"""!trees and !canipush: the state of the trees, and whether to push now."""
from __future__ import annotations

import datetime as dt

from models.lifecycle import DomainError
from plugins import args as a
from plugins.context import CommandContext as Ctx
from plugins.registry import UsageError, command


@command("trees", examples=["!trees", "!trees autoland"])
async def trees(ctx: Ctx, args: str) -> None:
    """trees [<tree>]

    The status and reason of each tree (or one), and the remembered changes that can be restored.
    """
    words = args.split()
    if len(words) > 1:
        raise UsageError(f"unexpected '{' '.join(words[1:])[:40]}'")
    rows = ctx.core.trees()
    if words:
        rows = [t for t in rows if t.name == words[0]]
        if not rows:
            raise DomainError(f"unknown tree '{words[0][:40]}': the trees are {', '.join(t.name for t in ctx.core.trees())}")
    ctx.reply(ctx.render("trees.txt", tree_rows=rows, changes=[] if words else ctx.core.tree_changes()))


@command("trees close", role="sheriffs or ciduty", examples=["!trees close autoland,try -- bustage on linux64"])
async def trees_close(ctx: Ctx, args: str) -> None:
    """trees close <tree>[,<tree>…] -- <reason>

    Close trees in one remembered change (restore it later with !trees restore).
    """
    head, reason = a.split_wording(args)
    (names,) = a.exactly(head.split(), 1, "the trees (comma-separated)")
    if not reason:
        raise UsageError("say why after ' -- '")
    change = ctx.core.close_trees_by_hand([n for n in names.split(",") if n], reason)
    ctx.reply(f"Closed {', '.join(i.tree for i in change.items)} (tree change {change.id}; undo: {ctx.prefix}trees restore {change.id}).")


@command("trees restore", role="sheriffs or ciduty", examples=["!trees restore 3"])
async def trees_restore(ctx: Ctx, args: str) -> None:
    """trees restore <change>

    Put the trees of a remembered change back as they were before it.
    """
    (token,) = a.exactly(args.split(), 1, "the tree change number")
    if not token.isdigit() or len(token) > 9:
        raise UsageError(f"'{token[:20]}' is not a tree change number")
    restored, left = ctx.core.restore_trees_by_hand(int(token))
    text = f"Tree change {token} restored: {', '.join(restored) or 'nothing to restore'}."
    if left:
        text += f" Left alone: {'; '.join(left)}."
    ctx.reply(text)


def _hm(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%H:%M UTC")


@command("canipush", examples=["!canipush", "!canipush autoland"])
async def canipush(ctx: Ctx, args: str) -> None:
    """canipush [<branch>]

    Whether a push now gets its results before the next downtime closes the trees.
    """
    words = args.split()
    if len(words) > 1:
        raise UsageError(f"unexpected '{' '.join(words[1:])[:40]}'")
    if not ctx.push:
        raise DomainError("no end-to-end times are configured ([push] in config.ini)")
    branch = words[0] if words else next(iter(ctx.push))
    if branch not in ctx.push:
        raise DomainError(f"no end-to-end time for '{branch[:40]}': known branches are {', '.join(ctx.push)}")
    e2e = ctx.push[branch]
    results = ctx.now + e2e
    d = ctx.core.next_downtime()
    if d is None:
        ctx.reply(f"No downtime is announced: push away ({branch}: results in about {a.format_duration(e2e)}, by {_hm(results)}).")
    elif d.start_at <= ctx.now or d.state == "in_progress":
        ctx.reply(f"Trees are closed now for downtime #{d.id} until about {_hm(d.end_at)}; wait for the TREE OPEN.")
    elif results <= d.start_at:
        ctx.reply(f"Push now: {branch} results by {_hm(results)}, before the downtime #{d.id} at {_hm(d.start_at)}.")
    else:
        ctx.reply(
            f"{branch} results would not be back before trees close at {_hm(d.start_at)} (downtime #{d.id}, "
            f"results take about {a.format_duration(e2e)}); trees reopen at about {_hm(d.end_at)}."
        )
