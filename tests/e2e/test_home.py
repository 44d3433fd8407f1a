"""The first pages in a real browser: sign in, see your queues (labeler) or projects (researcher, admin)."""

import pytest
from django.core.management import call_command

from annotate.roles import RoleName
from tests.conftest import PASSWORD
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(db):
    call_command("load_demo", stdout=open("/dev/null", "w"))


def test_labeler_signs_in_and_sees_queue_counts_but_no_admin_links(page_for, make_user, demo):
    page = page_for(make_user(RoleName.LABELER, "lena"), password=PASSWORD)
    card = page.locator("article[data-project=demo]")
    assert card.locator("h3").inner_text() == "Demo assistant"
    assert card.locator("dd[data-kind=rank]").inner_text() == "51"
    assert card.locator("dd[data-kind=rate]").inner_text() == "204"
    assert page.locator("text=Admin site").count() == 0
    assert page.locator("text=Import prompts").count() == 0
    screenshot(page, "home-labeler")
    response = page.goto("/projects/demo/")
    assert response.status == 403
    assert "You don't have access" in page.inner_text("h1")


def test_researcher_opens_the_project_overview(page_for, make_user, demo):
    page = page_for(make_user(RoleName.RESEARCHER, "rafa"), password=PASSWORD)
    page.click("text=Demo assistant")
    assert page.inner_text("h1") == "Demo assistant"
    assert page.locator(".stat__value").first.inner_text() == "51"
    screenshot(page, "project-overview")


@pytest.mark.parametrize(("width", "dark"), [(1280, False), (820, True)])
def test_admin_home_reads_well_on_a_laptop_and_a_tablet_in_dark_mode(page_for, make_user, demo, width, dark):
    page = page_for(make_user(RoleName.ADMIN, "ada"), password=PASSWORD, width=width, dark=dark)
    assert page.locator("text=Admin site").count() == 1
    # Nothing overflows sideways on a tablet.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(15, 18, 24)") is dark
    screenshot(page, f"home-admin-{width}{'-dark' if dark else ''}")


def test_a_bad_import_shows_each_problem_and_imports_nothing(page_for, make_user, demo, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"messages": [{"role": "bot", "content": "x"}]}\n')
    page = page_for(make_user(RoleName.ADMIN, "ada"), password=PASSWORD)
    page.goto("/projects/demo/import/")
    page.set_input_files("input[type=file]", str(bad))
    page.click("form.card button[type=submit]")
    assert "Nothing was imported" in page.inner_text(".alert--error")
    row = page.locator("#import-problems tbody tr").first
    assert row.inner_text().split("\t")[:2] == ["2", "messages[0].role"]
    screenshot(page, "import-errors")
