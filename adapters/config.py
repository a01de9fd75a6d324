"""Reading config.ini once, at start-up, into typed frozen sections.

Every key may be overridden by the environment variable
``DOWNTIMEBOT_<SECTION>_<KEY>`` (upper case). Secrets are never read from the
file: keys ending in ``_env`` name the environment variable that holds them.
A value that cannot be understood stops the bot with the section, the key and
what was expected.

``[irc]`` and ``[matrix]`` are parsed like every other section: their values are
always checked, but their required keys (and their secrets, see `missing_secrets`)
are required only when ``[bot] transports`` uses that network.
"""
from __future__ import annotations

import configparser
import datetime as dt
import math
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from models.lifecycle import Role
from models.planning import MAX_HORIZON_LIMIT, Policy, PolicyError, parse_blackouts, parse_windows
from models.timeparse import TimeParseError, parse_duration, validate_zone

HERE = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = HERE / "config.ini"
TRANSPORTS = ("console", "irc", "matrix")
# The rule of adapters.matrix.is_mxid, not imported from there: that would load nio for every
# configuration, Matrix or not.
_MXID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A bad configuration value: says the section, the key and what was expected."""


@dataclass(frozen=True)
class BotSection:
    nick: str = "downtimebot"
    command_prefix: str = "!"
    database: str = "sqlite:///var/downtimebot.db"
    # The environment variable holding the database's password (PostgreSQL): never in the file.
    database_password_env: str = ""
    transports: tuple[str, ...] = ("console",)
    display_timezones: tuple[str, ...] = ("America/Los_Angeles", "Europe/Berlin")
    # [bot] rate_limit: commands per period for one sender (0: no limit); rate_burst: at once.
    rate_commands: int = 10
    rate_period: dt.timedelta = dt.timedelta(minutes=1)
    rate_burst: int = 5
    max_line: int = 2000  # characters; longer command lines are refused before they are parsed


@dataclass(frozen=True)
class ChannelsSection:
    requests: str = "#ci"
    announce: str = "#developers"

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.requests, self.announce)))


# The kind of account each network identifies people by: the console types names like IRC
# services accounts, so it is matched like IRC. A network not listed here grants no role.
NETWORK_KINDS: Mapping[str, str] = {"irc": "irc", "console": "irc", "matrix": "matrix"}
Identity = tuple[str, str]  # (kind, casefolded account): ("irc", "carol"), ("matrix", "@carol:mozilla.org")


def account_kind(entry: str) -> str:
    """What a [roles] or [people] entry names: ``matrix`` (an MXID such as @carol:mozilla.org),
    ``mail`` (an address with @ and a dot after it), or ``irc`` (a bare name: an IRC services
    account, or a console name)."""
    if entry.startswith("@"):
        return "matrix"
    if "@" in entry and "." in entry.rpartition("@")[2]:
        return "mail"
    return "irc"


@dataclass(frozen=True)
class RolesSection:
    """[roles], with [people] linking one person's accounts across networks.

    Every account is matched on its own network only: a bare name is an IRC services account
    (console names count as IRC ones), ``@user:server`` a Matrix ID. ``[people] carol = carol,
    @carol:mozilla.org`` makes the IRC account ``carol`` and the MXID one person: a role given
    to either (or to the person's name ``carol``) holds on both. A role never reaches an
    account on a network where that person does not list it: with ``[people] carol =
    @carol:mozilla.org``, ``ciduty = carol`` is the MXID only, not an IRC account named carol.
    """

    members: Mapping[Role, frozenset[Identity]] = field(default_factory=dict)
    links: Mapping[Identity, frozenset[Identity]] = field(default_factory=dict)

    def identities(self, account: str, network: str) -> frozenset[str]:
        """Every account of the person holding `account` on `network` (itself included)."""
        return frozenset(name for _, name in self._linked(account, network))

    def _linked(self, account: str, network: str) -> frozenset[Identity]:
        kind = NETWORK_KINDS.get(network)
        if kind is None or account_kind(account) != kind:
            return frozenset()
        me = (kind, account.casefold())
        return self.links.get(me, frozenset({me}))

    def roles_of(self, account: str | None, network: str) -> frozenset[Role]:
        """The roles of `account` as identified on `network` (``irc``, ``console``, ``matrix``)."""
        if not account:
            return frozenset()
        mine = self._linked(account, network)
        return frozenset(r for r, people in self.members.items() if mine & people)

    def accounts(self, role: Role) -> list[str]:
        """Every account (on every network) of the people holding `role`, for mentions."""
        found: set[Identity] = set()
        for member in self.members.get(role, ()):
            found |= self.links.get(member, frozenset({member}))
        return sorted(name for _, name in found)

    def persons(self, role: Role) -> list[tuple[str, ...]]:
        """The people holding `role`, each as their accounts on every network (IRC first): one
        person is named once even with an IRC account and a Matrix ID."""
        groups = {self.links.get(member, frozenset({member})) for member in self.members.get(role, ())}
        return sorted(tuple(name for _, name in sorted(group, key=lambda i: (i[0] != "irc", i[1]))) for group in groups)


@dataclass(frozen=True)
class BugzillaSection:
    url: str = ""
    api_key_env: str = "BUGZILLA_API_KEY"
    flag: str = "needs-treeclosure"
    enabled: bool = False
    product: str = ""
    report_after: dt.timedelta = dt.timedelta(minutes=30)
    # Who may have the bot nominate a bug (proposing with bugs, bug add); empty: anyone identified.
    nominate_roles: tuple[Role, ...] = ()


@dataclass(frozen=True)
class MailSection:
    host: str = ""
    port: int = 587
    starttls: bool = True
    tls: bool = False
    username: str = ""
    password_env: str = "DOWNTIMEBOT_MAIL_PASSWORD"
    sender: str = "Downtime bot <downtimebot@localhost>"
    preapprovers: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    announce_to: tuple[str, ...] = ()
    copy_to: tuple[str, ...] = ()
    remind_lists: bool = False  # reminders before the start also mailed to the lists, in the thread

    @property
    def configured(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class TreesSection:
    names: tuple[str, ...] = ("autoland", "mozilla-central", "mozilla-beta", "try")
    backend: str = "builtin"
    treestatus_url: str = ""
    treestatus_token_env: str = "TREESTATUS_TOKEN"


@dataclass(frozen=True)
class NoticeSection:
    """Links in the "When can I push?" boilerplate."""

    self_serve_url: str = "https://treeherder.mozilla.org/"
    end_to_end_url: str = "https://treeherder.mozilla.org/perfherder/"


# The states whose downtimes the web page shows to anyone (see models/public.py for the rule).
PUBLIC_STATES_DEFAULT = ("announced", "in_progress", "finished", "cancelled")
STATE_NAMES = ("proposed", "approved", "rejected", "announced", "in_progress", "finished", "cancelled")


@dataclass(frozen=True)
class WebSection:
    """[web]: the read-only status page, feeds, API and operations endpoints (adapters/web/)."""

    listen: str = "127.0.0.1:8080"  # host:port; empty turns the web server off; port 0 picks a free one
    base_url: str = ""  # e.g. https://downtimes.example.org: links in chat, mail and feeds
    public_states: tuple[str, ...] = PUBLIC_STATES_DEFAULT

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class HaSection:
    """[ha]: several instances on one database, one of them leading (adapters/leadership.py)."""

    enabled: bool = False
    instance: str = ""  # this instance's name in the lease and the log; default: the host name
    lease_seconds: float = 15.0  # a leader that cannot renew its lease within this stops at once


@dataclass(frozen=True)
class IrcSection:
    """[irc]: one IRC network. ``*_env`` keys hold the name of an environment variable, never
    the secret. The defaults are IrcConfig's (adapters/irc.py explains the pacing figures)."""

    host: str = ""  # required when [bot] transports has irc
    port: int = 6667  # 6697 with tls
    tls: bool = False
    tls_verify: bool = True
    client_cert: str = ""  # PEM file holding the certificate and its key (CertFP)
    nick: str = "downtimebot"  # default: [bot] nick
    alt_nick: str = ""  # empty: nick + "_"
    username: str = ""  # empty: the nick
    realname: str = "downtime-bot (tree-closing downtimes)"
    sasl_username: str = ""
    sasl_password_env: str = ""
    # SASL over a connection without TLS sends the password readable to anyone on the path:
    # refused at start-up unless turned on (for a local test server).
    allow_plaintext_sasl: bool = False
    nickserv_password_env: str = ""
    identity: Literal["account", "nick"] = "account"
    whois_max_age: float = 60.0  # seconds; an account learned without account-tag is re-checked after
    pacing: bool = True
    line_burst: int = 3  # lines that may go out at once
    line_rate: float = 1.0  # lines per second refilled
    burst: int = 512  # bytes that may go out at once
    rate: float = 256.0  # bytes per second refilled


@dataclass(frozen=True)
class MatrixSection:
    """[matrix]: one Matrix account. ``*_env`` keys hold the name of an environment variable."""

    homeserver: str = ""  # these four, and password_env or access_token_env, are required
    user_id: str = ""  # when [bot] transports has matrix
    requests_room: str = ""  # alias or room id standing for [channels] requests
    announce_room: str = ""  # ... and for [channels] announce
    password_env: str = ""
    access_token_env: str = ""
    device_name: str = "downtime-bot"
    store_path: str = "var/matrix"  # relative: from the folder of bot.py
    sync_timeout_ms: int = 30000
    backoff_min: float = 1.0
    backoff_max: float = 300.0


@dataclass(frozen=True)
class Config:
    bot: BotSection = BotSection()
    channels: ChannelsSection = ChannelsSection()
    roles: RolesSection = RolesSection()
    policy: Policy = Policy()
    bugzilla: BugzillaSection = BugzillaSection()
    mail: MailSection = MailSection()
    trees: TreesSection = TreesSection()
    notice: NoticeSection = NoticeSection()
    irc: IrcSection = IrcSection()
    matrix: MatrixSection = MatrixSection()
    web: WebSection = WebSection()
    ha: HaSection = HaSection()
    push: Mapping[str, dt.timedelta] = field(default_factory=dict)
    systems: Mapping[str, str] = field(default_factory=dict)
    path: str = ""
    # [people]: account (casefolded) → mail address, where the draft reaches the requester.
    people: Mapping[str, str] = field(default_factory=dict)
    # [people]: mail address (casefolded) → the person's accounts (IRC first), so that a bug's
    # assignee (a Bugzilla mail address) is mentioned in chat and may confirm the draft.
    mail_accounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.replace("\n", ",").split(",") if v.strip())


def _bool(section: str, key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise ConfigError(f"[{section}] {key} = {value!r}: expected on or off")


def _duration(
    section: str, key: str, value: str, minimum: dt.timedelta = dt.timedelta(minutes=1),
    maximum: dt.timedelta = dt.timedelta(days=60),
) -> dt.timedelta:
    try:
        return parse_duration(value.strip(), minimum=minimum, maximum=maximum)
    except TimeParseError as err:
        raise ConfigError(f"[{section}] {key} = {value!r}: {err}") from None


def _int(section: str, key: str, value: str, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"[{section}] {key} = {value!r}: expected a whole number") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"[{section}] {key} = {value!r}: expected a whole number of at least {minimum}")
    return number


def _port(section: str, key: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ConfigError(f"[{section}] {key} = {value!r}: expected a port number from 1 to 65535")
    return port


def _rate_limit(value: str, burst: str) -> tuple[int, dt.timedelta, int]:
    """``[bot] rate_limit = 10/1m`` (commands per period; ``off`` or 0: no limit) and ``rate_burst``."""
    text = value.strip().lower()
    b = BotSection()
    if text in ("off", "0", "no", "none"):
        return 0, b.rate_period, b.rate_burst
    commands, _, period = text.partition("/")
    try:
        number = int(commands)
    except ValueError:
        number = 0
    if number < 1 or number > 100_000:
        raise ConfigError(f"[bot] rate_limit = {value!r}: expected <commands>/<period> such as 10/1m, or off")
    return number, _duration("bot", "rate_limit", period or "1m"), _int("bot", "rate_burst", burst, minimum=1)


def _number(section: str, key: str, value: str) -> float:
    """A number above 0 (rates, seconds)."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"[{section}] {key} = {value!r}: expected a number above 0")
    return number


def _roles(section: str, key: str, value: str) -> tuple[Role, ...]:
    known = {r.value: r for r in Role}
    roles = []
    for name in _list(value):
        if name.lower() not in known:
            raise ConfigError(f"[{section}] {key}: unknown role {name[:40]!r}; expected any of {', '.join(known)}")
        roles.append(known[name.lower()])
    return tuple(dict.fromkeys(roles))


def _max_line(value: str) -> int:
    if not value.isdigit() or not 100 <= int(value) <= 100_000:
        raise ConfigError(f"[bot] max_line = {value[:20]!r}: expected a number of characters from 100 to 100000")
    return int(value)


def _env_name(section: str, key: str, value: str) -> str:
    """The name of an environment variable. The value is not repeated: it may be a secret pasted here."""
    if value and not _ENV_NAME.match(value):
        raise ConfigError(
            f"[{section}] {key}: expected the name of an environment variable (letters, digits and _), "
            "not the secret itself"
        )
    return value


def load(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    transports: tuple[str, ...] | None = None,
) -> Config:
    """Read the INI file (if it exists) and the environment overrides into a Config.

    `transports` replaces ``[bot] transports`` (``--console``): the networks left out need
    neither their required keys nor their secrets.
    """
    environ = os.environ if environ is None else environ
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case ([systems], [push])
    chosen = Path(path) if path else DEFAULT_CONFIG
    if path and not chosen.exists():
        raise ConfigError(f"configuration file {chosen} does not exist")
    if chosen.exists():
        try:
            parser.read(chosen, encoding="utf-8")
        except configparser.Error as err:
            raise ConfigError(f"{chosen}: {err}".splitlines()[0]) from None
    prefix = "DOWNTIMEBOT_"
    for name, value in environ.items():
        if not name.startswith(prefix) or name.endswith("_PASSWORD") or name.count("_") < 2:
            continue
        section, _, key = name[len(prefix) :].partition("_")
        section = section.lower()
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key.lower(), value)
    raw = {s: dict(parser.items(s)) for s in parser.sections()}
    return _build(raw, str(chosen), transports=transports)


def _build(
    raw: Mapping[str, Mapping[str, str]], path: str, *, transports: tuple[str, ...] | None = None
) -> Config:
    def get(section: str, key: str, default: str = "") -> str:
        return raw.get(section, {}).get(key, default).strip()

    b = BotSection()
    configured = _list(get("bot", "transports", ",".join(b.transports))) or b.transports
    for name in configured:
        if name not in TRANSPORTS:
            raise ConfigError(f"[bot] transports: unknown transport {name!r}; expected any of {', '.join(TRANSPORTS)}")
    transports = configured if transports is None else transports
    zones = _list(get("bot", "display_timezones", ",".join(b.display_timezones)))
    for z in zones:
        try:
            validate_zone(z)
        except TimeParseError as err:
            raise ConfigError(f"[bot] display_timezones: {err}") from None
    prefix = get("bot", "command_prefix", b.command_prefix)
    if not prefix or any(c.isspace() for c in prefix):
        raise ConfigError("[bot] command_prefix: expected a non-empty prefix without spaces, such as '!'")
    rate = _rate_limit(get("bot", "rate_limit", f"{b.rate_commands}/1m"), get("bot", "rate_burst", str(b.rate_burst)))
    bot = BotSection(
        nick=get("bot", "nick", b.nick),
        command_prefix=prefix,
        database=_database(get("bot", "database", b.database)),
        database_password_env=get("bot", "database_password_env"),
        transports=transports,
        display_timezones=tuple(z for z in zones if z.upper() != "UTC"),
        rate_commands=rate[0],
        rate_period=rate[1],
        rate_burst=rate[2],
        max_line=_max_line(get("bot", "max_line", str(b.max_line))),
    )
    c = ChannelsSection()
    channels = ChannelsSection(get("channels", "requests", c.requests), get("channels", "announce", c.announce))
    for key, value in (("requests", channels.requests), ("announce", channels.announce)):
        if not value.startswith("#") or " " in value:
            raise ConfigError(f"[channels] {key} = {value!r}: expected a channel name such as #ci")

    # [people] <person> = <IRC account>, <@mxid:server>, <mail address>: one person's accounts
    # (a role given to any holds on each of them, on its own network) and where mail reaches them.
    links: dict[Identity, frozenset[Identity]] = {}
    persons: dict[str, frozenset[Identity]] = {}
    people: dict[str, str] = {}
    mail_accounts: dict[str, tuple[str, ...]] = {}
    for person, entries in raw.get("people", {}).items():
        accounts: list[Identity] = []
        mails = []
        for entry in _list(entries):
            kind = account_kind(entry)
            if (kind == "irc" and "@" in entry) or (kind == "mail" and any(c.isspace() or c in "<>,;" for c in entry)):
                raise ConfigError(f"[people] {person} = {entries!r}: {entry!r} is not a mail address or an account")
            if kind == "mail":
                mails.append(entry)
            else:
                accounts.append((kind, entry.casefold()))
        if not accounts and account_kind(person) == "irc":
            # "alice = alice@example.org": with no account listed, the name is the (IRC) account.
            accounts.append(("irc", person.casefold()))
        identities = frozenset(accounts)
        persons[person.casefold()] = identities
        for identity in identities:
            links[identity] = links.get(identity, frozenset()) | identities
            if mails:
                people[identity[1]] = mails[0]
        for address in mails:
            mail_accounts[address.casefold()] = tuple(
                name for _, name in sorted(identities, key=lambda i: (i[0] != "irc", i[1]))
            )
    members: dict[Role, frozenset[Identity]] = {}
    for role in Role:
        named: set[Identity] = set()
        for entry in _list(get("roles", role.value)):
            kind = account_kind(entry)
            if entry.casefold() in persons:
                named |= persons[entry.casefold()]  # a person: each account they list
            elif kind == "mail":
                raise ConfigError(
                    f"[roles] {role.value}: {entry!r} is a mail address; expected IRC services accounts "
                    "or Matrix IDs such as @carol:example.org"
                )
            else:
                named.add((kind, entry.casefold()))
        members[role] = frozenset(named)
    roles = RolesSection(members, links)

    try:
        policy = Policy(
            min_notice=_duration("policy", "min_notice", get("policy", "min_notice", "24h"), dt.timedelta()),
            min_gap=_duration("policy", "min_gap", get("policy", "min_gap", "24h"), dt.timedelta()),
            low_impact=parse_windows(get("policy", "low_impact", DEFAULT_LOW_IMPACT)),
            blackouts=parse_blackouts(get("policy", "blackouts", "")),
            ciduty_hours=parse_windows(get("policy", "ciduty_hours", DEFAULT_CIDUTY_HOURS)),
            reminders=tuple(
                _duration("policy", "reminders", r) for r in _list(get("policy", "reminders", "24h,1h"))
            ),
            auto_start=_bool("policy", "auto_start", get("policy", "auto_start", "off")),
            max_horizon=_duration(
                "policy", "max_horizon", get("policy", "max_horizon", "365d"), dt.timedelta(days=1),
                MAX_HORIZON_LIMIT,
            ),
        )
    except PolicyError as err:
        raise ConfigError(f"[policy] {err}") from None

    bz = BugzillaSection()
    bugzilla = BugzillaSection(
        url=get("bugzilla", "url").rstrip("/"),
        api_key_env=_env_name("bugzilla", "api_key_env", get("bugzilla", "api_key_env", bz.api_key_env)),
        flag=get("bugzilla", "flag", bz.flag),
        enabled=_bool("bugzilla", "enabled", get("bugzilla", "enabled", "on" if get("bugzilla", "url") else "off")),
        product=get("bugzilla", "product"),
        report_after=_duration("bugzilla", "report_after", get("bugzilla", "report_after", "30m")),
        nominate_roles=_roles("bugzilla", "nominate_roles", get("bugzilla", "nominate_roles")),
    )
    if bugzilla.enabled and not bugzilla.url:
        raise ConfigError("[bugzilla] enabled = on needs url, e.g. https://bugzilla.mozilla.org")

    m = MailSection()
    mail = MailSection(
        host=get("mail", "host"),
        port=_port("mail", "port", get("mail", "port", str(m.port))),
        starttls=_bool("mail", "starttls", get("mail", "starttls", "on")),
        tls=_bool("mail", "tls", get("mail", "tls", "off")),
        username=get("mail", "username"),
        password_env=_env_name("mail", "password_env", get("mail", "password_env", m.password_env)),
        sender=get("mail", "from", m.sender),
        preapprovers=_list(get("mail", "preapprovers")),
        cc=_list(get("mail", "cc")),
        announce_to=_list(get("mail", "announce_to")),
        copy_to=_list(get("mail", "copy_to")),
        remind_lists=_bool("mail", "remind_lists", get("mail", "remind_lists", "off")),
    )

    t = TreesSection()
    backend = get("trees", "backend", t.backend)
    if backend not in ("builtin", "treestatus", "advisory"):
        raise ConfigError(f"[trees] backend = {backend!r}: expected builtin, treestatus or advisory")
    trees = TreesSection(
        names=_list(get("trees", "names", ",".join(t.names))) or t.names,
        backend=backend,
        treestatus_url=get("trees", "treestatus_url").rstrip("/"),
        treestatus_token_env=_env_name(
            "trees", "treestatus_token_env", get("trees", "treestatus_token_env", t.treestatus_token_env)
        ),
    )
    if backend == "treestatus" and not trees.treestatus_url:
        raise ConfigError("[trees] backend = treestatus needs treestatus_url")

    n = NoticeSection()
    notice = NoticeSection(
        get("notice", "self_serve_url", n.self_serve_url), get("notice", "end_to_end_url", n.end_to_end_url)
    )
    push = {
        branch: _duration("push", branch, value)
        for branch, value in (raw.get("push") or DEFAULT_PUSH).items()
    }
    systems = dict(raw.get("systems") or DEFAULT_SYSTEMS)
    web = _web(raw.get("web", {}))
    return Config(
        bot=bot, channels=channels, roles=roles, policy=policy, bugzilla=bugzilla, mail=mail, trees=trees,
        notice=notice,
        irc=_irc(raw.get("irc", {}), bot.nick, in_use="irc" in transports),
        matrix=_matrix(raw.get("matrix", {}), in_use="matrix" in transports),
        web=web, ha=_ha(raw.get("ha", {})), push=push, systems=systems, path=path, people=people,
        mail_accounts=mail_accounts,
    )


def _database(url: str) -> str:
    """[bot] database: a SQLite or PostgreSQL URL, without a password (that comes from the environment)."""
    scheme = url.partition(":")[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgresql+psycopg"):
        raise ConfigError(
            f"[bot] database: expected sqlite:///<file> or postgresql+psycopg://<user>@<host>:<port>/<database>, "
            f"not a {scheme or 'blank'} address"
        )
    if scheme.startswith("postgresql"):
        netloc = url.partition("://")[2].partition("/")[0]
        userinfo = netloc.rpartition("@")[0]
        if ":" in userinfo:
            raise ConfigError("[bot] database: the address holds a password; put it in an environment variable "
                              "and name that variable in [bot] database_password_env")
        if scheme == "postgresql":
            url = "postgresql+psycopg" + url[len("postgresql"):]  # psycopg 3, the one driver installed
    return url


def _ha(values: Mapping[str, str]) -> HaSection:
    enabled = _bool("ha", "enabled", values.get("enabled", "off"))
    instance = values.get("instance", "").strip() or socket.gethostname()
    if not instance or len(instance) > 100 or any(not c.isprintable() or c.isspace() for c in instance):
        raise ConfigError(f"[ha] instance = {instance!r}: expected a short name without spaces, such as bot-1")
    raw = values.get("lease_seconds", "15").strip()
    try:
        lease = float(raw)
    except ValueError:
        lease = -1.0
    if not 3 <= lease <= 600:
        raise ConfigError(f"[ha] lease_seconds = {raw!r}: expected a number of seconds from 3 to 600, such as 15")
    return HaSection(enabled=enabled, instance=instance, lease_seconds=lease)


def _web(values: Mapping[str, str]) -> WebSection:
    w = WebSection()
    listen = values.get("listen", w.listen).strip()
    if listen:
        host, colon, port = listen.rpartition(":")
        if not colon or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise ConfigError(
                f"[web] listen = {listen!r}: expected <host>:<port> such as 127.0.0.1:8080 (port 0: any free port), "
                "or nothing to turn the web server off"
            )
    base_url = values.get("base_url", "").strip().rstrip("/")
    if base_url:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment \
                or any(c.isspace() or ord(c) < 32 for c in base_url):
            raise ConfigError(f"[web] base_url = {base_url!r}: expected an http(s) address such as https://downtimes.example.org")
    states = tuple(s.replace(" ", "_").lower() for s in _list(values.get("public_states", ",".join(w.public_states))))
    unknown = [s for s in states if s not in STATE_NAMES]
    if unknown:
        raise ConfigError(f"[web] public_states: unknown state {unknown[0]!r}; expected any of {', '.join(STATE_NAMES)}")
    return WebSection(listen=listen, base_url=base_url, public_states=states)


def _irc(values: Mapping[str, str], bot_nick: str, *, in_use: bool) -> IrcSection:
    """[irc]: every value is checked; host is required only when [bot] transports has irc."""
    d = IrcSection()

    def get(key: str, default: str = "") -> str:
        # An empty value means the default, as it always has in [irc].
        return values.get(key, "").strip() or default

    tls = _bool("irc", "tls", get("tls", "off"))
    host = get("host")
    if any(c.isspace() or c == "/" for c in host):
        raise ConfigError(f"[irc] host = {host!r}: expected a host name such as irc.libera.chat, not a URL")
    identity = get("identity", d.identity)
    if identity.lower() not in ("account", "nick"):
        raise ConfigError(f"[irc] identity = {identity!r}: expected account or nick")
    section = IrcSection(
        host=host,
        port=_port("irc", "port", get("port", "6697" if tls else "6667")),
        tls=tls,
        tls_verify=_bool("irc", "tls_verify", get("tls_verify", "on")),
        client_cert=get("client_cert"),
        nick=get("nick", bot_nick),
        alt_nick=get("alt_nick"),
        username=get("username"),
        realname=get("realname", d.realname),
        sasl_username=get("sasl_username"),
        sasl_password_env=_env_name("irc", "sasl_password_env", get("sasl_password_env")),
        allow_plaintext_sasl=_bool("irc", "allow_plaintext_sasl", get("allow_plaintext_sasl", "off")),
        nickserv_password_env=_env_name("irc", "nickserv_password_env", get("nickserv_password_env")),
        identity="nick" if identity.lower() == "nick" else "account",
        whois_max_age=_number("irc", "whois_max_age", get("whois_max_age", str(d.whois_max_age))),
        pacing=_bool("irc", "pacing", get("pacing", "on")),
        line_burst=_int("irc", "line_burst", get("line_burst", str(d.line_burst)), minimum=1),
        line_rate=_number("irc", "line_rate", get("line_rate", str(d.line_rate))),
        burst=_int("irc", "burst", get("burst", str(d.burst)), minimum=1),
        rate=_number("irc", "rate", get("rate", str(d.rate))),
    )
    if in_use and not section.host:
        raise ConfigError("[irc] host: expected the IRC server's host name (needed when [bot] transports has irc)")
    return section


def _matrix(values: Mapping[str, str], *, in_use: bool) -> MatrixSection:
    """[matrix]: every value is checked; the account and the rooms are required only when
    [bot] transports has matrix."""
    d = MatrixSection()

    def get(key: str, default: str = "") -> str:
        return values.get(key, "").strip() or default

    homeserver = get("homeserver")
    try:
        url = urllib.parse.urlsplit(homeserver)
        web = url.scheme in ("http", "https") and bool(url.hostname)
    except ValueError:
        web = False
    if homeserver and not web:
        raise ConfigError(
            f"[matrix] homeserver = {homeserver!r}: expected an http(s) URL such as https://matrix.example.org"
        )
    user_id = get("user_id")
    if user_id and not _MXID.match(user_id):
        raise ConfigError(f"[matrix] user_id = {user_id!r}: expected a Matrix user id such as @downtimebot:example.org")
    for key in ("requests_room", "announce_room"):
        room = get(key)
        if room and (room[0] not in "#!" or any(c.isspace() for c in room)):
            raise ConfigError(
                f"[matrix] {key} = {room!r}: expected a room alias such as #ci:example.org "
                "or a room id such as !abc:example.org"
            )
    backoff_min = _number("matrix", "backoff_min", get("backoff_min", str(d.backoff_min)))
    backoff_max = _number("matrix", "backoff_max", get("backoff_max", str(d.backoff_max)))
    if backoff_max < backoff_min:
        raise ConfigError(
            f"[matrix] backoff_max = {get('backoff_max')!r}: expected at least backoff_min ({backoff_min:g})"
        )
    section = MatrixSection(
        homeserver=homeserver,
        user_id=user_id,
        requests_room=get("requests_room"),
        announce_room=get("announce_room"),
        password_env=_env_name("matrix", "password_env", get("password_env")),
        access_token_env=_env_name("matrix", "access_token_env", get("access_token_env")),
        device_name=get("device_name", d.device_name),
        store_path=get("store_path", d.store_path),
        sync_timeout_ms=_int("matrix", "sync_timeout_ms", get("sync_timeout_ms", str(d.sync_timeout_ms)), minimum=0),
        backoff_min=backoff_min,
        backoff_max=backoff_max,
    )
    if in_use:
        required = (("homeserver", section.homeserver), ("user_id", section.user_id),
                    ("requests_room", section.requests_room), ("announce_room", section.announce_room))
        missing = [key for key, value in required if not value]
        if not (section.password_env or section.access_token_env):
            missing.append("password_env or access_token_env")
        if missing:
            raise ConfigError(f"[matrix] {', '.join(missing)}: needed when [bot] transports has matrix")
    return section


@dataclass(frozen=True)
class Secret:
    """A secret the configuration needs: ``[section] key`` names the environment variable holding it.

    ``str()`` is the one-line complaint when that variable is not set.
    """

    section: str
    key: str
    variable: str
    # The bot starts without it all the same, with a warning (the Bugzilla key: changes are refused).
    optional_at_start: bool = False

    def __str__(self) -> str:
        if not self.variable:
            return f"[{self.section}] {self.key} is empty: expected the name of an environment variable"
        return f"[{self.section}] {self.key} = {self.variable}: that environment variable is not set"


def needed_secrets(config: Config) -> list[Secret]:
    """Every secret that the transports and services this configuration turns on will read."""
    irc = "irc" in config.bot.transports
    matrix = "matrix" in config.bot.transports
    candidates = [
        ("bot", "database_password_env", config.bot.database_password_env, bool(config.bot.database_password_env)),
        # (section, key, variable, needed); the IRC and Matrix keys are optional: set means used.
        ("irc", "sasl_password_env", config.irc.sasl_password_env, irc and bool(config.irc.sasl_password_env)),
        ("irc", "nickserv_password_env", config.irc.nickserv_password_env,
         irc and bool(config.irc.nickserv_password_env)),
        ("matrix", "password_env", config.matrix.password_env, matrix and bool(config.matrix.password_env)),
        ("matrix", "access_token_env", config.matrix.access_token_env,
         matrix and bool(config.matrix.access_token_env)),
        ("mail", "password_env", config.mail.password_env, config.mail.configured and bool(config.mail.username)),
        ("trees", "treestatus_token_env", config.trees.treestatus_token_env, config.trees.backend == "treestatus"),
    ]
    needed = [Secret(section, key, variable) for section, key, variable, used in candidates if used]
    if config.bugzilla.enabled:
        needed.append(Secret("bugzilla", "api_key_env", config.bugzilla.api_key_env, optional_at_start=True))
    return needed


def missing_secrets(config: Config, environ: Mapping[str, str]) -> list[Secret]:
    """The needed secrets whose environment variable is not set (or is empty)."""
    return [s for s in needed_secrets(config) if not (s.variable and environ.get(s.variable))]


DEFAULT_LOW_IMPACT = "mon-fri 04:00-08:00 UTC, sat-sun 00:00-24:00 UTC"
DEFAULT_CIDUTY_HOURS = "daily 04:00-22:00 UTC"
DEFAULT_PUSH = {"autoland": "2h", "mozilla-central": "3h", "try": "2h", "mozilla-beta": "3h"}
# The hosts that need a coordinated RelEng + IT downtime, from the process document.
DEFAULT_SYSTEMS = {
    "build.mozilla.org": "clobberer, build data, tryserver symbols",
    "cruncher.build.mozilla.org": "graphs dashboard, dumping build data, dashboards, pulse",
    "cvs.mozilla.org": "talos",
    "hg.mozilla.org": "firefox source repos, build repos",
    "tinderbox.mozilla.org": "central reporting point for all builds",
    "ftp.mozilla.org": "release updates on beta channel",
    "stage.mozilla.org": "publishing builds, downloading builds for talos/unittest",
    "graphs.mozilla.org": "performance tracking",
    "buildbot-rw-vip.db.scl3.mozilla.com": "buildbot scheduler db, graphserver?",
    "buildbot-ro-vip.db.scl3.mozilla.com": "used by cruncher",
    "mail.build.mozilla.org": "build mail to tinderbox (currently dm-mail03.mozilla.org)",
    "aus3-staging.mozilla.org": "update snippets",
    "nm-ops03.build.mozilla.org": "releng VMs",
    "nagios.mozilla.org": "monitoring",
    "relengweb1.dmz.scl3.mozilla.com": "replacement for build.mozilla.org",
    "tbpl.mozilla.org": "build status",
}
