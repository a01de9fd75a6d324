"""The web server: an aiohttp application run by AppRunner and TCPSite in the bot's own loop."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters.web import api, feeds, ops, pages
from adapters.web.problems import problem
from adapters.web.site import Site

log = logging.getLogger("downtimebot.web")
# Seconds an idle keep-alive connection is kept (aiohttp's default is 75).
KEEPALIVE = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as problem+json (an HTML page for a browser), never a traceback."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return problem(request, 404, "Not found", f"There is nothing at {request.path}.")
    except web.HTTPMethodNotAllowed as err:
        response = problem(request, 405, "Method not allowed", "This site is read-only: GET and HEAD only.")
        response.headers["Allow"] = ", ".join(sorted(err.allowed_methods))
        return response
    except web.HTTPException as err:
        return problem(request, err.status, err.reason)
    except Exception:
        log.exception("web: %s %s failed", request.method, request.path)
        return problem(request, 500, "Internal error", "The bot could not answer; the error is in its log.")


def make_app(site: Site, operations: ops.Operations | None = None) -> web.Application:
    app = web.Application(middlewares=[_problems])
    app.add_routes(pages.routes(site))
    app.add_routes(feeds.routes(site))
    app.add_routes(api.routes(site))
    app.add_routes(ops.routes(site, operations))
    return app


class WebServer:
    """`start` it (it says where it listens), `stop` it. A port already in use is logged and the
    bot goes on without its page: the chat matters more."""

    def __init__(self, site: Site, host: str, port: int, operations: ops.Operations | None = None):
        self.site = site
        self.host = host
        self.port = port
        self.app = make_app(site, operations)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Start listening; the page's address ("" when it could not listen)."""
        runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=KEEPALIVE, handle_signals=False)
        await runner.setup()
        tcp = web.TCPSite(runner, self.host, self.port)
        try:
            await tcp.start()
        except OSError as err:
            await runner.cleanup()
            log.error("[web] listen = %s:%s: cannot listen there (%s); the web page is off, the chat goes on",
                      self.host, self.port, err.strerror or err)
            return ""
        self._runner = runner
        bound = runner.addresses  # the port chosen when [web] listen asks for port 0
        host, port = (str(bound[0][0]), int(bound[0][1])) if bound else (self.host, self.port)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        log.info("the status page is at %s%s", self.url,
                 f" (links say {self.site.base_url}/)" if self.site.base_url else "")
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
