"""The mail adapter against a real SMTP server (aiosmtpd, started by each test)."""
from __future__ import annotations

import base64
import importlib.util
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

if importlib.util.find_spec("aiosmtpd") is None:
    if os.environ.get("CI") == "true":
        subprocess.run([sys.executable, "-m", "pip", "install", "aiosmtpd>=1.4,<2"], check=True)
    else:
        pytest.skip("aiosmtpd is not installed (pip install -e '.[test]')", allow_module_level=True)

from icalendar import Calendar  # noqa: E402

from adapters.calendar import downtime_invitation  # noqa: E402
from adapters.mail import MailConfig, PrintMailer, SmtpMailer, build_message  # noqa: E402
from models.ports import Mail, MailRejected, MailUnavailable  # noqa: E402
from tests.fakes import FakeMailer  # noqa: E402
from tests.servers.smtp import Certificate, SmtpServer, free_port, make_certificate  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    # aiosmtpd itself sets the deprecated Session.login_data on every AUTH.
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning"),
    # Plain-text and implicit-TLS test servers take AUTH without STARTTLS on purpose.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
START = datetime(2026, 12, 5, 14, 0, tzinfo=timezone.utc)
SENDER = "Downtime bot <downtimebot@example.org>"
USER, PASSWORD = "downtimebot", "pw-Zq8!never-logged"


class SleepStub:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as running:
        yield running


@pytest.fixture
def sleep() -> SleepStub:
    return SleepStub()


def mailer_for(server: SmtpServer, sleep: SleepStub, **config: object) -> SmtpMailer:
    settings: dict[str, object] = {"security": "none", "sender": SENDER, "timeout": 5.0}
    settings.update(config)
    ssl_context = settings.pop("ssl_context", None)
    return SmtpMailer(
        MailConfig(server.host, server.port, **settings),  # type: ignore[arg-type]
        sleep=sleep,
        ssl_context=ssl_context,  # type: ignore[arg-type]
    )


def announcement(**changes: object) -> Mail:
    fields: dict[str, object] = {
        "to": ("dev-planning@lists.example.org", "Tree Management <dev-tree-management@lists.example.org>"),
        "cc": ("all@example.org",),
        "subject": "Downtime 7: trees closed 2026-12-05 14:00 UTC for 2h",
        "body": "The trees will be closed for 2 hours.\nBug 1234567: database upgrade.\n",
        "message_id": "<downtime-7-announce@downtimebot.example>",
    }
    fields.update(changes)
    return Mail(**fields)  # type: ignore[arg-type]


def invitation(*, sequence: int = 0, cancelled: bool = False) -> bytes:
    return downtime_invitation(
        uid="downtime-7@downtimebot.example",
        sequence=sequence,
        start=START,
        end=START + timedelta(hours=2),
        summary="Tree closure: downtime 7",
        description="Trees closed for a database upgrade (bug 1234567).",
        organizer=SENDER,
        attendees=("dev-planning@lists.example.org",),
        status="CANCELLED" if cancelled else "CONFIRMED",
        method="CANCEL" if cancelled else "REQUEST",
        now=NOW,
    )


def calendar_parts(message: EmailMessage) -> list[EmailMessage]:
    return [p for p in message.walk() if p.get_content_type() in ("text/calendar", "application/ics")]


def text_of(part: EmailMessage) -> str:
    """A text part's content with the wire's CRLF line ends turned back into LF."""
    return part.get_content().replace("\r\n", "\n")


def only_received(server: SmtpServer) -> EmailMessage:
    assert len(server.received) == 1
    return server.received[0].message


# Headers and envelope


def test_a_mail_arrives_with_from_to_cc_date_and_message_id(server: SmtpServer, sleep: SleepStub) -> None:
    mailer_for(server, sleep).send(announcement(), NOW)

    received = server.received[0]
    message = only_received(server)
    assert received.mail_from == "downtimebot@example.org"
    assert received.rcpt_tos == (
        "dev-planning@lists.example.org", "dev-tree-management@lists.example.org", "all@example.org",
    )
    assert message["From"] == SENDER
    assert message["To"].addresses[1].display_name == "Tree Management"
    assert message["Cc"] == "all@example.org"
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message["Message-ID"] == "<downtime-7-announce@downtimebot.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert text_of(message) == "The trees will be closed for 2 hours.\nBug 1234567: database upgrade.\n"
    assert sleep.calls == []


def test_the_mail_date_wins_over_now_when_given(server: SmtpServer, sleep: SleepStub) -> None:
    written = datetime(2026, 11, 30, 8, 0, tzinfo=timezone(timedelta(hours=-8)))

    mailer_for(server, sleep).send(announcement(date=written), NOW)

    assert parsedate_to_datetime(only_received(server)["Date"]) == written


def test_a_non_ascii_subject_and_body_arrive_intact(server: SmtpServer, sleep: SleepStub) -> None:
    subject = "Fermeture des arbres — mise à jour 🌲 ünïcödé " + "long " * 20
    body = "Grüße aus der Wartung: ça marche.\n"

    mailer_for(server, sleep).send(announcement(subject=subject, body=body), NOW)

    message = only_received(server)
    assert message["Subject"] == subject.strip()
    assert text_of(message) == body
    assert b"=?utf-8?" in server.received[0].raw  # RFC 2047, not raw 8-bit headers


def test_a_reply_carries_in_reply_to_and_references(server: SmtpServer, sleep: SleepStub) -> None:
    reply = announcement(
        subject="Re: Downtime 7: cancelled",
        message_id="<downtime-7-cancel@downtimebot.example>",
        in_reply_to="<downtime-7-announce@downtimebot.example>",
        references=("<downtime-7-draft@downtimebot.example>",),
    )

    mailer_for(server, sleep).send(reply, NOW)

    message = only_received(server)
    assert message["In-Reply-To"] == "<downtime-7-announce@downtimebot.example>"
    assert message["References"].split() == [
        "<downtime-7-draft@downtimebot.example>", "<downtime-7-announce@downtimebot.example>",
    ]


def test_a_line_break_in_the_subject_does_not_inject_a_header(server: SmtpServer, sleep: SleepStub) -> None:
    evil = announcement(
        subject="Downtime 7\r\nBcc: victim@evil.example\nX-Injected: yes\r\n\r\nbody takeover",
        to=("dev-planning@lists.example.org\r\nBcc: victim2@evil.example",),
    )

    mailer_for(server, sleep).send(evil, NOW)

    received = server.received[0]
    message = only_received(server)
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert message["Subject"] == "Downtime 7 Bcc: victim@evil.example X-Injected: yes body takeover"
    assert "victim@evil.example" not in received.rcpt_tos
    assert text_of(message).startswith("The trees will be closed")


# Calendar invitations


def test_an_invitation_carries_the_ics_inline_and_attached(server: SmtpServer, sleep: SleepStub) -> None:
    mailer_for(server, sleep).send(announcement(ics=invitation(sequence=0)), NOW)

    message = only_received(server)
    assert message.get_content_type() == "multipart/mixed"
    inline, attached = calendar_parts(message)
    assert inline.get_content_type() == "text/calendar"
    assert inline.get_param("method") == "REQUEST"
    assert attached.get_filename() == "invite.ics"
    assert inline.get_payload(decode=True) == attached.get_payload(decode=True)
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert "Bug 1234567" in text_of(text)

    calendar = Calendar.from_ical(attached.get_payload(decode=True))
    event = calendar.walk("VEVENT")[0]
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == "downtime-7@downtimebot.example"
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART") == START
    assert event.decoded("DTSTART").utcoffset() == timedelta(0)
    assert event.decoded("DTEND") == START + timedelta(hours=2)
    assert str(event["STATUS"]) == "CONFIRMED"
    assert b"\r\nDTSTART:20261205T140000Z\r\n" in inline.get_payload(decode=True)


def test_a_cancellation_has_status_cancelled_and_a_higher_sequence(server: SmtpServer, sleep: SleepStub) -> None:
    mailer = mailer_for(server, sleep)
    mailer.send(announcement(ics=invitation(sequence=0)), NOW)
    mailer.send(
        announcement(
            message_id="<downtime-7-cancel@downtimebot.example>",
            in_reply_to="<downtime-7-announce@downtimebot.example>",
            ics=invitation(sequence=1, cancelled=True),
            ics_method="CANCEL",
        ),
        NOW,
    )

    first, second = (calendar_parts(r.message)[0] for r in server.received)
    assert second.get_param("method") == "CANCEL"
    before = Calendar.from_ical(first.get_payload(decode=True))
    after = Calendar.from_ical(second.get_payload(decode=True))
    assert str(after["METHOD"]) == "CANCEL"
    event = after.walk("VEVENT")[0]
    assert str(event["STATUS"]) == "CANCELLED"
    assert event["UID"] == before.walk("VEVENT")[0]["UID"]
    assert int(event["SEQUENCE"]) > int(before.walk("VEVENT")[0]["SEQUENCE"])


def test_an_ics_whose_method_differs_from_ics_method_is_refused() -> None:
    with pytest.raises(ValueError, match="METHOD:CANCEL"):
        build_message(announcement(ics=invitation(), ics_method="CANCEL"), SENDER, NOW)


# TLS and login


def test_starttls_with_login_delivers_over_tls(certificate: Certificate, sleep: SleepStub) -> None:
    with SmtpServer(auth=(USER, PASSWORD), tls="starttls", certificate=certificate) as server:
        mailer = mailer_for(
            server, sleep, security="starttls", username=USER, password=PASSWORD,
            ssl_context=certificate.client_context(),
        )
        mailer.send(announcement(), NOW)

        received = server.received[0]
    assert received.tls is True
    assert received.login == USER


def test_implicit_tls_with_login_delivers_over_tls(certificate: Certificate, sleep: SleepStub) -> None:
    with SmtpServer(auth=(USER, PASSWORD), tls="implicit", certificate=certificate) as server:
        mailer = mailer_for(
            server, sleep, security="tls", username=USER, password=PASSWORD,
            ssl_context=certificate.client_context(),
        )
        mailer.send(announcement(), NOW)

        received = server.received[0]
    assert received.tls is True
    assert received.login == USER


def test_an_untrusted_certificate_is_not_accepted(certificate: Certificate, sleep: SleepStub) -> None:
    with SmtpServer(tls="starttls", certificate=certificate) as server:
        # The default context trusts the system CAs only, not our self-signed cert.
        mailer = mailer_for(server, sleep, security="starttls")
        with pytest.raises(MailUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            mailer.send(announcement(), NOW)

        assert server.received == []


def test_starttls_against_a_server_without_it_is_rejected_at_once(server: SmtpServer, sleep: SleepStub) -> None:
    mailer = mailer_for(server, sleep, security="starttls")

    with pytest.raises(MailRejected, match="STARTTLS"):
        mailer.send(announcement(), NOW)

    assert sleep.calls == []


def test_a_wrong_password_is_rejected_without_retry(sleep: SleepStub) -> None:
    with SmtpServer(auth=(USER, PASSWORD)) as server:
        mailer = mailer_for(server, sleep, username=USER, password="wrong")
        with pytest.raises(MailRejected, match="535"):
            mailer.send(announcement(), NOW)
        assert server.received == []
    assert sleep.calls == []


def test_the_password_never_appears_in_log_records(
    certificate: Certificate, sleep: SleepStub, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    encoded = [
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    ]
    with SmtpServer(auth=(USER, PASSWORD), tls="starttls", certificate=certificate) as server:
        good = mailer_for(
            server, sleep, security="starttls", username=USER, password=PASSWORD,
            ssl_context=certificate.client_context(),
        )
        good.send(announcement(), NOW)
        server.refuse(451, count=1)
        good.send(announcement(), NOW)
    with pytest.raises(MailUnavailable) as unavailable:
        mailer_for(server, sleep, username=USER, password=PASSWORD).send(announcement(), NOW)

    # The test server's own logger ("mail.log") echoes the client's AUTH line; only
    # what our side logs counts.
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert any(r.name == "adapters.mail" for r in ours)
    for record in ours:
        text = record.getMessage() + (record.exc_text or "")
        assert PASSWORD not in text
        assert not any(secret in text for secret in encoded)
    assert PASSWORD not in str(unavailable.value)
    assert PASSWORD not in repr(good._config)  # noqa: SLF001 - the config's repr is what a traceback shows


# Faults and retries


def test_a_temporary_failure_is_retried_and_the_mail_arrives_once(server: SmtpServer, sleep: SleepStub) -> None:
    server.refuse(451, count=2)

    mailer_for(server, sleep).send(announcement(), NOW)

    assert len(server.received) == 1
    assert server.data_attempts == 3
    assert sleep.calls == [1.0, 2.0]


def test_a_permanent_failure_raises_mail_rejected_without_retry(server: SmtpServer, sleep: SleepStub) -> None:
    server.reject(550)

    with pytest.raises(MailRejected, match="550"):
        mailer_for(server, sleep).send(announcement(), NOW)

    assert server.data_attempts == 1
    assert server.received == []
    assert sleep.calls == []


def test_temporary_failures_beyond_the_retries_raise_mail_unavailable(server: SmtpServer, sleep: SleepStub) -> None:
    server.refuse(451, count=10)

    with pytest.raises(MailUnavailable, match="451"):
        mailer_for(server, sleep).send(announcement(), NOW)

    assert server.data_attempts == 4
    assert server.received == []


def test_a_server_that_is_not_running_raises_mail_unavailable_after_retries(sleep: SleepStub) -> None:
    port = free_port()  # nothing listens here
    mailer = SmtpMailer(
        MailConfig("127.0.0.1", port, security="none", sender=SENDER, timeout=5.0),
        retries=3, backoff=0.5, sleep=sleep,
    )

    with pytest.raises(MailUnavailable, match="ConnectionRefused"):
        mailer.send(announcement(), NOW)

    assert sleep.calls == [0.5, 1.0, 2.0]


# Print and fake mailers


def test_print_mailer_writes_headers_and_body_and_mentions_the_attachment() -> None:
    stream = io.StringIO()

    PrintMailer(stream, SENDER).send(announcement(subject="Fermeture — ünïcode", ics=invitation()), NOW)

    text = stream.getvalue()
    assert "From: Downtime bot <downtimebot@example.org>\n" in text
    assert "To: dev-planning@lists.example.org, Tree Management <dev-tree-management@lists.example.org>\n" in text
    assert "Cc: all@example.org\n" in text
    assert "Subject: Fermeture — ünïcode\n" in text
    assert "Message-ID: <downtime-7-announce@downtimebot.example>\n" in text
    assert "Bug 1234567: database upgrade." in text
    assert "[attached: invite.ics, calendar REQUEST," in text
    assert "BEGIN:VCALENDAR" not in text


def test_fake_mailer_records_what_was_sent_or_raises_the_given_error() -> None:
    fake = FakeMailer()
    fake.send(announcement(), NOW)
    fake.fail_with = MailUnavailable("down")

    with pytest.raises(MailUnavailable):
        fake.send(announcement(subject="second"), NOW)

    assert [m.subject for m in fake.sent] == ["Downtime 7: trees closed 2026-12-05 14:00 UTC for 2h"]


def test_a_mail_without_recipients_or_with_a_bad_message_id_is_refused() -> None:
    with pytest.raises(ValueError, match="recipient"):
        announcement(to=(), cc=())
    with pytest.raises(ValueError, match="message id"):
        announcement(message_id="downtime-7")


def test_a_config_with_an_unknown_security_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="security"):
        MailConfig("smtp.example.org", 587, security="ssl")

