"""Admin pages in a real headless chromium, driven by Playwright's sync API.

One real gateway (`manage.py serve`) per test module, with an admin user bootstrapped by `serve` from
GATEWAY_ADMIN_USER/GATEWAY_ADMIN_PASSWORD. A module configures its gateway with a `gateway_config(upstream)`
function (and `BATCH_WORKER = True` when it needs the embedded batch worker); `upstream` is a loopback
OpenAI fake for the module.

Playwright is started for the `tests/browser` package only, not the whole session: its sync API keeps an
asyncio loop marked as running in the main thread, and Django refuses ORM calls from a thread with a running
loop (SynchronousOnlyOperation), so a session-wide browser would break every database test that runs after
these in the same process. The browser talks to the gateway subprocess, never to the test database.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from openai import OpenAI

from tests.browser.browsing import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    CHROMIUM_ENV,
    SETUP_HINT,
    SKIP_ENV,
    AdminSession,
    PageWatch,
    Screenshots,
    chromium_executable,
    log_in,
)
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

PAGE_TIMEOUT_MS = 15_000
# Request logs and rollups are flushed by each worker every GATEWAY_LOG_FLUSH_SECONDS (1 s by default).
GATEWAY_ENV = {"GATEWAY_ADMIN_USER": ADMIN_USER, "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
               "GATEWAY_LOG_FLUSH_SECONDS": "0.2", "GATEWAY_BATCH_SWEEP_SECONDS": "0.5"}


def default_config(upstream: FakeOpenAI) -> dict:
    return {"model_list": [{"model_name": "mock-chat", "litellm_params": {"model": "mock/mock-gpt"},
                            "model_info": {"id": "mock-chat-1"}}],
            "general_settings": {"master_key": MASTER_KEY}}


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """Debian's chromium, headless, for the tests of this package (see the module docstring for why not longer)."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"browser tests skipped on purpose ({SKIP_ENV}=1)")
    executable = chromium_executable()
    if executable is None:
        configured = os.environ.get(CHROMIUM_ENV)
        missing = f"{CHROMIUM_ENV}={configured} is not a file" if configured else "no `chromium` on the PATH"
        pytest.fail(f"no chromium for the browser tests ({missing}): {SETUP_HINT}", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset_upstream(upstream) -> None:
    upstream.reset()


@pytest.fixture(scope="module")
def gateway(request, tmp_path_factory, upstream) -> Iterator[GatewayProcess]:
    configure = getattr(request.module, "gateway_config", default_config)
    process = start_gateway(tmp_path_factory.mktemp("browser-gateway"), configure(upstream), env=GATEWAY_ENV,
                            batch_worker=getattr(request.module, "BATCH_WORKER", False))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin_cookies(browser, gateway) -> list:
    """Log in through the form once per gateway; each test's tab starts with that session cookie."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.goto(f"{gateway.url}/admin/login/")
        log_in(page)
        assert page.url.split("?", 1)[0] == f"{gateway.url}/admin/", page.url
        return context.cookies()
    finally:
        context.close()


def _session(request, browser, gateway, cookies: list | None) -> Iterator[AdminSession]:
    # A fixed locale and time zone: numbers, money and times are formatted the same on every machine.
    context = browser.new_context(viewport={"width": 1600, "height": 900}, locale="en-US", timezone_id="UTC")
    if cookies:
        context.add_cookies(cookies)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    watch = PageWatch()
    watch.attach(page)
    session = AdminSession(page, watch, Screenshots(request.node.name), gateway.url)
    try:
        yield session
    finally:
        context.close()
    report = getattr(request.node, "browser_report_call", None)
    if report is not None and report.passed:  # a failed test has already said what went wrong
        assert watch.problems() == [], watch.problems()


@pytest.fixture
def admin(request, browser, gateway, admin_cookies) -> Iterator[AdminSession]:
    """A tab logged in as the bootstrapped admin user. Fails the test if any page logged a console error."""
    yield from _session(request, browser, gateway, admin_cookies)


@pytest.fixture
def anonymous(request, browser, gateway) -> Iterator[AdminSession]:
    """A tab with no session."""
    yield from _session(request, browser, gateway, None)


@pytest.fixture
def sdk(gateway) -> Iterator[OpenAI]:
    with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as client:
        yield client


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"browser_report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _gateway_log_on_failure(request) -> Iterator[None]:
    """When a test fails, show the end of its gateway's log with it."""
    yield
    report = getattr(request.node, "browser_report_call", None)
    if report is not None and report.failed and "gateway" in request.fixturenames:
        report.sections.append(("gateway log (tail)", request.getfixturevalue("gateway").logs()[-4000:]))
