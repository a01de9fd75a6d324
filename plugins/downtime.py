"""!downtime: propose, plan, announce, run and close tree-closing downtimes."""
from __future__ import annotations

import re
from collections.abc import Callable

from models.confidential import told, told_found
from models.lifecycle import OUTCOMES, DomainError
from models.service import Downtimes
from plugins import args as a
from plugins.context import CommandContext as Ctx
from plugins.context import Preflight
from plugins.help import explain
from plugins.registry import UsageError, command



async def _look_up(pre: Preflight, bugs: list[int], rights: Callable[[Downtimes], None]) -> None:
    """Ask Bugzilla about `bugs` (one request), once `rights` let the sender have them
    nominated; a refused sender is told by the handler and costs no request."""
    if not bugs:
        return
    try:
        pre.rights(rights)
    except DomainError:
        return
    try:
        pre.bugs = await pre.bugzilla.lookup_many(bugs)
    except DomainError as err:
        pre.refusal = err


async def _proposal_bugs(pre: Preflight, args: str) -> None:
    head, wording = a.split_wording(args)
    try:
        bugs = a.proposal(head, pre.now)[2] if wording else []
    except UsageError:
        return  # the handler says what is wrong
    await _look_up(pre, bugs, lambda d: d.may_propose(bugs))


@command(
    "downtime propose",
    prepare=_proposal_bugs,
    examples=["!downtime propose 2026-12-05 14:00 UTC for 2h bug 1234567 trees autoland -- Upgrade the hg servers"],
)
async def propose(ctx: Ctx, args: str) -> None:
    """downtime propose <start> for <duration> [bug <n>[,<n>…]] [trees <tree>[,<tree>…]] -- <notice wording>

    Ask for a tree-closing downtime. The wording after -- goes into the notice.
    The planning rules are checked at once and any that fail are shown as warnings.
    A bug another downtime holds is refused. Asked outside the requests channel,
    CiDuty is told there.
    """
    head, wording = a.split_wording(args)
    if wording is None:
        raise UsageError("wording_missing")
    if not wording:
        raise UsageError("wording_empty")
    start, duration, bugs, trees = a.proposal(head, ctx.now)
    infos = ctx.looked_up().bugs if bugs else {}
    outcome = ctx.downtimes.propose(start, duration, wording, bugs=bugs, trees=trees)
    for info in infos.values():
        if info is not None:
            ctx.downtimes.add_bug(outcome.downtime.id, info.id, summary=info.summary, assignee=info.assignee,
                                  security=info.restricted)
    ctx.outcome("proposed", outcome)


@command("downtime list", examples=["!downtime list", "!downtime list past 2"], read_only=True)
async def list_(ctx: Ctx, args: str) -> None:
    """downtime list [upcoming|past|all] [<page>]

    The downtimes, ten per page, soonest first (newest first for past and all). Upcoming
    holds the running ones, even past their planned end; past holds the finished ones.
    """
    words = args.split()
    which = "upcoming"
    if words and words[0].lower() in ("upcoming", "past", "all"):
        which = words.pop(0).lower()
    page = 1
    if words:
        page = a.number(words[0], 6) or 0
        if page < 1:
            raise UsageError("not_a_page", token=words[0][:20])
        words.pop(0)
    a.exactly(words, 0, "")
    rows, pages = ctx.queries.listing(which, page)
    if page > pages:
        raise DomainError("no_such_page", pages=pages, which=which)
    ctx.say("list.txt", rows=rows, which=which, page=page, pages=pages)


@command("downtime show", examples=["!downtime show 7"], cacheable=True)
async def show(ctx: Ctx, args: str) -> None:
    """downtime show <id>

    Everything about one downtime: times, state, bugs, verdicts, pending changes.
    Security-sensitive bugs are described in full only privately, to CiDuty and the requester.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    d = ctx.queries.detail(a.downtime_id(token))
    full = ctx.audience.reads_confidential(d.requester, d.requester_network)
    ctx.say("show.txt", d=d, bugs=told(d.bugs, full, fallback="-"), pending=d.pending,
            confirmations=ctx.queries.confirmations(d))


async def _added_bug(pre: Preflight, args: str) -> None:
    words = [w for w in a.split_wording(args)[0].split() if w != "--security"]
    try:
        downtime_id, bug = a.downtime_id(words[0]), a.bug_number(words[1])
    except (UsageError, IndexError):
        return  # the handler says what is wrong
    await _look_up(pre, [bug], lambda d: d.may_add_bug(downtime_id, bug))


@command(
    "downtime bug add",
    role="ciduty, or the requester until it starts (after the announcement CiDuty approves it)",
    prepare=_added_bug,
    examples=["!downtime bug add 7 1234567 -- Move the build database"],
)
async def bug_add(ctx: Ctx, args: str) -> None:
    """downtime bug add <id> <bug> [--security] [-- <wording>]

    Add a bug to a downtime, with the words the notice should use for it.
    --security (or a restricted bug) makes the notice describe it vaguely.
    After the approval it waits for CiDuty's !downtime approve; once approved, an
    announced downtime's updated notice goes to everyone told before.
    """
    head, wording = a.split_wording(args)
    words = head.split()
    security = "--security" in words
    words = [w for w in words if w != "--security"]
    if wording is not None and not wording:
        raise UsageError("bug_wording_empty")
    dt_token, bug_token = a.exactly(words, 2, "id_bug")
    downtime_id, bug = a.downtime_id(dt_token), a.bug_number(bug_token)
    info = ctx.looked_up().bugs.get(bug)
    outcome = ctx.downtimes.add_bug(
        downtime_id,
        bug,
        wording=wording or "",
        security=security or bool(info and info.restricted),
        summary=info.summary if info else "",
        assignee=info.assignee if info else "",
    )
    ctx.outcome("bug_added", outcome, bug=next(b for b in outcome.downtime.bugs if b.bug == bug))


@command(
    "downtime bug drop",
    role="ciduty, or the requester until it starts (after the announcement CiDuty approves it)",
    examples=["!downtime bug drop 7 1234567"],
)
async def bug_drop(ctx: Ctx, args: str) -> None:
    """downtime bug drop <id> <bug>

    Take a bug out of a downtime. The requester's drop from an announced downtime
    waits for CiDuty's !downtime approve; then the updated notice goes out.
    """
    dt_token, bug_token = a.exactly(args.split(), 2, "id_bug")
    downtime_id, bug = a.downtime_id(dt_token), a.bug_number(bug_token)
    outcome = ctx.downtimes.drop_bug(downtime_id, bug)
    pending = any(b.bug == bug for b in outcome.downtime.bugs)
    ctx.outcome("bug_dropped", outcome, bug=bug, pending=pending)


@command("downtime approve", role="ciduty", examples=["!downtime approve 7"])
async def approve(ctx: Ctx, args: str) -> None:
    """downtime approve <id>

    CiDuty approves a proposal: its bugs get needs-treeclosure+ and the time in the
    whiteboard, and the draft notice goes to the pre-approvers. Once approved or
    announced, it approves the bugs and changes added since (a bug with nobody
    assigned waits); an announced downtime's updated notice goes to everyone told before.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    outcome = ctx.downtimes.approve(a.downtime_id(token))
    ctx.outcome("changes_approved" if outcome.facts else "approved", outcome, **outcome.facts)


@command("downtime reject", role="ciduty", examples=["!downtime reject 7 -- clashes with the 147 release"])
async def reject(ctx: Ctx, args: str) -> None:
    """downtime reject <id> -- <reason>

    CiDuty turns a proposal down; the requester is told why.
    """
    ctx.outcome("rejected", ctx.downtimes.reject(*a.id_and_reason(args)))


@command("downtime preapprove", role="preapprovers", examples=["!downtime preapprove 7"])
async def preapprove(ctx: Ctx, args: str) -> None:
    """downtime preapprove <id>

    A pre-approver has no objection to the draft notice. After their own objection it
    withdraws that objection (CiDuty is told). A reschedule to a new time resets it.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    ctx.outcome("preapproved", ctx.downtimes.verdict(a.downtime_id(token), "preapproved"))


@command("downtime object", role="preapprovers", examples=["!downtime object 7 -- chemspill release that day"])
async def object_(ctx: Ctx, args: str) -> None:
    """downtime object <id> -- <reason>

    A pre-approver objects; the downtime cannot be announced while the objection stands
    (the same pre-approver's !downtime preapprove withdraws it; a reschedule does not;
    CiDuty may announce over it with --force and a reason, and the objector is told).
    """
    downtime_id, reason = a.id_and_reason(args)
    ctx.outcome("objected", ctx.downtimes.verdict(downtime_id, "objected", reason))


@command("downtime confirm", role="the people working in the downtime", admins_too=False, examples=["!downtime confirm 7"])
async def confirm(ctx: Ctx, args: str) -> None:
    """downtime confirm <id>

    Someone working in the downtime (its requester, or the assignee of one of its bugs,
    linked to their chat account in [people]) confirms the wording of the draft notice.
    The draft exists once the downtime is approved; a new time asks for it again.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    ctx.outcome("confirmed", ctx.downtimes.confirm(a.downtime_id(token)))


@command("downtime notice", examples=["!downtime notice 7"], cacheable=True)
async def notice(ctx: Ctx, args: str) -> None:
    """downtime notice <id>

    Preview the notice as it will be mailed.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    d = ctx.queries.get(a.downtime_id(token))
    # A bug waiting to join an announced downtime is not in its notice until CiDuty approves it.
    ctx.say("notice.txt", d=d, bugs=told([b for b in d.bugs if b.pending != "add"], full=False, fallback=d.summary))


@command("downtime announce", role="ciduty", examples=["!downtime announce 7", "!downtime announce 7 --force -- chemspill fix must land"])
async def announce(ctx: Ctx, args: str) -> None:
    """downtime announce <id> [--force -- <reason>]

    Post the notice to the channels and mail it to the lists. Refused when a hard rule
    fails (notice, overlap, blackout) or a pre-approver objects, unless forced with a reason
    (the objections forced over are cleared and their objectors told). The pre-approvers who
    have not answered and the workers who have not confirmed the draft are named.
    """
    head, reason = a.split_wording(args)
    words = head.split()
    force = a.FORCE in words
    words = [w for w in words if w != a.FORCE]
    (token,) = a.exactly(words, 1, "id")
    if force and not reason:
        raise UsageError("force_needs_reason")
    if reason and not force:
        raise UsageError("reason_needs_force")
    ctx.outcome("announced", ctx.downtimes.announce(a.downtime_id(token), reason if force else None))


@command("downtime reschedule", role="ciduty", examples=["!downtime reschedule 7 2026-12-06 14:00 UTC for 3h"])
async def reschedule(ctx: Ctx, args: str) -> None:
    """downtime reschedule <id> <start> [for <duration>]

    Move a downtime. A new time resets the pre-approvals and the confirmations (not the
    objections) and, after approval, sends the draft again; after the announcement it must
    be announced again, and everyone told before is told of the change. The same start and
    duration change nothing.
    """
    token, _, rest = args.partition(" ")
    downtime_id = a.downtime_id(token) if token else None
    if downtime_id is None:
        raise UsageError("missing", what="id")
    start_text, sep, duration_text = rest.rpartition(" for ") if " for " in f" {rest}" else (rest, "", "")
    if rest.lower().startswith("for "):
        raise UsageError("start_missing")
    start = a.start_time(start_text.strip(), ctx.now)
    duration = a.duration(duration_text.strip()) if sep else None
    ctx.outcome("rescheduled", ctx.downtimes.reschedule(downtime_id, start, duration))


@command("downtime extend", role="ciduty", examples=["!downtime extend 7 30m"])
async def extend(ctx: Ctx, args: str) -> None:
    """downtime extend <id> <duration>

    Make a downtime longer (announced or running); everyone is told the new end.
    """
    ctx.outcome("extended", ctx.downtimes.extend(*a.id_and_duration(args)))


@command(
    "downtime cancel",
    role="ciduty, or the requester until it is announced",
    examples=["!downtime cancel 7 -- chemspill release"],
)
async def cancel(ctx: Ctx, args: str) -> None:
    """downtime cancel <id> -- <reason>

    Cancel a downtime; every channel and list told before is told again, with the reason.
    The requester may withdraw their own until it is announced (CiDuty is told).
    """
    outcome = ctx.downtimes.cancel(*a.id_and_reason(args))
    ctx.outcome("withdrawn" if outcome.facts.get("withdrawn") else "cancelled", outcome)


@command(
    "downtime edit",
    role="ciduty until it ends, or the requester while it is proposed",
    examples=["!downtime edit 7 -- Upgrade the hg servers and their load balancer"],
)
async def edit(ctx: Ctx, args: str) -> None:
    """downtime edit <id> -- <wording>

    Change the notice wording. After the announcement the updated notice goes to
    everyone told before; the history keeps the old wording and the new.
    """
    head, wording = a.split_wording(args)
    (token,) = a.exactly(head.split(), 1, "id")
    if wording is None:
        raise UsageError("wording_missing")
    if not wording:
        raise UsageError("wording_empty")
    ctx.outcome("edited", ctx.downtimes.edit(a.downtime_id(token), wording))


@command("downtime start", role="ciduty", examples=["!downtime start 7"])
async def start(ctx: Ctx, args: str) -> None:
    """downtime start <id> [--force]

    Start an announced downtime: the sheriffs are pinged in the announce channel and the
    trees close. More than an hour before the announced start it needs --force, and then
    the expected end moves to now plus the planned duration.
    """
    words = args.split()
    force = a.FORCE in words
    (token,) = a.exactly([w for w in words if w != a.FORCE], 1, "id")
    ctx.outcome("started", ctx.downtimes.start(a.downtime_id(token), force=force))


@command(
    "downtime done",
    role="ciduty, or the requester while it is in progress",
    examples=["!downtime done 7 1234567 landed", "!downtime done 7 1234568 rolled-back -- db migration failed"],
)
async def done(ctx: Ctx, args: str) -> None:
    """downtime done <id> <bug> landed|landed-and-stuck|rolled-back|not-done [-- <note>]

    Record what happened to one bug (CiDuty, or the requester while it is in progress).
    After the end it corrects the TREE OPEN: told where that went, and on the bug.
    """
    head, note = a.split_wording(args)
    words = head.split()
    dt_token, bug_token, outcome_name = a.exactly(words, 3, "id_bug_outcome")
    if outcome_name.lower() not in OUTCOMES:
        raise UsageError("not_an_outcome", token=outcome_name[:30], outcomes=list(OUTCOMES))
    bug = a.bug_number(bug_token)
    outcome = ctx.downtimes.done(a.downtime_id(dt_token), bug, outcome_name.lower(), note or "")
    ctx.outcome("done", outcome, bug=bug, status=outcome_name.lower())


@command("downtime end", role="ciduty", examples=["!downtime end 7"])
async def end(ctx: Ctx, args: str) -> None:
    """downtime end <id>

    End a running downtime: the trees go back to how they were, the bugs get their
    outcome, and the TREE OPEN summary goes out, naming the bugs with no outcome and
    the trees someone else's closure keeps closed.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    ctx.outcome("ended", ctx.downtimes.end(a.downtime_id(token)))


@command("downtime verify", role="sheriffs", examples=["!downtime verify 7"])
async def verify(ctx: Ctx, args: str) -> None:
    """downtime verify <id>

    A sheriff confirms the trees are open and all is well after the downtime.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    ctx.outcome("verified", ctx.downtimes.verify(a.downtime_id(token)))


async def _nominated(pre: Preflight, args: str) -> None:
    if args.split():
        return  # the handler says what is wrong
    try:
        pre.nominated = await pre.bugzilla.nominated()
    except DomainError as err:
        pre.refusal = err


@command("downtime queue", prepare=_nominated, examples=["!downtime queue"], read_only=True)
async def queue(ctx: Ctx, args: str) -> None:
    """downtime queue

    Bugs nominated for a tree closure (needs-treeclosure?) that no downtime holds yet.
    Restricted bugs are described only privately, to CiDuty.
    """
    a.exactly(args.split(), 0, "")
    bugs = ctx.looked_up().nominated
    held = ctx.queries.holders([b.id for b in bugs])
    waiting = told_found([b for b in bugs if b.id not in held], ctx.audience.reads_confidential())
    ctx.say("queue.txt", bugs=waiting, flag=ctx.work.settings.bugzilla_flag)


@command("downtime suggest", examples=["!downtime suggest 2h"], read_only=True)
async def suggest(ctx: Ctx, args: str) -> None:
    """downtime suggest <duration>

    The next three start times that pass every planning rule.
    """
    if not args.split():
        raise UsageError("missing", what="duration")
    duration = a.duration(" ".join(args.split()))
    ctx.say("suggest.txt", slots=ctx.queries.suggest(duration), duration=duration)


@command("downtime merge", role="ciduty", examples=["!downtime merge 7 8"])
async def merge(ctx: Ctx, args: str) -> None:
    """downtime merge <id> <other-id>

    Consolidate: move the other downtime's bugs into this one and cancel the other.
    This one may be proposed, approved or announced, the other proposed or approved;
    into an approved or announced one the bugs are approved at once, and an announced
    one's updated notice goes to everyone told before.
    """
    first, second = a.exactly(args.split(), 2, "two_ids")
    other = a.downtime_id(second)
    ctx.outcome("merged", ctx.downtimes.merge(a.downtime_id(first), other), other=other)


@command("downtime systems", examples=["!downtime systems", "!downtime systems hg.mozilla.org"], read_only=True)
async def systems(ctx: Ctx, args: str) -> None:
    """downtime systems [<name>]

    The systems whose maintenance needs a coordinated RelEng + IT tree closure.
    """
    words = args.split()
    a.exactly(words[1:], 0, "")
    if not words:
        ctx.say("systems.txt", systems=sorted(ctx.systems.items()), requests=ctx.requests_channel)
        return
    name = words[0].lower()
    if name.endswith(".m.o"):  # the process document's shorthand for mozilla.org
        name = name[: -len(".m.o")] + ".mozilla.org"
    exact = {h: w for h, w in ctx.systems.items() if h.lower() == name}
    matches = exact or {h: w for h, w in ctx.systems.items() if name in h.lower()}
    ctx.say("system.txt", host=words[0][:60], matches=sorted(matches.items()), requests=ctx.requests_channel)


@command("downtime history", examples=["!downtime history 7"], cacheable=True)
async def history(ctx: Ctx, args: str) -> None:
    """downtime history <id>

    The audit trail: who did what and when, from which state to which, and why.
    """
    (token,) = a.exactly(args.split(), 1, "id")
    downtime_id = a.downtime_id(token)
    ctx.say("history.txt", events=ctx.queries.history(downtime_id), id=downtime_id)


@command("downtime help", examples=["!downtime help", "!downtime help propose"], read_only=True)
async def help_(ctx: Ctx, args: str) -> None:
    """downtime help [<subcommand>]

    The commands, or the usage, description and example of one.
    """
    explain(ctx, "downtime", args)
