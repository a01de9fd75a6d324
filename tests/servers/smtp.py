"""A real SMTP server for the integration tests: aiosmtpd on 127.0.0.1, a free port.

It records every message it accepts (envelope sender, envelope recipients, the
parsed message), can require a login, speak STARTTLS or implicit TLS with a
self-signed certificate made for the test, and fail on purpose::

    with SmtpServer(auth=("bot", "s3cret"), tls="starttls", certificate=cert) as server:
        server.refuse(451, count=2)   # the next two messages get 451, then accepted
        ...
        assert server.received[0].rcpt_tos == ("a@example.org",)
"""
from __future__ import annotations

import email
import email.policy
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session, SMTP

log = logging.getLogger(__name__)

TLS_MODES = ("none", "starttls", "implicit")


@dataclass(frozen=True)
class ReceivedMail:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    login: str | None  # the user that logged in, None without AUTH
    tls: bool  # True when the message came over TLS (STARTTLS or implicit)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 / localhost, and contexts using it."""

    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate only (and checks the host)."""
        return ssl.create_default_context(cafile=str(self.cert_path))


def ensure_openssl() -> str:
    """The openssl binary; installed with apt-get under CI=true, else the test skips."""
    found = shutil.which("openssl")
    if found:
        return found
    if os.environ.get("CI") == "true":
        subprocess.run(["apt-get", "install", "-y", "openssl"], check=True)
        found = shutil.which("openssl")
        if not found:
            raise RuntimeError("apt-get installed openssl but it is not on PATH")
        return found
    pytest.skip("openssl is not installed (apt-get install openssl); needed for TLS tests")


def make_certificate(directory: Path) -> Certificate:
    """Generate a one-day self-signed EC certificate for 127.0.0.1 in `directory`."""
    openssl = ensure_openssl()
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-keyout", str(key), "-out", str(cert),
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
            "-addext", "extendedKeyUsage=serverAuth",
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Handler:
    """aiosmtpd handler: records messages, or answers with the injected fault."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[ReceivedMail] = []
        self.data_attempts = 0
        self.refuse_code = 451
        self.refuse_left = 0
        self.reject_code: int | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.data_attempts += 1
            if self.refuse_left > 0:
                self.refuse_left -= 1
                return f"{self.refuse_code} 4.3.0 Temporary failure, try again later"
            if self.reject_code is not None:
                return f"{self.reject_code} 5.7.1 Message rejected"
            raw = bytes(envelope.original_content or envelope.content or b"")
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            login = session.auth_data.login.decode() if isinstance(
                session.auth_data, LoginPassword) else None
            transport = server.transport
            self.received.append(ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,
                raw=raw,
                login=login,
                tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
            ))
        return "250 2.0.0 OK"


class SmtpServer:
    """aiosmtpd in a thread on 127.0.0.1:<free port>; a context manager.

    ``auth=(user, password)`` makes login mandatory (AUTH PLAIN and LOGIN).
    ``tls``: ``"none"``, ``"starttls"`` (STARTTLS required before MAIL and AUTH) or
    ``"implicit"`` (TLS from the first byte, like port 465); both need ``certificate``.
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls: str = "none",
        certificate: Certificate | None = None,
    ) -> None:
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {TLS_MODES}")
        if tls != "none" and certificate is None:
            raise ValueError(f"tls={tls!r} needs a certificate")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls = tls
        self._auth = auth
        self._handler = _Handler()
        self._controller = Controller(self._handler, **self._controller_kwargs(certificate))

    def _controller_kwargs(self, certificate: Certificate | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port}
        if self._auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # aiosmtpd counts only STARTTLS as TLS: with implicit TLS (or none, for
            # plain tests) it would hide AUTH unless this is off.
            kwargs["auth_require_tls"] = self.tls == "starttls"
        if certificate is not None and self.tls == "starttls":
            kwargs["tls_context"] = certificate.server_context()
            kwargs["require_starttls"] = True
        elif certificate is not None and self.tls == "implicit":
            kwargs["ssl_context"] = certificate.server_context()
        return kwargs

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self._auth is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self._auth
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    # lifecycle

    def start(self) -> SmtpServer:
        self._controller.start()
        log.debug("SMTP test server on %s:%d (tls=%s)", self.host, self.port, self.tls)
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # what happened

    @property
    def received(self) -> list[ReceivedMail]:
        with self._handler.lock:
            return list(self._handler.received)

    @property
    def data_attempts(self) -> int:
        """How many times a client got as far as sending a message (DATA)."""
        with self._handler.lock:
            return self._handler.data_attempts

    # fault injection

    def refuse(self, code: int = 451, count: int = 1) -> None:
        """Answer the next `count` messages with a temporary failure, then accept."""
        if not 400 <= code < 500:
            raise ValueError("refuse() is for 4xx codes; use reject() for 5xx")
        with self._handler.lock:
            self._handler.refuse_code = code
            self._handler.refuse_left = count

    def reject(self, code: int = 550) -> None:
        """Answer every message with a permanent failure until `accept()`."""
        if not 500 <= code < 600:
            raise ValueError("reject() is for 5xx codes; use refuse() for 4xx")
        with self._handler.lock:
            self._handler.reject_code = code

    def accept(self) -> None:
        """Clear injected faults."""
        with self._handler.lock:
            self._handler.refuse_left = 0
            self._handler.reject_code = None
