"""Outgoing mail: notices, drafts and calendar invitations.

A `Mail` is what the bot wants to say (already rendered from the templates);
`build_message` turns it into an RFC 5322 message; a *mailer* delivers it:

- `SmtpMailer`: a real SMTP server (STARTTLS, implicit TLS or plain; optional login).
  It is synchronous: callers run ``send`` in a thread, never on the event loop.
- `PrintMailer`: writes the mail to a text stream (console mode without ``[mail]``).
- `MailDelivery`: the outbox worker's side: an outbox row made a `Mail`, sent, failures reported.

Errors: `MailUnavailable` means "try again later" (connection refused, timeout,
4xx); `MailRejected` means retrying will not help (5xx, or the server cannot do what
the configuration asks, e.g. no STARTTLS). Both derive from `MailError`.

The Message-ID comes from the caller, made from a stable key, so a retry of the same
notice carries the same Message-ID and recipients' clients can tell it is a duplicate
in the rare case where the server took the mail but the connection broke before it
said so.
"""
from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from typing import TextIO

from sqlalchemy.orm import Session, sessionmaker

from adapters.outbox import Permanent, Retry
from models import jobs
from models.events import MailFailed
from models.instance import event_uid, id_suffix
from models.orm import Downtime, OutboxMessage
from models.ports import Clock, DurationObserver, Mail, Mailer, MailError, MailRejected, MailUnavailable, one_line
from models.reactions import Reactions

log = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "tls", "none")
DEFAULT_SENDER = "Downtime bot <downtimebot@example.org>"
ICS_FILENAME = "invite.ics"
_ICS_METHOD = re.compile(rb"^METHOD:([A-Za-z-]+)\r?$", re.MULTILINE)


@dataclass(frozen=True)
class MailConfig:
    """The ``[mail]`` section, parsed. ``password`` comes from the environment."""

    host: str
    port: int
    security: str = "starttls"  # "starttls" | "tls" (implicit, usually 465) | "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = DEFAULT_SENDER
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"[mail] security must be one of {', '.join(SECURITY_MODES)}")
        if not 0 < self.port < 65536:
            raise ValueError(f"[mail] port must be 1-65535, not {self.port}")
        if "@" not in parseaddr(self.sender)[1]:
            raise ValueError(f"[mail] from is not a mail address: {self.sender!r}")
        if self.username and self.password is None:
            raise ValueError("[mail] username is set but no password was given")


def build_message(mail: Mail, sender: str, now: datetime) -> EmailMessage:
    """The RFC 5322 message for `mail`, with its calendar parts when it has an ics.

    With an ics the structure is::

        multipart/mixed
          multipart/alternative
            text/plain; charset=utf-8
            text/calendar; charset=utf-8; method=REQUEST
          application/ics; name=invite.ics  (attachment)

    Why: RFC 6047 (iMIP) puts the invitation in a text/calendar part whose
    ``method`` parameter equals the object's METHOD; Outlook/Exchange look for it
    as an alternative of the text body (MS-OXCMAIL), while some clients only act
    on attachments, so the same object is attached again. Google Calendar and
    Thunderbird send invitations in this shape.
    """
    date = mail.date or now
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = one_line(sender)
    if mail.to:
        message["To"] = ", ".join(one_line(a) for a in mail.to)
    if mail.cc:
        message["Cc"] = ", ".join(one_line(a) for a in mail.cc)
    message["Subject"] = one_line(mail.subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = mail.message_id
    if mail.in_reply_to:
        message["In-Reply-To"] = mail.in_reply_to
    references = list(mail.references)
    if mail.in_reply_to and mail.in_reply_to not in references:
        references.append(mail.in_reply_to)
    if references:
        message["References"] = " ".join(references)
    # RFC 3834: tells vacation responders and list software not to answer a bot.
    message["Auto-Submitted"] = "auto-generated"

    if mail.ics is None:
        message.set_content(mail.body, charset="utf-8", cte=_text_cte(mail.body))
        return message

    method = mail.ics_method.upper()
    found = _ICS_METHOD.search(mail.ics)
    if not found or found.group(1).decode().upper() != method:
        raise ValueError(f"the ics has no METHOD:{method} (RFC 6047 wants them equal)")
    alternative = MIMEPart(policy=SMTP_POLICY)
    alternative.set_content(mail.body, charset="utf-8", cte=_text_cte(mail.body))
    ics_text = mail.ics.decode("utf-8")
    alternative.add_alternative(
        ics_text, subtype="calendar", charset="utf-8", cte=_text_cte(ics_text),
        params={"method": method},
    )
    message["MIME-Version"] = "1.0"
    message.make_mixed()
    # typeshed lets an EmailMessage attach only EmailMessages; the email package takes any
    # part, and a MIMEPart keeps the MIME-Version header out of the body part.
    message.attach(alternative)  # type: ignore[arg-type]
    message.add_attachment(
        mail.ics, maintype="application", subtype="ics", filename=ICS_FILENAME
    )
    return message


def _text_cte(text: str) -> str:
    # The email package base64-encodes text with bare LF line ends, which breaks
    # the CRLF that RFC 5545 requires in the calendar part; quoted-printable (or
    # 7bit) keeps CRLF on the wire.
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


class SmtpMailer:
    """Delivers mail through one SMTP server; a new connection per mail.

    ``send`` blocks (network I/O and the backoff sleeps): run it in a thread.
    """

    def __init__(
        self,
        config: MailConfig,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        self._config = config
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._ssl_context = ssl_context
        self.on_request: DurationObserver | None = None  # the metrics: seconds per SMTP session
        if config.username and config.security == "none":
            log.warning(
                "[mail] security = none with a username: the password crosses the network in clear"
            )

    def send(self, mail: Mail, now: datetime) -> None:
        """Deliver `mail`; retry transient failures with exponential backoff.

        Raises MailUnavailable when every attempt failed transiently, MailRejected
        at once on a permanent failure.
        """
        message = build_message(mail, self._config.sender, now)
        recipients = mail.recipients
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self._timed(message, recipients)
            except MailRejected as exc:
                log.error("mail %s rejected: %s", mail.message_id, exc)
                raise
            except MailUnavailable as exc:
                if attempt == attempts:
                    log.warning(
                        "mail %s not sent after %d attempts: %s", mail.message_id, attempts, exc
                    )
                    raise
                delay = self._backoff * 2 ** (attempt - 1)
                log.info(
                    "mail %s: attempt %d/%d failed (%s); retrying in %.1fs",
                    mail.message_id, attempt, attempts, exc, delay,
                )
                self._sleep(delay)
            else:
                log.info("mail %s sent to %d recipients", mail.message_id, len(recipients))
                return

    def _timed(self, message: EmailMessage, recipients: Iterable[str]) -> None:
        if self.on_request is None:
            return self._deliver(message, recipients)
        started = time.perf_counter()
        try:
            return self._deliver(message, recipients)
        finally:
            self.on_request(time.perf_counter() - started)

    def _deliver(self, message: EmailMessage, recipients: Iterable[str]) -> None:
        config = self._config
        try:
            smtp = self._connect()
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            raise _classify(exc) from exc
        try:
            smtp.set_debuglevel(0)  # debug output would include the AUTH exchange
            smtp.ehlo()
            if config.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if config.username:
                smtp.login(config.username, config.password or "")
            refused = smtp.send_message(
                message, from_addr=parseaddr(config.sender)[1], to_addrs=list(recipients)
            )
            if refused:
                # The others have it: raising would make the caller send it to them again.
                log.warning(
                    "mail %s refused for %s", message["Message-ID"],
                    ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in refused.items()),
                )
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc) from exc
        finally:
            _quit(smtp)

    def _connect(self) -> smtplib.SMTP:
        config = self._config
        if config.security == "tls":
            return smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=self._context()
            )
        return smtplib.SMTP(config.host, config.port, timeout=config.timeout)

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()


def _quit(smtp: smtplib.SMTP) -> None:
    # A failing QUIT after the server accepted the mail must not turn into an
    # error: the caller would send the mail again.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError) as exc:
        log.debug("QUIT failed: %s", exc)
        smtp.close()


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def _classify(exc: Exception) -> MailError:
    """Map what smtplib/ssl/socket raised to transient or permanent."""
    # Order matters: every smtplib exception is also an OSError.
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = exc.recipients.values()
        text = "; ".join(f"{rcpt}: {_reply(c, m)}" for rcpt, (c, m) in exc.recipients.items())
        if all(400 <= code < 500 for code, _ in replies):
            return MailUnavailable(f"recipients refused: {text}")
        return MailRejected(f"recipients refused: {text}")
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _reply(exc.smtp_code, exc.smtp_error)
        if 400 <= exc.smtp_code < 500:
            return MailUnavailable(reply)
        return MailRejected(reply)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return MailUnavailable(f"server disconnected: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        # "STARTTLS extension not supported by server", "No suitable
        # authentication method found": the server will not change its mind.
        return MailRejected(str(exc))
    if isinstance(exc, OSError):  # refused, unreachable, timeout, TLS failure
        return MailUnavailable(f"{type(exc).__name__}: {exc}")
    return MailRejected(f"{type(exc).__name__}: {exc}")


class PrintMailer:
    """Writes each mail (headers and text, not the ics) to a text stream."""

    def __init__(self, stream: TextIO, sender: str = DEFAULT_SENDER) -> None:
        self._stream = stream
        self._sender = sender

    def send(self, mail: Mail, now: datetime) -> None:
        message = build_message(mail, self._sender, now)
        lines = ["----- mail -----"]
        for name in ("From", "To", "Cc", "Date", "Message-ID", "In-Reply-To",
                     "References", "Subject"):
            if message[name] is not None:
                lines.append(f"{name}: {message[name]}")
        lines.append("")
        lines.append(mail.body.rstrip("\n"))
        if mail.ics is not None:
            lines.append("")
            lines.append(
                f"[attached: {ICS_FILENAME}, calendar {mail.ics_method.upper()}, "
                f"{len(mail.ics)} bytes]"
            )
        lines.append("----- end of mail -----")
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()




def mail_domain(sender: str) -> str:
    """The domain of the bot's Message-IDs and calendar UIDs: its sender address's."""
    return parseaddr(sender)[1].rpartition("@")[2] or "downtimebot.localhost"


class MailDelivery:
    """The deliver function of the "mail" OutboxWorker: builds the mail of an outbox row
    (Message-ID from the row's key, the thread it answers, the calendar invitation with the
    downtime's times as they are now) and sends it through the mailer in a thread.

    A mail that keeps failing (after `report_after` deliveries, each with the mailer's own
    retries) or that is refused for good is recorded as a `MailFailed` event: the reactions
    tell CiDuty, once per mail.
    """

    def __init__(
        self,
        mailer: Mailer,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        reactions: Reactions,
        sender: str,
        report_after: int = 3,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.mailer = mailer
        self.sessions = sessions
        self.clock = clock
        self.reactions = reactions
        self.sender = sender
        self.domain = mail_domain(sender)
        self.report_after = report_after
        self.on_queued = on_queued
        # Why the last delivery failed ("" once one went through): the heartbeat's smtp check.
        self.last_error = ""

    def message_id(self, key: str, token: str = "") -> str:
        """<dt1.r0.announce.mail.<token>@domain>: the outbox key, made a dot-atom (RFC 5322 has no ':'
        there), then the downtime's id token (models/instance.py; none for the old downtimes)."""
        left = re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", ".", key).strip(".")
        return f"<{left}{id_suffix(token)}@{self.domain}>"

    def mail_of(self, row: OutboxMessage) -> Mail:
        job = jobs.load(row.payload)
        if not isinstance(job, jobs.SendMail):
            raise ValueError(f"not a mail: {job.type}")
        ics = None
        token = ""
        if row.downtime_id is not None:
            with self.sessions() as session:
                d = session.get(Downtime, row.downtime_id)
                assert d is not None
                token = d.id_token
                if job.invitation is not None:
                    ics = self._invitation(d, job.invitation, row.created_at)
        thread = self.message_id(job.thread, token) if job.thread else None
        return Mail(
            to=job.to,
            cc=job.cc,
            subject=job.subject,
            body=row.body,
            message_id=self.message_id(row.key, token),
            in_reply_to=thread,
            references=(thread,) if thread else (),
            ics=ics,
            ics_method=job.invitation.method if job.invitation else "REQUEST",
            date=row.created_at,
        )

    def _invitation(self, d: Downtime, invitation: jobs.Invitation, created_at: datetime) -> bytes:
        """The calendar object of `d` as it is now; its UID is downtime-1.<token>@domain."""
        from adapters.calendar import downtime_invitation  # icalendar only when a mail needs it

        return downtime_invitation(
            uid=event_uid(d.id, d.id_token, self.domain),
            sequence=invitation.sequence,
            start=d.start_at,
            end=d.end_at,
            summary=f"Tree-closing downtime #{d.id}",
            description=d.summary,
            organizer=self.sender,
            status=invitation.status,
            method=invitation.method,
            now=created_at,
        )

    async def deliver(self, row: OutboxMessage) -> None:
        try:
            mail = self.mail_of(row)
        except (ValueError, KeyError, TypeError) as err:  # no recipient, a bad address: never sendable as it is
            self._report(row, str(err), final=True)
            raise Permanent(str(err)) from err
        try:
            await asyncio.to_thread(self.mailer.send, mail, self.clock.now())
        except MailRejected as err:
            self._report(row, str(err), final=True)
            raise Permanent(str(err)) from err
        except MailError as err:
            self.last_error = str(err)
            if row.attempts + 1 >= self.report_after:
                self._report(row, str(err), final=False)
            raise Retry(str(err)) from err
        self.last_error = ""

    def _report(self, row: OutboxMessage, reason: str, *, final: bool) -> None:
        try:
            job = jobs.load(row.payload)
            subject, to = (job.subject, job.to) if isinstance(job, jobs.SendMail) else ("", ())
        except (jobs.JobError, KeyError, TypeError):
            subject, to = str(row.payload.get("subject", "")), tuple(row.payload.get("to", ()))
        event = MailFailed(row.downtime_id, job=row.key, subject=subject, to=to, reason=reason, final=final,
                           attempts=row.attempts + 1)
        with self.sessions() as session, session.begin():
            queued = self.reactions.queue(session, self.clock.now(), [event])
        if queued:
            self.on_queued()
