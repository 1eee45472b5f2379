"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright for Python.

One browser per test module; a fresh context (cookies, storage) and page per test. Tests use
pytest-django's `live_server`, which needs the `transactional_db` fixture so the server thread sees
the rows a test creates.

Screenshots: `shot(page, "name")` saves a full-page PNG to $BROWSER_SCREENSHOT_DIR when it is set
(e.g. /tmp/shots) and to the test's tmp_path otherwise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "Test-pass-123"  # tests.factories.UserFactory's password


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` to run browser tests")
    from playwright.sync_api import sync_playwright

    # While Playwright's sync API is running, its asyncio loop counts as running in this thread, so
    # Django's guard against sync ORM calls inside an event loop would fire on every factory call.
    # Those calls are plain synchronous test code; the guard is lifted only while the browser lives
    # (module scope), so the rest of the suite keeps it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server, transactional_db) -> Iterator[object]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def no_js_page(browser, live_server, transactional_db) -> Iterator[object]:
    """A page with JavaScript off: every form must still work."""
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def shot(tmp_path) -> Callable[[object, str], Path]:
    target = Path(os.environ.get("BROWSER_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = target / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def login() -> Callable[[object, str], None]:
    """Log in through the form by typing, as a person would."""

    def do(page, username: str, password: str = PASSWORD) -> None:
        page.goto("/login/")
        page.get_by_label("Username").press_sequentially(username)
        page.get_by_label("Password").press_sequentially(password)
        page.get_by_label("Password").press("Enter")
        page.wait_for_url(re.compile(r"^https?://[^/]+/$"))  # the project list

    return do
