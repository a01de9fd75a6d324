"""The whole bot (`python bot.py` as a subprocess) on real IRC servers, played by RawClients.

ngircd runs with its DEFAULT flood rules (`identity = nick`: it has no services);
InspIRCd + Anope prove the account rules with SASL. Each server starts once for the module;
each test starts its own bot with its own channels (``#ci-<tag>``, ``#dev-<tag>``), its own
SQLite file and its own roles, and reads what the people in the channels saw.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.irc import LINE_LIMIT
from tests.integration.test_irc_transport import PASSWORDS as TRANSPORT_PASSWORDS
from tests.integration.test_irc_transport import SASL_CAPS, _require
from tests.servers.ircd import InspircdAnope, Line, Ngircd, RawClient

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {**TRANSPORT_PASSWORDS, "ciduty": "ciduty-secret", "sheriff": "sheriff-secret", "ghost": "ghost-secret"}
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    _require("ngircd")
    with Ngircd(penalties=True) as server:  # default flood rules
        yield server


@pytest.fixture(scope="module")
def services() -> Iterator[InspircdAnope]:
    _require("inspircd", "anope")
    with InspircdAnope() as server:  # default connect-class flood rules
        for account, password in PASSWORDS.items():
            server.register(account, password)
        yield server


class BotProcess:
    """`python bot.py --config <file>` with a config written for one test; stdin feeds its console."""

    def __init__(self, tmp: Path, port: int, tag: str, *, roles: dict[str, str], transports: str = "irc",
                 irc: dict[str, str] | None = None, env: dict[str, str] | None = None) -> None:
        self.tmp, self.tag = tmp, tag
        self.nick = f"dtbot{tag}"
        self.ci, self.dev = f"#ci-{tag}", f"#dev-{tag}"
        self.db = tmp / "bot.db"
        irc_keys = {"host": "127.0.0.1", "port": str(port), "identity": "nick", **(irc or {})}
        self.config = tmp / "bot.ini"
        self.config.write_text(
            "[bot]\n"
            f"nick = {irc_keys.get('nick', self.nick)}\n"
            f"database = sqlite:///{self.db}\n"
            f"transports = {transports}\n"
            # A proposal with the longest notice wording (2,000 characters) is over the default
            # [bot] max_line of 2,000.
            "max_line = 4000\n"
            "[channels]\n"
            f"requests = {self.ci}\nannounce = {self.dev}\n"
            "[roles]\n" + "".join(f"{k} = {v}\n" for k, v in roles.items()) +
            "[policy]\nciduty_hours = daily 00:00-24:00 UTC\n"
            "[irc]\n" + "".join(f"{k} = {v}\n" for k, v in irc_keys.items())
        )
        if "nick" in irc_keys:
            self.nick = irc_keys["nick"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNTIMEBOT_")}
        self.env.update(DOWNTIMEBOT_LOG_LEVEL="INFO", **(env or {}))
        self.log = tmp / "bot.log"
        self.out = tmp / "bot.out"
        self.proc: subprocess.Popen[str] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = len(self.log_text())
        with open(self.log, "a") as log, open(self.out, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bot.py"), "--config", str(self.config)],
                stdin=subprocess.PIPE, stdout=out, stderr=log, text=True, env=self.env, cwd=self.tmp,
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log_text()))

    async def wait_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(pattern) < count:
            assert self.proc is not None and self.proc.poll() is None, f"bot exited:\n{self.log_text()[-3000:]}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} seen {self.count(pattern)}/{count} times:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)

    async def wait_out(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in (self.out.read_text(errors="replace") if self.out.exists() else ""):
            assert time.monotonic() < deadline, f"{text!r} not printed on the console"
            await asyncio.sleep(0.05)

    async def joined(self, times: int = 1) -> None:
        await self.wait_log(rf"IRC joined {re.escape(self.ci)}\b", times)
        await self.wait_log(rf"IRC joined {re.escape(self.dev)}\b", times)

    def console(self, room: str, who: str, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{room} {who}: {text}\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc = None

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.db) as db:
            return db.execute(sql).fetchall()


def tag() -> str:
    return uuid.uuid4().hex[:6]


def said(nick: str, target: str, start: str = "") -> Callable[[Line], bool]:
    """A PRIVMSG from `nick` to `target` whose text starts with `start`."""
    def match(line: Line) -> bool:
        return (line.command == "PRIVMSG" and line.nick.lower() == nick.lower()
                and line.params[0].lower() == target.lower() and line.text.startswith(start))
    return match


def bot_lines(client: RawClient, nick: str) -> list[Line]:
    return [line for line in client.lines if line.nick.lower() == nick.lower()]


async def people(port: int, *specs: tuple[str, list[str]], **kwargs: object) -> list[RawClient]:
    clients = []
    for nick, chans in specs:
        client = RawClient(port, nick, **kwargs)  # type: ignore[arg-type]
        await client.connect()
        for channel in chans:
            await client.join(channel)
        clients.append(client)
    return clients


async def quit_all(clients: list[RawClient]) -> None:
    for client in clients:
        await client.quit()


# --- ngircd, default flood rules, identity = nick ----------------------------------------------


def test_a_whole_downtime_driven_by_three_people_on_ngircd_with_default_flood_rules(ngircd: Ngircd, tmp_path: Path) -> None:
    t = tag()
    eng, ciduty, sheriff = f"eng{t}", f"ciduty{t}", f"sheriff{t}"
    bot = BotProcess(tmp_path, ngircd.port, t, roles={"ciduty": ciduty, "sheriffs": sheriff})

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        e, c, s = await people(ngircd.port, (eng, [bot.ci]), (ciduty, [bot.ci, bot.dev]), (sheriff, [bot.dev]))
        try:
            await e.privmsg(bot.ci, "!downtime propose in 3d for 2h bug 123456 -- Upgrade hg.mozilla.org")
            await e.wait_for(said(bot.nick, bot.ci, f"Downtime #1 proposed by {eng}"), timeout=30)
            await c.privmsg(bot.ci, "!downtime approve 1")
            await c.wait_for(said(bot.nick, bot.ci, "Downtime #1 approved"), timeout=30)
            await c.privmsg(bot.ci, "!downtime announce 1")
            await s.wait_for(said(bot.nick, bot.dev, "Downtime #1 announced"), timeout=30)
            await c.privmsg(bot.ci, "!downtime start 1")  # three days early: refused without --force
            await c.wait_for(said(bot.nick, bot.ci, "downtime #1 is announced for"), timeout=30)
            await c.privmsg(bot.ci, "!downtime start 1 --force")
            await s.wait_for(said(bot.nick, bot.dev, f"{sheriff}: Downtime #1 starts now"), timeout=30)
            await c.wait_for(said(bot.nick, bot.ci, f"{ciduty}: Downtime #1 started by {ciduty}"), timeout=30)
            await c.privmsg(bot.ci, "!downtime end 1")
            await s.wait_for(said(bot.nick, bot.dev, f"{sheriff}: TREE OPEN: downtime #1 is over"), timeout=30)
            await s.privmsg(bot.dev, "!downtime verify 1")
            await s.wait_for(said(bot.nick, bot.dev, f"Downtime #1 verified by {sheriff}. Thanks!"), timeout=30)
            assert all(line.command == "PRIVMSG" for line in bot_lines(s, bot.nick))
        finally:
            await quit_all([e, c, s])
        assert bot.query("select state, verified_by from downtimes") == [("finished", sheriff)]
        assert bot.count("IRC registered as") == 1 and bot.count("IRC disconnected") == 0

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()


@pytest.mark.slow
def test_a_server_killed_mid_downtime_gets_each_queued_message_exactly_once_after_it_returns(
    ngircd: Ngircd, tmp_path: Path
) -> None:
    t = tag()
    ciduty, sheriff = f"ciduty{t}", f"sheriff{t}"
    bot = BotProcess(tmp_path, ngircd.port, t, roles={"ciduty": ciduty, "sheriffs": sheriff},
                     transports="irc,console", irc={"line_rate": "5"})

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        c, s = await people(ngircd.port, (ciduty, [bot.ci]), (sheriff, [bot.dev]))
        for line in ("!downtime propose in 3d for 2h bug 7 -- Kill the server test", "!downtime approve 1",
                     "!downtime announce 1", "!downtime start 1 --force"):
            bot.console(bot.ci, ciduty, line)  # the console is the second network
        await s.wait_for(said(bot.nick, bot.dev, f"{sheriff}: Downtime #1 starts now"), timeout=30)
        await quit_all([c, s])

        ngircd.stop()  # mid-downtime
        await bot.wait_log("IRC disconnected")
        bot.console(bot.ci, ciduty, "!downtime end 1")  # the TREE OPEN falls due while IRC is down
        await bot.wait_out("TREE OPEN: downtime #1 is over")  # printed on the console: committed
        os.kill(bot.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]  # let the people in first
        try:
            ngircd.start()
            c, s = await people(ngircd.port, (ciduty, [bot.ci]), (sheriff, [bot.dev]))
        finally:
            os.kill(bot.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        try:
            await bot.joined(times=2)
            await s.wait_for(said(bot.nick, bot.dev, f"{sheriff}: TREE OPEN: downtime #1 is over"), timeout=60)
            await c.wait_for(said(bot.nick, bot.ci, "TREE OPEN: downtime #1 is over"), timeout=60)

            bot.stop()  # and a restart of the bot itself: nothing is sent again
            bot.start()
            await bot.joined(times=3)
            await s.privmsg(bot.dev, "!downtime verify 1")
            await s.wait_for(said(bot.nick, bot.dev, f"Downtime #1 verified by {sheriff}"), timeout=30)
            await c.privmsg(bot.ci, "!downtime show 1")
            await c.wait_for(said(bot.nick, bot.ci, "#1 [finished]"), timeout=30)
            tree_open = [l for l in s.lines + c.lines if "TREE OPEN" in l.text and l.nick == bot.nick]
            assert len(tree_open) == 2, [l.raw for l in tree_open]  # once in #dev, once in #ci
        finally:
            await quit_all([c, s])
        assert bot.query("select count(*) from outbox where network = 'irc' and status != 'sent'") == [(0,)]

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()
        if not ngircd.running:  # leave the shared server up for the next tests
            ngircd.start()


@pytest.mark.slow
def test_200_commands_in_a_burst_from_four_people_are_all_answered_without_a_disconnect(
    ngircd: Ngircd, tmp_path: Path
) -> None:
    t = tag()
    total = 200
    # 50 commands from each person at once: the transport's throughput, not [bot] rate_limit.
    bot = BotProcess(tmp_path, ngircd.port, t, roles={"ciduty": f"ciduty{t}"}, irc={"line_rate": "5"},
                     env={"DOWNTIMEBOT_BOT_RATE_LIMIT": "off"})

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        clients = await people(ngircd.port, *((f"p{n}{t}", [bot.ci]) for n in range(4)))
        try:
            bursts = ["".join(f"PRIVMSG {bot.ci} :!downtime show {1000 + i}\r\n" for i in range(total) if i % 4 == n)
                      for n in range(4)]
            await asyncio.gather(*(c.send_bytes(b.encode()) for c, b in zip(clients, bursts)))
            replies = await clients[0].wait_for_count(said(bot.nick, bot.ci, "there is no downtime #"), total, timeout=150)
            assert sorted(int(re.search(r"#(\d+)", l.text)[1]) for l in replies) == list(range(1000, 1000 + total))
        finally:
            await quit_all(clients)
        assert bot.count("IRC registered as") == 1 and bot.count("IRC disconnected") == 0

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()


def test_a_notice_over_3000_characters_arrives_privately_complete_in_order_with_a_pointer(
    ngircd: Ngircd, tmp_path: Path
) -> None:
    t = tag()
    reader = f"reader{t}"
    bot = BotProcess(tmp_path, ngircd.port, t, roles={"ciduty": f"ciduty{t}"}, transports="irc,console",
                     irc={"line_rate": "5"})
    wording = " ".join(f"step{i:03d}-migrate-hg-wëb-node" for i in range(70))[:1990]
    bug_wording = " ".join(f"bug-part{i:02d}" for i in range(50))

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        bot.console(bot.ci, "alice", f"!downtime propose in 3d for 2h bug 4242 -- {wording}")
        bot.console(bot.ci, "alice", f"!downtime bug add 1 4343 -- {bug_wording}")
        (r,) = await people(ngircd.port, (reader, [bot.ci]))
        try:
            while bot.query("select count(*) from downtime_bugs") != [(2,)]:
                await asyncio.sleep(0.05)
            start = r.mark()
            await r.privmsg(bot.ci, "!downtime notice 1")
            pointer = await r.wait_for(said(bot.nick, bot.ci, f"{reader}: the answer has"), since=start, timeout=60)
            await r.wait_for(lambda l: said(bot.nick, reader)(l) and "perfherder" in l.text, since=start, timeout=60)
            private = [line for line in r.lines[start:] if said(bot.nick, reader)(line)]
            texts = [line.text for line in private]
            assert sum(len(x) for x in texts) >= 3000
            joined = " ".join(texts)
            assert wording in joined and bug_wording in joined  # complete and in order
            assert all(len(line.raw.encode("utf-8")) + 2 <= LINE_LIMIT for line in private)
            assert int(pointer.text.split("has ")[1].split()[0]) > 4  # more than a channel gets
        finally:
            await r.quit()

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()


def test_smuggled_protocol_lines_control_codes_and_latin1_bytes_neither_escape_nor_crash(
    ngircd: Ngircd, tmp_path: Path
) -> None:
    t = tag()
    mallory, obs = f"mallory{t}", f"obs{t}"
    bot = BotProcess(tmp_path, ngircd.port, t, roles={"ciduty": f"ciduty{t}"}, irc={"line_rate": "5"})

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        m, o = await people(ngircd.port, (mallory, [bot.ci]), (obs, [bot.ci]))
        try:
            # The server splits this in two: a command, then a real QUIT from mallory.
            await m.send_bytes(f"PRIVMSG {bot.ci} :!downtime propose in 3d for 2h -- text\r\nQUIT :bye\r\n".encode())
            await o.wait_for(lambda l: l.command == "QUIT" and l.nick == mallory)
            await o.wait_for(said(bot.nick, bot.ci, f"Downtime #1 proposed by {mallory}"), since=0, timeout=30)
            await o.privmsg(bot.ci, "!downtime propose in 4d for 1h -- bell\x07 \x02bold\x02 \x1funder\x1f \x0f end")
            await o.wait_for(said(bot.nick, bot.ci, f"Downtime #2 proposed by {obs}"), timeout=30)
            await o.send_bytes(f"PRIVMSG {bot.ci} :!downtime propose in 5d for 1h -- caf".encode() + b"\xe9 ol\xe9\r\n")
            await o.wait_for(said(bot.nick, bot.ci, f"Downtime #3 proposed by {obs}"), timeout=30)
            await o.privmsg(bot.ci, "!downtime show 2")
            shown = await o.wait_for(said(bot.nick, bot.ci, "#2 [proposed]"), timeout=30)
            assert shown.text.endswith(": bell bold under end")
            everything = bot_lines(o, bot.nick)
            assert everything and all(line.command == "PRIVMSG" for line in everything)
            assert not [line.raw for line in everything if CONTROL.search(line.raw)]
        finally:
            await quit_all([m, o])
        assert bot.query("select summary from downtimes order by id") == [("text",), ("bell bold under end",), ("café olé",)]
        assert bot.count("IRC registered as") == 1 and bot.count("Traceback") == 0

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()


# --- InspIRCd + Anope: accounts, SASL ------------------------------------------------------------


@pytest.mark.slow
def test_accounts_decide_who_may_act_and_sheriffs_are_pinged_by_their_current_nick(
    services: InspircdAnope, tmp_path: Path
) -> None:
    t = tag()
    bot = BotProcess(
        tmp_path, services.port, t,
        roles={"ciduty": "ciduty", "sheriffs": "sheriff, ghost, @carol:example.org"},
        irc={"identity": "account", "nick": "downtimebot", "sasl_username": "downtimebot",
             "sasl_password_env": "TEST_IRC_PASSWORD", "allow_plaintext_sasl": "on"},
        env={"TEST_IRC_PASSWORD": PASSWORDS["downtimebot"]},
    )

    def person(nick: str, account: str | None = None) -> RawClient:
        return RawClient(services.port, nick, caps=SASL_CAPS,
                         sasl=(account, PASSWORDS[account]) if account else None)

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        assert bot.count("IRC logged in as account downtimebot") == 1
        alice, ciduty, sherry = person("alice", "alice"), person("ciduty", "ciduty"), person("sherry", "sheriff")
        impostor, lapsed = person("ciduty"), person("ciduty2", "ciduty")
        for client, chans in ((alice, [bot.ci]), (ciduty, [bot.ci]), (sherry, [bot.dev])):
            await client.connect()
            for channel in chans:
                await client.join(channel)
        try:
            await alice.privmsg(bot.ci, "!downtime propose in 3d for 2h bug 99 -- Move the build farm")
            await alice.wait_for(said("downtimebot", bot.ci, "Downtime #1 proposed by alice"), timeout=30)
            await alice.privmsg(bot.ci, "!downtime propose in 6d for 1h -- Second one")
            await alice.wait_for(said("downtimebot", bot.ci, "Downtime #2 proposed by alice"), timeout=30)

            await ciduty.change_nick("ci_duty")  # the rights stay with the account
            await impostor.connect()  # takes the nick "ciduty" without the account
            await impostor.join(bot.ci)
            await impostor.privmsg(bot.ci, "!downtime approve 1")
            refusal = await impostor.wait_for(said("downtimebot", bot.ci), timeout=30)
            assert refusal.text.startswith("identify with services first"), refusal.text

            await lapsed.connect()  # identified, then logged out
            await lapsed.join(bot.ci)
            await lapsed.privmsg("NickServ", "LOGOUT")
            await lapsed.wait_for(lambda l: l.command == "NOTICE" and l.nick == "NickServ")
            await lapsed.privmsg(bot.ci, "!downtime approve 1")
            refusal = await lapsed.wait_for(said("downtimebot", bot.ci), timeout=30)
            assert refusal.text.startswith("identify with services first"), refusal.text

            await ciduty.privmsg(bot.ci, "!downtime approve 1")
            await ciduty.wait_for(said("downtimebot", bot.ci, "Downtime #1 approved"), timeout=30)
            await alice.quit()  # a private word for alice now has nobody to go to
            await ciduty.privmsg(bot.ci, "!downtime reject 2 -- not now")
            await ciduty.wait_for(said("downtimebot", bot.ci, "Downtime #2 rejected"), timeout=30)
            await ciduty.privmsg(bot.ci, "!downtime announce 1")  # not held up by the failed row
            await sherry.wait_for(said("downtimebot", bot.dev, "Downtime #1 announced"), timeout=30)
            await ciduty.privmsg(bot.ci, "!downtime start 1 --force")
            ping = await sherry.wait_for(said("downtimebot", bot.dev, "sherry: Downtime #1 starts now"), timeout=30)
            assert "ghost" not in ping.text and "carol" not in ping.text
            await ciduty.wait_for(said("downtimebot", bot.ci, "ci_duty: Downtime #1 started by ciduty"), timeout=30)
        finally:
            await quit_all([alice, ciduty, sherry, impostor, lapsed])
        assert bot.query("select state from downtimes order by id") == [("in_progress",), ("rejected",)]
        assert bot.query("select status, last_error from outbox where key like 'dt2:rejected%'") == [
            ("failed", "IRC: nobody is logged in as alice now")]
        assert bot.count("failed for good: IRC: nobody is logged in as alice") == 1

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()


def test_sasl_over_plaintext_is_refused_at_start_up_with_the_reason_and_allowed_with_the_key(
    services: InspircdAnope, tmp_path: Path
) -> None:
    sasl = {"identity": "account", "nick": "downtimebot", "sasl_username": "downtimebot",
            "sasl_password_env": "TEST_IRC_PASSWORD"}
    (tmp_path / "refused").mkdir()
    refused = BotProcess(tmp_path / "refused", services.port, tag(), roles={}, irc=sasl,
                         env={"TEST_IRC_PASSWORD": PASSWORDS["downtimebot"]})
    refused.start()
    assert refused.proc is not None and refused.proc.wait(30) == 2
    assert "SASL over a plaintext connection (tls = off) would send the password unencrypted" in refused.log_text()
    assert "allow_plaintext_sasl = on" in refused.log_text()
    assert "IRC connecting" not in refused.log_text() and PASSWORDS["downtimebot"] not in refused.log_text()
    refused.stop()

    (tmp_path / "allowed").mkdir()
    allowed = BotProcess(tmp_path / "allowed", services.port, tag(), roles={},
                         irc={**sasl, "allow_plaintext_sasl": "on"}, env={"TEST_IRC_PASSWORD": PASSWORDS["downtimebot"]})

    async def scenario() -> None:
        allowed.start()
        await allowed.joined()
        assert allowed.count("IRC logged in as account downtimebot") == 1
        assert allowed.count("SASL login over a plaintext connection") == 1  # said, as a warning

    try:
        asyncio.run(scenario())
    finally:
        allowed.stop()


# --- identity: answers learned by WHOIS expire; private answers to the unidentified go to the nick ---


@pytest.fixture(scope="module")
def whois_only() -> Iterator[InspircdAnope]:
    """InspIRCd + Anope without account-tag, account-notify and extended-join: accounts by WHOIS only."""
    _require("inspircd", "anope")
    with InspircdAnope(account_caps=False) as server:
        for account in ("ciduty", "downtimebot"):
            server.register(account, PASSWORDS[account])
        yield server


def account_bot(tmp_path: Path, port: int, **irc: str) -> BotProcess:
    return BotProcess(
        tmp_path, port, tag(), roles={"ciduty": "ciduty"}, transports="irc,console",
        irc={"identity": "account", "nick": "downtimebot", "sasl_username": "downtimebot",
             "sasl_password_env": "TEST_IRC_PASSWORD", "allow_plaintext_sasl": "on", "line_rate": "5", **irc},
        env={"TEST_IRC_PASSWORD": PASSWORDS["downtimebot"]},
    )


def test_a_nick_whose_whois_answer_is_old_is_checked_again_before_a_command(
    whois_only: InspircdAnope, tmp_path: Path
) -> None:
    bot = account_bot(tmp_path, whois_only.port, whois_max_age="1")

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        capabilities = re.search(r"IRC capabilities: (.*)", bot.log_text())
        assert capabilities and {"account-tag", "account-notify", "extended-join"}.isdisjoint(capabilities[1].split())
        bot.console(bot.ci, "alice", "!downtime propose in 3d for 2h bug 4242 -- Move the build farm")
        while bot.query("select count(*) from downtimes") != [(1,)]:
            await asyncio.sleep(0.05)
        carol = RawClient(whois_only.port, "carol_w", sasl=("ciduty", PASSWORDS["ciduty"]))
        await carol.connect()
        await carol.privmsg("downtimebot", "!downtime show 1")  # no shared channel: the bot WHOISes
        await carol.wait_for(said("downtimebot", "carol_w", "#1 [proposed]"), timeout=30)
        await carol.wait_for(said("downtimebot", "carol_w", "Bug 4242"), timeout=30)  # the whole answer
        await carol.quit()  # unseen by the bot: they share no channel

        mallory = RawClient(whois_only.port, "carol_w", username="mallory")
        await mallory.connect()  # takes the nick, not identified
        await asyncio.sleep(1.5)  # the WHOIS answer is now older than whois_max_age
        try:
            await mallory.privmsg("downtimebot", "!downtime approve 1")
            answer = await mallory.wait_for(
                lambda l: said("downtimebot", "carol_w")(l) and l.text.startswith(("identify", "Downtime #1")),
                timeout=30)
            assert answer.text.startswith("identify with services first"), answer.text
        finally:
            await mallory.quit()
        assert bot.query("select state from downtimes") == [("proposed",)]

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()


def test_a_private_answer_to_an_unidentified_nick_goes_to_that_nick_not_to_the_account_holder(
    services: InspircdAnope, tmp_path: Path
) -> None:
    bot = account_bot(tmp_path, services.port)

    async def scenario() -> None:
        bot.start()
        await bot.joined()
        bobby = RawClient(services.port, "bobby", caps=SASL_CAPS, sasl=("bob", PASSWORDS["bob"]))
        await bobby.connect()
        await bobby.join(bot.ci)  # the bot learns that account bob is the nick bobby
        await bobby.privmsg(bot.ci, "!downtime list")
        await bobby.wait_for(said("downtimebot", bot.ci), timeout=30)
        impostor = RawClient(services.port, "bob", caps=SASL_CAPS)  # the nick bob, not identified
        await impostor.connect()
        try:
            start = bobby.mark()
            await impostor.privmsg("downtimebot", "!downtime list")
            await impostor.wait_for(said("downtimebot", "bob"), timeout=30)
            await bobby.privmsg(bot.ci, "!downtime list")  # whatever went to bobby came before this answer
            await bobby.wait_for(said("downtimebot", bot.ci), timeout=30)
            assert not [l.raw for l in bobby.lines[start:] if said("downtimebot", "bobby")(l)]
        finally:
            await quit_all([bobby, impostor])

    try:
        asyncio.run(scenario())
    finally:
        bot.stop()
