"""Console mode: the whole bot on stdin/stdout, no chat server needed.

Input lines: ``#<room> <account>: <text>`` (a message in a room),
``<account>: <text>`` (a private message), ``~<nick>`` instead of an account for
someone not logged in. Interactive niceties: ``/as <account>`` and
``/join #room`` set who speaks where, then plain lines are said there.
Output lines: ``#<room> <botnick>: <text>``, ``@<account> <botnick>: <text>``.
"""
from __future__ import annotations

import asyncio
import logging
import re
import uuid
import sys
from typing import TextIO

from models.ports import Incoming, MessageHandler, Outgoing, Transport

log = logging.getLogger(__name__)

LINE = re.compile(r"^(?:(?P<room>#\S+)\s+)?(?P<who>[~@]?[^\s:]+):\s?(?P<text>.*)$")


BANNER = """\
downtime-bot console. Type chat lines as '#<room> <account>: <text>', for example
  #ci alice: {prefix}downtime propose tomorrow 14:00 UTC for 2h -- Upgrade hg.mozilla.org
  #ci ciduty: {prefix}downtime help
'<account>: <text>' is a private message, '~nick' someone not logged in; '/as <account>' and
'/join #room' set who speaks where for plain lines. Ctrl-D quits. {nick} answers below.
"""


class ConsoleTransport(Transport):
    network = "console"

    def __init__(self, nick: str, *, stdin: TextIO | None = None, stdout: TextIO | None = None, prefix: str = "!"):
        self.nick = nick
        self.prefix = prefix
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.finished = asyncio.Event()  # set at the end of input
        self.speaker = "console"
        self.room: str | None = "#ci"
        self._task: asyncio.Task[None] | None = None
        self._counter = 0
        # Message ids must never repeat across runs: a command's id is kept to ignore replays.
        self._run_id = uuid.uuid4().hex[:12]

    @property
    def connected(self) -> bool:
        return True

    async def start(self, on_message: MessageHandler) -> None:
        if self.stdin.isatty():
            self.stdout.write(BANNER.format(nick=self.nick, prefix=self.prefix))
            self.stdout.flush()
        self._task = asyncio.create_task(self._read(on_message), name="console-reader")

    async def stop(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()

    async def _read(self, on_message: MessageHandler) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                line = await loop.run_in_executor(None, self.stdin.readline)
                if not line:
                    break
                message = self.parse(line.rstrip("\r\n"))
                if message is not None:
                    await on_message(message)
        finally:
            self.finished.set()

    def parse(self, line: str) -> Incoming | None:
        """One input line → an Incoming message (or None for a blank line or a console command)."""
        if not line.strip():
            return None
        if line.startswith("/as "):
            self.speaker = line[4:].strip() or self.speaker
            return None
        if line.startswith("/join "):
            self.room = line[6:].strip() or self.room
            return None
        self._counter += 1
        m = LINE.match(line)
        if m and (m["room"] or not line.startswith("!")):
            room, who, text = m["room"], m["who"], m["text"]
        else:
            room, who, text = self.room, self.speaker, line
        unidentified = who.startswith("~")
        who = who.lstrip("~@")
        return Incoming(
            network=self.network,
            room=room,
            account=None if unidentified else who,
            nick=who,
            text=text,
            msgid=f"console-{self._run_id}-{self._counter}",
        )

    async def send(self, message: Outgoing) -> None:
        where = message.target
        if where.startswith("~"):
            # Someone not identified, answered by nick: printed like any private answer (the
            # console's output format is fixed: "@<name> <botnick>: <text>").
            where = "@" + where[1:]
        lines = message.text.split("\n") or [""]
        if message.mentions:
            lines[0] = f"{', '.join(message.mentions)}: {lines[0]}"
        for line in lines:
            self.stdout.write(f"{where} {self.nick}: {line}\n")
        self.stdout.flush()
