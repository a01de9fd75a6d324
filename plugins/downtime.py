"""!downtime: propose, plan, announce, run and close tree-closing downtimes."""
from __future__ import annotations

from models.lifecycle import OUTCOMES, DomainError
from models.service import whiteboard_tag
from plugins import args as a
from plugins.context import CommandContext as Ctx
from plugins.registry import UsageError, command


def _when(ctx: Ctx, t) -> str:  # type: ignore[no-untyped-def]
    return ctx.render.env.globals["when"](t)


@command(
    "downtime propose",
    examples=["!downtime propose 2026-12-05 14:00 UTC for 2h bug 1234567 trees autoland -- Upgrade the hg servers"],
)
async def propose(ctx: Ctx, args: str) -> None:
    """downtime propose <start> for <duration> [bug <n>[,<n>…]] [trees <tree>[,<tree>…]] -- <notice wording>

    Ask for a tree-closing downtime. The wording after -- goes into the notice.
    The planning rules are checked at once and any that fail are shown as warnings.
    """
    head, wording = a.split_wording(args)
    if wording is None:
        raise UsageError("the notice wording is missing: end with ' -- <what the downtime does>'")
    if not wording:
        raise UsageError("the notice wording is empty: write what the downtime does after ' -- '")
    start, duration, bugs, trees = a.proposal(head, ctx.now)
    infos = [await ctx.bugzilla.lookup(b) for b in bugs]
    outcome = ctx.core.propose(start, duration, wording, bugs=bugs, trees=trees)
    for info in infos:
        if info is not None:
            ctx.core.add_bug(outcome.downtime.id, info.id, summary=info.summary, assignee=info.assignee,
                             security=info.restricted)
    d = outcome.downtime
    ctx.outcome(
        f"Downtime #{d.id} proposed by {d.requester}: {_when(ctx, d.start_at)} for {a.format_duration(d.duration)}."
        f" CiDuty reviews it: {ctx.prefix}downtime approve {d.id}",
        outcome,
    )


@command("downtime list", examples=["!downtime list", "!downtime list past 2"])
async def list_(ctx: Ctx, args: str) -> None:
    """downtime list [upcoming|past|all] [<page>]

    The downtimes, ten per page, soonest first (newest first for past and all).
    """
    words = args.split()
    which = "upcoming"
    if words and words[0].lower() in ("upcoming", "past", "all"):
        which = words.pop(0).lower()
    page = 1
    if words:
        if not words[0].isdigit() or len(words[0]) > 6 or int(words[0]) < 1:
            raise UsageError(f"'{words[0][:20]}' is not a page number")
        page = int(words.pop(0))
    a.exactly(words, 0, "")
    rows, pages = ctx.core.list(which, page)
    if page > pages:
        raise DomainError(f"there are only {pages} page(s) of {which} downtimes")
    ctx.reply(ctx.render("list.txt", rows=rows, which=which, page=page, pages=pages))


@command("downtime show", examples=["!downtime show 7"], cacheable=True)
async def show(ctx: Ctx, args: str) -> None:
    """downtime show <id>

    Everything about one downtime: times, state, bugs, verdicts, pending changes.
    """
    (token,) = a.exactly(args.split(), 1, "the downtime id")
    d = ctx.core.get(a.downtime_id(token))
    ctx.reply(ctx.render("show.txt", d=d, pending=ctx.core.pending_jobs(d.id)))


@command("downtime bug add", examples=["!downtime bug add 7 1234567 -- Move the build database"])
async def bug_add(ctx: Ctx, args: str) -> None:
    """downtime bug add <id> <bug> [--security] [-- <wording>]

    Add a bug to a downtime, with the words the notice should use for it.
    --security (or a restricted bug) makes the notice describe it vaguely.
    """
    head, wording = a.split_wording(args)
    words = head.split()
    security = "--security" in words
    words = [w for w in words if w != "--security"]
    if wording is not None and not wording:
        raise UsageError("the bug's wording is empty: write it after ' -- ' or leave out the --")
    dt_token, bug_token = a.exactly(words, 2, "the downtime id and the bug number")
    downtime_id, bug = a.downtime_id(dt_token), a.bug_number(bug_token)
    ctx.core.get(downtime_id)
    info = await ctx.bugzilla.lookup(bug)
    outcome = ctx.core.add_bug(
        downtime_id,
        bug,
        wording=wording or "",
        security=security or bool(info and info.restricted),
        summary=info.summary if info else "",
        assignee=info.assignee if info else "",
    )
    secure = " (security-sensitive: described vaguely)" if outcome.downtime.bugs and any(
        b.bug == bug and b.security for b in outcome.downtime.bugs) else ""
    ctx.outcome(f"Bug {bug} is in downtime #{downtime_id}{secure}.", outcome)


@command("downtime bug drop", examples=["!downtime bug drop 7 1234567"])
async def bug_drop(ctx: Ctx, args: str) -> None:
    """downtime bug drop <id> <bug>

    Take a bug out of a downtime.
    """
    dt_token, bug_token = a.exactly(args.split(), 2, "the downtime id and the bug number")
    downtime_id, bug = a.downtime_id(dt_token), a.bug_number(bug_token)
    ctx.outcome(f"Bug {bug} is no longer in downtime #{downtime_id}.", ctx.core.drop_bug(downtime_id, bug))


@command("downtime approve", role="ciduty", examples=["!downtime approve 7"])
async def approve(ctx: Ctx, args: str) -> None:
    """downtime approve <id>

    CiDuty approves a proposal: its bugs get needs-treeclosure+ and the time in the
    whiteboard, and the draft notice goes to the pre-approvers.
    """
    (token,) = a.exactly(args.split(), 1, "the downtime id")
    outcome = ctx.core.approve(a.downtime_id(token))
    d = outcome.downtime
    ctx.outcome(
        f"Downtime #{d.id} approved ({whiteboard_tag(d.start_at)}). The draft notice goes to the pre-approvers; "
        f"announce it with {ctx.prefix}downtime announce {d.id}",
        outcome,
    )


@command("downtime reject", role="ciduty", examples=["!downtime reject 7 -- clashes with the 147 release"])
async def reject(ctx: Ctx, args: str) -> None:
    """downtime reject <id> -- <reason>

    CiDuty turns a proposal down; the requester is told why.
    """
    outcome = ctx.core.reject(*a.id_and_reason(args))
    ctx.outcome(f"Downtime #{outcome.downtime.id} rejected.", outcome)


@command("downtime preapprove", role="preapprovers", examples=["!downtime preapprove 7"])
async def preapprove(ctx: Ctx, args: str) -> None:
    """downtime preapprove <id>

    A pre-approver has no objection to the draft notice.
    """
    (token,) = a.exactly(args.split(), 1, "the downtime id")
    outcome = ctx.core.verdict(a.downtime_id(token), "preapproved")
    ctx.outcome(f"Downtime #{outcome.downtime.id}: pre-approved by {ctx.actor.who}.", outcome)


@command("downtime object", role="preapprovers", examples=["!downtime object 7 -- chemspill release that day"])
async def object_(ctx: Ctx, args: str) -> None:
    """downtime object <id> -- <reason>

    A pre-approver objects; the downtime cannot be announced while the objection stands
    (the same pre-approver's !downtime preapprove withdraws it).
    """
    downtime_id, reason = a.id_and_reason(args)
    outcome = ctx.core.verdict(downtime_id, "objected", reason)
    ctx.outcome(f"Downtime #{outcome.downtime.id}: objection by {ctx.actor.who} recorded; CiDuty is told.", outcome)


@command("downtime notice", examples=["!downtime notice 7"], cacheable=True)
async def notice(ctx: Ctx, args: str) -> None:
    """downtime notice <id>

    Preview the notice as it will be mailed.
    """
    (token,) = a.exactly(args.split(), 1, "the downtime id")
    ctx.reply(ctx.core.notice(a.downtime_id(token)))


@command("downtime announce", role="ciduty", examples=["!downtime announce 7", "!downtime announce 7 --force -- chemspill fix must land"])
async def announce(ctx: Ctx, args: str) -> None:
    """downtime announce <id> [--force -- <reason>]

    Post the notice to the channels and mail it to the lists. Refused when a hard rule
    fails (notice, overlap, blackout) or a pre-approver objects, unless forced with a reason.
    """
    head, reason = a.split_wording(args)
    words = head.split()
    force = a.FORCE in words
    words = [w for w in words if w != a.FORCE]
    (token,) = a.exactly(words, 1, "the downtime id")
    if force and not reason:
        raise UsageError("--force needs a reason after ' -- '")
    if reason and not force:
        raise UsageError("a reason after -- goes with --force")
    outcome = ctx.core.announce(a.downtime_id(token), reason if force else None)
    d = outcome.downtime
    ctx.outcome(f"Downtime #{d.id} announced for {_when(ctx, d.start_at)}.", outcome)


@command("downtime reschedule", role="ciduty", examples=["!downtime reschedule 7 2026-12-06 14:00 UTC for 3h"])
async def reschedule(ctx: Ctx, args: str) -> None:
    """downtime reschedule <id> <start> [for <duration>]

    Move a downtime. After approval the pre-approvals are reset; after the announcement
    it must be announced again, and everyone told before is told of the change.
    """
    token, _, rest = args.partition(" ")
    downtime_id = a.downtime_id(token) if token else None
    if downtime_id is None:
        raise UsageError("missing the downtime id")
    start_text, sep, duration_text = rest.rpartition(" for ") if " for " in f" {rest}" else (rest, "", "")
    if rest.lower().startswith("for "):
        raise UsageError("the new start time is missing")
    start = a.start_time(start_text.strip(), ctx.now)
    duration = a.duration(duration_text.strip()) if sep else None
    outcome = ctx.core.reschedule(downtime_id, start, duration)
    d = outcome.downtime
    ctx.outcome(f"Downtime #{d.id} rescheduled to {_when(ctx, d.start_at)} for {a.format_duration(d.duration)}.", outcome)


@command("downtime extend", role="ciduty", examples=["!downtime extend 7 30m"])
async def extend(ctx: Ctx, args: str) -> None:
    """downtime extend <id> <duration>

    Make a downtime longer (announced or running); everyone is told the new end.
    """
    token, length = a.exactly(args.split(), 2, "the downtime id and the extra time")
    outcome = ctx.core.extend(a.downtime_id(token), a.duration(length))
    ctx.outcome(f"Downtime #{outcome.downtime.id} now ends at {_when(ctx, outcome.downtime.end_at)}.", outcome)


@command("downtime cancel", role="ciduty", examples=["!downtime cancel 7 -- chemspill release"])
async def cancel(ctx: Ctx, args: str) -> None:
    """downtime cancel <id> -- <reason>

    Cancel a downtime; every channel and list told before is told again.
    """
    outcome = ctx.core.cancel(*a.id_and_reason(args))
    ctx.outcome(f"Downtime #{outcome.downtime.id} cancelled.", outcome)


@command("downtime start", role="ciduty", examples=["!downtime start 7"])
async def start(ctx: Ctx, args: str) -> None:
    """downtime start <id> [--force]

    Start an announced downtime: the sheriffs are pinged in the announce channel and the
    trees close. More than an hour before the announced start it needs --force.
    """
    words = args.split()
    force = a.FORCE in words
    (token,) = a.exactly([w for w in words if w != a.FORCE], 1, "the downtime id")
    outcome = ctx.core.start(a.downtime_id(token), force=force)
    ctx.outcome(f"Downtime #{outcome.downtime.id} started; sheriffs notified.", outcome)


@command("downtime done", examples=["!downtime done 7 1234567 landed", "!downtime done 7 1234568 rolled-back -- db migration failed"])
async def done(ctx: Ctx, args: str) -> None:
    """downtime done <id> <bug> landed|landed-and-stuck|rolled-back|not-done [-- <note>]

    Record what happened to one bug (CiDuty or the requester).
    """
    head, note = a.split_wording(args)
    words = head.split()
    dt_token, bug_token, outcome_name = a.exactly(words, 3, "the downtime id, the bug and the outcome")
    if outcome_name.lower() not in OUTCOMES:
        raise UsageError(f"'{outcome_name[:30]}' is not an outcome: use {'|'.join(OUTCOMES)}")
    outcome = ctx.core.done(a.downtime_id(dt_token), a.bug_number(bug_token), outcome_name.lower(), note or "")
    ctx.outcome(f"Bug {bug_token} in downtime #{outcome.downtime.id}: {outcome_name.lower()}.", outcome)


@command("downtime end", role="ciduty", examples=["!downtime end 7"])
async def end(ctx: Ctx, args: str) -> None:
    """downtime end <id>

    End a running downtime: the trees go back to how they were, the bugs get their
    outcome, and the TREE OPEN summary goes out.
    """
    (token,) = a.exactly(args.split(), 1, "the downtime id")
    outcome = ctx.core.end(a.downtime_id(token))
    ctx.outcome(f"Downtime #{outcome.downtime.id} ended: TREE OPEN sent; sheriffs, please verify.", outcome)


@command("downtime verify", role="sheriffs", examples=["!downtime verify 7"])
async def verify(ctx: Ctx, args: str) -> None:
    """downtime verify <id>

    A sheriff confirms the trees are open and all is well after the downtime.
    """
    (token,) = a.exactly(args.split(), 1, "the downtime id")
    outcome = ctx.core.verify(a.downtime_id(token))
    ctx.outcome(f"Downtime #{outcome.downtime.id} verified by {ctx.actor.who}. Thanks!", outcome)


@command("downtime queue", examples=["!downtime queue"])
async def queue(ctx: Ctx, args: str) -> None:
    """downtime queue

    Bugs nominated for a tree closure (needs-treeclosure?) that no downtime holds yet.
    """
    a.exactly(args.split(), 0, "")
    bugs = await ctx.bugzilla.nominated()
    held = ctx.core.held_bugs([b.id for b in bugs])
    ctx.reply(ctx.render("queue.txt", bugs=[b for b in bugs if b.id not in held], flag="needs-treeclosure"))


@command("downtime suggest", examples=["!downtime suggest 2h"])
async def suggest(ctx: Ctx, args: str) -> None:
    """downtime suggest <duration>

    The next three start times that pass every planning rule.
    """
    (length,) = a.exactly(args.split(), 1, "the duration")
    duration = a.duration(length)
    ctx.reply(ctx.render("suggest.txt", slots=ctx.core.suggest(duration), duration=duration))


@command("downtime merge", role="ciduty", examples=["!downtime merge 7 8"])
async def merge(ctx: Ctx, args: str) -> None:
    """downtime merge <id> <other-id>

    Consolidate: move the other downtime's bugs into this one and cancel the other.
    """
    first, second = a.exactly(args.split(), 2, "two downtime ids")
    outcome = ctx.core.merge(a.downtime_id(first), a.downtime_id(second))
    ctx.outcome(f"Downtime #{outcome.downtime.id} now holds the work of #{second.lstrip('#')}.", outcome)


@command("downtime systems", examples=["!downtime systems", "!downtime systems hg.mozilla.org"])
async def systems(ctx: Ctx, args: str) -> None:
    """downtime systems [<name>]

    The systems whose maintenance needs a coordinated RelEng + IT tree closure.
    """
    words = args.split()
    if len(words) > 1:
        raise UsageError(f"unexpected '{' '.join(words[1:])[:40]}'")
    if not words:
        ctx.reply(ctx.render("systems.txt", systems=sorted(ctx.systems.items()), requests=ctx.requests_channel))
        return
    name = words[0].lower()
    if name.endswith(".m.o"):  # the process document's shorthand for mozilla.org
        name = name[: -len(".m.o")] + ".mozilla.org"
    exact = {h: w for h, w in ctx.systems.items() if h.lower() == name}
    matches = exact or {h: w for h, w in ctx.systems.items() if name in h.lower()}
    if not matches:
        ctx.reply(
            f"{words[0][:60]} is not in the systems registry: work on it does not need a coordinated tree closure "
            f"as far as the bot knows; if unsure, ask CiDuty in {ctx.requests_channel}."
        )
    elif len(matches) == 1:
        host, what = next(iter(matches.items()))
        ctx.reply(
            f"{host} ({what}): work on it needs a coordinated tree-closing downtime with RelEng and IT, and advance "
            f"notice of the tree closure. Ask CiDuty in {ctx.requests_channel}."
        )
    else:
        ctx.reply(f"'{words[0][:40]}' matches {len(matches)} systems: {', '.join(sorted(matches))}")


@command("downtime history", examples=["!downtime history 7"], cacheable=True)
async def history(ctx: Ctx, args: str) -> None:
    """downtime history <id>

    The audit trail: who did what and when, from which state to which, and why.
    """
    (token,) = a.exactly(args.split(), 1, "the downtime id")
    downtime_id = a.downtime_id(token)
    ctx.reply(ctx.render("history.txt", events=ctx.core.history(downtime_id), id=downtime_id))


@command("downtime help", examples=["!downtime help", "!downtime help propose"])
async def help_(ctx: Ctx, args: str) -> None:
    """downtime help [<subcommand>]

    The commands, or the usage, description and example of one.
    """
    topic = " ".join(args.lower().split()).removeprefix(ctx.prefix).removeprefix("downtime ").strip()
    if not topic:
        names = [n.removeprefix("downtime ") for n in ctx.commands if n.startswith("downtime ")]
        others = [f"{ctx.prefix}{n}" for n in ctx.commands if not n.startswith("downtime ")]
        ctx.reply(
            f"Commands: {ctx.prefix}downtime {', '.join(names)}; also {', '.join(others)}. "
            f"Usage and an example: {ctx.prefix}downtime help <subcommand>"
        )
        return
    cmd = ctx.commands.get(f"downtime {topic}") or ctx.commands.get(topic)
    if cmd is None:
        raise UsageError(f"no such subcommand '{topic[:30]}'")
    lines = [f"{ctx.prefix}{cmd.usage}"]
    if cmd.help:
        lines.append(" ".join(cmd.help.split()))
    if cmd.role != "anyone":
        lines.append(f"Who: {cmd.role} (admins may do everything).")
    lines.extend(f"Example: {e.replace('!', ctx.prefix, 1)}" for e in cmd.examples[:2])
    ctx.reply("\n".join(lines))

