"""An imported dataset on the quality page, in a real browser: the team judged the dataset's pairs too (open tasks),
and a researcher reads how often they agree; the dataset is not among the labelers."""

import pytest

from annotate import services
from annotate.judgement_import import judgements_import
from annotate.roles import RoleName
from tests.conftest import PASSWORD, jsonl
from tests.e2e.conftest import screenshot
from tests.simulate import simulate

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("width", "dark"), [(1280, False), (820, True)])
def test_a_researcher_sees_how_the_team_agrees_with_an_imported_dataset(page_for, make_user, width, dark):
    project = services.project_create(
        name="Imported pairs", slug="imported", import_task_kinds=["compare"], overlap_compare=2
    )
    rows = [
        {
            "chosen": f"\n\nHuman: Question {i}?\n\nAssistant: A careful answer {i}.",
            "rejected": f"\n\nHuman: Question {i}?\n\nAssistant: No idea {i}.",
        }
        for i in range(12)
    ]
    judgements_import(
        project=project,
        lines=jsonl(*rows).splitlines(keepends=True),
        filename="hh-sample.jsonl",
        format="hh",
        open_tasks=True,
    )
    simulate(project, {make_user(RoleName.LABELER, n): 0.1 for n in ("maya", "noor")}, tasks_each=12, seed=4)
    page = page_for(make_user(RoleName.RESEARCHER, "rafa"), password=PASSWORD, width=width, dark=dark)
    page.goto("/projects/imported/quality/")
    row = page.locator("[data-datasets] tr[data-dataset]")
    assert row.count() == 1 and "hh-sample.jsonl" in row.inner_text()
    assert page.inner_text("[data-dataset-agreement]").endswith("%")
    assert page.locator("tr[data-labeler]").count() == 2  # maya and noor; the dataset is not a labeler
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, f"quality-datasets-{width}{'-dark' if dark else ''}")
