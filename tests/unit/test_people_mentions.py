"""[people] names a person; only that person's accounts are mentioned, on each network its own."""
from __future__ import annotations

from pathlib import Path

from adapters import config as configuration
from adapters.irc import _MATRIX_ID
from models.lifecycle import Role


def test_a_person_name_that_is_not_one_of_their_accounts_is_never_mentioned(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[roles]\nsheriffs = sam\n[people]\nsam = samirc, @sam:mozilla.org\n")
    config = configuration.load(ini, environ={})
    assert config.roles.roles_of("samirc", "irc") == frozenset({Role.SHERIFF})
    assert config.roles.roles_of("@sam:mozilla.org", "matrix") == frozenset({Role.SHERIFF})
    assert config.roles.accounts(Role.SHERIFF) == ["@sam:mozilla.org", "samirc"]


def test_irc_leaves_matrix_ids_out_of_its_mentions_but_keeps_irc_accounts() -> None:
    assert _MATRIX_ID.match("@sam:mozilla.org")
    assert not _MATRIX_ID.match("samirc")
    assert not _MATRIX_ID.match("sam[m]")
