"""The database, its folder and the Matrix store are readable by their owner only; the
database URL is logged with its password masked."""
from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import text

from adapters.db import display_url, make_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_the_folders_made_for_it_are_the_owners_only(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/var/data/bot.db")
    with engine.begin() as connection:
        connection.execute(text("create table t (x integer)"))
        connection.execute(text("insert into t values (1)"))
        assert mode(tmp_path / "var/data/bot.db-wal") == 0o600  # SQLite copies the file's mode
    engine.dispose()
    assert mode(tmp_path / "var") == mode(tmp_path / "var/data") == 0o700
    assert mode(tmp_path / "var/data/bot.db") == 0o600


def test_an_existing_folder_is_left_as_it_is_but_the_database_file_is_narrowed(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    db = folder / "bot.db"
    db.touch()
    db.chmod(0o644)
    make_engine(f"sqlite:///{db}").dispose()
    assert (mode(folder), mode(db)) == (0o755, 0o600)


def test_the_matrix_store_folder_is_created_for_its_owner_only(tmp_path: Path) -> None:
    from adapters.matrix import MatrixStateStore

    MatrixStateStore(tmp_path / "var" / "matrix").save({"device_id": "D"})
    assert mode(tmp_path / "var") == mode(tmp_path / "var" / "matrix") == 0o700
    assert mode(tmp_path / "var" / "matrix" / "matrix-state.json") == 0o600


def test_the_database_url_is_shown_with_its_password_masked() -> None:
    shown = display_url("postgresql+psycopg://bot:hunter2-s3cret@db.example.org:5432/downtimes")
    assert "hunter2" not in shown
    assert shown == "postgresql+psycopg://bot:***@db.example.org:5432/downtimes"
    assert display_url("sqlite:///var/downtimebot.db") == "sqlite:///var/downtimebot.db"
