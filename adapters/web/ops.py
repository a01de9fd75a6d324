"""(being written)"""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from adapters.web.site import Site


@dataclass
class Operations:
    """What the operations endpoints read from the running bot (being written)."""


def routes(site: Site, operations: Operations | None) -> list[web.RouteDef]:
    return []
