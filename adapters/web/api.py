"""(being written)"""
from __future__ import annotations

from aiohttp import web

from adapters.web.site import Site


def routes(site: Site) -> list[web.RouteDef]:
    return []
