"""A mailer that records (the Mailer port)."""
from __future__ import annotations

from datetime import datetime

from models.ports import Mail, MailError


class FakeMailer:
    """Records every mail in ``.sent``; raises ``.fail_with`` instead when set."""

    def __init__(self) -> None:
        self.sent: list[Mail] = []
        self.fail_with: MailError | None = None

    def send(self, mail: Mail, now: datetime) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(mail)
