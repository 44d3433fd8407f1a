"""Pages: every view checks its role; a labeler sees their queues and nothing researcher- or admin-only."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotate import services
from annotate.models import Message, Project, Task
from tests.conftest import PASSWORD, jsonl

pytestmark = pytest.mark.django_db

ROW = {"prompt": "Explain tides.", "completions": ["The moon pulls the sea.", "Tides are <b>waves</b>."]}


@pytest.fixture
def imported(project):
    services.prompts_import(project=project, data=jsonl(ROW), filename="p.jsonl")
    return project


def signed_in(client, user):
    client.force_login(user)
    return client


def researcher_and_admin_pages(project):
    return {
        "researcher": [
            reverse("annotate:project_overview", args=[project.slug]),
            reverse("annotate:project_quality", args=[project.slug]),
        ],
        "admin": [reverse("annotate:project_import", args=[project.slug])],
    }


def protected_pages(project) -> list[str]:
    return [url for urls in researcher_and_admin_pages(project).values() for url in urls]


def test_anonymous_visitors_are_sent_to_login(client, project):
    for url in [reverse("home"), *protected_pages(project)]:
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_a_labeler_gets_403_on_researcher_and_admin_pages(client, labeler, project):
    signed_in(client, labeler)
    for url in protected_pages(project):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("annotate:project_import", args=[project.slug])).status_code == 403


def test_a_researcher_sees_data_pages_but_not_admin_pages(client, researcher, imported):
    signed_in(client, researcher)
    assert client.get(reverse("annotate:project_overview", args=[imported.slug])).status_code == 200
    assert client.get(reverse("annotate:project_import", args=[imported.slug])).status_code == 403


def test_a_labeler_is_kept_out_of_the_django_admin_site(client, labeler):
    signed_in(client, labeler)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response.url


def test_an_admin_sees_the_admin_site_and_can_create_a_project_there(client, admin_user):
    signed_in(client, admin_user)
    assert client.get(reverse("admin:index")).status_code == 200
    response = client.post(
        reverse("admin:annotate_project_add"),
        {
            "name": "Support bot",
            "slug": "support-bot",
            "description": "",
            "is_active": "on",
            "guidelines": "",
            "import_task_kinds": '["rank"]',
            "overlap_demonstrate": 1,
            "overlap_rank": 2,
            "overlap_compare": 3,
            "overlap_rate": 1,
            "ranking_k": 4,
            "lease_minutes": 30,
            "flags": "[]",
            "kind_mix": '{"rank": 1}',
            "gold_share": 0.1,
            "retrain_min_comparisons": 200,
            "retrain_min_demonstrations": 100,
            "chat_enabled": "on",
            "chat_opponent": "previous",
            "chat_max_turns": 8,
            "chat_max_tokens": 96,
            "chat_max_concurrent": 2,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Project.objects.get(slug="support-bot").chat_opponent == "previous"
    assert client.get(reverse("annotate:project_import", args=["support-bot"])).status_code == 200


def test_an_admin_assigns_roles_from_the_user_list(client, admin_user, make_user):
    from annotate.roles import RoleName, user_roles

    someone = make_user("labeler")
    signed_in(client, admin_user)
    response = client.post(
        reverse("admin:auth_user_changelist"), {"action": "make_researcher", "_selected_action": [someone.pk]}
    )
    assert response.status_code == 302
    someone.refresh_from_db()
    assert user_roles(someone) == [RoleName.RESEARCHER]


def test_labeler_home_shows_queue_counts_and_no_researcher_or_admin_links(client, labeler, imported):
    signed_in(client, labeler)
    response = client.get(reverse("home"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Your labeling queues" in html
    assert 'data-kind="rank">1<' in html and 'data-kind="rate">2<' in html and 'data-kind="compare">1<' in html
    for hidden in [
        "Projects</h2>",
        "Import prompts",
        "Admin site",
        f'href="{reverse("annotate:project_overview", args=[imported.slug])}"',
    ]:
        assert hidden not in html


def test_home_queue_counts_take_as_many_queries_however_many_tasks_wait(client, labeler, imported):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    signed_in(client, labeler)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(reverse("home"))
        return len(captured)

    few = queries()
    services.prompts_import(
        project=imported,
        data=jsonl(*[{"prompt": f"P{i}", "completions": ["a", "b"]} for i in range(40)]),
        filename="more.jsonl",
    )
    assert queries() == few <= 12  # a count per served task kind per project, each an index range


def test_queue_counts_skip_tasks_the_labeler_already_leased(client, labeler, imported):
    from datetime import timedelta

    from django.utils import timezone

    from annotate.models import Assignment

    now = timezone.now()
    rank = Task.objects.get(project=imported, kind="rank")
    Assignment.objects.create(task=rank, labeler=labeler, leased_at=now, expires_at=now + timedelta(minutes=5))
    signed_in(client, labeler)
    assert 'data-kind="rank">0<' in client.get(reverse("home")).content.decode()


def test_admin_imports_a_file_from_the_import_page(client, admin_user, project):
    signed_in(client, admin_user)
    upload = SimpleUploadedFile("prompts.jsonl", jsonl(ROW), content_type="application/jsonl")
    response = client.post(reverse("annotate:project_import", args=[project.slug]), {"file": upload}, follow=True)
    assert response.status_code == 200
    assert "1 new prompts" in response.content.decode()
    assert Message.objects.filter(project=project, role="user").count() == 1


def test_a_bad_upload_lists_lines_and_fields_and_imports_nothing(client, admin_user, project):
    signed_in(client, admin_user)
    upload = SimpleUploadedFile("prompts.jsonl", jsonl(ROW, {"prompt": ""}, b"{oops"))
    response = client.post(reverse("annotate:project_import", args=[project.slug]), {"file": upload})
    html = response.content.decode()
    assert response.status_code == 400
    assert "Nothing was imported" in html
    assert '<td class="num">2</td><td><code>prompt</code></td><td>empty text</td>' in html
    assert '<td class="num">3</td>' in html and "malformed JSON" in html
    assert Message.objects.count() == 0


def test_imported_text_is_escaped_on_pages(client, researcher, project):
    project.guidelines = "Be **kind**. <script>alert(1)</script>"
    project.save()
    signed_in(client, researcher)
    html = client.get(reverse("annotate:project_overview", args=[project.slug])).content.decode()
    assert "<strong>kind</strong>" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_login_is_throttled_after_repeated_failures(client, labeler, settings):
    url = reverse("login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(url, {"username": labeler.username, "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    response = client.post(url, {"username": labeler.username, "password": PASSWORD}, REMOTE_ADDR="10.0.0.9")
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()


def test_a_real_login_reaches_the_home_page(client, labeler):
    response = client.post(reverse("login"), {"username": labeler.username, "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert response.context["user"] == labeler


def test_logout_needs_a_post_with_csrf(labeler):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(labeler)
    assert client.post(reverse("logout")).status_code == 403


def test_project_settings_are_validated_in_the_admin_site(client, admin_user, project):
    signed_in(client, admin_user)
    url = reverse("admin:annotate_project_change", args=[project.pk])
    form = {
        "name": project.name,
        "slug": project.slug,
        "is_active": "on",
        "import_task_kinds": '["rank", "vote"]',
        "overlap_demonstrate": 1,
        "overlap_rank": 2,
        "overlap_compare": 3,
        "overlap_rate": 1,
        "ranking_k": 12,
        "lease_minutes": 30,
        "flags": '[{"key": "rude"}]',
        "retrain_min_comparisons": 200,
        "retrain_min_demonstrations": 100,
    }
    html = client.post(url, form).content.decode()
    assert "Each entry must be one of: demonstrate, rank, compare, rate." in html
    assert "Flags must be a list of objects with a non-empty" in html
    assert "K for rankings must be between 2 and 9." in html
    project.refresh_from_db()
    assert project.ranking_k == 4
