"""Real IRC servers for the integration tests, and a raw IRC client to drive them.

- `ensure_installed()` installs the Debian packages (ngircd, inspircd, anope) when missing.
- `Ngircd(penalties=True)`: ngircd 26 on a free loopback port, default flood rules unless
  ``penalties=False`` (``MaxPenaltyTime = 0``, for benchmarks).
- `InspircdAnope()`: InspIRCd 3 linked to Anope 2 services (NickServ, SASL PLAIN), with
  `register(account, password)` to create NickServ accounts. ``account_caps=False``: without
  the account-tag, account-notify and extended-join capabilities (accounts only by WHOIS).
- `RawClient`: a small asyncio IRC client that records every line it receives and can wait
  for one (`wait_for`), for tests that play the people talking to the bot.

Servers are context managers; they run in the foreground, are stopped by their PID, and can be
stopped and started again on the same port (`stop()` / `start()`) to test reconnection.
Run ``python -m tests.servers.ircd install`` to install the packages by hand.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
NOBODY_UID = 65534
PACKAGES = {"ngircd": ("ngircd",), "inspircd": ("inspircd",), "anope": ("anope",)}


class ServerUnavailable(RuntimeError):
    """The server binaries are missing and could not be installed."""


def binaries_present(*names: str) -> bool:
    """True when every named server binary is on PATH (or in /usr/sbin)."""
    return all(_which(name) for name in names)


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def ensure_installed(*names: str) -> None:
    """Install the Debian packages for the named servers (default: all) when missing.

    Needs root and apt-get. ``anope`` is installed without recommends (they pull in a mail
    server). Raises `ServerUnavailable` when a binary is still missing afterwards.
    """
    wanted = names or tuple(PACKAGES)
    missing = [name for name in wanted if not _which(name)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServerUnavailable(f"{', '.join(missing)} missing and cannot apt-get install here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log.info("installing %s with apt-get", missing)
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    packages = [pkg for name in missing for pkg in PACKAGES[name]]
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    still = [name for name in wanted if not _which(name)]
    if still:
        raise ServerUnavailable(f"{', '.join(still)} still missing after apt-get install")


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, logfile: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(logfile)}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s:\n{_tail(logfile)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)  # in case a test paused it
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def _shared_tempdir(prefix: str) -> Path:
    """A temp dir that `nobody` can read (servers drop privileges to it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class _Server:
    """A server process in the foreground, stopped by its PID."""

    name = "server"

    def __init__(self) -> None:
        self.dir = _shared_tempdir(f"downtimebot-{self.name}-")
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Server:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL); the port is reused by `start`."""
        _stop_process(self._proc)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers (ping timeouts)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _popen(self, argv: list[str], logname: str, **kwargs: object) -> subprocess.Popen[bytes]:
        logfile = self.dir / logname
        with open(logfile, "ab") as out:
            return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )


NGIRCD_CONF = """\
[Global]
Name = irc.test.local
Info = downtime-bot test server
Listen = {host}
Ports = {port}
MotdPhrase = "downtime-bot tests"

[Limits]
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
{penalty_line}

[Options]
DNS = no
Ident = no
PAM = no
"""


class Ngircd(_Server):
    """ngircd on a free loopback port; default flood rules unless ``penalties=False``."""

    name = "ngircd"

    def __init__(self, penalties: bool = True) -> None:
        super().__init__()
        self.penalties = penalties
        self.conf = self.dir / "ngircd.conf"
        self.conf.write_text(
            NGIRCD_CONF.format(
                host=HOST,
                port=self.port,
                penalty_line="" if penalties else "MaxPenaltyTime = 0",
            )
        )
        self.conf.chmod(0o644)

    def __enter__(self) -> Ngircd:
        super().__enter__()
        return self

    def start(self) -> None:
        binary = _which("ngircd")
        if not binary:
            raise ServerUnavailable("ngircd is not installed")
        self._proc = self._popen([binary, "-n", "-f", str(self.conf)], "ngircd.log")
        _wait_for_port(self.port, self._proc, 10.0, self.dir / "ngircd.log")


INSPIRCD_CONF = """\
<server name="irc.test.local" description="downtime-bot test server" id="00A" network="testnet">
<admin name="test" nick="test" email="test@test.local">
<bind address="{host}" port="{port}" type="clients">
<bind address="{host}" port="{link_port}" type="servers">
<connect name="main" allow="*" resolvehostnames="no" useident="no" localmax="1000"
    globalmax="1000" maxconnwarn="off" {flood}>
<files motd="{dir}/motd.txt">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{dir}/inspircd-events.log">
<link name="services.test.local" ipaddr="{host}" port="{link_port}" allowmask="{host}/32"
    sendpass="{link_password}" recvpass="{link_password}">
<uline server="services.test.local" silent="yes">
<sasl target="services.test.local" requiressl="no">
<module name="spanningtree">
<module name="services_account">
<module name="hidechans">
<module name="sasl">
<module name="cap">
<module name="ircv3">
{account_caps}<module name="ircv3_capnotify">
<module name="ircv3_ctctags">
<module name="ircv3_echomessage">
<module name="ircv3_msgid">
<module name="ircv3_servertime">
{monitor}"""

ANOPE_CONF = """\
serverinfo {{
    name = "services.test.local"
    description = "downtime-bot test services"
    id = "00B"
    pid = "{dir}/anope/anope.pid"
    motd = "{dir}/motd.txt"
}}
uplink {{
    host = "{host}"
    ipv6 = no
    ssl = no
    port = {link_port}
    password = "{link_password}"
}}
module {{ name = "inspircd3" }}
networkinfo {{
    networkname = "testnet"
    nicklen = 31
    userlen = 10
    hostlen = 64
    chanlen = 32
    modelistsize = 100
    vhost_chars = "-"
    allow_undotted_vhosts = false
    disallow_start_or_end = ".-"
}}
options {{
    casemap = "rfc1459"
    readtimeout = 1s
    retrywait = 1s
    warningtimeout = 4h
    timeoutcheck = 3s
    usestrictprivmsg = no
}}
mail {{ usemail = no }}
module {{ name = "db_flatfile"; database = "anope.db"; keepbackups = 0 }}
module {{ name = "enc_sha256" }}
service {{
    nick = "NickServ"
    user = "services"
    host = "services.test.local"
    gecos = "Nickname Registration Service"
}}
module {{
    name = "nickserv"
    client = "NickServ"
    forceemail = no
    defaults = "hide_email hide_mask"
    regdelay = 0
    guestnickprefix = "Guest"
    expire = 0
    minpasslen = 4
    maxpasslen = 64
}}
module {{ name = "ns_register"; registration = "none" }}
module {{ name = "ns_identify"; maxlogins = 10 }}
module {{ name = "ns_logout" }}
module {{ name = "m_sasl" }}
command {{ service = "NickServ"; name = "HELP"; command = "generic/help"; }}
command {{ service = "NickServ"; name = "REGISTER"; command = "nickserv/register"; }}
command {{ service = "NickServ"; name = "IDENTIFY"; command = "nickserv/identify"; }}
command {{ service = "NickServ"; name = "ID"; command = "nickserv/identify"; hide = true; }}
command {{ service = "NickServ"; name = "LOGOUT"; command = "nickserv/logout"; }}
module {{ name = "ns_recover" }}
command {{ service = "NickServ"; name = "RECOVER"; command = "nickserv/recover"; }}
"""


class InspircdAnope(_Server):
    """InspIRCd 3 with Anope 2 services linked to it: NickServ accounts and SASL PLAIN.

    ``flood="default"`` keeps InspIRCd's default connect-class flood rules; ``"off"`` raises
    them for benchmarks. ``account_caps=False`` offers no account-tag, account-notify or
    extended-join: a client learns accounts only by WHOIS (330). ``monitor=True`` loads the
    MONITOR module (ISUPPORT ``MONITOR``). NickServ has RECOVER (Anope 2's ns_recover).
    """

    name = "inspircd"
    link_password = "linkpassword"

    def __init__(self, flood: str = "default", account_caps: bool = True, monitor: bool = False) -> None:
        super().__init__()
        self.link_port = free_port()
        self.conf = self.dir / "inspircd.conf"
        self.anope_dir = self.dir / "anope"
        self.anope_dir.mkdir()
        os.chown(self.anope_dir, NOBODY_UID, NOBODY_UID)
        (self.dir / "motd.txt").write_text("downtime-bot tests\n")
        flood_attrs = 'threshold="1000" commandrate="100000" fakelag="no"' if flood == "off" else ""
        fmt = dict(
            host=HOST,
            port=self.port,
            link_port=self.link_port,
            dir=self.dir,
            link_password=self.link_password,
            flood=flood_attrs,
            account_caps='<module name="ircv3_accounttag">\n' if account_caps
            else '<ircv3 accountnotify="no" awaynotify="no" extendedjoin="no">\n',
            monitor='<module name="monitor">\n' if monitor else "",
        )
        self.conf.write_text(INSPIRCD_CONF.format(**fmt))
        (self.anope_dir / "services.conf").write_text(ANOPE_CONF.format(**fmt))
        for path in (self.conf, self.dir / "motd.txt", self.anope_dir / "services.conf"):
            path.chmod(0o644)
        self._anope: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> InspircdAnope:
        super().__enter__()
        return self

    def start(self) -> None:
        inspircd, anope = _which("inspircd"), _which("anope")
        if not inspircd or not anope:
            raise ServerUnavailable("inspircd and anope are not installed")
        self._proc = self._popen(
            [inspircd, "--nofork", "--nopid", "--runasroot", "--config", str(self.conf)],
            "inspircd.log",
        )
        _wait_for_port(self.port, self._proc, 15.0, self.dir / "inspircd.log")
        _wait_for_port(self.link_port, self._proc, 15.0, self.dir / "inspircd.log")
        argv = [
            anope,
            "--nofork",
            f"--confdir={self.anope_dir}",
            f"--dbdir={self.anope_dir}",
            f"--logdir={self.anope_dir}",
            "--modulesdir=/usr/lib/anope",
            "--localedir=/usr/share/anope/locale",
        ]
        if os.geteuid() == 0:
            argv = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}", "--clear-groups", *argv]
        self._anope = self._popen(argv, "anope.log", cwd=self.anope_dir)
        self._wait_for_services(20.0)

    def stop(self) -> None:
        _stop_process(self._anope)
        self._anope = None
        super().stop()

    def _wait_for_services(self, timeout: float) -> None:
        """Ready when a fresh connection is offered ``sasl`` (only while Anope is linked)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._anope is not None and self._anope.poll() is not None:
                raise RuntimeError(f"anope exited:\n{_tail(self.dir / 'anope.log')}")
            if "sasl" in _cap_ls(self.port):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"services did not link in {timeout} s:\n{_tail(self.dir / 'anope.log')}\n"
            f"{_tail(self.dir / 'inspircd.log')}"
        )

    def register(self, account: str, password: str, timeout: float = 15.0) -> None:
        """Register a NickServ account (blocking: call it outside the event loop)."""
        with _BlockingClient(self.port, account, timeout) as client:
            client.send(f"PRIVMSG NickServ :REGISTER {password}")
            reply = client.wait_for(lambda line: " NOTICE " in line and "NickServ!" in line)
            if "registered" not in reply.lower():
                raise RuntimeError(f"NickServ refused to register {account}: {reply}")


def _cap_ls(port: int) -> str:
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as sock:
            sock.sendall(b"CAP LS 302\r\n")
            data = b""
            while b" LS " not in data or not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            sock.sendall(b"QUIT\r\n")
            return data.decode(errors="replace")
    except OSError:
        return ""


class _BlockingClient:
    """Just enough of a synchronous IRC client to talk to services from test setup."""

    def __init__(self, port: int, nick: str, timeout: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")
        self.wait_for(lambda line: line.split(" ")[1:2] == ["001"])

    def __enter__(self) -> _BlockingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.send("QUIT")
        except OSError:
            pass
        self.sock.close()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def wait_for(self, match: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode(errors="replace")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                elif match(line):
                    return line
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        raise TimeoutError("no matching line")


# --- the raw asyncio test client ------------------------------------------------------------

_LINE_RE = re.compile(r"^(?:@(?P<tags>\S+) +)?(?::(?P<source>\S+) +)?(?P<command>\S+)(?P<rest>.*)$")


@dataclass(frozen=True)
class Line:
    """One line received by a `RawClient`, parsed."""

    raw: str
    tags: dict[str, str]
    source: str
    command: str
    params: tuple[str, ...]
    received: float = field(default=0.0, compare=False)

    @property
    def nick(self) -> str:
        return self.source.split("!", 1)[0]

    @property
    def text(self) -> str:
        """The last parameter (a PRIVMSG's text)."""
        return self.params[-1] if self.params else ""

    @classmethod
    def parse(cls, raw: str, received: float = 0.0) -> Line:
        m = _LINE_RE.match(raw)
        if not m:
            return cls(raw, {}, "", "", (), received)
        tags: dict[str, str] = {}
        for item in (m.group("tags") or "").split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = value
        rest = m.group("rest")
        params: list[str] = []
        while rest:
            rest = rest.lstrip(" ")
            if not rest:
                break
            if rest.startswith(":"):
                params.append(rest[1:])
                break
            word, _, rest = rest.partition(" ")
            params.append(word)
        return cls(raw, tags, m.group("source") or "", m.group("command").upper(), tuple(params), received)


Matcher = Callable[[Line], bool] | str


def _matcher(match: Matcher) -> Callable[[Line], bool]:
    if callable(match):
        return match
    pattern = re.compile(match)
    return lambda line: pattern.search(line.raw) is not None


class RawClient:
    """A scriptable IRC client for tests: every received line is kept in `lines`.

    `wait_for` looks at lines after the cursor (the line after the last match, or a
    `mark()`), so a test reads the conversation in order.
    """

    def __init__(
        self,
        port: int,
        nick: str,
        *,
        host: str = HOST,
        caps: Iterable[str] = (),
        sasl: tuple[str, str] | None = None,
        username: str | None = None,
    ) -> None:
        self.host, self.port, self.nick = host, port, nick
        self.caps = tuple(caps)
        self.sasl = sasl
        self.username = username or nick
        self.lines: list[Line] = []
        self.acked: set[str] = set()
        self.cursor = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._new_line = asyncio.Event()
        self.closed = False

    async def __aenter__(self) -> RawClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.quit()

    async def connect(self, timeout: float = 15.0) -> None:
        """Connect and register; with ``caps``/``sasl``, negotiate them first."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.create_task(self._read_loop())
        wanted = set(self.caps) | ({"sasl"} if self.sasl else set())
        if wanted:
            await self.send("CAP LS 302")
        await self.send(f"NICK {self.nick}")
        await self.send(f"USER {self.username} 0 * :downtime-bot test client")
        if wanted:
            offered: set[str] = set()
            while True:
                line = await self.wait_for(lambda l: l.command == "CAP" and l.params[1:2] == ("LS",), timeout=timeout)
                offered |= {cap.split("=", 1)[0] for cap in line.text.split()}
                if line.params[2:3] != ("*",):
                    break
            request = sorted(wanted & offered)
            if request:
                await self.send("CAP REQ :" + " ".join(request))
                ack = await self.wait_for(lambda l: l.command == "CAP" and l.params[1:2] in (("ACK",), ("NAK",)), timeout=timeout)
                if ack.params[1] == "ACK":
                    self.acked = set(ack.text.split())
            if self.sasl and "sasl" in self.acked:
                account, password = self.sasl
                await self.send("AUTHENTICATE PLAIN")
                await self.wait_for(lambda l: l.command == "AUTHENTICATE", timeout=timeout)
                token = base64.b64encode(f"{account}\0{account}\0{password}".encode()).decode()
                await self.send(f"AUTHENTICATE {token}")
                await self.wait_for(lambda l: l.command in ("903", "904", "905"), timeout=timeout)
            await self.send("CAP END")
        welcome = await self.wait_for(lambda l: l.command == "001", timeout=timeout)
        self.nick = welcome.params[0]

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                raw = await self._reader.readline()
                if not raw:
                    break
                text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
                line = Line.parse(text, time.monotonic())
                if line.command == "PING":
                    await self.send("PONG :" + line.text)
                if line.command == "NICK" and line.nick == self.nick:
                    self.nick = line.text
                self.lines.append(line)
                self._new_line.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed = True
            self._new_line.set()

    async def send(self, line: str) -> None:
        await self.send_bytes(line.encode("utf-8") + b"\r\n")

    async def send_bytes(self, data: bytes) -> None:
        """Write raw bytes (for tests that need invalid encodings or odd framing)."""
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    def mark(self) -> int:
        """Move the cursor to the end: later `wait_for` calls only see newer lines."""
        self.cursor = len(self.lines)
        return self.cursor

    async def wait_for(self, match: Matcher, *, timeout: float = 10.0, since: int | None = None) -> Line:
        """The first line after the cursor (or `since`) that matches; moves the cursor past it."""
        found = await self.wait_for_count(match, 1, timeout=timeout, since=since)
        return found[0]

    async def wait_for_count(
        self, match: Matcher, count: int, *, timeout: float = 10.0, since: int | None = None
    ) -> list[Line]:
        """The first ``count`` matching lines after the cursor; moves the cursor past the last."""
        predicate = _matcher(match)
        start = self.cursor if since is None else since
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [(i, line) for i, line in enumerate(self.lines[start:], start) if predicate(line)]
            if len(found) >= count:
                self.cursor = found[count - 1][0] + 1
                return [line for _, line in found[:count]]
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed:
                recent = "\n".join(l.raw for l in self.lines[-15:])
                state = "connection closed" if self.closed else f"timeout after {timeout} s"
                raise AssertionError(
                    f"{self.nick}: {state}, {len(found)}/{count} matching lines; last lines:\n{recent}"
                )
            self._new_line.clear()
            try:
                await asyncio.wait_for(self._new_line.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def join(self, channel: str, timeout: float = 10.0) -> None:
        await self.send(f"JOIN {channel}")
        await self.wait_for(
            lambda l: l.command == "JOIN" and l.nick == self.nick and l.params[:1] == (channel,),
            timeout=timeout,
        )
        # the end of NAMES tells the join is complete
        await self.wait_for(lambda l: l.command == "366", timeout=timeout)

    async def privmsg(self, target: str, text: str) -> None:
        await self.send(f"PRIVMSG {target} :{text}")

    async def change_nick(self, new: str, timeout: float = 10.0) -> None:
        old = self.nick
        await self.send(f"NICK {new}")
        await self.wait_for(lambda l: l.command == "NICK" and l.nick == old, timeout=timeout)

    def play_dead(self) -> None:
        """Stop reading (no PONG, nothing more recorded) with the connection left open: a client
        whose machine died, as the server sees it until its ping timeout."""
        if self._task is not None:
            self._task.cancel()
        transport = self._writer.transport if self._writer is not None else None
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()

    async def quit(self, message: str = "bye") -> None:
        if self._writer is None:
            return
        if not self.closed:
            try:
                await self.send(f"QUIT :{message}")
            except (ConnectionError, RuntimeError):
                pass
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._writer = None


def main(argv: list[str]) -> int:
    if argv[1:2] == ["install"]:
        ensure_installed()
        return 0
    print("usage: python -m tests.servers.ircd install", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
