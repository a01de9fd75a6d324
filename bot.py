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
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from adapters import config as configuration
from adapters.clock import SystemClock
from adapters.console import ConsoleTransport
from adapters.db import (
    Checkpointer, CommitCounter, DatabaseUnavailable, display_url, make_engine, migrate, session_factory, url_password,
)
from adapters.leadership import Fence, Lease, Leadership, holds
from adapters.logsafe import protect
from adapters.mail import MailConfig, MailDelivery, PrintMailer, SmtpMailer
from adapters.outbox import OutboxWorker, chat_delivery
from adapters.scheduler import ReminderScheduler
from adapters.templates import Renderer
from models.lifecycle import Role
from models.ports import BugTracker, Clock, Incoming, Mailer, Transport, TreeService
from models.public import Visibility
from models.reactions import Reactions
from models.work import MailRouting, Settings
from plugins.context import NoBugzilla
from plugins.dispatcher import Dispatcher, all_commands
from plugins.ratelimit import RateLimit, RateLimiter
from plugins.senders import PerSender

if TYPE_CHECKING:  # the outside systems' clients are imported only when configured (memory, start-up)
    from adapters.bugzilla import BugzillaClient
    from adapters.bugzilla_jobs import BugzillaSync
    from adapters.irc import IrcConfig
    from adapters.matrix import MatrixConfig
    from adapters.metrics import Metrics
    from adapters.tree_jobs import TreeJobs
    from adapters.web.ops import Operations, VersionInfo
    from adapters.web.server import WebServer

log = logging.getLogger("downtimebot")
HERE = Path(__file__).resolve().parent
# A mail still failing after this many deliveries (each with the mailer's own retries) is reported.
MAIL_REPORT_AFTER = 3
# While Bugzilla is marked unavailable, the only request it gets: the health check, this often (seconds).
BUGZILLA_HEALTH_EVERY = 60.0


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
        nominate_roles=frozenset(config.bugzilla.nominate_roles),
        mail=MailRouting(
            configured=config.mail.configured,
            preapprovers=config.mail.preapprovers,
            cc=config.mail.cc,
            announce_to=config.mail.announce_to,
            copy_to=config.mail.copy_to,
            people=config.people,
            accounts=config.mail_accounts,
            remind_lists=config.mail.remind_lists,
        ),
        ciduty=tuple(config.roles.accounts(Role.CIDUTY)),
        sheriffs=tuple(config.roles.accounts(Role.SHERIFF)),
        preapprovers=tuple(config.roles.persons(Role.PREAPPROVER)),
    )


def bugzilla_from(config: configuration.Config) -> BugzillaClient:
    """The Bugzilla client for [bugzilla]; the API key comes from the environment only."""
    from adapters.bugzilla import BugzillaClient

    api_key = os.environ.get(config.bugzilla.api_key_env) or None
    if api_key is None:
        log.warning("[bugzilla] api_key_env: %s is not set; Bugzilla changes will be refused",
                    config.bugzilla.api_key_env)
    return BugzillaClient(config.bugzilla.url, api_key, flag=config.bugzilla.flag)


def mail_config(config: configuration.Config, environ: Mapping[str, str]) -> MailConfig:
    """[mail] as the SMTP mailer takes it, with the password read from `environ`."""
    m = config.mail
    try:
        return MailConfig(
            host=m.host,
            port=m.port,
            security="tls" if m.tls else "starttls" if m.starttls else "none",
            username=m.username or None,
            password=_secret(environ, "mail", "password_env", m.password_env) if m.username else None,
            sender=m.sender,
        )
    except ValueError as err:
        raise configuration.ConfigError(str(err)) from None


def mailer_from(config: configuration.Config, stdout: TextIO) -> Mailer:
    if not config.mail.configured:
        return PrintMailer(stdout, config.mail.sender)
    return SmtpMailer(mail_config(config, os.environ))


def treestatus_from(config: configuration.Config, client: TreeService | None) -> tuple[TreeService | None, TreeService | None]:
    """The Treestatus clients for [trees]: (the one that makes changes, the one that reads for !trees)."""
    t = config.trees
    if client is not None or not t.treestatus_url:
        return client, client
    from adapters.treestatus import TreestatusClient

    token = os.environ.get(t.treestatus_token_env)
    if t.backend == "treestatus" and not token:
        raise configuration.ConfigError(
            f"[trees] backend = treestatus needs the Treestatus token in the environment variable "
            f"{t.treestatus_token_env} (treestatus_token_env)"
        )
    writer = TreestatusClient(t.treestatus_url, token) if t.backend == "treestatus" else None
    # !trees waits for this one while other commands queue: fail fast.
    return writer, TreestatusClient(t.treestatus_url, token, timeout=5, retries=1)


def page_address(config: configuration.Config, visibility: Visibility) -> Callable[[Any], str]:
    """A downtime's public page for chat and mail: ``<base_url>/downtimes/<id>`` when [web]
    base_url is set and the downtime is public (models/public.py), else "". `downtime`: the ORM
    row or the show read model (models/detail.py), which both say `was_announced`."""
    base = config.web.base_url

    def page(downtime: Any) -> str:
        shown = visibility.shows(downtime.state, downtime.was_announced)
        return f"{base}/downtimes/{downtime.id}" if base and config.web.enabled and shown else ""

    return page


class Bot:
    """Everything wired together; `start` it, `stop` it."""

    def __init__(
        self,
        config: configuration.Config,
        *,
        transports: dict[str, Transport],
        clock: Clock | None = None,
        mailer: Mailer | None = None,
        stdout: TextIO | None = None,
        isolated_migrations: bool = False,
        bugzilla: BugTracker | None = None,
        treestatus: TreeService | None = None,
    ):
        """`bugzilla`: the tracker to use when [bugzilla] is enabled (default: a
        BugzillaClient for [bugzilla] url with the key from the environment)."""
        self.config = config
        self.clock = clock or SystemClock()
        self.transports = transports
        self.engine = make_engine(config.bot.database, base=HERE, background_checkpoints=True,
                                  password=database_password(config, os.environ))
        self.checkpointer = Checkpointer(self.engine)
        if config.ha.enabled:
            migrate_beside_others(self.engine, in_child=isolated_migrations)
        else:
            migrate(self.engine, in_child=isolated_migrations)
        # With [ha] another instance's commits count too (adapters/change_token.py).
        self.commits = CommitCounter(self.engine, shared=config.ha.enabled)
        self.sessions = session_factory(self.engine)
        # [ha]: only the leader speaks; every sender checks the fence (Fence.always() without [ha]).
        self.leadership: Leadership | None = None
        self.fence = Fence.always()
        if config.ha.enabled:
            self.leadership = Leadership(
                Lease(self.engine), config.ha.instance, config.ha.lease_seconds,
                on_elected=self._lead, on_deposed=self._stand_by,
            )
            self.fence = self.leadership.fence
            if "irc" in transports:  # the fence asked before each paced line, not once per message
                from adapters.irc import IrcTransport

                irc = transports["irc"]
                if isinstance(irc, IrcTransport):
                    irc.may_send = self.fence.check
        if "matrix" in transports:  # its sync position in the database: another instance resumes from it
            from adapters.matrix import DatabaseState, MatrixTransport

            matrix = transports["matrix"]
            if isinstance(matrix, MatrixTransport):
                # [ha]: written only under this instance's epoch; a refusal deposes it (it stops syncing).
                matrix.keep_state_in(DatabaseState(self.sessions, may_write=leading_writes(self.fence)),
                                     on_fenced=lambda: self.fence.lost("the database refused its Matrix sync position"))
                if self.leadership is not None:  # a deposed instance posts nothing, answers included
                    matrix.may_send = self.fence.check
        # Which downtimes anyone may read ([web] public_states): the web site's, and chat's links to it.
        self.visibility = Visibility(frozenset(config.web.public_states))
        self.render = Renderer(
            zones=config.bot.display_timezones,
            prefix=config.bot.command_prefix,
            trees=config.trees.names,
            links=config.notice,
            flag=config.bugzilla.flag,
            page_of=page_address(config, self.visibility),
        )
        self.settings = settings_from(config, list(transports))
        self.reactions = Reactions(self.settings, self.render)
        # The Prometheus metrics exist with the web server only (they are read at /metrics).
        self.version: VersionInfo | None = None
        self.operations: Operations | None = None  # what the operations endpoints read ([web] on)
        self.metrics: Metrics | None = self._metrics(transports) if config.web.enabled else None
        on_delivery = self.metrics.delivery if self.metrics is not None else None
        # [ha]: a look at the outbox now and then too (another instance may have queued a row).
        poll = config.ha.lease_seconds if self.leadership is not None else None
        self.workers: list[OutboxWorker] = []
        for name, t in transports.items():
            worker = OutboxWorker(self.sessions, self.clock, kind="chat", network=name, deliver=chat_delivery(t),
                                  on_delivery=on_delivery, fence=self.fence, poll_every=poll)
            t.on_connected = worker.poke  # back after an outage: deliver what waited, now
            self.workers.append(worker)
        mailer = mailer or mailer_from(config, stdout or sys.stdout)
        if self.metrics is not None and isinstance(mailer, SmtpMailer):
            mailer.on_request = self.metrics.request("smtp")
        self.mail = MailDelivery(
            mailer, sessions=self.sessions, clock=self.clock,
            reactions=self.reactions, sender=config.mail.sender, report_after=MAIL_REPORT_AFTER,
            on_queued=self._poke_chat,
        )
        self.workers.append(OutboxWorker(self.sessions, self.clock, kind="mail", deliver=self.mail.deliver,
                                         on_delivery=on_delivery, fence=self.fence, poll_every=poll))
        self.bugzilla: BugzillaSync | None = None
        if config.bugzilla.enabled:
            from adapters.bugzilla import BugzillaClient  # noqa: F811
            from adapters.bugzilla_jobs import BugzillaSync  # noqa: F811  (imported above for typing only)

            tracker = bugzilla or bugzilla_from(config)
            if self.metrics is not None and isinstance(tracker, BugzillaClient):
                tracker.observe(self.metrics.request("bugzilla"))
            self.bugzilla = BugzillaSync(
                tracker, sessions=self.sessions, clock=self.clock,
                reactions=self.reactions, product=config.bugzilla.product,
                report_after=config.bugzilla.report_after, on_queued=self._poke_chat,
            )
            self.workers.append(OutboxWorker(self.sessions, self.clock, kind="bugzilla", deliver=self.bugzilla.deliver,
                                             on_delivery=on_delivery, fence=self.fence, poll_every=poll))
        self.tree_jobs: TreeJobs | None = None
        self._treestatus: list[TreeService] = []
        if config.trees.backend != "builtin":
            from adapters.tree_jobs import TreeJobs  # noqa: F811

            writer, reader = treestatus_from(config, treestatus)
            self._treestatus = [c for c in (writer, reader) if c is not None]
            if self.metrics is not None:
                from adapters.treestatus import TreestatusClient

                for client in self._treestatus:
                    if isinstance(client, TreestatusClient):
                        client.on_request = self.metrics.request("treestatus")
            self.tree_jobs = TreeJobs(
                self.sessions, self.clock, self.reactions, client=writer, reader=reader,
                on_queued=self._poke_chat, account=config.bot.nick,
            )
            # First, so that the notes it queues are delivered in the same pass.
            self.workers.insert(0, OutboxWorker(self.sessions, self.clock, kind="trees", deliver=self.tree_jobs.deliver,
                                                on_delivery=on_delivery, fence=self.fence, poll_every=poll))
        self.dispatcher = Dispatcher(
            sessions=self.sessions,
            clock=self.clock,
            settings=self.settings,
            render=self.render,
            reactions=self.reactions,
            roles_of=config.roles.roles_of,
            transports=transports,
            prefix=config.bot.command_prefix,
            max_line=config.bot.max_line,
            push=config.push,
            systems=config.systems,
            trees_remote=self.tree_jobs.read_trees if self.tree_jobs and self.tree_jobs.reader else None,
            on_change=self.poke,
            generation=self.commits if self.leadership is None else self._generation,
            bugzilla=self.bugzilla.lookup if self.bugzilla else NoBugzilla(),
            rate_limiter=self._rate_limiter(config),
            on_command=self.metrics.command if self.metrics is not None else None,
        )
        # Per-sender ordering: transports hand each line on without waiting for the one before.
        self.senders = PerSender(self.dispatcher.handle if self.leadership is None else self._handle_if_leading)
        self.reminders = ReminderScheduler(
            self.sessions, self.clock, self.reactions, nick=config.bot.nick, on_queued=self._poke_workers,
            on_reminder=self.metrics.reminder if self.metrics is not None else None, fence=self.fence,
        )
        self.web: WebServer | None = self._web_server(config) if config.web.enabled else None
        self._tasks: list[asyncio.Task[None]] = []  # the running parts' tasks (the leader's, with [ha])
        self._background: list[asyncio.Task[None]] = []  # with [ha]: what runs whatever the role
        self._leading = False  # with [ha]: the leader's parts are started

    def _generation(self) -> int:
        """[ha]: the dispatcher's answers are kept while nothing is committed through this engine
        AND this instance leads in the same term (another instance wrote while it stood by)."""
        assert self.leadership is not None
        return self.commits() + self.leadership.terms

    async def _handle_if_leading(self, message: Incoming) -> None:
        """[ha]: a line reaching an instance that no longer leads (leaving chat) is not acted on:
        the new leader may have read it too, and an IRC line has no id to tell the two apart. A
        Matrix event is acted on all the same: its event id makes a second handling a no-op (the
        handled messages, the reply's outbox key), and Matrix must not count it as answered
        (its sync token would move past it) while nobody answered it."""
        if message.network != "matrix" and not self.fence.check():
            log.info("a line from %s on %s ignored: instance %s does not lead", message.nick, message.network,
                     self.fence.instance)
            return
        await self.dispatcher.handle(message)

    def _web_server(self, config: configuration.Config) -> WebServer:
        """The status page, feeds, API and operations endpoints ([web]); aiohttp is imported only then."""
        from adapters.mail import mail_domain
        from adapters.web.server import WebServer  # noqa: F811
        from adapters.web.changes import PublicChanges
        from adapters.web.site import Site
        site = Site(
            sessions=self.sessions, clock=self.clock, visibility=self.visibility,
            # Answers are kept until something public changes, not until any commit.
            generation=PublicChanges(self.sessions, self.visibility, shared=config.ha.enabled), policy=config.policy, trees=config.trees.names,
            tree_backend=config.trees.backend, zones=config.bot.display_timezones, base_url=config.web.base_url,
            mail_domain=mail_domain(config.mail.sender),
        )
        self.operations = self._operations()
        return WebServer(site, config.web.host, config.web.port, self.operations)

    def _metrics(self, transports: Mapping[str, Transport]) -> Metrics:
        from adapters.metrics import Metrics  # noqa: F811  (prometheus_client only with the web server)
        from adapters.web.ops import VersionInfo  # noqa: F811

        self.version = VersionInfo.read(HERE)
        commands = [c.name for c in all_commands().values()]
        return Metrics(version=self.version.version, commit=self.version.commit, commands=commands,
                       networks=list(transports))

    def _operations(self) -> Operations:
        """What /__heartbeat__, /__version__ and /metrics read."""
        from adapters.web.ops import Operations, VersionInfo  # noqa: F811

        services: dict[str, Callable[[], str]] = {}
        if self.bugzilla is not None:
            status = self.bugzilla.status
            services["bugzilla"] = lambda: "" if status.available else status.reason or "unavailable"
        if self._treestatus:
            clients = self._treestatus
            services["treestatus"] = lambda: next((e for c in clients if (e := getattr(c, "last_error", ""))), "")
        if self.config.mail.configured:
            services["smtp"] = lambda: self.mail.last_error
        return Operations(
            sessions=self.sessions, clock=self.clock, transports=self.transports,
            version=self.version or VersionInfo.read(HERE),
            scheduler_running=lambda: self.reminders.running, services=services, metrics=self.metrics,
            role=self._role if self.leadership is not None else None,
        )

    def _role(self) -> tuple[str, str, str | None]:
        """[ha]: (this instance, its role "leader" or "standby", the instance that leads as last read)."""
        assert self.leadership is not None
        return self.leadership.instance, self.leadership.role, self.leadership.leader

    def _rate_limiter(self, config: configuration.Config) -> RateLimiter | None:
        """[bot] rate_limit per sender; the console is not limited (whoever types there runs the bot)."""
        b = config.bot
        if not b.rate_commands:
            return None
        limit = RateLimit(b.rate_commands, b.rate_period, b.rate_burst)
        return RateLimiter(limit, self.clock, exempt_networks=frozenset({"console"}))

    def poke(self) -> None:
        """A command changed something: deliver the outbox and re-derive the reminder jobs."""
        self._poke_workers()
        self.reminders.poke()

    def _poke_workers(self) -> None:
        for worker in self.workers:
            worker.poke()

    def _poke_chat(self) -> None:
        """A job told someone something: deliver the chat lines now."""
        for worker in self.workers:
            if worker.kind == "chat":
                worker.poke()

    async def start(self) -> None:
        if self.leadership is not None:
            await self._start_standing_by()
            return
        await self._start_parts()
        if self.engine.dialect.name == "sqlite":
            self._tasks.append(asyncio.create_task(self.checkpointer.run(), name="sqlite-checkpoints"))
        if self.web is not None:
            await self.web.start()
        log.info("downtime-bot running: transports %s, database %s", ", ".join(self.transports),
                 display_url(self.config.bot.database))

    async def _start_parts(self) -> None:
        """What only the leader runs: the reminders, the chat networks, the outbox workers."""
        # Reminders first: what fell due while the bot was down is queued before any command.
        await self.reminders.start()
        for name, transport in self.transports.items():
            # Matrix saves its sync token once a batch is answered: it learns when, per command.
            await transport.start(self.senders.in_turn if name == "matrix" else self.senders)
        for worker in self.workers:
            worker.resume()
        self._tasks = [asyncio.create_task(w.run(), name=f"outbox-{w.name}") for w in self.workers]
        if self.bugzilla is not None:
            # In the background: a Bugzilla that is down must not hold up the chat.
            self._tasks.append(asyncio.create_task(self._check_bugzilla(), name="bugzilla-check"))

    async def _stop_sending(self) -> None:
        """Stop everything that acts outside, the senders first, then leave chat."""
        self.reminders.stop()
        for worker in self.workers:
            worker.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for transport in self.transports.values():
            try:
                await transport.stop()
            except Exception:  # leaving chat must not keep the other parts from stopping
                log.exception("%s did not stop cleanly", transport.network)

    # ----- [ha] ----------------------------------------------------------------------------------

    async def _start_standing_by(self) -> None:
        """[ha]: the web page (if any) and the lease loop only; the rest starts on election."""
        assert self.leadership is not None
        if self.engine.dialect.name == "sqlite":
            self._background.append(asyncio.create_task(self.checkpointer.run(), name="sqlite-checkpoints"))
            log.warning("[ha] on a SQLite file: every instance must run on this machine (a SQLite file "
                        "shared over the network is not safe); use PostgreSQL for instances on several machines")
        if self.web is not None:
            await self.web.start()
        self.leadership.start()
        log.info("downtime-bot running as instance %s ([ha], lease %g s): transports %s, database %s",
                 self.leadership.instance, self.leadership.lease_seconds, ", ".join(self.transports),
                 display_url(self.config.bot.database))

    async def _lead(self, epoch: int) -> None:
        """[ha] on_elected: the reminders re-derived from the database (what fell due in the gap is
        sent once, marked late), chat joined, the outbox delivered. Chat is not told of the switch."""
        if self._leading:  # a term that began while the last one's parts still ran
            await self._stop_sending()
        self._leading = True
        await self._start_parts()
        self._poke_workers()

    async def _stand_by(self) -> None:
        """[ha] on_deposed: stop sending at once, then leave chat; ready to lead again."""
        if not self._leading:
            return
        self._leading = False
        await self._stop_sending()

    async def _check_bugzilla(self) -> None:
        """The start-up check, then the periodic health check while Bugzilla is unavailable."""
        assert self.bugzilla is not None
        await self.bugzilla.check()
        while True:
            await asyncio.sleep(BUGZILLA_HEALTH_EVERY)
            if await self.bugzilla.health():
                self._poke_workers()  # the queued changes go now

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every line handed on is answered and every worker has delivered all it
        can (used at the end of console input)."""
        await self.senders.idle()
        if not self.fence.check():  # [ha] a standby: the leader delivers
            return
        self.poke()
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for worker in self.workers:
            await worker.deliver_pending()
            if loop.time() > deadline:
                break

    async def stop(self) -> None:
        if self.leadership is None:
            if self.web is not None:
                await self.web.stop()
            await self._stop_sending()
        else:
            # Stop sending and leave chat (on_deposed), then give the lease up: the standby takes over now.
            await self.leadership.stop(release=True)
            await self._stand_by()
            if self.web is not None:
                await self.web.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self.engine.dialect.name == "sqlite":
            await asyncio.to_thread(self.checkpointer.checkpoint, "TRUNCATE")
        self.engine.dispose()


def leading_writes(fence: Fence) -> Callable[[Session], bool] | None:
    """[ha]: a write's condition, read in the writing transaction: this instance leads (its local
    deadline) and its epoch is still the lease's (the database). None without [ha]: no condition."""
    if not fence.enabled:
        return None

    def may_write(session: Session) -> bool:
        epoch = fence.epoch
        if epoch is None or not fence.check():
            return False
        return bool(session.scalar(select(holds(fence.instance, epoch))))

    return may_write


def migrate_beside_others(engine: Engine, *, in_child: bool, tries: int = 5, pause: float = 2.0) -> None:
    """[ha]: the migrations, when another instance may be running them at the same moment (both
    started together on an empty database): the one that comes second fails on a table the first
    has just made, or on the lock; it waits and tries again, and then finds nothing left to do."""
    for attempt in range(1, tries + 1):
        try:
            migrate(engine, in_child=in_child)
            return
        except Exception as err:
            if attempt == tries:
                raise
            log.warning("the migrations failed (%s); another instance may be running them: trying again in %g s",
                        type(err).__name__, pause)
            engine.dispose()
            time.sleep(pause)


def database_password(config: configuration.Config, environ: Mapping[str, str]) -> str | None:
    """The database's password, from the variable [bot] database_password_env names (None: no password)."""
    return _secret(environ, "bot", "database_password_env", config.bot.database_password_env)


def _secret(environ: Mapping[str, str], section: str, key: str, variable: str) -> str | None:
    """The secret named by ``[section] key = variable``; None when the key is empty."""
    if not variable:
        return None
    value = environ.get(variable)
    if not value:
        raise configuration.ConfigError(str(configuration.Secret(section, key, variable)))
    return value


def matrix_config(config: configuration.Config, environ: Mapping[str, str]) -> MatrixConfig:
    """[matrix] as the Matrix transport takes it, with the secrets read from `environ`."""
    from adapters.matrix import MatrixConfig

    m = config.matrix
    rooms = {config.channels.requests: m.requests_room, config.channels.announce: m.announce_room}
    store = Path(m.store_path)
    try:
        return MatrixConfig(
            homeserver=m.homeserver,
            user_id=m.user_id,
            store_path=str(store if store.is_absolute() else HERE / store),
            password=_secret(environ, "matrix", "password_env", m.password_env),
            access_token=_secret(environ, "matrix", "access_token_env", m.access_token_env),
            device_name=m.device_name,
            rooms={k: v for k, v in rooms.items() if v},
            allowed_inviters=frozenset(
                a for role in Role for a in config.roles.accounts(role) if a.startswith("@")
            ),
            sync_timeout_ms=m.sync_timeout_ms,
            backoff_min=m.backoff_min,
            backoff_max=m.backoff_max,
        )
    except ValueError as err:
        raise configuration.ConfigError(str(err)) from None


def irc_config(config: configuration.Config, environ: Mapping[str, str]) -> IrcConfig:
    """[irc] as the IRC transport takes it, with the secrets read from `environ`."""
    from adapters.irc import IrcConfig

    i = config.irc
    if i.client_cert and not Path(i.client_cert).is_file():
        raise configuration.ConfigError(f"[irc] client_cert = {i.client_cert!r}: expected a PEM file; there is none")
    try:
        return IrcConfig(
            host=i.host,
            port=i.port,
            tls=i.tls,
            tls_verify=i.tls_verify,
            client_cert=i.client_cert or None,
            nick=i.nick,
            alt_nick=i.alt_nick or None,
            username=i.username or None,
            realname=i.realname,
            sasl_username=i.sasl_username or None,
            sasl_password=_secret(environ, "irc", "sasl_password_env", i.sasl_password_env),
            allow_plaintext_sasl=i.allow_plaintext_sasl,
            nickserv_password=_secret(environ, "irc", "nickserv_password_env", i.nickserv_password_env),
            identity=i.identity,
            whois_max_age=i.whois_max_age,
            command_prefix=config.bot.command_prefix,
            channels={c: c for c in config.channels.all},
            pacing=i.pacing,
            burst=i.burst,
            rate=i.rate,
            line_burst=i.line_burst,
            line_rate=i.line_rate,
        )
    except ValueError as err:
        raise configuration.ConfigError(str(err)) from None


def matrix_transport(config: configuration.Config) -> Transport:
    from adapters.matrix import MatrixTransport

    return MatrixTransport(matrix_config(config, os.environ))


def irc_transport(config: configuration.Config) -> Transport:
    from adapters.irc import IrcTransport

    return IrcTransport(irc_config(config, os.environ))


def check_config(config: configuration.Config, environ: Mapping[str, str]) -> list[str]:
    """Every problem `--check-config` finds beyond the file's values, one line each, offline.

    `configuration.load` has already parsed every section. This adds every missing secret,
    then builds (never starts) the configuration of each transport in use and of the mailer,
    so that what only they check is reported too. Nothing is connected, started or opened.
    """
    missing = configuration.missing_secrets(config, environ)
    problems = [str(secret) for secret in missing]
    # Stand-ins for the missing secrets (already reported), so that the checks below still run.
    environ = {**environ, **{s.variable: "stand-in" for s in missing if s.variable}}
    builders: list[Callable[[configuration.Config, Mapping[str, str]], object]] = []
    if "irc" in config.bot.transports:
        builders.append(irc_config)
    if "matrix" in config.bot.transports:
        builders.append(matrix_config)
    if config.mail.configured:
        builders.append(mail_config)
    for build in builders:
        try:
            build(config, environ)
        except configuration.ConfigError as err:
            problems.append(str(err))
    return problems


def build_transports(config: configuration.Config, stdout: TextIO) -> dict[str, Transport]:
    transports: dict[str, Transport] = {}
    for name in config.bot.transports:
        if name == "console":
            transports[name] = ConsoleTransport(config.bot.nick, stdout=stdout, prefix=config.bot.command_prefix)
        elif name == "matrix":
            transports[name] = matrix_transport(config)
        elif name == "irc":
            transports[name] = irc_transport(config)
        else:
            raise configuration.ConfigError(f"[bot] transports: {name} is not available in this version yet")
    return transports


async def amain(config: configuration.Config) -> int:
    transports = build_transports(config, sys.stdout)
    # Migrations run in a child process: Alembic never stays in the running bot's memory.
    bot = Bot(config, transports=transports, isolated_migrations=True)
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


def secret_values(config: configuration.Config, environ: Mapping[str, str]) -> list[str]:
    """Every secret value this configuration may read (masked in the log): the variables its
    ``*_env`` keys name, set or not in use, and the database URL's password."""
    names = {s.variable for s in configuration.needed_secrets(config)} | {
        config.irc.sasl_password_env, config.irc.nickserv_password_env, config.matrix.password_env,
        config.matrix.access_token_env, config.mail.password_env, config.bugzilla.api_key_env,
        config.trees.treestatus_token_env, config.bot.database_password_env,
    }
    values = [environ[name] for name in names if name and environ.get(name)]
    password = url_password(config.bot.database)
    return values + ([password] if password else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="downtime-bot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: config.ini beside bot.py)")
    parser.add_argument("--console", action="store_true", help="run in console mode whatever [bot] transports says")
    parser.add_argument("--check-config", action="store_true", help="check the configuration and exit")
    options = parser.parse_args(argv)
    try:
        config = configuration.load(options.config, transports=("console",) if options.console else None)
    except configuration.ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    # In console mode the log shares the terminal with the conversation: warnings only, unless asked.
    default_level = "WARNING" if config.bot.transports == ("console",) else "INFO"
    logging.basicConfig(
        level=os.environ.get("DOWNTIMEBOT_LOG_LEVEL", default_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if "DOWNTIMEBOT_LOG_LEVEL" not in os.environ:
        # Where the status page is, even in console mode (whose log shows warnings only).
        logging.getLogger("downtimebot.web").setLevel(logging.INFO)
    protect(secret_values(config, os.environ))
    if options.check_config:
        problems = check_config(config, os.environ)
        for problem in problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        if problems:
            return 2
        print(f"{config.path}: OK (transports: {', '.join(config.bot.transports)})")
        return 0
    # Every missing secret at once; only the Bugzilla key may be missing (bugzilla_from warns).
    missing = [s for s in configuration.missing_secrets(config, os.environ) if not s.optional_at_start]
    for secret in missing:
        print(f"configuration error: {secret}", file=sys.stderr)
    if missing:
        return 2
    try:
        return asyncio.run(amain(config))
    except configuration.ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as err:
        print(f"database error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

