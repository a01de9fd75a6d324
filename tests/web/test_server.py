"""The web server's frame: read-only, errors as problem+json, never a traceback."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.conftest import make_config
from tests.fakes import FakeClock
from tests.web.conftest import WebChat


def test_an_unknown_path_is_a_404_problem_and_a_browser_gets_a_page(web: WebChat) -> None:
    reply = web.get("/no/such/page")
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["status"] == 404 and problem["title"] == "Not found"
    page = web.get("/no/such/page", Accept="text/html,application/xhtml+xml")
    assert page.status == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "Not found" in page.text and "Traceback" not in page.text


def test_the_site_is_read_only(web: WebChat) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply = web.request(method, "/no/such/page")
        assert reply.status in (404, 405), method
        assert reply.headers["Content-Type"].startswith("application/problem+json")


def test_a_port_in_use_leaves_the_bot_running_without_its_page(tmp_path: Path, clock: FakeClock) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        harness = WebChat(make_config(tmp_path, web={"listen": f"127.0.0.1:{port}"}), clock)
        try:
            assert harness.bot.web is not None
            assert harness.loop.run_until_complete(harness.bot.web.start()) == ""
            assert harness.say("alice", "!downtime list")  # the chat goes on
        finally:
            harness.close()


def test_port_0_listens_on_a_free_port_and_says_where(tmp_path: Path, clock: FakeClock) -> None:
    harness = WebChat(make_config(tmp_path, web={"listen": "127.0.0.1:0"}), clock)
    try:
        assert harness.bot.web is not None
        url = harness.loop.run_until_complete(harness.bot.web.start())
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")

        async def fetch() -> bytes:
            host, port = url.removeprefix("http://").rstrip("/").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await reader.read()
            writer.close()
            return data

        assert b" 404 " in harness.loop.run_until_complete(fetch()).split(b"\r\n")[0] + b" "
    finally:
        harness.loop.run_until_complete(harness.bot.web.stop())
        harness.close()


def test_empty_listen_turns_the_web_server_off(tmp_path: Path, clock: FakeClock) -> None:
    from tests.conftest import Chat

    harness = Chat(make_config(tmp_path, web={"listen": ""}), clock)
    try:
        assert harness.bot.web is None
    finally:
        harness.close()


def test_the_answer_cache_keeps_to_its_byte_budget_and_shares_one_build() -> None:
    from adapters.web.answers import Answer, AnswerCache

    builds = []
    cache = AnswerCache(lambda: 0, size=100, max_bytes=4000)

    async def fill() -> None:
        async def make(n: int) -> Answer:
            builds.append(n)
            await asyncio.sleep(0)
            return Answer(b"x" * 900, "text/plain")

        for n in range(10):
            await cache.build(n, lambda n=n: make(n))  # type: ignore[misc]
        shared = await asyncio.gather(*(cache.build("same", lambda: make(99)) for _ in range(5)))
        assert len({id(a) for a in shared}) == 1

    asyncio.run(fill())
    assert cache.bytes <= 4000 and len(cache) == 4
    assert builds.count(99) == 1  # five requests at once, one build


def test_a_slow_client_holds_up_neither_the_chat_nor_other_readers(web: WebChat) -> None:
    """A client that sends half a request and waits, and one that asks for a page and reads
    nothing: the chat is answered and the page is served to others all the while."""
    web.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    web.say("carol", "!downtime approve 1")
    web.say("carol", "!downtime announce 1")
    port = web.client.server.port

    async def hang() -> list[asyncio.StreamWriter]:
        _, half = await asyncio.open_connection("127.0.0.1", port)
        half.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        _, unread = await asyncio.open_connection("127.0.0.1", port)
        unread.write(b"GET /calendar.ics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)  # answers never read
        await half.drain()
        await unread.drain()
        return [half, unread]

    writers = web.loop.run_until_complete(hang())
    try:
        assert web.say("alice", "!downtime show 1")[0].startswith("#ci #1 [announced]")
        assert web.get("/").status == 200 and web.get("/api/v1/downtimes/1").status == 200
    finally:
        for writer in writers:
            writer.close()
