"""Configuration: defaults, environment overrides, and errors that name the section and key."""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
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
    assert config.roles.roles_of("SAM", "irc") == frozenset({Role.SHERIFF})
    assert config.roles.roles_of("@sam:example.org", "matrix") == frozenset({Role.SHERIFF})
    assert config.roles.roles_of("carol", "irc") == frozenset({Role.CIDUTY})
    assert config.roles.roles_of(None, "irc") == frozenset()


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
    assert config.roles.roles_of("@Sam:mozilla.org", "matrix") == frozenset({Role.SHERIFF})
    assert config.roles.roles_of("sam", "irc") == frozenset({Role.SHERIFF})
    assert config.roles.accounts(Role.SHERIFF) == ["@sam:mozilla.org", "sam"]
    assert config.roles.roles_of("@mallory:mozilla.org", "matrix") == frozenset()


def test_people_give_a_mail_address_to_every_account_of_a_person(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[people]\nalice = alice, @alice:mozilla.org, alice@example.org\n")
    config = configuration.load(ini, environ={})
    assert config.people["alice"] == config.people["@alice:mozilla.org"] == "alice@example.org"
    assert config.roles.identities("alice", "irc") == frozenset({"alice", "@alice:mozilla.org"})
    ini.write_text("[people]\nbob = bob@nowhere\n")
    with pytest.raises(ConfigError, match=r"\[people\] bob"):
        configuration.load(ini, environ={})


def test_people_map_a_mail_address_to_the_persons_accounts_and_a_role_to_each_person_once(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[roles]\npreapprovers = pat, quinn\n"
                   "[people]\npat = @pat:mozilla.org, pat, Pat@Example.org\nbob = bob@example.org\n")
    config = configuration.load(ini, environ={})
    assert config.mail_accounts["pat@example.org"] == ("pat", "@pat:mozilla.org")  # IRC first
    assert config.mail_accounts["bob@example.org"] == ("bob",)
    assert config.roles.persons(Role.PREAPPROVER) == [("pat", "@pat:mozilla.org"), ("quinn",)]


def test_a_person_name_is_no_account_on_a_network_where_the_person_lists_none(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[roles]\nciduty = @carol:mozilla.org\nsheriffs = carol\n"
                   "[people]\ncarol = @carol:mozilla.org, carol@mozilla.org\n")
    config = configuration.load(ini, environ={})
    assert config.roles.roles_of("carol", "irc") == frozenset()
    assert config.roles.roles_of("carol", "console") == frozenset()
    assert config.roles.roles_of("@carol:mozilla.org", "matrix") == frozenset({Role.CIDUTY, Role.SHERIFF})
    assert config.roles.roles_of("@carol:mozilla.org", "irc") == frozenset()  # not an IRC account
    assert config.roles.accounts(Role.SHERIFF) == ["@carol:mozilla.org"]
    assert "carol" not in config.people  # the draft never goes to an account nobody listed


# --- [irc] and [matrix]: values always checked; required keys and secrets only when in use -------


def load_ini(tmp_path: Path, text: str, **environ: str) -> configuration.Config:
    ini = tmp_path / "c.ini"
    ini.write_text(text)
    return configuration.load(ini, environ=environ)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[irc]\nport = notanumber\n", "[irc] port = 'notanumber': expected a port number"),
        ("[irc]\nport = 70000\n", "[irc] port = '70000': expected a port number from 1 to 65535"),
        ("[irc]\ntls = maybe\n", "[irc] tls = 'maybe': expected on or off"),
        ("[irc]\npacing = sometimes\n", "[irc] pacing = 'sometimes': expected on or off"),
        ("[irc]\nidentity = hostmask\n", "[irc] identity = 'hostmask': expected account or nick"),
        ("[irc]\nline_rate = fast\n", "[irc] line_rate = 'fast': expected a number above 0"),
        ("[irc]\nburst = 0\n", "[irc] burst = '0': expected a whole number of at least 1"),
        ("[irc]\nhost = irc://irc.libera.chat\n", "[irc] host = 'irc://irc.libera.chat': expected a host name"),
        ("[matrix]\nhomeserver = matrix.example.org\n", "[matrix] homeserver = 'matrix.example.org': expected an http(s) URL"),
        ("[matrix]\nhomeserver = ftp://example.org\n", "[matrix] homeserver = 'ftp://example.org': expected an http(s) URL"),
        ("[matrix]\nuser_id = downtimebot\n", "[matrix] user_id = 'downtimebot': expected a Matrix user id"),
        ("[matrix]\nrequests_room = ci\n", "[matrix] requests_room = 'ci': expected a room alias"),
        ("[matrix]\nsync_timeout_ms = 5s\n", "[matrix] sync_timeout_ms = '5s': expected a whole number"),
        ("[matrix]\nbackoff_min = 10\nbackoff_max = 5\n", "[matrix] backoff_max = '5': expected at least backoff_min (10)"),
    ],
)
def test_a_bad_irc_or_matrix_value_is_reported_even_when_that_transport_is_not_used(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_ini(tmp_path, "[bot]\ntransports = console\n" + text)
    assert str(err.value).startswith(message)


def test_the_irc_and_matrix_sections_need_nothing_when_their_transport_is_not_used(tmp_path: Path) -> None:
    config = load_ini(
        tmp_path,
        "[bot]\ntransports = console\n[irc]\nsasl_password_env = DOWNTIMEBOT_IRC_PASSWORD\n"
        "[matrix]\nuser_id = @downtimebot:example.org\n",
    )
    assert config.irc.host == ""
    assert config.matrix.homeserver == ""
    assert configuration.missing_secrets(config, {}) == []


def test_irc_host_is_required_when_irc_is_a_transport(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\[irc\] host: expected the IRC server's host name"):
        load_ini(tmp_path, "[irc]\nport = 6667\n", DOWNTIMEBOT_BOT_TRANSPORTS="irc")


def test_console_mode_lifts_the_requirements_of_the_transports_the_file_names(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[bot]\ntransports = irc, matrix\n")
    config = configuration.load(ini, environ={}, transports=("console",))
    assert config.bot.transports == ("console",)


def test_matrix_names_every_required_key_it_lacks_when_it_is_a_transport(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_ini(tmp_path, "[bot]\ntransports = matrix\n[matrix]\nuser_id = @bot:example.org\n")
    assert str(err.value) == (
        "[matrix] homeserver, requests_room, announce_room, password_env or access_token_env: "
        "needed when [bot] transports has matrix"
    )


def test_irc_keys_default_like_the_irc_transport_and_the_nick_comes_from_bot(tmp_path: Path) -> None:
    from adapters.irc import IrcConfig

    config = load_ini(tmp_path, "[bot]\nnick = dtbot\ntransports = irc\n[irc]\nhost = irc.example.org\ntls = on\n")
    irc = config.irc
    assert (irc.host, irc.port, irc.tls, irc.nick, irc.identity) == ("irc.example.org", 6697, True, "dtbot", "account")
    transport_defaults = IrcConfig(host="irc.example.org")
    for key in ("tls_verify", "realname", "pacing", "burst", "rate", "line_burst", "line_rate"):
        assert getattr(irc, key) == getattr(transport_defaults, key), key


def test_matrix_keys_default_like_the_matrix_transport(tmp_path: Path) -> None:
    from adapters.matrix import MatrixConfig

    config = load_ini(
        tmp_path,
        "[bot]\ntransports = matrix\n[matrix]\nhomeserver = https://matrix.example.org\n"
        "user_id = @bot:example.org\naccess_token_env = BOT_TOKEN\nrequests_room = #ci:example.org\n"
        "announce_room = !dev:example.org\n",
    )
    transport_defaults = MatrixConfig("https://m.example.org", "@bot:example.org", "store", access_token="t")
    for key in ("device_name", "sync_timeout_ms", "backoff_min", "backoff_max"):
        assert getattr(config.matrix, key) == getattr(transport_defaults, key), key
    assert config.matrix.store_path == "var/matrix"


def test_environment_variables_override_irc_and_matrix_keys(tmp_path: Path) -> None:
    config = load_ini(
        tmp_path,
        "[irc]\nport = 6667\n",
        DOWNTIMEBOT_IRC_PORT="7000",
        DOWNTIMEBOT_IRC_SASL_PASSWORD_ENV="MY_IRC_PASSWORD",
        DOWNTIMEBOT_MATRIX_SYNC_TIMEOUT_MS="5000",
    )
    assert config.irc.port == 7000
    assert config.irc.sasl_password_env == "MY_IRC_PASSWORD"
    assert config.matrix.sync_timeout_ms == 5000


def test_an_env_key_holding_something_that_is_no_variable_name_is_refused_without_repeating_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as err:
        load_ini(tmp_path, "[irc]\nsasl_password_env = hunter2!secret\n")
    assert str(err.value).startswith("[irc] sasl_password_env: expected the name of an environment variable")
    assert "hunter2" not in str(err.value)


def test_sasl_without_tls_is_a_configuration_error_unless_allowed_for_a_local_server(tmp_path: Path) -> None:
    import bot

    text = "[bot]\ntransports = irc\n[irc]\nhost = 127.0.0.1\nsasl_username = dtbot\nsasl_password_env = PW\n"
    problems = bot.check_config(load_ini(tmp_path, text), {"PW": "s3cret"})
    assert problems == [
        "[irc] sasl_username = dtbot: SASL over a plaintext connection (tls = off) would send the password "
        "unencrypted; turn tls on, or set allow_plaintext_sasl = on (only for a local test server)"
    ]
    assert bot.check_config(load_ini(tmp_path, text + "allow_plaintext_sasl = on\n"), {"PW": "s3cret"}) == []
    assert bot.check_config(load_ini(tmp_path, text + "tls = on\n"), {"PW": "s3cret"}) == []


# --- secrets ---------------------------------------------------------------------------------------

EVERY_SECRET = """\
[bot]
transports = irc, matrix
[irc]
host = irc.example.org
tls = on
sasl_username = downtimebot
sasl_password_env = DOWNTIMEBOT_IRC_PASSWORD
nickserv_password_env = NICKSERV_PASSWORD
[matrix]
homeserver = https://matrix.example.org
user_id = @downtimebot:example.org
password_env = MATRIX_PASSWORD
requests_room = #ci:example.org
announce_room = #developers:example.org
[mail]
host = smtp.example.org
username = downtimebot
password_env = SMTP_PASSWORD
[bugzilla]
enabled = on
url = https://bugzilla.example.org
api_key_env = BUGZILLA_API_KEY
[trees]
backend = treestatus
treestatus_url = https://treestatus.example.org
treestatus_token_env = TREESTATUS_TOKEN
"""


def test_every_missing_secret_is_listed_with_its_section_and_key(tmp_path: Path) -> None:
    config = load_ini(tmp_path, EVERY_SECRET)
    assert [str(s) for s in configuration.missing_secrets(config, {"NICKSERV_PASSWORD": ""})] == [
        "[irc] sasl_password_env = DOWNTIMEBOT_IRC_PASSWORD: that environment variable is not set",
        "[irc] nickserv_password_env = NICKSERV_PASSWORD: that environment variable is not set",
        "[matrix] password_env = MATRIX_PASSWORD: that environment variable is not set",
        "[mail] password_env = SMTP_PASSWORD: that environment variable is not set",
        "[trees] treestatus_token_env = TREESTATUS_TOKEN: that environment variable is not set",
        "[bugzilla] api_key_env = BUGZILLA_API_KEY: that environment variable is not set",
    ]
    # Only the Bugzilla key may be missing at start-up: the bot warns and refuses Bugzilla changes.
    assert [s.section for s in configuration.missing_secrets(config, {}) if s.optional_at_start] == ["bugzilla"]


def test_the_sections_keep_the_names_of_the_variables_never_the_secrets(tmp_path: Path) -> None:
    environ = {name: "s3cret-" + name for name in (
        "DOWNTIMEBOT_IRC_PASSWORD", "NICKSERV_PASSWORD", "MATRIX_PASSWORD", "SMTP_PASSWORD",
        "BUGZILLA_API_KEY", "TREESTATUS_TOKEN",
    )}
    ini = tmp_path / "c.ini"
    ini.write_text(EVERY_SECRET)
    config = configuration.load(ini, environ=environ)
    assert configuration.missing_secrets(config, environ) == []
    assert "s3cret" not in repr(config)


def test_secrets_are_needed_only_by_what_the_configuration_turns_on(tmp_path: Path) -> None:
    config = load_ini(tmp_path, EVERY_SECRET.replace("transports = irc, matrix", "transports = console")
                      .replace("enabled = on", "enabled = off").replace("backend = treestatus", "backend = advisory")
                      .replace("host = smtp.example.org", "host ="))
    assert configuration.missing_secrets(config, {}) == []


def test_the_irc_transport_config_reads_its_secret_from_the_environment_and_never_shows_it(tmp_path: Path) -> None:
    import bot

    config = load_ini(tmp_path, EVERY_SECRET)
    irc = bot.irc_config(config, {"DOWNTIMEBOT_IRC_PASSWORD": "s3cret", "NICKSERV_PASSWORD": "other"})
    assert (irc.host, irc.sasl_username, irc.sasl_password, irc.channels) == (
        "irc.example.org", "downtimebot", "s3cret", {"#ci": "#ci", "#developers": "#developers"},
    )
    assert "s3cret" not in repr(irc)
    with pytest.raises(ConfigError, match=r"^\[irc\] sasl_password_env = DOWNTIMEBOT_IRC_PASSWORD: that"):
        bot.irc_config(config, {})


def test_check_config_lists_every_missing_secret_and_what_only_the_transports_check(tmp_path: Path) -> None:
    import bot

    config = load_ini(
        tmp_path,
        EVERY_SECRET.replace("host = irc.example.org", f"host = irc.example.org\nclient_cert = {tmp_path}/none.pem")
        .replace("username = downtimebot\npassword_env", "from = nobody\nusername = downtimebot\npassword_env"),
    )
    problems = bot.check_config(config, {})
    assert problems == [str(s) for s in configuration.missing_secrets(config, {})] + [
        f"[irc] client_cert = '{tmp_path}/none.pem': expected a PEM file; there is none",
        "[mail] from is not a mail address: 'nobody'",
    ]


# --- python bot.py --check-config ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def check_config(tmp_path: Path, text: str, **environ: str) -> subprocess.CompletedProcess[str]:
    ini = tmp_path / "c.ini"
    ini.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNTIMEBOT_")}
    env.update(environ)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--config", str(ini), "--check-config"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )


def test_check_config_exits_2_and_names_a_bad_irc_port(tmp_path: Path) -> None:
    result = check_config(tmp_path, "[irc]\nport = notanumber\n", DOWNTIMEBOT_BOT_TRANSPORTS="irc")
    assert result.returncode == 2, result.stdout
    assert "configuration error: [irc] port = 'notanumber'" in result.stderr
    assert "OK" not in result.stdout


def test_check_config_exits_2_and_lists_every_missing_secret(tmp_path: Path) -> None:
    result = check_config(tmp_path, EVERY_SECRET)
    assert result.returncode == 2
    complaints = [line for line in result.stderr.splitlines() if line.startswith("configuration error: ")]
    assert len(complaints) == 6
    assert "configuration error: [bugzilla] api_key_env = BUGZILLA_API_KEY: that environment variable is not set" in complaints


def test_check_config_says_ok_for_a_good_irc_config_without_connecting_or_opening_the_database(
    tmp_path: Path,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = check_config(
            tmp_path,
            f"[bot]\ntransports = irc\ndatabase = sqlite:///{tmp_path}/bot.db\n"
            f"[irc]\nhost = 127.0.0.1\nport = {port}\nsasl_username = dtbot\n"
            "sasl_password_env = DOWNTIMEBOT_IRC_PASSWORD\nallow_plaintext_sasl = on\n",
            DOWNTIMEBOT_IRC_PASSWORD="s3cret",
        )
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody knocked
            server.accept()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{tmp_path / 'c.ini'}: OK (transports: irc)"
    assert not (tmp_path / "bot.db").exists()
    assert "s3cret" not in result.stdout + result.stderr


def test_max_horizon_defaults_to_a_year_and_is_bounded(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[bot]\n")
    assert configuration.load(ini, environ={}).policy.max_horizon == dt.timedelta(days=365)
    ini.write_text("[policy]\nmax_horizon = 99999d\n")
    with pytest.raises(ConfigError, match=r"^\[policy\] max_horizon = '99999d'"):
        configuration.load(ini, environ={})


def test_rate_limit_is_commands_per_period_or_off(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[bot]\nrate_limit = 30/2m\nrate_burst = 3\n")
    bot = configuration.load(ini, environ={}).bot
    assert (bot.rate_commands, bot.rate_period, bot.rate_burst) == (30, dt.timedelta(minutes=2), 3)
    ini.write_text("[bot]\nrate_limit = off\n")
    assert configuration.load(ini, environ={}).bot.rate_commands == 0
    ini.write_text("[bot]\nrate_limit = lots\n")
    with pytest.raises(ConfigError, match=r"^\[bot\] rate_limit = 'lots'"):
        configuration.load(ini, environ={})


def test_nominate_roles_names_roles_and_refuses_unknown_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from models.lifecycle import Role
    from tests.conftest import make_config

    assert make_config(tmp_path).bugzilla.nominate_roles == ()
    config = make_config(tmp_path, bugzilla={"nominate_roles": "ciduty, Sheriffs"})
    assert config.bugzilla.nominate_roles == (Role.CIDUTY, Role.SHERIFF)
    with pytest.raises(ConfigError, match=r"\[bugzilla\] nominate_roles: unknown role 'engineers'"):
        make_config(tmp_path, bugzilla={"nominate_roles": "engineers"})


def test_the_web_section_defaults_to_the_loopback_page_with_announced_downtimes_public() -> None:
    web = configuration.load(configuration.DEFAULT_CONFIG, environ={}).web
    assert (web.listen, web.host, web.port, web.base_url) == ("127.0.0.1:8080", "127.0.0.1", 8080, "")
    assert web.public_states == ("announced", "in_progress", "finished", "cancelled")
    assert web.enabled


def test_the_web_section_reads_listen_base_url_and_states(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[web]\nlisten = [::1]:9000\nbase_url = https://downtimes.example.org/\npublic_states = approved, In Progress\n")
    web = configuration.load(ini, environ={}).web
    assert (web.host, web.port, web.base_url) == ("::1", 9000, "https://downtimes.example.org")
    assert web.public_states == ("approved", "in_progress")
    off = configuration.load(ini, environ={"DOWNTIMEBOT_WEB_LISTEN": ""}).web
    assert not off.enabled


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("listen", "8080", "[web] listen = '8080': expected <host>:<port>"),
        ("listen", "localhost:http", "[web] listen = 'localhost:http': expected <host>:<port>"),
        ("listen", "localhost:70000", "[web] listen = 'localhost:70000'"),
        ("base_url", "downtimes.example.org", "[web] base_url = 'downtimes.example.org': expected an http(s) address"),
        ("base_url", "javascript:alert(1)", "[web] base_url = 'javascript:alert(1)'"),
        ("public_states", "announced, secret", "[web] public_states: unknown state 'secret'"),
    ],
)
def test_a_bad_web_value_names_the_key(tmp_path: Path, key: str, value: str, message: str) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text(f"[web]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as err:
        configuration.load(ini, environ={})
    assert message in str(err.value)
