"""No secret in a log line: the values of the configured secrets are masked in every record, and
the chat libraries that dump whole requests and responses at DEBUG are kept at INFO.

Secrets come from the environment only (the ``*_env`` keys); the bot knows each value at start-up
and hands them to `protect`, which masks them in the message, its arguments and any traceback,
whatever logger wrote the line. matrix-nio logs login requests and responses (password, access
token) at DEBUG, so its loggers never go below INFO, even with ``DOWNTIMEBOT_LOG_LEVEL=DEBUG``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "****"
# Loggers whose DEBUG lines carry request or response bodies (tokens, passwords).
CHATTY = ("nio",)


class Redactor(logging.Filter):
    """Replaces each secret value with ``****`` in a record's final text and traceback."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole; very short values
        # (a test's "x") would mask ordinary words and protect nothing.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self._mask(record.stack_info)
        return True


def protect(secrets: Iterable[str], root: logging.Logger | None = None) -> Redactor:
    """Mask `secrets` on every handler of the root logger; keep the chatty libraries at INFO."""
    root = root or logging.getLogger()
    redactor = Redactor(secrets)
    for handler in root.handlers:
        handler.addFilter(redactor)
    for name in CHATTY:
        library = logging.getLogger(name)
        if library.getEffectiveLevel() < logging.INFO:
            library.setLevel(logging.INFO)
    return redactor
