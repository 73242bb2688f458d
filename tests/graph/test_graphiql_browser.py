"""GraphiQL in a real headless Chromium against a real `lorashelf serve`, offline.

The browser can reach loopback only: every other host goes to a proxy that refuses
connections (and names do not resolve). The page must render from lorashelf's own
files, run a query, send the Headers tab's Authorization header, keep those headers
across a reload, break no CSP rule, and ask no other host for anything.

Needs Debian's ``chromium`` and ``chromium-driver`` (scripts/test installs them); it
fails, never skips, without them. The screenshot goes to docs/graphiql.png (README).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from graph.http import graphiql
from tests.processes import ROOT, Owner, serve, wait_for

pytestmark = pytest.mark.backend_independent(
    reason="GraphiQL in a browser; the API beneath it is tested on both databases"
)

# The committed picture (README) is rewritten only when asked: UPDATE_SCREENSHOTS=1.
SCREENSHOT = (
    ROOT / "docs" / "graphiql.png"
    if os.environ.get("UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "lorashelf-screenshots" / "graphiql.png"
)
NOTICE = "Private datasets are visible only to you"
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"
# Not network requests: the browser's own pages and inline data.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-error", "chrome-untrusted", "devtools"}
# Injected before any page script (CDP scripts are not subject to the page's CSP).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(
            "chromium and chromedriver must be on PATH for the GraphiQL browser test "
            "(apt-get install chromium chromium-driver; scripts/test installs them)"
        )
    return browser, driver


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held bound but never listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def browser(tmp_path: Path, closed_port: int) -> Iterator[WebDriver]:
    binary, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--window-size=1280,800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        # No network beyond loopback: names do not resolve, and every request that is
        # not to loopback (Chromium never proxies loopback) goes to a closed port.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{closed_port}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=driver, log_output=str(tmp_path / "chromedriver.log"))
    chrome = webdriver.Chrome(options=options, service=service)
    chrome.set_page_load_timeout(20)
    try:
        yield chrome
    finally:
        chrome.quit()


def network_events(driver: WebDriver) -> list[dict[str, Any]]:
    """The DevTools Network events logged since the last call (reading drains the log)."""
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    return [e for e in events if e["method"].startswith("Network.")]


def requested_urls(events: list[dict[str, Any]]) -> list[str]:
    urls = []
    for event in events:
        if event["method"] == "Network.requestWillBeSent":
            urls.append(event["params"]["request"]["url"])
        elif event["method"] == "Network.webSocketCreated":
            urls.append(event["params"]["url"])
    return urls


def editor_value(driver: WebDriver, selector: str) -> str:
    value: str = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.CodeMirror.getValue() : '';",
        selector,
    )
    return value


def set_editor(driver: WebDriver, selector: str, text: str) -> None:
    """Type into a CodeMirror 5 editor the way GraphiQL sees typing (its change events)."""
    driver.execute_script(
        "document.querySelector(arguments[0]).CodeMirror.setValue(arguments[1])", selector, text
    )


def run_query(driver: WebDriver, query: str, expect: str) -> str:
    set_editor(driver, QUERY_EDITOR, query)
    driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()

    def result() -> str:
        value = editor_value(driver, RESPONSE)
        return value if expect in value else ""

    found: str = wait_for(result, timeout=15, what=f"{expect!r} in GraphiQL's result pane")
    return found


def wait_until_rendered(driver: WebDriver) -> None:
    wait_for(
        lambda: driver.execute_script(
            "return !!document.querySelector(arguments[0]) "
            "&& !!document.querySelector('.graphiql-execute-button') "
            "&& !document.body.innerText.includes('Loading...')",
            QUERY_EDITOR,
        ),
        timeout=20,
        what="GraphiQL to render (its query editor and run button, no 'Loading...')",
    )


def test_graphiql_works_offline_from_lorashelfs_own_files(
    tmp_path: Path, browser: WebDriver
) -> None:
    started = time.monotonic()
    problems = graphiql.problems()
    assert not problems, f"run `lorashelf fetch-graphiql` (scripts/test does): {problems}"

    # given the browser really cannot leave loopback (the npm registry is reachable
    # from this machine for set-up, so it is a fair probe)
    for outside in ("https://registry.npmjs.org/", "http://1.1.1.1/"):
        try:
            browser.get(outside)
        except WebDriverException as exc:
            assert "net::ERR_" in exc.msg, exc.msg
        assert browser.execute_script("return location.href").startswith("chrome-error://")
    network_events(browser)  # drain: only what the GraphiQL page does is checked below
    browser.get_log("browser")

    with serve({}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        origin = urlsplit(server.url).netloc
        browser.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS}
        )

        # when a user opens GraphiQL
        browser.get(f"{server.url}/graphql")
        # then it renders, with the explorer plugin in its sidebar
        wait_until_rendered(browser)
        assert browser.title == "lorashelf GraphiQL"
        sidebar = [
            b.get_attribute("aria-label")
            for b in browser.find_elements(By.CSS_SELECTOR, ".graphiql-sidebar button")
        ]
        assert "Show GraphiQL Explorer" in sidebar, sidebar

        # when they type a query and press run
        result = run_query(browser, "{ retentionPolicy { notice } }", NOTICE)
        # then the result pane shows the policy
        assert '"retentionPolicy"' in result
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT)), "no screenshot"

        # and nothing on the page broke a CSP rule (nothing inline, nothing from elsewhere)
        assert browser.execute_script("return window.__cspViolations") == []

        # when they put their token in the Headers tab
        browser.find_element(
            By.XPATH, "//div[contains(@class,'graphiql-editor-tools')]//button[.='Headers']"
        ).click()
        wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, HEADERS_EDITOR),
            timeout=5,
            what="the Headers editor",
        )
        headers = json.dumps({"Authorization": f"Bearer {owner.token}"})
        set_editor(browser, HEADERS_EDITOR, headers)
        # then the fetcher sends it: the server knows who asks
        run_query(browser, "{ viewer { username } }", f'"username": "{owner.username}"')

        # and they are kept in this tab's session (shouldPersistHeaders; GraphiQL stores
        # its tab state half a second after the last edit), so after a reload they are
        # still there; never in localStorage, which outlives the browser and sign-outs
        wait_for(
            lambda: (
                owner.token
                in browser.execute_script(
                    "return sessionStorage.getItem('graphiql:tabState') || ''"
                )
            ),
            timeout=5,
            what="GraphiQL to store the headers in sessionStorage",
        )
        kept = browser.execute_script(
            "return Object.keys(localStorage).map(k => localStorage.getItem(k)).join(' ')"
        )
        assert owner.token not in kept
        browser.refresh()
        wait_until_rendered(browser)
        browser.find_element(
            By.XPATH, "//div[contains(@class,'graphiql-editor-tools')]//button[.='Headers']"
        ).click()
        wait_for(
            lambda: owner.token in editor_value(browser, HEADERS_EDITOR),
            timeout=5,
            what="the persisted Authorization header",
        )

        assert browser.execute_script("return window.__cspViolations") == []
        events = network_events(browser)
        console = browser.get_log("browser")

    # and every request went to the server itself: no CDN, no other host
    urls = requested_urls(events)
    assert any(u.endswith("/graphiql/vendor/graphiql-3.8.3/graphiql.min.js") for u in urls), urls
    elsewhere = [
        u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES and urlsplit(u).netloc != origin
    ]
    assert elsewhere == [], elsewhere
    # and every answer from the server was a success (or "not modified" on the reload),
    # the page's under its CSP
    responses = [
        e["params"]["response"] for e in events if e["method"] == "Network.responseReceived"
    ]
    served = [r for r in responses if urlsplit(r["url"]).netloc == origin]
    assert served and all(r["status"] in (200, 304) for r in served), [
        (r["url"], r["status"]) for r in served
    ]
    pages = [r for r in served if urlsplit(r["url"]).path == "/graphql" and "html" in r["mimeType"]]
    assert pages, "the GraphiQL page itself was not logged"
    for page in pages:
        csp = {k.lower(): v for k, v in page["headers"].items()}["content-security-policy"]
        assert csp.startswith("default-src 'self';") and "unpkg" not in csp, csp
    # and the console shows no error (CSP refusals, failed loads, script errors)
    assert [m for m in console if m["level"] == "SEVERE"] == [], console

    assert time.monotonic() - started < 60
