"""Every command test runs on each database engine (tests/conftest.py `database`: SQLite and
PostgreSQL), each on a fresh database that `make_config` and the `config` fixture use."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _on_each_database(database: str) -> str:
    return database
