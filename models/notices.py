"""What the bot says when a reminder falls due, or when a mail cannot be delivered.

Pure like the rest of the core: it adds outbox rows to the caller's session (the
caller commits); the outbox keys make each notice go out once, whoever queues it
and however often.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Set

from sqlalchemy.orm import Session

from models import reminders as plan
from models.lifecycle import DomainError, Role, State
from models.orm import Downtime, OutboxMessage
from models.outbox import Outbox
from models.service import Actor, Core, Settings

log = logging.getLogger(__name__)

Render = Callable[..., str]
# Reminders this near the start (or nearer) ping CiDuty and the sheriffs by name.
PING_WITHIN = dt.timedelta(hours=1)


def bot_actor(nick: str) -> Actor:
    """The bot itself, when it acts on its own ([policy] auto_start): audited under its nick."""
    return Actor(account=nick, network="bot", nick=nick, roles=frozenset({Role.CIDUTY}))


def queue_reminder(
    session: Session,
    *,
    now: dt.datetime,
    settings: Settings,
    render: Render,
    downtime: Downtime,
    reminder: plan.Reminder,
    late: bool,
    nick: str,
    queued: Set[str] | None = None,
) -> bool:
    """Queue the chat lines of `reminder` (or, for the start with auto_start, start the downtime).

    Returns True when something was queued (False: it had been queued before).
    """
    requests, announce = settings.requests_channel, settings.announce_channel
    channels = list(dict.fromkeys([announce, requests]))
    ciduty, both = settings.ciduty, tuple(dict.fromkeys([*settings.ciduty, *settings.sheriffs]))
    kind = reminder.kind
    if kind == plan.START and settings.policy.auto_start and State(downtime.state) is State.ANNOUNCED:
        started = _auto_start(session, now=now, settings=settings, render=render, downtime=downtime, nick=nick)
        if started:
            return True
    outbox = Outbox(session, now=now, networks=settings.networks, queued=queued)
    text = render("reminder.txt", d=downtime, kind=kind, late=late, auto_start=settings.policy.auto_start)
    if reminder.is_offset:
        assert reminder.offset is not None
        targets, mentions = channels, (both if reminder.offset <= PING_WITHIN else ())
    elif kind == plan.START:
        targets, mentions = channels, both
    else:  # end, overrun, undecided, unannounced: CiDuty's business
        targets, mentions = [requests], ciduty
    for target in targets:
        outbox.chat(reminder.job_id, target, text, mentions=mentions, downtime_id=downtime.id)
    queued = bool(outbox.added)
    outbox.write()
    if queued and reminder.is_offset:
        core = Core(session, now=now, settings=settings, render=render, actor=bot_actor(nick))
        core.mail_reminder(downtime, reminder.job_id, kind)
        core.outbox.write()
    return queued


def _auto_start(
    session: Session, *, now: dt.datetime, settings: Settings, render: Render, downtime: Downtime, nick: str
) -> bool:
    core = Core(session, now=now, settings=settings, render=render, actor=bot_actor(nick))
    try:
        # Core.start refuses (state, role, too early) before it changes anything.
        core.start(downtime.id)
        core.outbox.write()
    except DomainError as err:
        log.warning("auto_start of downtime #%s refused (%s): reminding CiDuty instead", downtime.id, err)
        return False
    log.info("downtime #%s started by the bot ([policy] auto_start)", downtime.id)
    return True


def queue_mail_failure(
    session: Session,
    *,
    now: dt.datetime,
    settings: Settings,
    render: Render,
    row: OutboxMessage,
    reason: str,
    final: bool,
) -> bool:
    """Tell CiDuty in the requests channel that a mail keeps failing (once per mail)."""
    outbox = Outbox(session, now=now, networks=settings.networks)
    text = render(
        "mail_failed.txt",
        subject=row.payload.get("subject", ""),
        to=row.payload.get("to", []),
        reason=reason,
        final=final,
        attempts=row.attempts + 1,
    )
    outbox.chat(
        f"mail-failed:{row.key}",
        settings.requests_channel,
        text,
        mentions=settings.ciduty,
        downtime_id=row.downtime_id,
    )
    queued = bool(outbox.added)
    outbox.write()
    return queued
