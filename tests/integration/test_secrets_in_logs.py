"""No secret ever reaches a log line: a whole bot run (`python bot.py`, IRC with SASL on InspIRCd +
Anope, the console, mail with a login over TLS, Bugzilla with an API key) with every secret set
to a distinctive value and the log at DEBUG; then every byte it wrote is searched for them."""
from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_irc_bot import PASSWORDS, BotProcess, _require, tag
from tests.servers.bugzilla import BugzillaServer
from tests.servers.ircd import InspircdAnope
from tests.servers.smtp import SmtpServer, make_certificate
from tests.servers.synapse import Synapse, running_synapse

pytestmark = pytest.mark.integration

# Every secret the configuration can name, each with a value found nowhere else.
SECRETS = {
    "TEST_IRC_SASL": PASSWORDS["downtimebot"],  # the services account's real password
    "TEST_IRC_NICKSERV": "nickserv-Vq7Kp2Zr",
    "TEST_MAIL_PASSWORD": "mail-Hx4Wn8Ty",
    "TEST_BUGZILLA_KEY": "bugzilla-Lm3Qs9Fd",
    "TEST_TREESTATUS_TOKEN": "treestatus-Jc6Rb1Pv",
    "TEST_MATRIX_PASSWORD": "matrix-Ue5Ga0Xn",
    "TEST_MATRIX_TOKEN": "matrix-token-Oi2Yw7Ck",
}


@pytest.fixture(scope="module")
def services() -> Iterator[InspircdAnope]:
    _require("inspircd", "anope")
    with InspircdAnope() as server:
        for account in ("downtimebot", "ciduty"):
            server.register(account, PASSWORDS[account])
        yield server


def test_a_whole_run_with_every_secret_set_never_logs_one(services: InspircdAnope, tmp_path: Path) -> None:
    certificate = make_certificate(tmp_path)
    with SmtpServer(auth=("bot", SECRETS["TEST_MAIL_PASSWORD"]), tls="implicit", certificate=certificate) as smtp, \
            BugzillaServer() as bugzilla:
        bugzilla.add_account("downtime-bot@example.org", SECRETS["TEST_BUGZILLA_KEY"])
        bugzilla.add_bug(4242, "Move the build farm", assigned_to="dev@example.org")
        (tmp_path / "run").mkdir()
        bot = BotProcess(
            tmp_path / "run", services.port, tag(), roles={"ciduty": "ciduty"}, transports="irc,console",
            irc={"identity": "account", "nick": "downtimebot", "sasl_username": "downtimebot",
                 "sasl_password_env": "TEST_IRC_SASL", "nickserv_password_env": "TEST_IRC_NICKSERV",
                 "allow_plaintext_sasl": "on", "line_rate": "5"},
            env={**SECRETS, "SSL_CERT_FILE": str(certificate.cert_path)},
        )
        bot.env["DOWNTIMEBOT_LOG_LEVEL"] = "DEBUG"
        with open(bot.config, "a") as ini:
            ini.write(
                "[mail]\n"
                f"host = 127.0.0.1\nport = {smtp.port}\ntls = on\nstarttls = off\nusername = bot\n"
                "password_env = TEST_MAIL_PASSWORD\nfrom = Downtime bot <bot@example.org>\n"
                "preapprovers = relman@example.org\nannounce_to = dev-planning@example.org\n"
                "[bugzilla]\n"
                f"url = {bugzilla.url}\napi_key_env = TEST_BUGZILLA_KEY\n"
                "[matrix]\n"  # not in transports: its secrets are named but never read
                "password_env = TEST_MATRIX_PASSWORD\n"
                "[trees]\ntreestatus_token_env = TEST_TREESTATUS_TOKEN\n"
            )

        async def scenario() -> None:
            bot.start()
            await bot.joined()
            assert bot.count("IRC logged in as account downtimebot") == 1
            bot.console(bot.ci, "alice", "!downtime propose in 3d for 2h bug 4242 -- Move the build farm")
            # Another person's line does not wait for this one (which asks Bugzilla first): wait
            # for the answer, as CiDuty would.
            await bot.wait_out("Downtime #1 proposed by alice")
            bot.console(bot.ci, "ciduty", "!downtime approve 1")
            deadline = time.monotonic() + 60
            while not smtp.received or not bugzilla.requests_to("PUT", "/rest/bug/4242"):
                assert time.monotonic() < deadline, bot.log_text()[-3000:]
                await asyncio.sleep(0.1)

        try:
            asyncio.run(scenario())
        finally:
            bot.stop()
        everything = bot.log_text() + bot.out.read_text(errors="replace")
        assert "IRC >> AUTHENTICATE ****" in everything  # the secret lines were there, masked
        assert "downtime-bot running: transports irc, console, database sqlite:///" in everything
        leaked = [name for name, value in SECRETS.items() if value in everything]
        assert leaked == []
        assert stat.S_IMODE(bot.db.stat().st_mode) == 0o600


@pytest.fixture(scope="module")
def synapse() -> Iterator[Synapse]:
    yield from running_synapse("raised")


def test_a_matrix_run_at_debug_logs_neither_the_password_nor_the_access_token(synapse: Synapse, tmp_path: Path) -> None:
    """Matrix through `python bot.py` at DEBUG (nio's own log included): after a login and a
    command, neither the password nor the access token it got is in the log; the store folder
    the bot made is the owner's only."""
    import json

    from tests.integration import test_matrix_bot as mx

    class DebugBot(mx.BotProcess):
        def start(self) -> None:
            path = self.scene.write_config()
            env = dict(os.environ, **{mx.PASSWORD_ENV: mx.PASSWORD, "DOWNTIMEBOT_LOG_LEVEL": "DEBUG"})
            self.starts += 1
            with open(self.scene.tmp / f"bot-{self.starts}.log", "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, str(mx.REPO / "bot.py"), "--config", str(path)],
                    cwd=mx.REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                )

    scene = mx.make_scene(synapse, tmp_path)
    bot = DebugBot(scene)

    async def scenario() -> None:
        async with mx.people(scene) as p:
            bot.start()
            await mx.bot_joined(scene, p.carol, p.ci, p.dev)
            await mx.say(p.eve, p.ci, scene, f"!downtime propose {mx.start_time()} for 2h -- Secrets test",
                         mx.starting("Downtime #1 proposed"))

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()
    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("bot-*.log"))
    token = json.loads((scene.store / "matrix-state.json").read_text())["access_token"]
    assert token and "DEBUG" in logs
    assert mx.PASSWORD not in logs and token not in logs
    assert stat.S_IMODE(scene.store.stat().st_mode) == 0o700
