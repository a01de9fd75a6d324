"""The web server of a real bot core (fake transports, a real SQLite file) behind aiohttp's test
client: script a downtime in chat, then fetch what the web says of it."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import config as configuration
from tests.conftest import Chat, make_config
from tests.fakes import FakeClock


@dataclass
class Reply:
    status: int
    headers: Any  # a CIMultiDictProxy
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


class WebChat(Chat):
    """`Chat` (say things in chat) plus `get` (fetch a path from the bot's web server)."""

    def __init__(self, config: configuration.Config, clock: FakeClock, **options: Any):
        super().__init__(config, clock, **options)
        assert self.bot.web is not None, "[web] listen is empty in this configuration"
        self.client: TestClient[Any, Any] = TestClient(TestServer(self.bot.web.app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def get(self, path: str, **headers: str) -> Reply:
        async def fetch() -> Reply:
            async with self.client.get(path, headers=headers, allow_redirects=False) as response:
                return Reply(response.status, response.headers, await response.read())

        return self.loop.run_until_complete(fetch())

    def request(self, method: str, path: str) -> Reply:
        async def fetch() -> Reply:
            async with self.client.request(method, path) as response:
                return Reply(response.status, response.headers, await response.read())

        return self.loop.run_until_complete(fetch())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        super().close()


def web_config(tmp_path: Path, **sections: dict[str, str]) -> configuration.Config:
    return make_config(tmp_path, **sections)


@pytest.fixture
def web(tmp_path: Path, clock: FakeClock) -> Iterator[WebChat]:
    harness = WebChat(web_config(tmp_path), clock)
    yield harness
    harness.close()


@pytest.fixture(autouse=True)
def _on_each_database(database: str) -> str:
    """Every web test runs on each database engine (SQLite and PostgreSQL, tests/conftest.py)."""
    return database
