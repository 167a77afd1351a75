"""What every browser test shares: finding Debian's chromium, watching a page for errors, screenshots, login.

The browser is the system's chromium (`chromium` + `chromium-driver` from Debian, installed by
`scripts/browser-setup`), never one Playwright downloads. A missing chromium fails the tests loudly; only an
explicit opt-out (`GATEWAY_SKIP_BROWSER_TESTS=1`, never set in CI) skips them, with the reason shown.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.server import REPO_ROOT

CHROMIUM_ENV = "GATEWAY_TEST_CHROMIUM"
SKIP_ENV = "GATEWAY_SKIP_BROWSER_TESTS"
SETUP_HINT = ("install Debian's browser with `scripts/browser-setup` (as root it runs `apt-get install -y "
              "--no-install-recommends chromium chromium-driver`), or point GATEWAY_TEST_CHROMIUM at a chromium "
              "binary; GATEWAY_SKIP_BROWSER_TESTS=1 skips these tests on purpose")
ADMIN_USER = "operator"
ADMIN_PASSWORD = "browser-test-Passw0rd"  # a throwaway account in a throwaway database


def artifacts_directory() -> Path:
    """Where screenshots go: `test-artifacts/screenshots` at the repository root (git-ignored)."""
    base = os.environ.get("GATEWAY_TEST_ARTIFACTS")
    directory = (Path(base) if base else REPO_ROOT / "test-artifacts") / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def chromium_executable() -> str | None:
    """The system chromium: GATEWAY_TEST_CHROMIUM when set (it must exist), else `chromium` on the PATH."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium")


def slug(text: str) -> str:
    """A file-name-safe form of a test or page name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


@dataclass
class PageWatch:
    """Everything that went wrong while a page was open: console errors, uncaught exceptions, failed loads.

    `static` keeps the status of every CSS/JS/image under /static/ so a test can also prove they loaded.
    """

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    static: dict[str, int] = field(default_factory=dict)
    requested_hosts: set[str] = field(default_factory=set)
    expected_failures: list[tuple[str, str, str]] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)
        page.on("request", self._on_request)

    def expect_failure(self, method: str, path: str, failure: str) -> None:
        """A test about to cause a failed load on purpose (going back to a no-store page) declares it first."""
        self.expected_failures.append((method, path, failure))

    def problems(self) -> list[str]:
        return [*(f"console: {text}" for text in self.console_errors),
                *(f"uncaught: {text}" for text in self.page_errors),
                *(f"response: {text}" for text in self.bad_responses),
                *(f"failed: {text}" for text in self.failed_requests)]

    def _on_console(self, message) -> None:
        if message.type != "error":
            return
        location = (message.location or {}).get("url", "")
        self.console_errors.append(f"{message.text} ({location})")

    def _on_request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss"):
            self.requested_hosts.add(parts.netloc)

    def _on_response(self, response) -> None:
        path = response.url.split("?", 1)[0]
        if "/static/" in path:
            self.static[path] = response.status
        if response.status >= 400:
            self.bad_responses.append(f"{response.status} {response.request.method} {response.url}")

    def _on_request_failed(self, request) -> None:
        # A navigation started while the previous page was still fetching aborts those fetches: not a fault.
        if request.failure == "net::ERR_ABORTED":
            return
        path = request.url.split("?", 1)[0]
        for method, expected_path, failure in self.expected_failures:
            if (request.method, request.failure) == (method, failure) and path.endswith(expected_path):
                return
        self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")


class Screenshots:
    """Full-page PNGs named `<test>-<page>.png`, for a person to look at after the run."""

    def __init__(self, test_name: str) -> None:
        self.prefix = slug(test_name)
        self.taken: list[Path] = []

    def take(self, page, name: str) -> Path:
        path = artifacts_directory() / f"{self.prefix}-{slug(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


def changelist_row(page, text: str) -> dict[str, str]:
    """The one row of an admin changelist that mentions `text`, as {column name: cell text}."""
    rows = page.locator("#result_list tbody tr", has_text=text)
    assert rows.count() == 1, page.locator("#result_list").inner_text()
    return rows.first.evaluate(
        "row => Object.fromEntries([...row.querySelectorAll('th, td')].map(cell => "
        "[([...cell.classList].find(name => name.startsWith('field-')) || 'field-checkbox').slice(6), "
        "cell.innerText.trim()]))")


def log_in(page, *, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
    """Fill and submit the admin's login form (the page must show it)."""
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form input[type=submit]")
    page.wait_for_load_state()


class AdminSession:
    """One logged-in (or anonymous) browser tab on one gateway's admin, with its watch and its screenshots.

    `open` goes to a page, waits for it to load, takes its screenshot and checks that nothing went wrong so far,
    so a failure names the page it happened on.
    """

    def __init__(self, page, watch: PageWatch, screenshots: Screenshots, base_url: str) -> None:
        self.page = page
        self.watch = watch
        self.screenshots = screenshots
        self.base_url = base_url

    def open(self, path: str, name: str):
        response = self.page.goto(f"{self.base_url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        return self.settled(name)

    def settled(self, name: str):
        """After a click or a submit: wait for the page, screenshot it, check it."""
        self.page.wait_for_load_state()
        self.screenshots.take(self.page, name)
        self.check(name)
        return self.page

    def check(self, name: str) -> None:
        assert self.watch.problems() == [], f"{name}: {self.watch.problems()}"
        unloaded = {path: status for path, status in self.watch.static.items() if status not in (200, 304)}
        assert unloaded == {}, f"{name}: static files did not load: {unloaded}"
        assert any(path.endswith("/static/admin/css/base.css") for path in self.watch.static), \
            f"{name}: the admin's stylesheet was never requested"
        # Everything a page uses is served by the gateway itself: no CDN, works offline.
        assert self.watch.requested_hosts == {urlsplit(self.base_url).netloc}, f"{name}: {self.watch.requested_hosts}"
