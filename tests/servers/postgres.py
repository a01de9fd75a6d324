"""A real, throwaway PostgreSQL 15 server for the tests (Debian's postgresql-15).

    with PostgresServer() as server:
        url = server.create_database("t1")          # a fresh, migrated database (from a template)
        server.create_role("bot_a", "pw-a")          # a login role for one instance
        server.terminate_backends("bot_a")           # kill its connections (pg_terminate_backend)
        server.refuse_logins("bot_a"); server.allow_logins("bot_a")
        server.restart(); server.stop()

`initdb` runs as the `postgres` user (runuser) in a temp directory that user owns (PostgreSQL
refuses to run as root); the server listens on a free TCP port of 127.0.0.1 only, its socket in
that directory, and every login needs a password (scram-sha-256). The superuser is `postgres`,
and `downtimebot` (the role the bot's tests connect as) owns the databases the tests create.
The server runs in the foreground and is stopped by its PID. Durability is traded for speed
(fsync off): a clean restart keeps everything; a crash of the machine would not.

`running_postgres()`: for a session fixture. Missing binaries are installed under CI=true
(a failure there fails loudly); elsewhere the tests that need PostgreSQL skip.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BIN = Path("/usr/lib/postgresql/15/bin")
PACKAGE = "postgresql-15"
SUPERUSER = "postgres"
ROLE = "downtimebot"  # the role the bot's tests log in as
TEMPLATE = "downtimebot_template"  # migrated to the newest revision, copied by create_database
# The variable the bot reads the test role's password from ([bot] database_password_env).
PASSWORD_ENV = "DOWNTIMEBOT_TEST_DATABASE_PASSWORD"


class PostgresMissing(RuntimeError):
    """PostgreSQL 15 is not installed, and this is not CI (where it would be installed)."""


def _as_postgres() -> list[str]:
    """The prefix that runs a command as the `postgres` user (nothing when not root)."""
    return ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []


def ensure_installed() -> None:
    """Install Debian's postgresql-15 when missing (CI only), its own cluster kept from starting."""
    if (BIN / "postgres").exists():
        return
    if os.environ.get("CI") != "true":
        raise PostgresMissing(
            f"{BIN / 'postgres'} is missing: run scripts/install-test-servers.sh "
            "(or set CI=true to install it automatically)"
        )
    script = Path(__file__).resolve().parents[2] / "scripts" / "install-test-servers.sh"
    subprocess.run([str(script)], check=True)
    if not (BIN / "postgres").exists():
        raise RuntimeError(f"{PACKAGE} was installed but {BIN / 'postgres'} is still missing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temp directory, on a free port of 127.0.0.1."""

    def __init__(self, *, role_password: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="downtimebot-postgres-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_hex(12)  # the superuser's
        self.role_password = role_password or secrets.token_hex(12)  # the `downtimebot` role's
        self._proc: subprocess.Popen[bytes] | None = None
        self._template_ready = False

    # --- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        try:
            self.init()
            self.start()
            self.create_role(ROLE, self.role_password, createdb=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def init(self) -> None:
        """initdb, as `postgres`, in a directory that user owns."""
        if os.geteuid() == 0:
            shutil.chown(self.dir, SUPERUSER, SUPERUSER)
        self.dir.chmod(0o700)
        pwfile = self.dir / "superuser-password"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, SUPERUSER, SUPERUSER)
        subprocess.run(
            [*_as_postgres(), str(BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True,
        )
        pwfile.unlink()

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (in the foreground, as `postgres`) and wait until it takes logins."""
        if self.running:
            return
        logfile = open(self.log, "ab")
        command = [
            str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
            "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
        ]
        user: dict[str, Any] = {"user": SUPERUSER, "group": SUPERUSER, "extra_groups": []} if os.geteuid() == 0 else {}
        # Started directly as `postgres` (not through runuser) so that the PID is the postmaster's.
        self._proc = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, **user)
        logfile.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}:\n{self.tail()}")
            try:
                self.execute("SELECT 1")
                return
            except Exception:  # not ready yet: it refuses connections while it starts
                if time.monotonic() > deadline:
                    raise TimeoutError(f"PostgreSQL took logins not within {timeout} s:\n{self.tail()}")
                time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: sessions are ended, everything committed is kept)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # in case a test paused it
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self) -> None:
        """Stop and start again, on the same port with the same data (every connection is lost)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- addresses --------------------------------------------------------------------------

    def url(self, database: str, user: str = ROLE) -> str:
        """The SQLAlchemy URL of `database` for `user`, without a password (it goes in the
        environment, as [bot] database_password_env says)."""
        return f"postgresql+psycopg://{user}@{HOST}:{self.port}/{database}"

    def connect(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> Any:
        """A psycopg connection in autocommit mode (the superuser's by default)."""
        import psycopg

        if password is None:
            password = self.password if user == SUPERUSER else self.role_password
        return psycopg.connect(host=HOST, port=self.port, dbname=database, user=user, password=password,
                               autocommit=True, connect_timeout=5)

    def execute(self, sql: str, params: tuple[Any, ...] | None = None, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser; the rows it returned (if any)."""
        with self.connect(database) as connection:
            cursor = connection.execute(sql.encode(), params)  # bytes: a query the helpers built
            return list(cursor.fetchall()) if cursor.description else []

    # --- helpers for the tests and the failover drills --------------------------------------

    def create_database(self, name: str, *, owner: str = ROLE, migrated: bool = True) -> str:
        """A new database (fast: a copy of a migrated template unless `migrated` is False); its URL."""
        from psycopg import sql

        if migrated:
            self._ensure_template()
        query = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        if migrated:
            query = sql.SQL("{} TEMPLATE {} STRATEGY FILE_COPY").format(query, sql.Identifier(TEMPLATE))
        with self.connect() as connection:
            connection.execute(query)
        return self.url(name, user=owner)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_role(self, name: str, password: str, *, createdb: bool = False) -> None:
        """A login role with this password (replaced if it exists)."""
        from psycopg import sql

        options = sql.SQL("LOGIN CREATEDB" if createdb else "LOGIN")
        with self.connect() as connection:
            exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
            connection.execute(sql.SQL("{} {} {} PASSWORD {}").format(
                verb, sql.Identifier(name), options, sql.Literal(password)))

    def grant_database(self, database: str, role: str) -> None:
        """Let `role` use every table of `database` (for an instance that logs in as its own role)."""
        from psycopg import sql

        with self.connect() as connection:
            connection.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(role)))
        with self.connect(database) as connection:
            for statement in ("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}",
                              "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}",
                              "GRANT ALL ON SCHEMA public TO {}"):
                connection.execute(sql.SQL(statement).format(sql.Identifier(role)))

    def terminate_backends(self, role: str) -> int:
        """End every connection `role` holds (pg_terminate_backend); how many there were."""
        rows = self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
            (role,),
        )
        return len(rows)

    def refuse_logins(self, role: str) -> None:
        """ALTER ROLE … NOLOGIN: new connections of `role` are refused (existing ones stay)."""
        from psycopg import sql

        with self.connect() as connection:
            connection.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))

    def allow_logins(self, role: str) -> None:
        from psycopg import sql

        with self.connect() as connection:
            connection.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))

    def _ensure_template(self) -> None:
        """The template database, migrated once by the bot's own code (adapters/db.py migrate)."""
        if self._template_ready:
            return
        from adapters.db import make_engine, migrate

        self.create_database(TEMPLATE, migrated=False)
        engine = make_engine(self.url(TEMPLATE), password=self.role_password)
        try:
            migrate(engine)
        finally:
            engine.dispose()  # CREATE DATABASE … TEMPLATE needs the template without connections
        self._template_ready = True


def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL for a test session (use with ``yield from`` in a fixture).

    Missing PostgreSQL: installed under CI=true (and a failure there fails loudly); skipped otherwise.
    """
    import pytest

    try:
        ensure_installed()
    except PostgresMissing as missing:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(missing))
    with PostgresServer() as server:
        yield server
