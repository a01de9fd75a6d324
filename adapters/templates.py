"""Every word the bot says or mails comes from a Jinja2 template in templates/."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2

from models.planning import hours
from models.timeparse import format_duration, format_time

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class Renderer:
    """Renders templates with the helpers they share (`when`, `dur`, `hours`, `prefix`, `trees`, `links`, `flag`)."""

    def __init__(
        self,
        *,
        zones: Sequence[str] = (),
        prefix: str = "!",
        trees: Sequence[str] = (),
        links: Any = None,
        flag: str = "needs-treeclosure",
        directory: Path = TEMPLATES,
        page_of: Callable[[Any], str] = lambda downtime: "",
    ):
        """`page_of`: the address of a downtime's public web page ("" when it has none: no
        [web] base_url, or the downtime is not public)."""
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=jinja2.select_autoescape(["html"]),
            # The templates change only with a new release, which restarts the bot: no stat() of
            # every template file (includes too) on every message.
            auto_reload=False,
        )
        self.env.globals.update(
            when=lambda t, now=None: format_time(t, zones, now=now),
            dur=format_duration,
            hours=hours,
            flag=flag,
            prefix=prefix,
            trees=list(trees),
            links=links,
            page_of=page_of,
        )

    def __call__(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def names(self) -> list[str]:
        return sorted(n for n in self.env.list_templates() if not n.startswith("_"))


def utc(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
