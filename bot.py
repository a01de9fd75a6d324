"""downtime-bot: the composition root.

    python bot.py [--config FILE] [--console] [--check-config]

Reads config.ini, builds every part, and runs one asyncio loop until stopped
(or, in console mode with piped input, until the input ends and everything
queued has been delivered).
"""
from __future__ import annotations

import argparse
import asyncio

import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from adapters import config as configuration
from adapters.calendar import downtime_invitation
from adapters.clock import Clock, SystemClock
from adapters.console import ConsoleTransport
from adapters.db import make_engine, migrate, session_factory
from adapters.mail import Mail, Mailer, MailConfig, MailError, MailRejected, PrintMailer, SmtpMailer
from adapters.outbox import OutboxWorker, Permanent, Retry
from adapters.scheduler import ReminderScheduler
from adapters.templates import Renderer
from adapters.transport import Outgoing, Transport, TransportUnavailable
from models.lifecycle import Role
from models.notices import queue_mail_failure
from models.orm import Downtime, OutboxMessage
from models.service import MailRouting, Settings
from plugins.dispatcher import Dispatcher

log = logging.getLogger("downtimebot")
HERE = Path(__file__).resolve().parent
# A mail still failing after this many deliveries (each with the mailer's own retries) is reported.
MAIL_REPORT_AFTER = 3


def settings_from(config: configuration.Config, networks: Sequence[str]) -> Settings:
    return Settings(
        policy=config.policy,
        requests_channel=config.channels.requests,
        announce_channel=config.channels.announce,
        networks=tuple(networks),
        trees=config.trees.names,
        tree_backend=config.trees.backend,
        systems=config.systems,
        bugzilla_enabled=config.bugzilla.enabled,
        bugzilla_flag=config.bugzilla.flag,
        mail=MailRouting(
            configured=config.mail.configured,
            preapprovers=config.mail.preapprovers,
            cc=config.mail.cc,
            announce_to=config.mail.announce_to,
            copy_to=config.mail.copy_to,
            people=config.people,
        ),
        ciduty=tuple(config.roles.accounts(Role.CIDUTY)),
        sheriffs=tuple(config.roles.accounts(Role.SHERIFF)),
    )


def mailer_from(config: configuration.Config, stdout: TextIO) -> Mailer:
    m = config.mail
    if not m.configured:
        return PrintMailer(stdout, m.sender)
    return SmtpMailer(
        MailConfig(
            host=m.host,
            port=m.port,
            security="tls" if m.tls else "starttls" if m.starttls else "none",
            username=m.username or None,
            password=os.environ.get(m.password_env) if m.username else None,
            sender=m.sender,
        )
    )


class Bot:
    """Everything wired together; `run` until stopped."""

    def __init__(
        self,
        config: configuration.Config,
        *,
        transports: dict[str, Transport],
        clock: Clock | None = None,
        mailer: Mailer | None = None,
        stdout: TextIO | None = None,
    ):
        self.config = config
        self.clock = clock or SystemClock()
        self.transports = transports
        self.engine = make_engine(config.bot.database, base=HERE)
        migrate(self.engine)
        self.sessions = session_factory(self.engine)
        self.render = Renderer(
            zones=config.bot.display_timezones,
            prefix=config.bot.command_prefix,
            trees=config.trees.names,
            links=config.notice,
        )
        self.settings = settings_from(config, list(transports))
        self.mailer = mailer or mailer_from(config, stdout or sys.stdout)
        self.mail_domain = config.mail.sender.rpartition("@")[2].rstrip(">") or "downtimebot.localhost"
        self.workers = [
            OutboxWorker(self.sessions, self.clock, kind="chat", network=name, deliver=self._chat_sender(t))
            for name, t in transports.items()
        ]
        self.workers.append(OutboxWorker(self.sessions, self.clock, kind="mail", deliver=self._send_mail))
        self.dispatcher = Dispatcher(
            sessions=self.sessions,
            clock=self.clock,
            settings=self.settings,
            render=self.render,
            roles_of=config.roles.roles_of,
            send_direct=self._send_direct,
            prefix=config.bot.command_prefix,
            push=config.push,
            systems=config.systems,
            on_change=self.poke,
        )
        self.reminders = ReminderScheduler(
            self.sessions, self.clock, self.settings, self.render, nick=config.bot.nick, on_queued=self._poke_workers
        )
        self._tasks: list[asyncio.Task[None]] = []

    def poke(self) -> None:
        """Something changed: deliver the outbox and re-derive the reminder jobs."""
        self._poke_workers()
        self.reminders.poke()

    def _poke_workers(self) -> None:
        for worker in self.workers:
            worker.poke()

    def _chat_sender(self, transport: Transport):  # type: ignore[no-untyped-def]
        async def deliver(row: OutboxMessage) -> None:
            try:
                await transport.send(
                    Outgoing(row.target, row.body, mentions=tuple(row.payload.get("mentions", ())))
                )
            except TransportUnavailable as err:
                raise Retry(str(err) or "not connected") from err

        return deliver

    async def _send_direct(self, network: str, message: Outgoing) -> None:
        try:
            await self.transports[network].send(message)
        except TransportUnavailable:
            log.warning("reply to %s on %s lost: not connected (asking again answers again)", message.target, network)

    def _mail_of(self, row: OutboxMessage) -> Mail:
        p = row.payload
        thread = self._message_id(p["thread"]) if p.get("thread") else None
        ics = None
        calendar = p.get("calendar")
        if calendar and row.downtime_id is not None:
            with self.sessions() as session:
                d = session.get(Downtime, row.downtime_id)
                assert d is not None
                ics = downtime_invitation(
                    uid=f"downtime-{d.id}@{self.mail_domain}",
                    sequence=int(calendar["sequence"]),
                    start=d.start_at,
                    end=d.end_at,
                    summary=f"Tree-closing downtime #{d.id}",
                    description=d.summary,
                    organizer=self.config.mail.sender,
                    status=calendar["status"],
                    method=calendar["method"],
                    now=row.created_at,
                )
        return Mail(
            to=tuple(p["to"]),
            cc=tuple(p["cc"]),
            subject=p["subject"],
            body=row.body,
            message_id=self._message_id(row.key),
            in_reply_to=thread,
            references=(thread,) if thread else (),
            ics=ics,
            ics_method=calendar["method"] if calendar else "REQUEST",
            date=row.created_at,
        )

    def _message_id(self, key: str) -> str:
        """<dt1.r0.announce.mail@domain>: the outbox key, made a dot-atom (RFC 5322 has no ':' there)."""
        left = re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", ".", key).strip(".")
        return f"<{left}@{self.mail_domain}>"

    async def _send_mail(self, row: OutboxMessage) -> None:
        try:
            mail = self._mail_of(row)
        except ValueError as err:  # no recipient, a bad address: it can never be sent as it is
            self._report_mail_failure(row, str(err), final=True)
            raise Permanent(str(err)) from err
        try:
            await asyncio.to_thread(self.mailer.send, mail, self.clock.now())
        except MailRejected as err:
            self._report_mail_failure(row, str(err), final=True)
            raise Permanent(str(err)) from err
        except MailError as err:
            if row.attempts + 1 >= MAIL_REPORT_AFTER:
                self._report_mail_failure(row, str(err), final=False)
            raise Retry(str(err)) from err

    def _report_mail_failure(self, row: OutboxMessage, reason: str, *, final: bool) -> None:
        """Tell CiDuty in the requests channel, once per mail (the outbox key sees to it)."""
        with self.sessions() as session:
            queued = queue_mail_failure(
                session, now=self.clock.now(), settings=self.settings, render=self.render,
                row=row, reason=reason, final=final,
            )
            session.commit()
        if queued:
            for worker in self.workers:
                if worker.kind == "chat":
                    worker.poke()

    async def start(self) -> None:
        # Reminders first: what fell due while the bot was down is queued before any command.
        await self.reminders.start()
        for transport in self.transports.values():
            await transport.start(self.dispatcher.handle)
        self._tasks = [asyncio.create_task(w.run(), name=f"outbox-{w.name}") for w in self.workers]
        log.info("downtime-bot running: transports %s, database %s", ", ".join(self.transports), self.config.bot.database)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every worker has delivered all it can (used at the end of console input)."""
        self.poke()
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for worker in self.workers:
            await worker.deliver_pending()
            if loop.time() > deadline:
                break

    async def stop(self) -> None:
        self.reminders.stop()
        for worker in self.workers:
            worker.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for transport in self.transports.values():
            await transport.stop()
        self.engine.dispose()


def build_transports(config: configuration.Config, stdout: TextIO) -> dict[str, Transport]:
    transports: dict[str, Transport] = {}
    for name in config.bot.transports:
        if name == "console":
            transports[name] = ConsoleTransport(config.bot.nick, stdout=stdout)
        else:
            raise configuration.ConfigError(f"[bot] transports: {name} is not available in this version yet")
    return transports


async def amain(config: configuration.Config) -> int:
    transports = build_transports(config, sys.stdout)
    bot = Bot(config, transports=transports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bot.start()
    console = transports.get("console")
    waiters = [asyncio.create_task(stop.wait())]
    if isinstance(console, ConsoleTransport) and len(transports) == 1:
        waiters.append(asyncio.create_task(console.finished.wait()))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    await bot.drain()
    await bot.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="downtime-bot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: config.ini beside bot.py)")
    parser.add_argument("--console", action="store_true", help="run in console mode whatever [bot] transports says")
    parser.add_argument("--check-config", action="store_true", help="check the configuration and exit")
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("DOWNTIMEBOT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = configuration.load(options.config)
        if options.console:
            config = replace(config, bot=replace(config.bot, transports=("console",)))
    except configuration.ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    if options.check_config:
        print(f"{config.path}: OK (transports: {', '.join(config.bot.transports)})")
        return 0
    try:
        return asyncio.run(amain(config))
    except configuration.ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

