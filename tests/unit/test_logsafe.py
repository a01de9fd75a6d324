"""Secret values are masked in every log line, whoever wrote it; nio never logs at DEBUG."""
from __future__ import annotations

import io
import logging

import bot
from adapters import config as configuration
from adapters.logsafe import Redactor, protect


def logger_to(stream: io.StringIO, secrets: list[str]) -> logging.Logger:
    log = logging.getLogger(f"test.logsafe.{id(stream)}")
    log.propagate = False
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor(secrets))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return log


def test_a_secret_is_masked_in_the_message_its_arguments_and_a_traceback() -> None:
    out = io.StringIO()
    log = logger_to(out, ["hunter2-s3cret"])
    log.info("login with %s", {"password": "hunter2-s3cret"})
    try:
        raise ValueError("refused: hunter2-s3cret")
    except ValueError:
        log.exception("failed")
    assert "hunter2" not in out.getvalue()
    assert "{'password': '****'}" in out.getvalue() and "refused: ****" in out.getvalue()


def test_protect_keeps_nio_at_info_even_when_the_bot_logs_at_debug() -> None:
    root = logging.getLogger("test.logsafe.root")
    logging.getLogger("nio").setLevel(logging.NOTSET)
    protect(["whatever-secret"], root)
    assert logging.getLogger("nio").getEffectiveLevel() >= logging.INFO


def test_the_bot_masks_every_secret_its_configuration_names_and_the_database_password() -> None:
    config = configuration._build({
        "bot": {"database": "postgresql+psycopg://bot@db.example.org/dt", "database_password_env": "DB_PW"},
        "irc": {"sasl_password_env": "IRC_PW"}, "mail": {"password_env": "MAIL_PW"},
    }, "test")
    values = bot.secret_values(config, {"IRC_PW": "irc-pw-456", "MAIL_PW": "mail-pw-789", "DB_PW": "db-pw-123",
                                        "OTHER": "x"})
    assert sorted(values) == ["db-pw-123", "irc-pw-456", "mail-pw-789"]
