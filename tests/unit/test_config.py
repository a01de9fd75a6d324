"""Configuration: defaults, environment overrides, and errors that name the section and key."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from adapters import config as configuration
from adapters.config import ConfigError
from models.lifecycle import Role


def test_the_shipped_config_ini_loads_with_console_and_sqlite_defaults() -> None:
    config = configuration.load(configuration.DEFAULT_CONFIG, environ={})
    assert config.bot.transports == ("console",)
    assert config.bot.database == "sqlite:///var/downtimebot.db"
    assert config.channels.all == ("#ci", "#developers")
    assert config.policy.min_notice == dt.timedelta(hours=24)
    assert "hg.mozilla.org" in config.systems and "tbpl.mozilla.org" in config.systems
    assert len(config.systems) == 16


def test_environment_variables_override_any_key(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[bot]\nnick = a\n[roles]\nciduty = carol\n")
    config = configuration.load(ini, environ={"DOWNTIMEBOT_BOT_NICK": "b", "DOWNTIMEBOT_ROLES_SHERIFFS": "Sam, @sam:example.org"})
    assert config.bot.nick == "b"
    assert config.roles.roles_of("SAM") == frozenset({Role.SHERIFF})
    assert config.roles.roles_of("@sam:example.org") == frozenset({Role.SHERIFF})
    assert config.roles.roles_of("carol") == frozenset({Role.CIDUTY})
    assert config.roles.roles_of(None) == frozenset()


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("bot", "transports", "telnet", "[bot] transports: unknown transport 'telnet'"),
        ("bot", "display_timezones", "Mars/Olympus", "[bot] display_timezones"),
        ("policy", "min_notice", "soon", "[policy] min_notice = 'soon'"),
        ("policy", "low_impact", "weekends", "[policy] cannot read the time window 'weekends'"),
        ("trees", "backend", "git", "[trees] backend = 'git'"),
        ("channels", "requests", "ci", "[channels] requests = 'ci'"),
        ("mail", "port", "smtp", "[mail] port = 'smtp'"),
    ],
)
def test_a_bad_value_names_the_section_and_key(tmp_path: Path, section: str, key: str, value: str, message: str) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as err:
        configuration.load(ini, environ={})
    assert str(err.value).startswith(message)


def test_a_missing_config_file_given_explicitly_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        configuration.load(tmp_path / "nope.ini", environ={})


def test_people_link_an_irc_account_and_an_mxid_so_roles_hold_on_both_networks(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[roles]\nsheriffs = sam\n[people]\nsam = sam, @sam:mozilla.org\n")
    config = configuration.load(ini, environ={})
    assert config.roles.roles_of("@Sam:mozilla.org") == frozenset({Role.SHERIFF})
    assert config.roles.roles_of("sam") == frozenset({Role.SHERIFF})
    assert config.roles.accounts(Role.SHERIFF) == ["@sam:mozilla.org", "sam"]
    assert config.roles.roles_of("@mallory:mozilla.org") == frozenset()


def test_people_give_a_mail_address_to_every_account_of_a_person(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[people]\nalice = alice, @alice:mozilla.org, alice@example.org\n")
    config = configuration.load(ini, environ={})
    assert config.people["alice"] == config.people["@alice:mozilla.org"] == "alice@example.org"
    assert config.roles.identities("alice") == frozenset({"alice", "@alice:mozilla.org"})
    ini.write_text("[people]\nbob = bob@nowhere\n")
    with pytest.raises(ConfigError, match=r"\[people\] bob"):
        configuration.load(ini, environ={})
