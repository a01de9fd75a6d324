"""!help, and the help of each command family: !downtime help, !trees help, !canipush help.

Every family's help reads the commands the dispatcher collected: a command's usage is its
docstring's first line, its help text the rest, its examples from `@command`.
"""
from __future__ import annotations

import re

from plugins.context import CommandContext as Ctx
from plugins.registry import Command, UsageError, close_match, command, next_words
from plugins.trees import BRANCH_ALIASES

# "!" before a command name in help texts and examples: said with the configured prefix.
COMMAND_WORD = re.compile(r"(?<![\w!])!(?=(?:downtime|trees|canipush|help)\b)")


def explain(ctx: Ctx, top: str, args: str) -> None:
    """The help of the family `top`: its commands, or the usage, text and examples of one of them
    (or of a group such as ``bug``); a misspelt subcommand gets "did you mean …?"."""
    topic = " ".join(args.lower().split()).removeprefix(ctx.prefix).removeprefix(f"{top} ").strip()
    if not topic:
        _family(ctx, top)
        return
    cmd = ctx.commands.get(f"{top} {topic}") or ctx.commands.get(topic)
    if cmd is not None:
        _command(ctx, cmd)
        return
    group = [c for n, c in ctx.commands.items() if n.startswith(f"{top} {topic} ")]
    if group:
        ctx.say("help_group.txt", group=f"{top} {topic}", usages=[c.usage for c in group])
        return
    first = topic.split()[0]
    close = close_match(first, next_words(ctx.commands, top))
    raise UsageError("no_such_subcommand", topic=topic[:30], top=top, close=close or "")


def _family(ctx: Ctx, top: str) -> None:
    subs = [n.removeprefix(f"{top} ") for n in ctx.commands if n.startswith(f"{top} ") and n != f"{top} help"]
    if top == "downtime":
        ctx.say(
            "help.txt", subs=[n.removeprefix("downtime ") for n in ctx.commands if n.startswith("downtime ")],
            others=[n for n in ctx.commands if not n.startswith("downtime ") and not n.endswith(" help")],
        )
        return
    cmd = ctx.commands.get(top)
    ctx.say(
        "help_family.txt", top=top, usage=cmd.usage if cmd else "", text=_said(ctx, cmd.help) if cmd else "",
        subs=subs, examples=[_said(ctx, e) for e in cmd.examples[:2]] if cmd else [],
        branches=_branches(ctx) if top == "canipush" else [],
    )


def _command(ctx: Ctx, cmd: Command) -> None:
    ctx.say(
        "help_command.txt", usage=cmd.usage, text=_said(ctx, " ".join(cmd.help.split())),
        role=cmd.role, admins_too=cmd.admins_too, examples=[_said(ctx, e) for e in cmd.examples[:2]],
    )


def _said(ctx: Ctx, text: str) -> str:
    """Docstrings and examples are written with "!"; say them with the configured prefix."""
    return COMMAND_WORD.sub(ctx.prefix, " ".join(text.split()))


def _branches(ctx: Ctx) -> list[tuple[str, list[str]]]:
    return [(b, [alias for alias, name in BRANCH_ALIASES.items() if name == b]) for b in ctx.push]


@command("help", examples=["!help", "!help trees"], read_only=True)
async def help_all(ctx: Ctx, args: str) -> None:
    """help [<command>]

    The command families, or the help of one (the same as !downtime help, !trees help, !canipush help).
    """
    words = args.lower().removeprefix(ctx.prefix).split()
    tops = list(dict.fromkeys(name.split()[0] for name in ctx.commands))  # in the order declared
    if not words:
        families = [(t, [w for w in next_words(ctx.commands, t) if w != "help"]) for t in tops if t != "help"]
        ctx.say("help_top.txt", families=families)
        return
    top = words[0].removeprefix(ctx.prefix)
    if top == "help":
        await help_all(ctx, "")
        return
    if top not in tops:
        close = close_match(top, tops)
        raise UsageError("no_such_command", word=top[:30], close=close or "")
    explain(ctx, top, " ".join(words[1:]))


@command("trees help", examples=["!trees help", "!trees help close"], read_only=True)
async def trees_help(ctx: Ctx, args: str) -> None:
    """trees help [<subcommand>]

    The !trees commands, or the usage, description and example of one.
    """
    explain(ctx, "trees", args)


@command("canipush help", examples=["!canipush help"], read_only=True)
async def canipush_help(ctx: Ctx, args: str) -> None:
    """canipush help

    What !canipush answers, and the branches it knows.
    """
    explain(ctx, "canipush", args)
