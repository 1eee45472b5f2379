"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright for Python.

One browser per test session; a fresh context (cookies, storage) and page per test. Tests use
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

# Playwright's sync API runs an asyncio loop in this thread, so Django's guard against sync ORM calls
# inside a running loop would fire on every factory call in a browser test. The ORM calls here are
# ordinary synchronous test code; the guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


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
