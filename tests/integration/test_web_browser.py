"""A real browser on the status page of a real bot: `python bot.py --console` as a subprocess with
its web server on a free port, a downtime scripted on its stdin, and Debian's chromium (headless,
through Selenium and Debian's chromium-driver; nothing is downloaded) reading `/` and
`/downtimes/<id>`. Screenshots go to the test's temporary folder.

`make test` installs chromium and chromium-driver (scripts/install-test-servers.sh). Without
them the test is skipped, except under CI=true, where it fails saying what is missing.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CI = os.environ.get("CI") == "true"
# The browser's own zone: the page's script adds each time in it.
READER_ZONE = "Asia/Tokyo"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = """\
#ci alice: !downtime propose in 3d for 2h bug 123456 -- Upgrade hg.mozilla.org
#ci alice: !downtime bug add 1 654321 --security -- Patch the secret thing
#ci carol: !downtime approve 1
#ci carol: !downtime announce 1
#ci carol: !downtime start 1 --force
#ci alice: !downtime propose in 5d for 1h bug 222222 -- Rotate <script>alert(1)</script> keys
#ci carol: !downtime approve 2
#ci carol: !downtime announce 2
"""


def _browser_missing() -> list[str]:
    missing = [f"{p} (Debian package {pkg})" for p, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
               if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    return missing


@pytest.fixture(scope="module", autouse=True)
def browser_installed() -> None:
    missing = _browser_missing()
    if missing:
        message = (f"the browser test needs {', '.join(missing)}: "
                   "`make test` installs them (scripts/install-test-servers.sh)")
        if CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode("utf-8"))


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[str]:
    """A running bot with the scripted downtimes: #1 in progress (started early), #2 announced.
    Yields the page's address."""
    port = free_port()
    config = tmp_path / "config.ini"
    config.write_text(
        "[bot]\n"
        f"database = sqlite:///{tmp_path / 'bot.db'}\n"
        "transports = console\n"
        "display_timezones = America/Los_Angeles\n"
        "[roles]\nciduty = carol\nsheriffs = sam\npreapprovers = pat\n"
        "[policy]\n"
        f"blackouts = {dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=10)} Firefox release\n"
        "[web]\n"
        f"listen = 127.0.0.1:{port}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNTIMEBOT_")}
    out = (tmp_path / "bot.out").open("w")
    err = (tmp_path / "bot.err").open("w")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bot.py"), "--config", str(config), "--console"],
        stdin=subprocess.PIPE, stdout=out, stderr=err, text=True, cwd=tmp_path, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert process.stdin is not None
        process.stdin.write(SCRIPT)
        process.stdin.flush()  # stdin stays open: the bot runs until it is closed
        deadline = time.monotonic() + 60
        while True:
            try:
                if "in progress" in fetch(f"{url}/downtimes/1") and "Rotate" in fetch(f"{url}/"):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the bot's page never showed the scripted downtimes\n--- stdout\n"
                            f"{(tmp_path / 'bot.out').read_text()}\n--- stderr\n{(tmp_path / 'bot.err').read_text()}")
            time.sleep(0.2)
        assert f"the status page is at {url}/" in (tmp_path / "bot.err").read_text()
        yield url
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()
        err.close()


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def no_download(*args: object, **kwargs: object) -> dict[str, str]:
        raise AssertionError("Selenium Manager was asked for a browser or a driver: nothing may be downloaded")

    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setattr(SeleniumManager, "binary_paths", no_download)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1700"):
        options.add_argument(flag)
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"),
                      env={**os.environ, "TZ": READER_ZONE})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, path: Path) -> Path:
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_a_browser_sees_the_timeline_the_running_downtime_and_its_page(bot: str, chromium: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    driver = chromium
    driver.get(f"{bot}/")
    assert driver.title.startswith("Now and the next 14 days")
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "Downtime #1 is in progress: Upgrade hg.mozilla.org" in text
    assert " left." in driver.find_element(By.CSS_SELECTOR, "#now .running").text
    assert "The trees" not in text and "autoland, mozilla-central, mozilla-beta, try closed" in text

    # The timeline: a bar per downtime, wide enough to see, with its label.
    for downtime in ("1", "2"):
        bar = driver.find_element(By.CSS_SELECTOR, f'svg.timeline rect.bar[data-downtime="{downtime}"]')
        assert bar.size["width"] > 0 and bar.size["height"] > 0, downtime
        assert driver.execute_script("return arguments[0].getBBox().width", bar) > 0
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "svg.timeline text.bar-label")]
    # A label is cut where its row ends, so how much of it shows depends on the hour its bar starts at
    # (the bot runs on the real clock): the whole wording, or its start with "…", never a word past it.
    for label, whole in zip(labels, ("#1 Upgrade hg.mozilla.org", "#2 Rotate <script>alert(1)</script> keys"),
                            strict=True):
        assert label == whole or (label.endswith("…") and whole.startswith(label[:-1])), (label, whole)
        assert label.startswith(whole[:3]), (label, whole)  # its number, even late in the day
    assert driver.find_element(By.CSS_SELECTOR, "svg.timeline .now-line").size["height"] > 0
    assert driver.find_element(By.CSS_SELECTOR, "svg.timeline text.blackout-label").text == "Firefox release"

    # The wording with markup is text: shown as typed, never run.
    assert "Rotate <script>alert(1)</script> keys" in text
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text

    # The script added the reader's own time to every time, and made the calendar link webcal://.
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("data-local-zone") == READER_ZONE
    times = driver.find_elements(By.CSS_SELECTOR, "time[datetime]")
    local = driver.find_elements(By.CSS_SELECTOR, "time[datetime] + span.local")
    assert times and len(local) == len(times)
    assert all(READER_ZONE in span.text for span in local)
    assert driver.find_element(By.CSS_SELECTOR, "a.calendar-link").get_attribute("href") == \
        f"{bot.replace('http://', 'webcal://')}/calendar.ics"
    wide = screenshot(driver, tmp_path / "index.png")

    # A phone: the text fits the screen's width (the timeline alone may scroll sideways).
    driver.set_window_size(390, 844)
    driver.get(f"{bot}/")
    overflow = driver.execute_script(
        "return [...document.querySelectorAll('main p, main li, header, footer')]"
        ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).length")
    assert overflow == 0
    phone = screenshot(driver, tmp_path / "phone.png")

    driver.set_window_size(1280, 1100)
    driver.find_element(By.CSS_SELECTOR, '#upcoming a[href="/downtimes/1"], #now a[href="/downtimes/1"]').click()
    assert driver.current_url == f"{bot}/downtimes/1"
    assert driver.find_element(By.ID, "headline").text == "Downtime #1: Upgrade hg.mozilla.org"
    assert driver.find_element(By.ID, "state").text == "in progress"
    restricted = driver.find_element(By.CSS_SELECTOR, 'tr[data-bug="654321"]').text
    assert "security-sensitive work (details restricted)" in restricted
    assert "Patch the secret thing" not in driver.find_element(By.TAG_NAME, "body").text
    assert driver.find_elements(By.CSS_SELECTOR, "#history time + span.local")
    detail = screenshot(driver, tmp_path / "downtime.png")
    print(f"screenshots: {wide} {phone} {detail}")
