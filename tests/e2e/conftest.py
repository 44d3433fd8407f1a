"""Browser tests: Playwright for Python driving Debian's Chromium (Playwright cannot download browsers here)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parent / "artifacts"  # ignored by git; look at them after a run
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make are still
# synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed; `make test` installs it (apt-get install chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_for(browser, live_server):
    """page_for(user, width=1280, dark=False) -> a signed-in page (through the real login form)."""
    contexts = []

    def make(user, *, password: str, width: int = 1280, height: int = 860, dark: bool = False):
        context = browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme="dark" if dark else "light",
            base_url=live_server.url,
        )
        contexts.append(context)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", password)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{live_server.url}/")
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def labeled(db, make_user, artifacts):
    """The demo project with judgements from two simulated labelers."""
    from django.core.management import call_command

    from annotate.models import Project
    from annotate.roles import RoleName
    from tests.simulate import simulate

    call_command("load_demo", stdout=open(os.devnull, "w"))
    project = Project.objects.get(slug="demo")
    simulate(project, {make_user(RoleName.LABELER, n): 0.1 for n in ("maya", "noor")}, tasks_each=20, seed=5)
    return project


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
