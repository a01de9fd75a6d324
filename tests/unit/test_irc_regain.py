"""Taking the bot's nick back from services that do not know RECOVER (Atheme has GHOST).

The real servers (tests/integration/test_irc_takeover.py) run Anope, which has RECOVER; this
scripted server plays a network whose NickServ answers RECOVER with "Unknown command".
"""
from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.irc import IrcConfig, IrcTransport
from models.ports import Incoming

PASSWORD = "bot-secret"


class ScriptedServer:
    """Just enough of an IRC server: `downtimebot` is held by someone else until ghosted (or
    until `held` is set False). ``monitor_full``: it offers MONITOR, whose list is always full."""

    def __init__(self, monitor_full: bool = False) -> None:
        self.received: list[str] = []
        self.held = True
        self.monitor_full = monitor_full
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nick, user = "", False

        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        def welcome() -> None:
            send(f":irc.test 001 {nick} :Welcome")
            monitor = " MONITOR=1" if self.monitor_full else ""
            send(f":irc.test 005 {nick} CHANTYPES=# NICKLEN=30{monitor} :are supported by this server")
            send(f":irc.test 376 {nick} :End of MOTD")

        while raw := await reader.readline():
            line = raw.decode().rstrip("\r\n")
            self.received.append(line)
            command, _, rest = line.partition(" ")
            if command == "NICK":
                wanted = rest.lstrip(":")
                if wanted == "downtimebot" and self.held:
                    send(f":irc.test 433 {nick or '*'} downtimebot :Nickname is already in use")
                elif nick and user:
                    send(f":{nick}!bot@host NICK :{wanted}")
                    nick = wanted
                else:
                    nick = wanted
                    if user:
                        welcome()
            elif command == "USER":
                user = True
                if nick:
                    welcome()
            elif command == "JOIN":
                send(f":{nick}!bot@host JOIN {rest}")
            elif command == "MONITOR" and rest.startswith("+"):
                send(f":irc.test 734 {nick} 1 downtimebot :Monitor list is full.")
            elif command == "ISON":
                send(f":irc.test 303 {nick} :{'downtimebot' if self.held else ''}")
            elif line.startswith("PRIVMSG NickServ :RECOVER"):
                send(f":NickServ!services@services NOTICE {nick} :Unknown command RECOVER.")
            elif line.startswith("PRIVMSG NickServ :GHOST downtimebot"):
                self.held = False
                send(f":NickServ!services@services NOTICE {nick} :downtimebot has been ghosted.")
            await writer.drain()


async def no_handler(incoming: Incoming) -> None:
    pass


def test_services_without_recover_are_asked_to_ghost_and_the_nick_is_taken_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.irc")

    async def scenario() -> None:
        server = ScriptedServer()
        await server.start()
        config = IrcConfig(host="127.0.0.1", port=server.port, nick="downtimebot", nickserv_password=PASSWORD,
                           channels={"#ci": "#ci", "#developers": "#developers"}, regain_interval=3600,
                           pacing=False)
        transport = IrcTransport(config)
        await transport.start(no_handler)
        try:
            async def taken_back() -> None:
                while transport.nick != "downtimebot":
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(taken_back(), 10)
        finally:
            await transport.stop()
            await server.stop()
        asked = [line for line in server.received if line.startswith("PRIVMSG NickServ :")]
        assert [line.split()[2:4] for line in asked] == [
            [":IDENTIFY", "downtimebot"], [":RECOVER", "downtimebot"], [":GHOST", "downtimebot"]]
        assert "NICK downtimebot" in server.received
        assert "IRC took back the nick downtimebot" in caplog.messages
        assert PASSWORD not in caplog.text

    asyncio.run(scenario())


def test_a_full_monitor_list_falls_back_to_asking_by_ison() -> None:
    async def scenario() -> None:
        server = ScriptedServer(monitor_full=True)
        await server.start()
        config = IrcConfig(host="127.0.0.1", port=server.port, nick="downtimebot", identity="nick",
                           channels={"#ci": "#ci", "#developers": "#developers"}, regain_interval=0.05,
                           pacing=False)
        transport = IrcTransport(config)
        await transport.start(no_handler)
        try:
            async def asked_by(line: str) -> None:
                while line not in server.received:
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(asked_by("MONITOR + downtimebot"), 10)
            server.held = False  # the old connection timed out
            await asyncio.wait_for(asked_by("ISON downtimebot"), 10)

            async def taken_back() -> None:
                while transport.nick != "downtimebot":
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(taken_back(), 10)
        finally:
            await transport.stop()
            await server.stop()

    asyncio.run(scenario())
