"""The quality page in a real browser: a researcher reads it; an admin deactivates a careless labeler."""

import pytest
from django.core.management import call_command

from annotate import services
from annotate.models import Project, Rating, Task
from annotate.roles import RoleName
from tests.conftest import PASSWORD
from tests.e2e.conftest import screenshot
from tests.simulate import hidden_quality, simulate

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def labeled(db, make_user):
    """The demo project after five labelers worked through part of it; one of them answers at random."""
    call_command("load_demo", stdout=open("/dev/null", "w"))
    project = Project.objects.get(slug="demo")
    for task in Task.objects.filter(project=project, kind="rate").order_by("id")[:6]:
        quality = hidden_quality(task.task_candidates.get().message_id)
        services.task_set_gold(task=task, answer={"score": max(1, min(7, round(1 + 6 * quality))), "tolerance": 1})
    project.gold_share = 0.2
    project.save()
    noise = {make_user(RoleName.LABELER, name): 0.08 for name in ("maya", "noor", "omar", "pia")}
    noise[make_user(RoleName.LABELER, "quinn")] = 3.0  # careless
    simulate(project, noise, tasks_each=40, seed=3)
    return project


@pytest.mark.parametrize(("width", "dark"), [(1280, False), (820, True)])
def test_a_researcher_reads_the_quality_page(page_for, make_user, labeled, width, dark):
    page = page_for(make_user(RoleName.RESEARCHER, "rafa"), password=PASSWORD, width=width, dark=dark)
    page.goto("/projects/demo/")
    page.click("text=Quality and agreement")
    assert page.inner_text("h1") == "Demo assistant"
    assert page.inner_text("[data-stat=judgements]") == "200"
    assert page.locator("svg.chart__svg rect.chart__seg").count() >= 1
    assert page.locator("tr[data-labeler]").count() == 5
    assert page.locator("text=Deactivate…").count() == 0  # admins only
    alpha = page.inner_text("[data-stat=alpha]")
    assert alpha != "—"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, f"project-quality-{width}{'-dark' if dark else ''}")


def test_an_admin_deactivates_the_careless_labeler_from_the_quality_page(page_for, make_user, labeled):
    page = page_for(make_user(RoleName.ADMIN, "ada"), password=PASSWORD)
    page.goto("/projects/demo/quality/")
    page.locator("tr[data-labeler=quinn]").locator("text=Deactivate…").click()
    assert page.inner_text("h1") == "Deactivate quinn?"
    assert page.is_checked("input[name=requeue]")
    screenshot(page, "labeler-deactivate")
    page.click("button:has-text('Deactivate quinn')")
    assert "quinn is deactivated" in page.inner_text(".messages")
    assert page.locator("tr[data-labeler=quinn]").count() == 0  # their judgements no longer count
    assert not Rating.objects.filter(labeler__username="quinn", discarded_at__isnull=True).exists()
