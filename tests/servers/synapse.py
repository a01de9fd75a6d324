"""A real Synapse homeserver for integration tests, plus a counting proxy and a test user.

    with Synapse() as hs:                       # raised rate limits
        alice = hs.register("alice", "pw")      # -> "@alice:localhost"
        proxy = hs.proxy()                      # point the bot at proxy.url to count its requests
        hs.stop(); hs.start()                   # an outage, same port

Synapse lives in its own virtualenv (``scripts/install-synapse.sh``; ``$SYNAPSE_VENV`` or
``<repo>/.synapse-venv``). `ensure_synapse_installed` installs it when ``CI=true`` and
raises `SynapseMissing` otherwise, so a test can skip with a clear reason.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import nio

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-synapse.sh"
SERVER_NAME = "localhost"

# Every rc_* limit Synapse knows, raised so that tests see no 429 unless they ask for it.
_FAST = {"per_second": 10000, "burst_count": 10000}
RAISED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _FAST,
    "rc_registration": _FAST,
    "rc_registration_token_validity": _FAST,
    "rc_login": {"address": _FAST, "account": _FAST, "failed_attempts": _FAST},
    "rc_admin_redaction": _FAST,
    "rc_joins": {"local": _FAST, "remote": _FAST},
    "rc_joins_per_room": _FAST,
    "rc_3pid_validation": _FAST,
    "rc_invites": {"per_room": _FAST, "per_user": _FAST, "per_issuer": _FAST},
    "rc_third_party_invite": _FAST,
    "rc_room_creation": _FAST,
    "rc_profile": _FAST,
    "rc_reports": _FAST,
    "rc_media_create": _FAST,
    "rc_presence": {"per_user": _FAST},
    "rc_delayed_event_mgmt": _FAST,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10000,
        "sleep_delay": 0,
        "reject_limit": 10000,
        "concurrent": 10000,
    },
}


class SynapseMissing(RuntimeError):
    """Synapse is not installed and this is not CI (where it would be installed)."""


def synapse_venv() -> Path:
    return Path(os.environ.get("SYNAPSE_VENV", REPO_ROOT / ".synapse-venv"))


def _synapse_importable(python: Path) -> bool:
    if not python.exists():
        return False
    done = subprocess.run(
        [str(python), "-c", "import synapse.app.homeserver"], capture_output=True, check=False
    )
    return done.returncode == 0


def ensure_synapse_installed() -> Path:
    """The Python of the Synapse venv; installs it under CI=true, else raises SynapseMissing."""
    python = synapse_venv() / "bin" / "python"
    if _synapse_importable(python):
        return python
    if os.environ.get("CI") != "true":
        raise SynapseMissing(
            f"Synapse is not installed in {synapse_venv()}; run scripts/install-synapse.sh "
            "(or set CI=true to install it automatically)"
        )
    subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True)
    if not _synapse_importable(python):
        raise RuntimeError(f"scripts/install-synapse.sh ran but {python} cannot import synapse")
    return python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Synapse:
    """One Synapse process in a temporary directory; a context manager.

    ``rate_limits="default"`` keeps Synapse's own limits (rc_message 0.2/s, burst 10), for the
    test that proves 429 handling; ``"raised"`` lifts every ``rc_*`` limit.
    """

    def __init__(
        self, rate_limits: Literal["raised", "default"] = "raised", startup_timeout: float = 60
    ) -> None:
        self.rate_limits = rate_limits
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_name = SERVER_NAME
        self.shared_secret = secrets.token_hex(16)
        self.tokens: dict[str, str] = {}  # MXID -> access token from registration
        self._python: Path | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._proxies: list[CountingProxy] = []
        self._admin_token: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Synapse:
        self._python = ensure_synapse_installed()
        self._dir = Path(tempfile.mkdtemp(prefix="synapse-test-"))
        try:
            self._write_config()
            subprocess.run(
                [str(self._python), "-m", "synapse.app.homeserver", "-c", "homeserver.yaml",
                 "--generate-keys"],
                cwd=self._dir, check=True, capture_output=True,
            )
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proxy in self._proxies:
            proxy.close()
        self._proxies.clear()
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until the client API answers."""
        assert self._dir is not None and self._python is not None, "use Synapse as a context manager"
        if self.running:
            return
        self._log_file = open(self._dir / "synapse.log", "ab")  # noqa: SIM115 (closed in stop)
        self._process = subprocess.Popen(
            [str(self._python), "-m", "synapse.app.homeserver", "-c", "homeserver.yaml"],
            cwd=self._dir, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Synapse exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Synapse did not answer within {self.startup_timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s. The data directory is kept for `start`."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        if self._dir is None or not (self._dir / "synapse.log").exists():
            return ""
        text = (self._dir / "synapse.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _write_config(self) -> None:
        assert self._dir is not None
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(self._dir / "homeserver.pid"),
            "listeners": [{
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }],
            "database": {"name": "sqlite3", "args": {"database": str(self._dir / "homeserver.db")}},
            "media_store_path": str(self._dir / "media_store"),
            "signing_key_path": str(self._dir / "signing.key"),
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            "bcrypt_rounds": 4,
            "enable_metrics": False,
            "url_preview_enabled": False,
        }
        if self.rate_limits == "raised":
            config.update(RAISED_RATE_LIMITS)
        # YAML is a superset of JSON, and the test venv need not have PyYAML.
        (self._dir / "homeserver.yaml").write_text(json.dumps(config, indent=2))

    # -- HTTP helpers ----------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{method} {path} -> {error.code}: {error.read()!r}") from None

    def register(self, user: str, password: str, admin: bool = False) -> str:
        """Create a user through the shared-secret admin API; returns the MXID."""
        nonce = self._request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([
            nonce.encode(), user.encode(), password.encode(), b"admin" if admin else b"notadmin",
        ]))
        reply = self._request("POST", "/_synapse/admin/v1/register", {
            "nonce": nonce, "username": user, "password": password,
            "admin": admin, "mac": mac.hexdigest(),
        })
        self.tokens[reply["user_id"]] = reply["access_token"]
        return str(reply["user_id"])

    def mxid(self, user: str) -> str:
        return f"@{user}:{self.server_name}"

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            mxid = self.register("harness-admin-" + secrets.token_hex(3), secrets.token_hex(8), True)
            self._admin_token = self.tokens[mxid]
        return self._admin_token

    def devices(self, user_id: str) -> list[str]:
        """Device ids of a user, from the admin API."""
        quoted = urllib.parse.quote(user_id)
        reply = self._request("GET", f"/_synapse/admin/v2/users/{quoted}/devices",
                              token=self.admin_token)
        return sorted(device["device_id"] for device in reply["devices"])

    def delete_device(self, user_id: str, device_id: str) -> None:
        """Log a device out from the server side: its access token stops working."""
        quoted = urllib.parse.quote(user_id)
        self._request("DELETE", f"/_synapse/admin/v2/users/{quoted}/devices/{device_id}",
                      token=self.admin_token)

    def exempt_from_rate_limits(self, user_id: str) -> None:
        """Lift the message rate limit for one user (the people in a test, not the bot)."""
        quoted = urllib.parse.quote(user_id)
        self._request("POST", f"/_synapse/admin/v1/users/{quoted}/override_ratelimit",
                      {"messages_per_second": 0, "burst_count": 0}, token=self.admin_token)

    def proxy(self) -> CountingProxy:
        """A started proxy in front of this Synapse; closed with it."""
        proxy = CountingProxy(self.url)
        self._proxies.append(proxy)
        return proxy


# -- counting proxy ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    status: int  # 0 when the proxy dropped the connection


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer (a cancelled long-poll) are normal here.
        log.debug("proxy: connection from %s ended early", client_address, exc_info=True)


class CountingProxy:
    """An HTTP proxy that records every request and can simulate an outage.

    ``mode``: ``"forward"`` (default), ``"unavailable"`` (answers 503 M_UNKNOWN), ``"drop"``
    (closes the connection without an answer). When the upstream is down the proxy answers 502.
    ``fault(path_contains, how)`` applies a fault to matching requests only: ``"unavailable"``
    (503, nothing forwarded) or ``"lose_reply"`` (forwarded, then the connection is closed
    without the answer: the server did it, the client cannot know).
    """

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.mode: Literal["forward", "unavailable", "drop"] = "forward"
        self._lock = threading.Lock()
        self._requests: list[ProxiedRequest] = []
        self._faults: dict[str, Literal["unavailable", "lose_reply"]] = {}
        self._server = _QuietHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, path_contains: str = "", status: int | None = None) -> int:
        return sum(
            1 for r in self.requests
            if path_contains in r.path and (status is None or r.status == status)
        )

    def fault(self, path_contains: str, how: Literal["unavailable", "lose_reply"] | None) -> None:
        """Make requests whose path contains `path_contains` fail `how` (None: clear it)."""
        with self._lock:
            if how is None:
                self._faults.pop(path_contains, None)
            else:
                self._faults[path_contains] = how

    def _fault_for(self, path: str) -> str | None:
        with self._lock:
            return next((how for part, how in self._faults.items() if part in path), None)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(ProxiedRequest(method, path, status))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("proxy: " + format, *args)

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.mode == "drop":
                    proxy._record(self.command, self.path, 0)
                    self.close_connection = True
                    return
                fault = proxy._fault_for(self.path)
                if proxy.mode == "unavailable" or fault == "unavailable":
                    self._answer(503, {"errcode": "M_UNKNOWN", "error": "proxy says unavailable"})
                    return
                headers = {
                    k: v for k, v in self.headers.items()
                    if k.lower() not in ("host", "connection", "keep-alive", "content-length")
                }
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=120
                )
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException):
                    self._answer(502, {"errcode": "M_UNKNOWN", "error": "upstream unreachable"})
                    return
                finally:
                    upstream.close()
                if fault == "lose_reply":
                    proxy._record(self.command, self.path, 0)
                    self.close_connection = True
                    return
                proxy._record(self.command, self.path, response.status)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _answer(self, status: int, body: dict[str, str]) -> None:
                proxy._record(self.command, self.path, status)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        return Handler


# -- a test user ---------------------------------------------------------------------------


class MatrixTestUser:
    """A person in the test: an nio client that syncs in the background and records events.

        async with MatrixTestUser(hs.url, "@alice:localhost", "pw") as alice:
            room = await alice.create_room("ci")
            await alice.send(room, "!downtime list")
            event = await alice.wait_for(lambda e: e.sender == bot_id, room_id=room)
    """

    def __init__(self, homeserver: str, user_id: str, password: str) -> None:
        self.user_id = user_id
        self._password = password
        self.client = nio.AsyncClient(
            homeserver, user_id,
            config=nio.AsyncClientConfig(max_timeouts=2, encryption_enabled=False),
        )
        self.events: list[tuple[str, nio.Event]] = []  # (room_id, event) as synced
        self._new_events = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MatrixTestUser:
        reply = await self.client.login(self._password, device_name="test")
        if not isinstance(reply, nio.LoginResponse):
            raise RuntimeError(f"login of {self.user_id} failed: {reply}")
        first = await self.client.sync(timeout=0)
        if not isinstance(first, nio.SyncResponse):
            raise RuntimeError(f"first sync of {self.user_id} failed: {first}")
        self._task = asyncio.create_task(self._sync_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.client.close()

    async def _sync_loop(self) -> None:
        while True:
            try:
                reply = await self.client.sync(timeout=1000)
            except Exception:  # noqa: BLE001 (an outage test stops the server under us)
                await asyncio.sleep(0.5)
                continue
            if not isinstance(reply, nio.SyncResponse):
                await asyncio.sleep(0.5)
                continue
            for room_id, info in reply.rooms.join.items():
                for event in info.timeline.events:
                    self.events.append((room_id, event))
            self._new_events.set()

    async def create_room(
        self,
        alias: str | None = None,
        invite: tuple[str, ...] = (),
        public: bool = True,
        encrypted: bool = False,
    ) -> str:
        initial_state = []
        if encrypted:
            initial_state.append({
                "type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            })
        reply = await self.client.room_create(
            alias=alias,
            invite=invite,
            preset=nio.RoomPreset.public_chat if public else nio.RoomPreset.private_chat,
            initial_state=initial_state,
        )
        if not isinstance(reply, nio.RoomCreateResponse):
            raise RuntimeError(f"room creation failed: {reply}")
        return reply.room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        reply = await self.client.room_invite(room_id, user_id)
        if not isinstance(reply, nio.RoomInviteResponse):
            raise RuntimeError(f"invite failed: {reply}")

    async def kick(self, room_id: str, user_id: str) -> None:
        reply = await self.client.room_kick(room_id, user_id, reason="test")
        if not isinstance(reply, nio.RoomKickResponse):
            raise RuntimeError(f"kick failed: {reply}")

    async def join(self, room: str) -> str:
        reply = await self.client.join(room)
        if not isinstance(reply, nio.JoinResponse):
            raise RuntimeError(f"join of {room} failed: {reply}")
        return reply.room_id

    async def send(self, room_id: str, text: str, msgtype: str = "m.text") -> str:
        reply = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": msgtype, "body": text}
        )
        if not isinstance(reply, nio.RoomSendResponse):
            raise RuntimeError(f"send failed: {reply}")
        return reply.event_id

    async def wait_for(
        self,
        predicate: Callable[[nio.Event], bool],
        room_id: str | None = None,
        timeout: float = 15,
    ) -> nio.Event:
        """The first event (already synced or arriving within `timeout`) matching `predicate`."""
        async def find() -> nio.Event:
            while True:
                for event_room, event in self.events:
                    if (room_id is None or event_room == room_id) and predicate(event):
                        return event
                self._new_events.clear()
                await self._new_events.wait()

        return await asyncio.wait_for(find(), timeout)

    def messages_from(self, sender: str, room_id: str | None = None) -> list[nio.Event]:
        """Every m.room.message (any msgtype) from `sender` seen so far."""
        return [
            event for event_room, event in self.events
            if event.sender == sender
            and (room_id is None or event_room == room_id)
            and event.source.get("type") == "m.room.message"
        ]


def running_synapse(rate_limits: str = "raised") -> Iterator[Synapse]:
    """A Synapse for a test module (use with ``yield from`` in a fixture).

    Missing Synapse: installed under CI=true (and a failure there fails loudly); skipped otherwise.
    """
    import pytest

    try:
        ensure_synapse_installed()
    except SynapseMissing as missing:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(missing))
    with Synapse(rate_limits=rate_limits) as hs:  # type: ignore[arg-type]
        yield hs
