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
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from adapters import config as configuration
from adapters.clock import SystemClock
from adapters.console import ConsoleTransport
from adapters.db import Checkpointer, CommitCounter, make_engine, migrate, session_factory
from adapters.mail import MailConfig, MailDelivery, PrintMailer, SmtpMailer
from adapters.outbox import OutboxWorker, chat_delivery
from adapters.scheduler import ReminderScheduler
from adapters.templates import Renderer
from models.lifecycle import Role
from models.ports import BugTracker, Clock, Mailer, Transport, TreeService
from models.reactions import Reactions
from models.work import MailRouting, Settings
from plugins.context import NoBugzilla
from plugins.dispatcher import Dispatcher

if TYPE_CHECKING:  # the outside systems' clients are imported only when configured (memory, start-up)
    from adapters.bugzilla import BugzillaClient
    from adapters.bugzilla_jobs import BugzillaSync
    from adapters.tree_jobs import TreeJobs

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
            remind_lists=config.mail.remind_lists,
        ),
        ciduty=tuple(config.roles.accounts(Role.CIDUTY)),
        sheriffs=tuple(config.roles.accounts(Role.SHERIFF)),
    )


def bugzilla_from(config: configuration.Config) -> BugzillaClient:
    """The Bugzilla client for [bugzilla]; the API key comes from the environment only."""
    from adapters.bugzilla import BugzillaClient

    api_key = os.environ.get(config.bugzilla.api_key_env) or None
    if api_key is None:
        log.warning("[bugzilla] api_key_env: %s is not set; Bugzilla changes will be refused",
                    config.bugzilla.api_key_env)
    return BugzillaClient(config.bugzilla.url, api_key, flag=config.bugzilla.flag)


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
        self.engine = make_engine(config.bot.database, base=HERE, background_checkpoints=True)
        self.checkpointer = Checkpointer(self.engine)
        self.commits = CommitCounter(self.engine)
        migrate(self.engine, in_child=isolated_migrations)
        self.sessions = session_factory(self.engine)
        self.render = Renderer(
            zones=config.bot.display_timezones,
            prefix=config.bot.command_prefix,
            trees=config.trees.names,
            links=config.notice,
            flag=config.bugzilla.flag,
        )
        self.settings = settings_from(config, list(transports))
        self.reactions = Reactions(self.settings, self.render)
        self.workers: list[OutboxWorker] = []
        for name, t in transports.items():
            worker = OutboxWorker(self.sessions, self.clock, kind="chat", network=name, deliver=chat_delivery(t))
            t.on_connected = worker.poke  # back after an outage: deliver what waited, now
            self.workers.append(worker)
        self.mail = MailDelivery(
            mailer or mailer_from(config, stdout or sys.stdout), sessions=self.sessions, clock=self.clock,
            reactions=self.reactions, sender=config.mail.sender, report_after=MAIL_REPORT_AFTER,
            on_queued=self._poke_chat,
        )
        self.workers.append(OutboxWorker(self.sessions, self.clock, kind="mail", deliver=self.mail.deliver))
        self.bugzilla: BugzillaSync | None = None
        if config.bugzilla.enabled:
            from adapters.bugzilla_jobs import BugzillaSync  # noqa: F811  (imported above for typing only)

            self.bugzilla = BugzillaSync(
                bugzilla or bugzilla_from(config), sessions=self.sessions, clock=self.clock,
                reactions=self.reactions, product=config.bugzilla.product,
                report_after=config.bugzilla.report_after, on_queued=self._poke_chat,
            )
            self.workers.append(OutboxWorker(self.sessions, self.clock, kind="bugzilla", deliver=self.bugzilla.deliver))
        self.tree_jobs: TreeJobs | None = None
        if config.trees.backend != "builtin":
            from adapters.tree_jobs import TreeJobs  # noqa: F811

            writer, reader = treestatus_from(config, treestatus)
            self.tree_jobs = TreeJobs(
                self.sessions, self.clock, self.reactions, client=writer, reader=reader,
                on_queued=self._poke_chat, account=config.bot.nick,
            )
            # First, so that the notes it queues are delivered in the same pass.
            self.workers.insert(0, OutboxWorker(self.sessions, self.clock, kind="trees", deliver=self.tree_jobs.deliver))
        self.dispatcher = Dispatcher(
            sessions=self.sessions,
            clock=self.clock,
            settings=self.settings,
            render=self.render,
            reactions=self.reactions,
            roles_of=config.roles.roles_of,
            transports=transports,
            prefix=config.bot.command_prefix,
            push=config.push,
            systems=config.systems,
            trees_remote=self.tree_jobs.read_trees if self.tree_jobs and self.tree_jobs.reader else None,
            on_change=self.poke,
            generation=self.commits,
            bugzilla=self.bugzilla.lookup if self.bugzilla else NoBugzilla(),
        )
        self.reminders = ReminderScheduler(
            self.sessions, self.clock, self.reactions, nick=config.bot.nick, on_queued=self._poke_workers
        )
        self._tasks: list[asyncio.Task[None]] = []

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
        # Reminders first: what fell due while the bot was down is queued before any command.
        await self.reminders.start()
        for transport in self.transports.values():
            await transport.start(self.dispatcher.handle)
        self._tasks = [asyncio.create_task(w.run(), name=f"outbox-{w.name}") for w in self.workers]
        if self.engine.dialect.name == "sqlite":
            self._tasks.append(asyncio.create_task(self.checkpointer.run(), name="sqlite-checkpoints"))
        if self.bugzilla is not None:
            # In the background: a Bugzilla that is down must not hold up the chat.
            self._tasks.append(asyncio.create_task(self._check_bugzilla(), name="bugzilla-check"))
        log.info("downtime-bot running: transports %s, database %s", ", ".join(self.transports), self.config.bot.database)

    async def _check_bugzilla(self) -> None:
        assert self.bugzilla is not None
        await self.bugzilla.check()

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
        if self.engine.dialect.name == "sqlite":
            await asyncio.to_thread(self.checkpointer.checkpoint, "TRUNCATE")
        self.engine.dispose()


def _secret(section: str, key: str, variable: str) -> str | None:
    if not variable:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise configuration.ConfigError(f"[{section}] {key} = {variable}: that environment variable is not set")
    return value


def matrix_transport(config: configuration.Config) -> Transport:
    from adapters.matrix import MatrixConfig, MatrixTransport

    raw = config.raw.get("matrix", {})

    def get(key: str, default: str = "") -> str:
        return raw.get(key, default).strip()

    rooms = {config.channels.requests: get("requests_room"), config.channels.announce: get("announce_room")}
    missing = [k for k, v in (("homeserver", get("homeserver")), ("user_id", get("user_id")),
                              ("requests_room", rooms[config.channels.requests]),
                              ("announce_room", rooms[config.channels.announce])) if not v]
    if missing:
        raise configuration.ConfigError(f"[matrix] {', '.join(missing)}: needed when transports has matrix")
    store = Path(get("store_path", "var/matrix"))
    tuning: dict[str, float] = {}
    for key, cast in (("sync_timeout_ms", int), ("backoff_min", float), ("backoff_max", float)):
        if get(key):
            try:
                tuning[key] = cast(get(key))
            except ValueError:
                raise configuration.ConfigError(f"[matrix] {key}: expected a number, got {get(key)!r}") from None
    try:
        matrix_config = MatrixConfig(
            homeserver=get("homeserver"),
            user_id=get("user_id"),
            store_path=str(store if store.is_absolute() else HERE / store),
            password=_secret("matrix", "password_env", get("password_env")),
            access_token=_secret("matrix", "access_token_env", get("access_token_env")),
            device_name=get("device_name", "downtime-bot"),
            rooms={k: v for k, v in rooms.items() if v},
            allowed_inviters=frozenset(
                a for role in Role for a in config.roles.accounts(role) if a.startswith("@")
            ),
            **tuning,  # type: ignore[arg-type]
        )
    except ValueError as err:
        raise configuration.ConfigError(str(err)) from None
    return MatrixTransport(matrix_config)


def irc_transport(config: configuration.Config) -> Transport:
    from adapters.irc import IrcConfig, IrcTransport

    section = dict(config.raw.get("irc", {}))
    section.setdefault("nick", config.bot.nick)
    channels = {c: c for c in config.channels.all}
    try:
        return IrcTransport(IrcConfig.from_settings(section, channels, os.environ))
    except ValueError as err:
        raise configuration.ConfigError(str(err)) from None


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="downtime-bot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: config.ini beside bot.py)")
    parser.add_argument("--console", action="store_true", help="run in console mode whatever [bot] transports says")
    parser.add_argument("--check-config", action="store_true", help="check the configuration and exit")
    options = parser.parse_args(argv)
    try:
        config = configuration.load(options.config)
        if options.console:
            config = replace(config, bot=replace(config.bot, transports=("console",)))
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

