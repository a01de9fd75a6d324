"""The read-only web server inside the bot's own asyncio loop (aiohttp's AppRunner and TCPSite).

    server.py    the server: the application, its routes, starting and stopping it
    site.py      what every handler reads: the public read model over short sessions, the clock,
                 the HTML renderer, and `Site.answer`, which builds an answer off the loop
    answers.py   the answer cache (valid while the database is unchanged) and conditional GET
    problems.py  errors as application/problem+json (RFC 9457), or an HTML page for browsers
    pages.py     /, /downtimes/<id>, /trees: HTML from templates/web/
    feeds.py     /calendar.ics, /feed.atom
    api.py       /api/v1/… (Treestatus's {"result": …}) and /api/v2/scheduled-maintenances/… (Statuspage's shape)
    ops.py       /__version__, /__lbheartbeat__, /__heartbeat__, /livez, /readyz, /metrics

No endpoint changes anything: every route is a GET (HEAD too).
"""
