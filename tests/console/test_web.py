"""Classroom mode in a real browser: Debian's Chromium, headless, driven by Selenium.

The server is the real ``safelab web`` (a subprocess on a free loopback port); each page
load starts a real console process. The terminal draws on a canvas, so the test reads what
the console sends over the WebSocket: an init script wraps ``WebSocket`` before the page's
own script runs and keeps every frame as text.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.web import offline_templates, served_command, where_text

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]

RECORDER = """
(() => {
  window.__frames = [];
  const decoder = new TextDecoder("utf-8");
  const Native = window.WebSocket;
  function Recording(url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    ws.addEventListener("message", (event) => {
      const data = event.data;
      if (typeof data === "string") { window.__frames.push(data); }
      else if (data instanceof ArrayBuffer) { window.__frames.push(decoder.decode(data)); }
      else if (data && data.arrayBuffer) {
        data.arrayBuffer().then((b) => window.__frames.push(decoder.decode(b)));
      }
    });
    return ws;
  }
  Recording.prototype = Native.prototype;
  for (const k of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) { Recording[k] = Native[k]; }
  window.WebSocket = Recording;
})();
"""


def test_served_page_needs_nothing_from_the_internet(tmp_path: Path) -> None:
    page = (offline_templates(tmp_path) / "app_index.html").read_text()
    assert "fonts.googleapis.com" not in page
    assert "fonts/RobotoMono-VariableFont_wght.ttf" in page
    assert served_command().startswith(sys.executable) or served_command().startswith("'")
    assert "-m console.web" in served_command()


def test_says_whether_it_is_loopback_only() -> None:
    assert "loopback only" in where_text("127.0.0.1", 8000)
    assert "reachable from the network" in where_text("0.0.0.0", 8000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ)
    env["SAFELAB_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "console", "web", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else ""
                    raise AssertionError(f"safelab web did not start: {output}") from None
                time.sleep(0.2)
        assert process.stdout is not None
        assert "loopback only" in process.stdout.readline()  # it says who can connect
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the consoles it started
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # A console whose token discovery is stuck in a driver call cannot finish its
            # thread; the test is about the browser, not about that driver.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/test installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,800",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


def _frames(driver: object) -> str:
    return "".join(driver.execute_script("return window.__frames || [];"))  # type: ignore[attr-defined]


def _wait_for_text(driver: object, text: str, since: int = 0, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = _frames(driver)[since:]
        if text in seen:
            return seen
        time.sleep(0.25)
    raise AssertionError(f"{text!r} never reached the browser; last: {_frames(driver)[-400:]!r}")


def test_browser_renders_the_job_bar_and_a_key_switches_jobs(web_server: str, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(web_server)
    _wait_for_text(browser, "SAFE Lab")
    first = _wait_for_text(browser, "[1 Tokens]")
    assert "Results" in first and "Triage" in first  # the whole job bar arrived
    before = len(_frames(browser))
    terminal = browser.find_element(By.TAG_NAME, "body")
    ActionChains(browser).click(terminal).send_keys("3").perform()
    after = _wait_for_text(browser, "[3 Results]", since=before)
    assert "no runs stored yet" in after or "runs;" in after


def test_page_addresses_follow_the_address_the_browser_used(web_server: str) -> None:
    """A student on the LAN reaches the teacher's machine by its LAN address: the page's
    WebSocket and static URLs must use that address, not the one the server was started on."""
    import urllib.request

    request = urllib.request.Request(web_server, headers={"Host": "10.1.2.3:8000"})
    with urllib.request.urlopen(request, timeout=20) as response:
        page = response.read().decode()
    assert 'data-session-websocket-url="ws://10.1.2.3:8000/ws"' in page
    assert "http://10.1.2.3:8000/static/fonts/RobotoMono-VariableFont_wght.ttf" in page
    assert "127.0.0.1" not in page and "googleapis" not in page


def test_browser_steps_the_ssdtf_stepper(web_server: str, browser) -> None:
    """A class follows the teacher's stepper: job 6, a live flow, packets stepped with ``n``
    until the sensor's HELLO arrives, explained in the details pane."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(web_server)
    _wait_for_text(browser, "[1 Tokens]")
    terminal = browser.find_element(By.TAG_NAME, "body")
    before = len(_frames(browser))
    ActionChains(browser).click(terminal).send_keys("6").perform()
    _wait_for_text(browser, "[6 SSDTF]", since=before)
    before = len(_frames(browser))
    ActionChains(browser).send_keys("s").perform()
    held = _wait_for_text(browser, "HELD", since=before)
    assert "CONNECT" in held  # the first packet, held before it is forwarded
    before = len(_frames(browser))
    # The registrations (REG to the ms, PROV to the proxies) come first; the noise filter
    # skips CONNACK/SUBACK, so the HELLO is some tens of steps away.
    for _ in range(80):
        ActionChains(browser).send_keys("n").perform()
        time.sleep(0.3)
        if "HELLO" in _frames(browser)[before:]:
            break
    _wait_for_text(browser, "HELLO", since=before, timeout=20)
    # The details pane explains the selected packet, the HELLO (not only its fields); the
    # pane wraps, so any of the explanation's phrases counts.
    phrases = ("READY session", "unsigned on purpose", "asks for a challenge")
    deadline = time.monotonic() + 20
    while not any(p in _frames(browser)[before:] for p in phrases):
        assert time.monotonic() < deadline, "the HELLO's explanation never reached the browser"
        time.sleep(0.25)
