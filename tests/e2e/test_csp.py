"""The Content-Security-Policy in Chromium: no page of the app breaks it, and script injected into a page never
runs (so even an escaping bug cannot turn a model's reply into code)."""

from __future__ import annotations

import pytest

from annotate.roles import RoleName
from tests.conftest import PASSWORD
from training.models import RunStatus, TrainingRun

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Records every violation the page reports, whatever the console says (added before any script of the page runs).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def is_csp_message(text: str) -> bool:
    return "Content Security Policy" in text or "Refused to" in text


class Watched:
    """A signed-in page whose CSP messages (console) and violations (DOM events) are collected."""

    def __init__(self, browser, live_server, user) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=live_server.url)
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(f"{self.page.url}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"{self.page.url}: page error {error}"))
        self.live_server = live_server
        self.user = user

    def sign_in(self) -> None:
        self.goto("/accounts/login/")
        self.page.fill("#id_username", self.user.username)
        self.page.fill("#id_password", PASSWORD)
        self.page.keyboard.press("Enter")
        self.page.wait_for_url(f"{self.live_server.url}/")
        self.check()

    def goto(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status == 200, (path, response and response.status)
        assert "script-src 'self'" in response.headers["content-security-policy"]

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__cspViolations || []")

    def check(self) -> None:
        messages = [text for text in self.console if is_csp_message(text)]
        assert messages == [], messages
        assert self.violations() == [], (self.page.url, self.violations())
        errors = [text for text in self.console if "page error" in text]
        assert errors == [], errors


@pytest.fixture
def watched(browser, live_server, make_user):
    contexts = []

    def make(role: RoleName, name: str) -> Watched:
        watched = Watched(browser, live_server, make_user(role, name))
        contexts.append(watched.context)
        watched.sign_in()
        return watched

    yield make
    for context in contexts:
        context.close()


def test_no_page_breaks_the_content_security_policy(watched, labeled):
    run = TrainingRun.objects.create(
        project=labeled, kind="reward", status=RunStatus.RUNNING, progress_step=40, progress_total=120,
        metrics_history=[{"step": s, "loss": 0.7 / (1 + s / 30)} for s in range(1, 41)],
        log_tail="10:00:01 412 preference pairs\n10:00:05 step 12/120 loss 0.6901",
    )  # fmt: skip
    admin = watched(RoleName.ADMIN, "ada")
    page = admin.page

    for path in [
        "/",
        "/projects/demo/",
        "/projects/demo/quality/",
        "/projects/demo/export/",
        "/projects/demo/models/",
        "/runs/",
        "/projects/demo/runs/reward/new/",
        "/admin/",
        "/admin/annotate/project/",
    ]:
        admin.goto(path)
        page.wait_for_load_state("load")
        admin.check()

    # The run page polls itself through htmx (every 2 s): the swapped-in part obeys the policy too.
    admin.goto(f"/runs/{run.pk}/")
    assert page.locator("[data-curve=loss] polyline").count() == 1
    with page.expect_response(lambda response: f"/runs/{run.pk}/" in response.url and response.status == 200):
        pass
    page.wait_for_timeout(300)
    admin.check()

    # The labeling page: Sortable, labeling.js and htmx swapping in the next task after a submission.
    admin.goto("/projects/demo/label/?mode=rank")
    page.wait_for_selector("#workspace[data-kind=rank]")
    task = page.get_attribute("#workspace", "data-task")
    numbers = [card.get_attribute("data-candidate") for card in page.query_selector_all(".candidate[data-candidate]")]
    page.locator("[data-pool] .chip-reply[data-number='2']").drag_to(page.locator(".tier--new .tier__items"))
    for number in numbers:
        if number != "2":
            page.keyboard.press(number)
    page.keyboard.press("Enter")
    page.wait_for_function("prev => document.querySelector('#workspace').dataset.task !== prev", arg=task)
    admin.check()

    # Swagger UI: its start-up script is a URL, its styles are files; it fetches and draws the schema.
    admin.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() > 10
    admin.check()

    # htmx added no <style> of its own (its indicator rules live in app.css).
    admin.goto("/")
    assert page.evaluate("document.querySelectorAll('style').length") == 0
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False


def test_the_login_page_of_a_visitor_breaks_nothing(browser, live_server, db):
    context = browser.new_context(base_url=live_server.url)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto("/accounts/login/")
    assert response.status == 200 and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_load_state("load")
    assert [text for text in console if is_csp_message(text)] == []
    assert page.evaluate("window.__cspViolations") == []
    context.close()


def test_script_injected_into_a_page_does_not_run(watched, labeled):
    labeler = watched(RoleName.LABELER, "lena")
    page = labeler.page
    labeler.goto("/projects/demo/label/?mode=rate")
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.pwned = true;";
          document.body.appendChild(script);
          const reply = document.createElement("div");
          reply.innerHTML = '<img src="data:," onerror="window.pwnedByHandler = true">'
            + '<a href="javascript:window.pwnedByLink = true" id="evil">x</a>';
          document.body.appendChild(reply);
        }"""
    )
    page.click("#evil")
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("window.pwnedByHandler") is None
    assert page.evaluate("window.pwnedByLink") is None
    # ...and the browser said why: the collector above sees violations when there are some.
    assert any("script-src" in violation for violation in labeler.violations())
    assert any(is_csp_message(text) for text in labeler.console)
