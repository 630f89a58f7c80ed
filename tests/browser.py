"""Browser fixtures: headless Chromium (Debian's chromium + chromium-driver) through Selenium.

``browser`` is a WebDriver for the session; ``screenshot(name)`` saves a PNG under
``artifacts/screenshots/`` (git-ignored), the test run's visible record. Tests that use them are
marked ``browser`` and skip, saying why, where Chromium is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="vs-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # No traffic beyond the test server: the machine has no network to reach.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def screenshot(browser: Any, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Save what the browser shows as artifacts/screenshots/<test>-<name>.png."""

    def save(name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        browser.save_screenshot(str(path))
        return path

    return save


def click_and_wait(browser: Any, element: Any) -> None:
    """Click ``element`` and wait until the page it leads to has replaced this one and loaded.

    A click returns as soon as the event is sent: reading the URL or the title right after it
    can still see the old page.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(browser, 10)
    wait.until(expected_conditions.staleness_of(page))
    wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")


def admin_login(browser: Any, live_server: Any, user: Any, password: str = "password") -> None:
    """Log ``user`` into the admin through its login form (pytest-django's ``admin_user`` has
    the password "password")."""
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(user.username)
    browser.find_element(By.NAME, "password").send_keys(password)
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert "Site administration" in browser.title, f"not logged in as {user.username}"
