"""The heartbeat of the whole bot (`python bot.py` as a subprocess) on a real IRC server (ngircd):
200 while it is connected, 500 (saying why) while the server is down, 200 again once it is back;
and /metrics says so too."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.integration.test_irc_bot import BotProcess, tag
from tests.integration.test_irc_transport import _require
from tests.servers.ircd import Ngircd, free_port

pytestmark = pytest.mark.integration

# How long to wait for each change before giving up (a deadline, never a measured time).
DEADLINE = 60.0
T = TypeVar("T")


@pytest.fixture
def ngircd() -> Iterator[Ngircd]:
    _require("ngircd")
    with Ngircd(penalties=False) as server:
        yield server


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def until(what: str, check: Callable[[], tuple[bool, T]], bot: BotProcess) -> T:
    """Poll `check` until it says yes; its last answer when it does."""
    deadline = time.monotonic() + DEADLINE
    while True:
        assert bot.proc is not None and bot.proc.poll() is None, f"bot exited:\n{bot.log_text()[-3000:]}"
        seen: T | OSError
        try:
            done, seen = check()
        except OSError as err:  # not listening yet
            done, seen = False, err
        if done and not isinstance(seen, OSError):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: last seen {seen!r}\n{bot.log_text()[-3000:]}")
        time.sleep(0.2)


def connected_gauge(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith('downtimebot_transport_connected{network="irc"}'):
            return line.rsplit(" ", 1)[1]
    return None


def test_the_heartbeat_follows_the_irc_server_down_and_back_up(ngircd: Ngircd, tmp_path: Path) -> None:
    t = tag()
    web_port = free_port()
    bot = BotProcess(tmp_path, ngircd.port, t, roles={"ciduty": f"ciduty{t}"})
    with bot.config.open("a") as config:
        config.write(f"[web]\nlisten = 127.0.0.1:{web_port}\n")
    base = f"http://127.0.0.1:{web_port}"

    def heartbeat(status: int) -> Callable[[], tuple[bool, tuple[int, str]]]:
        def check() -> tuple[bool, tuple[int, str]]:
            code, body = fetch(base + "/__heartbeat__")
            return code == status, (code, body)
        return check

    def gauge(value: str) -> Callable[[], tuple[bool, str | None]]:
        def check() -> tuple[bool, str | None]:
            code, body = fetch(base + "/metrics")
            return code == 200 and connected_gauge(body) in (value, value + ".0"), connected_gauge(body)
        return check

    bot.start()
    try:
        code, body = until("the heartbeat is 200 once the bot is on IRC", heartbeat(200), bot)
        assert json.loads(body)["checks"]["irc"] == "ok"
        assert fetch(base + "/__lbheartbeat__")[0] == 200
        until("the metrics say irc is connected", gauge("1"), bot)

        ngircd.stop()
        code, body = until("the heartbeat is 500 while the IRC server is down", heartbeat(500), bot)
        answer = json.loads(body)
        assert answer["status"] == "error" and answer["checks"]["irc"] == "error"
        assert "irc is not connected" in answer["details"]["irc"]["messages"][0]
        assert answer["checks"]["database"] == "ok" and answer["checks"]["scheduler"] == "ok"
        assert fetch(base + "/__lbheartbeat__")[0] == 200  # the loop runs: the load balancer keeps it
        assert fetch(base + "/livez")[0] == 200
        until("the metrics say irc is not connected", gauge("0"), bot)

        ngircd.start()  # on the same port
        code, body = until("the heartbeat is 200 again once the server is back", heartbeat(200), bot)
        assert json.loads(body)["checks"]["irc"] == "ok"
        assert fetch(base + "/readyz")[0] == 200
        until("the metrics say irc is connected again", gauge("1"), bot)
    finally:
        bot.stop()
