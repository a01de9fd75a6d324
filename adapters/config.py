"""Reading config.ini once, at start-up, into typed frozen sections.

Every key may be overridden by the environment variable
``DOWNTIMEBOT_<SECTION>_<KEY>`` (upper case). Secrets are never read from the
file: keys ending in ``_env`` name the environment variable that holds them.
A value that cannot be understood stops the bot with the section, the key and
what was expected.
"""
from __future__ import annotations

import configparser
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from models.lifecycle import Role
from models.planning import Policy, PolicyError, parse_blackouts, parse_windows
from models.timeparse import TimeParseError, parse_duration, validate_zone

HERE = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = HERE / "config.ini"
TRANSPORTS = ("console", "irc", "matrix")


class ConfigError(ValueError):
    """A bad configuration value: says the section, the key and what was expected."""


@dataclass(frozen=True)
class BotSection:
    nick: str = "downtimebot"
    command_prefix: str = "!"
    database: str = "sqlite:///var/downtimebot.db"
    transports: tuple[str, ...] = ("console",)
    display_timezones: tuple[str, ...] = ("America/Los_Angeles", "Europe/Berlin")


@dataclass(frozen=True)
class ChannelsSection:
    requests: str = "#ci"
    announce: str = "#developers"

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.requests, self.announce)))


@dataclass(frozen=True)
class RolesSection:
    """[roles], with [people] linking one person's accounts across networks.

    ``[people] carol = carol, @carol:mozilla.org`` makes the IRC account ``carol`` and the MXID
    ``@carol:mozilla.org`` one person: a role given to either (or to ``carol``) holds on both.
    """

    members: Mapping[Role, frozenset[str]] = field(default_factory=dict)
    links: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # [people] names that are not also one of that person's accounts: never mentioned.
    names: frozenset[str] = frozenset()

    def identities(self, account: str) -> frozenset[str]:
        folded = account.casefold()
        return self.links.get(folded, frozenset({folded}))

    def roles_of(self, account: str | None) -> frozenset[Role]:
        if not account:
            return frozenset()
        mine = self.identities(account)
        return frozenset(r for r, people in self.members.items() if mine & people)

    def accounts(self, role: Role) -> list[str]:
        """Every account (on every network) of the people holding `role`, for mentions."""
        found: set[str] = set()
        for member in self.members.get(role, ()):
            found |= self.identities(member)
        return sorted(found - self.names)


@dataclass(frozen=True)
class BugzillaSection:
    url: str = ""
    api_key_env: str = "BUGZILLA_API_KEY"
    flag: str = "needs-treeclosure"
    enabled: bool = False
    product: str = ""
    report_after: dt.timedelta = dt.timedelta(minutes=30)


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
    push: Mapping[str, dt.timedelta] = field(default_factory=dict)
    systems: Mapping[str, str] = field(default_factory=dict)
    # Raw sections for the transports, which parse their own keys (irc, matrix).
    raw: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    path: str = ""
    # [people]: account (casefolded) → mail address, where the draft reaches the requester.
    people: Mapping[str, str] = field(default_factory=dict)


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.replace("\n", ",").split(",") if v.strip())


def _bool(section: str, key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise ConfigError(f"[{section}] {key} = {value!r}: expected on or off")


def _duration(section: str, key: str, value: str, minimum: dt.timedelta = dt.timedelta(minutes=1)) -> dt.timedelta:
    try:
        return parse_duration(value.strip(), minimum=minimum, maximum=dt.timedelta(days=60))
    except TimeParseError as err:
        raise ConfigError(f"[{section}] {key} = {value!r}: {err}") from None


def _int(section: str, key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"[{section}] {key} = {value!r}: expected a whole number") from None


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the INI file (if it exists) and the environment overrides into a Config."""
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
    return _build(raw, str(chosen))


def _build(raw: Mapping[str, Mapping[str, str]], path: str) -> Config:
    def get(section: str, key: str, default: str = "") -> str:
        return raw.get(section, {}).get(key, default).strip()

    b = BotSection()
    transports = _list(get("bot", "transports", ",".join(b.transports))) or b.transports
    for t in transports:
        if t not in TRANSPORTS:
            raise ConfigError(f"[bot] transports: unknown transport {t!r}; expected any of {', '.join(TRANSPORTS)}")
    zones = _list(get("bot", "display_timezones", ",".join(b.display_timezones)))
    for z in zones:
        try:
            validate_zone(z)
        except TimeParseError as err:
            raise ConfigError(f"[bot] display_timezones: {err}") from None
    prefix = get("bot", "command_prefix", b.command_prefix)
    if not prefix or any(c.isspace() for c in prefix):
        raise ConfigError("[bot] command_prefix: expected a non-empty prefix without spaces, such as '!'")
    bot = BotSection(
        nick=get("bot", "nick", b.nick),
        command_prefix=prefix,
        database=get("bot", "database", b.database),
        transports=transports,
        display_timezones=tuple(z for z in zones if z.upper() != "UTC"),
    )
    c = ChannelsSection()
    channels = ChannelsSection(get("channels", "requests", c.requests), get("channels", "announce", c.announce))
    for key, value in (("requests", channels.requests), ("announce", channels.announce)):
        if not value.startswith("#") or " " in value:
            raise ConfigError(f"[channels] {key} = {value!r}: expected a channel name such as #ci")

    members = {}
    for role in Role:
        members[role] = frozenset(a.casefold() for a in _list(get("roles", role.value)))
    # [people] <person> = <IRC account>, <@mxid:server>, <mail address>: one person's accounts
    # (a role given to any holds on every network) and where mail reaches them.
    links: dict[str, frozenset[str]] = {}
    people: dict[str, str] = {}
    names: set[str] = set()
    for person, entries in raw.get("people", {}).items():
        accounts, mails = [], []
        for entry in _list(entries):
            if entry.startswith("@") or "@" not in entry:
                accounts.append(entry)
            elif any(c.isspace() or c in "<>,;" for c in entry) or "." not in entry.rpartition("@")[2]:
                raise ConfigError(f"[people] {person} = {entries!r}: {entry!r} is not a mail address or an account")
            else:
                mails.append(entry)
        listed = frozenset(a.casefold() for a in accounts)
        identities = listed | {person.casefold()}
        if listed and person.casefold() not in listed:
            # A name that is none of the listed accounts: roles may use it, mentions must not.
            # (With no account listed, as in "alice = alice@example.org", the name is the account.)
            names.add(person.casefold())
        for identity in identities:
            links[identity] = links.get(identity, frozenset()) | identities
            if mails:
                people[identity] = mails[0]
    roles = RolesSection(members, links, frozenset(names))

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
        )
    except PolicyError as err:
        raise ConfigError(f"[policy] {err}") from None

    bz = BugzillaSection()
    bugzilla = BugzillaSection(
        url=get("bugzilla", "url").rstrip("/"),
        api_key_env=get("bugzilla", "api_key_env", bz.api_key_env),
        flag=get("bugzilla", "flag", bz.flag),
        enabled=_bool("bugzilla", "enabled", get("bugzilla", "enabled", "on" if get("bugzilla", "url") else "off")),
        product=get("bugzilla", "product"),
        report_after=_duration("bugzilla", "report_after", get("bugzilla", "report_after", "30m")),
    )
    if bugzilla.enabled and not bugzilla.url:
        raise ConfigError("[bugzilla] enabled = on needs url, e.g. https://bugzilla.mozilla.org")

    m = MailSection()
    mail = MailSection(
        host=get("mail", "host"),
        port=_int("mail", "port", get("mail", "port", str(m.port))),
        starttls=_bool("mail", "starttls", get("mail", "starttls", "on")),
        tls=_bool("mail", "tls", get("mail", "tls", "off")),
        username=get("mail", "username"),
        password_env=get("mail", "password_env", m.password_env),
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
        treestatus_token_env=get("trees", "treestatus_token_env", t.treestatus_token_env),
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
    return Config(bot, channels, roles, policy, bugzilla, mail, trees, notice, push, systems, raw, path, people)


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
