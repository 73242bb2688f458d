"""The reference web app (web/), built, served by a real `lorashelf serve` at /app/ and
driven in a real headless Chromium, with a retention window of seconds.

One story, as people live it: a creator signs up, uploads weights and a private dataset
from the browser and sees the policy sentence beside the sharing choice; the model page
labels the dataset with its deletion date in the viewer's own time zone; the reminder
banner arrives live, then the tombstone; and another user, in another tab, never sees a
trace of the dataset. Along the way every page passes axe-core (no serious or critical
violation), breaks no CSP rule, asks no other host for anything, fits a phone's width,
the model page costs one GraphQL request, and the screenshots in docs/web/ are taken.

Needs Node.js (20.19+) and npm to build the app (scripts/test builds it first; a fresh
build is reused), and Debian's chromium and chromium-driver. It fails, never skips,
without them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from tests.conftest import make_safetensors
from tests.graph.test_graphiql_browser import (
    LOCAL_SCHEMES,
    RECORD_CSP_VIOLATIONS,
    chromium_paths,
    network_events,
    requested_urls,
)
from tests.processes import (
    ROOT,
    Owner,
    free_port,
    gql,
    parse_time,
    serve,
    wait_for,
    zip_bytes,
)
from tests.web import WEB, built_app, gzipped_bundle

# The committed pictures (README) are rewritten only when asked: UPDATE_SCREENSHOTS=1.
SCREENSHOTS = (
    ROOT / "docs" / "web"
    if os.environ.get("UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "lorashelf-screenshots" / "web"
)
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
BUNDLE_BUDGET = 150 * 1024  # bytes, gzipped: everything the page loads

RETENTION = 30  # seconds after publishing
REMINDER = 15  # seconds before deletion: the banner's window
ZONE = "Asia/Kathmandu"  # UTC+05:45: a local time no UTC clock shows by accident
LOCALE = "en-GB"
PHONE = (390, 844)
PAGE = 20  # the catalogue's page size (web/src/pages/Catalogue.tsx)
PASSWORD = "correct horse battery"


# The browser ------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
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
        # a background tab keeps its timers and its WebSocket going
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--window-size=1200,900",
        f"--lang={LOCALE}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        # nothing beyond loopback: names do not resolve
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
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


def as_viewer(driver: WebDriver) -> None:
    """This tab: the viewer's zone and locale, and a record of CSP violations."""
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
    driver.execute_cdp_cmd("Emulation.setLocaleOverride", {"locale": LOCALE})
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS}
    )


def by_id(driver: WebDriver, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def marked(driver: WebDriver, name: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def text_of(driver: WebDriver) -> str:
    text: str = driver.execute_script("return document.body.innerText")
    return text


def wait_text(driver: WebDriver, expected: str, timeout: float = 15) -> str:
    return wait_for(
        lambda: t if expected in (t := text_of(driver)) else "",
        timeout=timeout,
        what=f"{expected!r} on the page",
    )


def heading(driver: WebDriver, expected: str, timeout: float = 15) -> None:
    wait_for(
        lambda: driver.execute_script(
            "return [...document.querySelectorAll('h1')].some((h) => h.innerText.includes(arguments[0]))",
            expected,
        ),
        timeout=timeout,
        what=f"the page headed {expected!r}",
    )


def click_link(driver: WebDriver, text: str) -> None:
    driver.find_element(By.XPATH, f"//a[normalize-space(.)={json.dumps(text)}]").click()


def sign_up(driver: WebDriver, base: str, username: str) -> None:
    driver.get(f"{base}/app/signup")
    heading(driver, "Create an account")
    by_id(driver, "username").send_keys(username)
    by_id(driver, "password").send_keys(PASSWORD + Keys.ENTER)  # the keyboard submits
    wait_for(
        lambda: (
            driver.find_elements(By.CLASS_NAME, "who")
            and driver.find_element(By.CLASS_NAME, "who").text == username
        ),
        timeout=15,
        what=f"{username} signed in",
    )


def token_of(driver: WebDriver) -> str:
    token: str = driver.execute_script("return sessionStorage.getItem('lorashelf.token')")
    assert token, "no token in sessionStorage"
    return token


AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ["violations"]}).then(
  (r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                        nodes: v.nodes.map((n) => n.target.join(" "))}))),
  (e) => done([{id: "axe-error", impact: "critical", help: String(e), nodes: []}]));
"""


def accessibility_problems(driver: WebDriver) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text())
    driver.set_script_timeout(30)
    found: list[dict[str, Any]] = driver.execute_async_script(AXE_RUN)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def fits(driver: WebDriver) -> bool:
    """Nothing wider than the window (no sideways scrolling)."""
    fit: bool = driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    return fit


def shoot(driver: WebDriver, name: str, max_height: int = 1400) -> None:
    """docs/web/<name>.png: the whole page (up to max_height CSS pixels), not just the window."""
    driver.execute_script("document.activeElement?.blur()")  # no focus ring in the picture
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    width = metrics["cssLayoutViewport"]["clientWidth"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {
                "x": 0,
                "y": 0,
                "width": width,
                "height": min(size["height"], max_height),
                "scale": 1,
            },
        },
    )
    # 64 colours are plenty for a page of text: a third of the bytes in the repository
    # (Pillow comes with matplotlib, a dev dependency)
    image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    image = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image.save(SCREENSHOTS / f"{name}.png", "PNG", optimize=True)


def checked_page(driver: WebDriver, name: str, pages: dict[str, list[dict[str, Any]]]) -> None:
    """Record the page's accessibility problems under its name (asserted at the end)."""
    pages[name] = accessibility_problems(driver)


def graphql_posts(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["params"]["request"].get("postData", "")
        for e in events
        if e["method"] == "Network.requestWillBeSent"
        and urlsplit(e["params"]["request"]["url"]).path == "/graphql"
        and e["params"]["request"]["method"] == "POST"
    ]


def tab_events(driver: WebDriver) -> list[dict[str, Any]]:
    """The DevTools Network events of this tab since the last call (any tab's are drained)."""
    entries = [json.loads(entry["message"]) for entry in driver.get_log("performance")]
    return [
        e["message"]
        for e in entries
        if e["message"]["method"].startswith("Network.")
        and e.get("webview") == driver.current_window_handle
    ]


def graphql_answers(driver: WebDriver, events: list[dict[str, Any]]) -> list[str]:
    """The bodies of the /graphql answers this tab received (what its code could read);
    read while the page that asked is still open."""
    bodies = []
    for event in events:
        if event["method"] != "Network.responseReceived":
            continue
        if urlsplit(event["params"]["response"]["url"]).path != "/graphql":
            continue
        body = driver.execute_cdp_cmd(
            "Network.getResponseBody", {"requestId": event["params"]["requestId"]}
        )
        bodies.append(body["body"])
    return bodies


def publish_models(url: str, count: int) -> None:
    """Another creator's published models (no dataset), enough for a second catalogue page."""
    maker = Owner.sign_up(url)
    for n in range(count):
        model_id = maker.create_model(f"Sketch {n}")
        version_id = maker.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": model_id, "name": "v1", "baseModel": "SD_1_5"}},
        )["version"]["id"]
        maker.upload_weights(version_id)
        maker.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"versionId": version_id}},
        )


def cards(driver: WebDriver) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="catalogue"] > li'))


def local(moment: datetime) -> datetime:
    return moment.astimezone(ZoneInfo(ZONE))


# The test ---------------------------------------------------------------------------


# Run once, on the default backend: the app sees only the API, which the rest of the
# suite runs on both databases; a browser story costs CI half a minute.
pytestmark = pytest.mark.backend_independent(
    reason="a browser story of the web app; the API beneath it is tested on both databases"
)


def test_a_creator_and_a_stranger_use_the_web_app(tmp_path: Path, browser: WebDriver) -> None:
    started = time.monotonic()
    dist = built_app()
    sizes = gzipped_bundle(dist)
    total = sum(sizes.values())
    print(f"web app bundle: {total} bytes gzipped ({sizes})")
    assert total < BUNDLE_BUDGET, sizes
    assert AXE.exists(), "axe-core is a devDependency of web/: run npm ci in web/"

    weights = tmp_path / "cats.safetensors"
    weights.write_bytes(
        make_safetensors({"ss_tag_frequency": '{"cats": {"cat": 3}}', "ss_network_dim": "8"})
    )
    archive = tmp_path / "cats-dataset.zip"
    archive.write_bytes(zip_bytes({"images/cat.txt": b"meow" * 500}))
    pickled = tmp_path / "cats.ckpt"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_PRIVATE_RETENTION": f"{RETENTION}s",
        "LORASHELF_REMINDERS": f"{REMINDER}s",
        "LORASHELF_SWEEP_INTERVAL": "30s",  # the exact-time work must do it on time
    }
    a11y: dict[str, list[dict[str, Any]]] = {}
    owner_name, stranger_name = "ada", "bob"  # a data dir of its own: names are free

    with serve(env, cwd=tmp_path) as server:
        base = server.url
        origin = urlsplit(base).netloc
        notice = gql(base, "{ retentionPolicy { notice } }")["retentionPolicy"]["notice"]
        as_viewer(browser)
        owner_tab = browser.current_window_handle

        # when a creator opens the app and signs up
        browser.get(f"{base}/app/signup")
        heading(browser, "Create an account")
        checked_page(browser, "sign-in", a11y)
        shoot(browser, "sign-in")
        # (the first Tab reaches the link past the navigation)
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert browser.switch_to.active_element.text == "Skip to content"
        sign_up(browser, base, owner_name)
        token = token_of(browser)

        # and opens the upload form
        click_link(browser, "Upload")
        heading(browser, "Upload a model")
        # (focus moves to the new page's heading, for keyboard and screen reader users)
        assert browser.switch_to.active_element.tag_name == "h1"
        # then the policy sentence stands beside the sharing choice, exactly as the API says
        hint = browser.find_element(By.CSS_SELECTOR, '[data-testid="policy-notice"]')
        assert hint.text == notice
        sharing = browser.find_element(By.CSS_SELECTOR, "fieldset.sharing")
        assert hint.get_attribute("id") in sharing.get_attribute("aria-describedby").split()
        assert sharing.find_element(By.ID, "visibility-private").is_selected()
        # and PUBLIC asks for the rights confirmation
        by_id(browser, "visibility-public").click()
        assert by_id(browser, "ownsRights").is_displayed()
        by_id(browser, "visibility-private").click()
        assert not browser.find_elements(By.ID, "ownsRights")

        # when they fill it in: a model, a version, real weights and a private dataset
        by_id(browser, "name").send_keys("Cats")
        by_id(browser, "description").send_keys("A LoRA of cats, trained on my own photos.")
        by_id(browser, "tags").send_keys("cats, animals")
        Select(by_id(browser, "baseModel")).select_by_value("SDXL_1_0")
        by_id(browser, "trainedWords").send_keys("catstyle")
        by_id(browser, "weights").send_keys(str(weights))
        by_id(browser, "dataset").send_keys(str(archive))
        checked_page(browser, "upload", a11y)
        shoot(browser, "upload")
        network_events(browser)  # drain
        # (first with a pickled checkpoint by mistake: refused, said beside the file field)
        by_id(browser, "weights").send_keys(str(pickled))
        browser.find_element(By.CSS_SELECTOR, "form.upload button[type=submit]").click()
        refusal = wait_for(
            lambda: browser.find_elements(By.ID, "weights-error"), timeout=15, what="the refusal"
        )[0]
        assert "safetensors" in refusal.text, refusal.text
        assert by_id(browser, "weights").get_attribute("aria-invalid") == "true"
        checked_page(browser, "upload-refused", a11y)
        # (then with the real file: the draft made meanwhile is reused, not made twice)
        by_id(browser, "weights").send_keys(str(weights))
        browser.find_element(By.CSS_SELECTOR, "form.upload button[type=submit]").click()

        # then both files go up (PUT, with progress) and the published model page opens
        wait_for(lambda: "/app/models/m_" in browser.current_url, timeout=30, what="the model page")
        heading(browser, "Cats")
        events = network_events(browser)
        puts = [
            e["params"]["request"]["url"]
            for e in events
            if e["method"] == "Network.requestWillBeSent"
            and e["params"]["request"]["method"] == "PUT"
        ]
        assert len(puts) == 2 and all("/uploads/" in u for u in puts), puts
        model_url = browser.current_url
        model_id = model_url.rsplit("/", 1)[1]
        owner_view = gql(
            base,
            "query($id: ID!) { model(id: $id) { versions { publishedAt files { filename } "
            "trainingDataset { id filename expiresAt } } } }",
            {"id": model_id},
            token,
        )["model"]["versions"]
        assert len(owner_view) == 1, owner_view
        owner_view = owner_view[0]
        assert [f["filename"] for f in owner_view["files"]] == ["cats.safetensors"]
        dataset = owner_view["trainingDataset"]
        published_at = parse_time(owner_view["publishedAt"])
        expires_at = parse_time(dataset["expiresAt"])
        assert expires_at == published_at + timedelta(seconds=RETENTION)

        # when the page is opened afresh (a reload): one GraphQL request for all of it
        browser.refresh()
        heading(browser, "Cats")
        wait_for(lambda: marked(browser, "dataset-label"), timeout=15, what="the dataset label")
        opened_at = datetime.now(UTC)
        events = network_events(browser)
        posts = graphql_posts(events)
        assert len(posts) == 1 and "ModelPage" in posts[0], posts
        assert any(u.startswith(f"ws://{origin}/graphql") for u in requested_urls(events))

        # then the label says who can see it and when it goes, in the viewer's zone
        label = marked(browser, "dataset-label")[0]
        assert label.text.startswith(
            "PRIVATE Private: only you can see this. Deleted automatically on "
        ), label.text
        when = label.find_element(By.TAG_NAME, "time")
        assert parse_time(when.get_attribute("datetime")) == expires_at
        shown = local(expires_at)
        assert f"{shown:%H:%M}" in when.text and str(shown.year) in when.text, when.text
        assert f"{shown:%H:%M:%S}" in when.get_attribute("title"), when.get_attribute("title")
        assert when.get_attribute("title").endswith(f"({dataset['expiresAt']})")
        assert "in " in label.text and "seconds" in label.text, label.text  # "in 27 seconds"
        # and the weights file shows its hashes and the header the owner may see
        page = text_of(browser)
        assert "SHA-256" in page and "AutoV2" in page and "AutoV3" in page
        assert "ss_tag_frequency" in page  # the owner's own training keys, while the window is open
        assert marked(browser, "deletion-banner") == [], "the banner came before its window"
        checked_page(browser, "model", a11y)
        shoot(browser, "model")

        # given another user, in another tab (its own sessionStorage: its own session)
        browser.switch_to.new_window("tab")
        stranger_tab = browser.current_window_handle
        as_viewer(browser)
        sign_up(browser, base, stranger_name)
        # when they open the catalogue
        network_events(browser)  # drain: the sign-up page is gone
        browser.get(f"{base}/app/")
        heading(browser, "Models")
        wait_for(lambda: marked(browser, "catalogue"), timeout=15, what="the catalogue")
        # then the model is listed, and a search finds it
        assert "Cats" in marked(browser, "catalogue")[0].text
        checked_page(browser, "catalogue", a11y)
        shoot(browser, "catalogue")
        answers = graphql_answers(browser, tab_events(browser))
        # when they open the model page, their datasets and their notifications
        browser.get(model_url)
        heading(browser, "Cats")
        wait_text(browser, "No training dataset is available for this version.")
        assert "ss_tag_frequency" not in text_of(browser)
        click_link(browser, "My datasets")
        wait_text(browser, "No datasets yet.")
        browser.find_element(By.CSS_SELECTOR, '[data-testid="bell"]').click()
        wait_text(browser, "Nothing yet.")
        answers += graphql_answers(browser, tab_events(browser))
        # then nothing anywhere says the dataset exists: not on screen, not in any answer
        assert len(answers) >= 4, answers
        for trace in (dataset["id"], dataset["filename"], "PRIVATE", "ss_tag_frequency"):
            assert trace not in browser.page_source
            assert not [a for a in answers if trace in a], trace

        assert datetime.now(UTC) < expires_at, "too slow: the stranger looked after the window"

        # given a second page of the catalogue (another creator's models, published meanwhile)
        publish_models(base, PAGE)

        # given the creator's tab, open on the model page since before the reminder
        browser.switch_to.window(owner_tab)
        # when the reminder is sent (the server's clock): the banner arrives, live
        banner = wait_for(
            lambda: marked(browser, "deletion-banner"),
            timeout=RETENTION + 10,
            what="the deletion banner",
        )[0]
        assert "Download it before" in banner.text, banner.text
        assert banner.find_element(By.TAG_NAME, "a").text == f"Download {dataset['filename']}"
        wait_for(
            lambda: (
                browser.find_element(By.CSS_SELECTOR, '[data-testid="unread-count"]').text == "1"
            ),
            timeout=10,
            what="the bell to count one unread notification",
        )
        reminder = gql(
            base,
            "{ viewer { notifications(first: 5) { edges { node { kind createdAt } } } } }",
            token=token,
        )["viewer"]["notifications"]["edges"]
        assert [e["node"]["kind"] for e in reminder] == ["DATASET_EXPIRING"]
        assert parse_time(reminder[0]["node"]["createdAt"]) > opened_at, "not received live"
        assert marked(browser, "toast")
        checked_page(browser, "banner", a11y)
        shoot(browser, "banner")

        # when the window ends: the label becomes the tombstone, live
        wait_for(
            lambda: "Deleted on" in marked(browser, "dataset-label")[0].text,
            timeout=RETENTION + 15,
            what="the tombstone label",
        )
        label = marked(browser, "dataset-label")[0]
        assert label.text.startswith("DELETED Deleted on ") and label.text.endswith("(expired)."), (
            label.text
        )
        assert marked(browser, "deletion-banner") == []
        assert not browser.find_elements(By.XPATH, f"//a[.='Download {dataset['filename']}']")

        # and the creator's datasets page keeps the tombstone with its history
        click_link(browser, "My datasets")
        heading(browser, "My datasets")
        card = wait_for(lambda: marked(browser, "dataset-card"), timeout=15, what="the dataset")[0]
        assert "Deleted on" in card.text and "(expired)" in card.text, card.text
        card.find_element(By.TAG_NAME, "summary").click()
        assert "Reminder sent" in card.text and "Bytes deleted" in card.text, card.text
        checked_page(browser, "datasets", a11y)
        shoot(browser, "datasets")
        browser.find_element(By.CSS_SELECTOR, '[data-testid="bell"]').click()
        heading(browser, "Notifications")
        wait_for(
            lambda: len(browser.find_elements(By.CSS_SELECTOR, ".notification")) == 2,
            timeout=10,
            what="the reminder and the deletion notice",
        )
        checked_page(browser, "notifications", a11y)
        shoot(browser, "notifications")
        browser.find_element(By.XPATH, "//button[.='Mark all as read']").click()
        wait_for(
            lambda: (
                browser.find_element(By.CSS_SELECTOR, '[data-testid="unread-count"]').text == "0"
            ),
            timeout=10,
            what="no unread notifications",
        )
        # and the creator's pages fit a phone too
        browser.set_window_size(*PHONE)
        for path, content in (("/upload", "policy-notice"), ("/datasets", "dataset-card")):
            browser.get(f"{base}/app{path}")
            wait_for(lambda c=content: marked(browser, c), timeout=15, what=f"{path} to load")
            assert fits(browser), f"{path} is wider than a phone"
        owner_events = network_events(browser)

        # and the stranger, on a phone, still sees no trace, and every page fits its width
        browser.switch_to.window(stranger_tab)
        browser.set_window_size(*PHONE)
        network_events(browser)  # drain
        narrow = []
        # when they search the catalogue
        browser.get(f"{base}/app/")
        heading(browser, "Models")
        wait_for(lambda: cards(browser) == PAGE, timeout=15, what="a first page of models")
        browser.find_element(By.ID, "search").send_keys("cats")
        # then only the matching model is left (and the search is in the address)
        wait_for(
            lambda: "q=cats" in browser.current_url and cards(browser) == 1,
            timeout=15,
            what="the search",
        )
        assert "Cats" in marked(browser, "catalogue")[0].text
        # when they scroll to the end of the whole catalogue, the next page comes by itself
        browser.get(f"{base}/app/")
        wait_for(lambda: cards(browser) == PAGE, timeout=15, what="a first page of models")
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        wait_for(lambda: cards(browser) == PAGE + 1, timeout=15, what="the next page, by scrolling")
        network_events(browser)  # drain
        for path, title, shown_text in (
            ("/", "Models", "Sketch"),
            ("/datasets", "My datasets", "No datasets yet."),
            (f"/models/{model_id}", "Cats", "No training dataset is available for this version."),
        ):
            browser.get(f"{base}/app{path}")
            heading(browser, title)
            wait_text(browser, shown_text)
            if not fits(browser):
                narrow.append(path)
            answers = graphql_answers(browser, tab_events(browser))
            assert answers, path
            assert dataset["filename"] not in browser.page_source
            assert not [a for a in answers if dataset["id"] in a or dataset["filename"] in a]
        assert narrow == [], f"wider than a phone: {narrow}"
        shoot(browser, "phone")
        stranger_events = network_events(browser)

        console = browser.get_log("browser")

        # when the stranger's session ends elsewhere (signed out with its token)
        gql(base, "mutation { logOut { ok } }", token=token_of(browser))
        click_link(browser, "My datasets")
        # then the app asks them to sign in again, and will come back here after
        heading(browser, "Sign in")
        assert "next=%2Fdatasets" in browser.current_url, browser.current_url
        wait_text(browser, "Your session ended")
        assert browser.execute_script("return sessionStorage.getItem('lorashelf.token')") is None
        stranger_events += network_events(browser)
        refused = [m["message"] for m in browser.get_log("browser") if m["level"] == "SEVERE"]
        assert len(refused) == 1 and "/graphql" in refused[0] and "401" in refused[0], refused

        violations = {}
        for handle in (owner_tab, stranger_tab):
            browser.switch_to.window(handle)
            violations[handle] = browser.execute_script("return window.__cspViolations")

    # every page passed axe-core with no serious or critical violation
    assert {page: found for page, found in a11y.items() if found} == {}
    assert set(a11y) == {
        "sign-in",
        "upload",
        "upload-refused",
        "model",
        "catalogue",
        "banner",
        "datasets",
        "notifications",
    }
    # nothing broke the pages' CSP, and nothing went to another host
    assert violations == {owner_tab: [], stranger_tab: []}
    urls = requested_urls(owner_events + stranger_events)
    assert urls
    elsewhere = [
        u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES and urlsplit(u).netloc != origin
    ]
    assert elsewhere == [], elsewhere
    assert [m for m in console if m["level"] == "SEVERE"] == [], console
    print(f"web app test: {time.monotonic() - started:.1f} s")


@contextmanager
def static_site(root: Path) -> Iterator[str]:
    """A plain static file server (another origin than the API's) for a directory."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=10, what="the static file server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


def test_the_app_built_for_another_origin_works_there_through_cors(
    tmp_path: Path, browser: WebDriver
) -> None:
    # given the app built with the API's URL, hosted by a plain file server elsewhere
    built_app()  # node_modules and the typed client
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    site = tmp_path / "site"
    build = subprocess.run(
        [
            "npx",
            "vite",
            "build",
            "--outDir",
            str(site / "app"),
            "--emptyOutDir",
            "--logLevel",
            "error",
        ],
        cwd=WEB,
        env={**os.environ, "VITE_LORASHELF_API_URL": api},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    archive = tmp_path / "cats-dataset.zip"
    archive.write_bytes(zip_bytes({"images/cat.txt": b"meow" * 500}))
    weights = tmp_path / "cats.safetensors"
    weights.write_bytes(make_safetensors())
    with static_site(site) as app:
        # and the API allowing that origin (LORASHELF_CORS_ORIGINS), a short window
        env = {
            "LORASHELF_DATA_DIR": str(tmp_path / "var"),
            "LORASHELF_CORS_ORIGINS": app,
            "LORASHELF_PRIVATE_RETENTION": "8s",
            "LORASHELF_REMINDERS": "4s",
        }
        with serve(env, cwd=tmp_path, port=api_port):
            as_viewer(browser)
            # when a creator signs up and uploads a model and a private dataset there
            # (a plain file server has no fallback for the app's routes: start at /app/)
            browser.get(f"{app}/app/")
            heading(browser, "Models")
            click_link(browser, "Sign in")
            click_link(browser, "Create an account")
            heading(browser, "Create an account")
            by_id(browser, "username").send_keys("eve")
            by_id(browser, "password").send_keys(PASSWORD)
            browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
            wait_for(
                lambda: browser.find_elements(By.CLASS_NAME, "who"), timeout=15, what="signed in"
            )
            click_link(browser, "Upload")
            heading(browser, "Upload a model")
            notice = gql(api, "{ retentionPolicy { notice } }")["retentionPolicy"]["notice"]
            assert (
                browser.find_element(By.CSS_SELECTOR, '[data-testid="policy-notice"]').text
                == notice
            )
            by_id(browser, "name").send_keys("Cats")
            Select(by_id(browser, "baseModel")).select_by_value("SD_1_5")
            by_id(browser, "weights").send_keys(str(weights))
            by_id(browser, "dataset").send_keys(str(archive))
            browser.find_element(By.CSS_SELECTOR, "form.upload button[type=submit]").click()
            # then the model page opens, and the reminder arrives over the API's WebSocket
            wait_for(
                lambda: "/app/models/m_" in browser.current_url, timeout=30, what="the model page"
            )
            wait_for(lambda: marked(browser, "dataset-label"), timeout=15, what="the label")
            wait_for(lambda: marked(browser, "toast"), timeout=15, what="the live reminder")
            events = network_events(browser)
            console = browser.get_log("browser")
            violations = browser.execute_script("return window.__cspViolations")

    # and the calls went to the API's origin: GraphQL, both PUTs, the WebSocket
    urls = requested_urls(events)
    assert any(u == f"{api}/graphql" for u in urls), urls
    uploads = [
        e["params"]["request"]["method"]
        for e in events
        if e["method"] == "Network.requestWillBeSent"
        and e["params"]["request"]["url"].startswith(f"{api}/uploads/")
    ]
    assert sorted(uploads) == ["OPTIONS", "OPTIONS", "PUT", "PUT"], uploads  # preflights
    assert any(u.startswith(f"ws://127.0.0.1:{api_port}/graphql") for u in urls), urls
    # and no CORS refusal or other error on the way
    assert [m for m in console if m["level"] == "SEVERE"] == [], console
    assert violations == []
