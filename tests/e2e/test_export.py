"""The export page in a real browser: preview, download, freeze a snapshot."""

import json

import pytest

from annotate.roles import RoleName
from tests.conftest import PASSWORD
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_researcher_previews_downloads_and_freezes_an_export(page_for, make_user, labeled, tmp_path):
    page = page_for(make_user(RoleName.RESEARCHER, "rafa"), password=PASSWORD)
    page.goto("/projects/demo/")
    page.click("text=Export data")
    page.select_option("#id_style", "conversational")
    page.click("button:has-text('Preview')")
    first = json.loads(page.locator("[data-preview]").first.inner_text())
    assert first["prompt"][0]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
    screenshot(page, "export")
    with page.expect_download() as download:
        page.click("button:has-text('Download')")
    path = tmp_path / "download.jsonl"
    download.value.save_as(path)
    lines = path.read_text().splitlines()
    assert lines and all(json.loads(line)["weight"] > 0 for line in lines)
    page.fill("#snapshot-name", "first round")
    page.click("button:has-text('Freeze snapshot')")
    assert "frozen" in page.inner_text(".messages")
    assert page.locator("tr[data-snapshot]").count() == 1
