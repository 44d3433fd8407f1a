"""Management commands: import_prompts, add_user, load_demo."""

import json
from collections import Counter

import pytest
from django.contrib.auth import authenticate as django_authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from annotate.models import Message, Project, Task
from annotate.roles import RoleName, user_roles
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db


def authenticate(*, username: str, password: str):
    # django-axes needs the request to throttle by address.
    return django_authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password)


def test_import_prompts_reports_what_it_created(project, tmp_path, capsys):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(jsonl({"prompt": "Q", "completions": ["a", "b"]}))
    call_command("import_prompts", project.slug, str(path))
    assert "1 new prompts" in capsys.readouterr().out
    call_command("import_prompts", project.slug, str(path))
    assert "0 new prompts (1 already present)" in capsys.readouterr().out


def test_import_prompts_names_file_line_and_field_and_imports_nothing(project, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl({"prompt": "ok"}, {"prompt": "ok2", "completions": [1]}))
    with pytest.raises(CommandError) as info:
        call_command("import_prompts", project.slug, str(path))
    assert f"{path}: 1 problem(s); nothing was imported." in str(info.value)
    assert "line 2, field 'completions[0]': expected a string, got a number" in str(info.value)
    assert Message.objects.count() == 0


def test_import_prompts_refuses_unknown_projects_and_missing_files(project, tmp_path):
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call_command("import_prompts", "nope", str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_prompts", project.slug, str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("role", list(RoleName))
def test_add_user_creates_a_user_with_the_role(role):
    call_command("add_user", "sam", "--role", role.value, "--password", "a-long-password")
    user = authenticate(username="sam", password="a-long-password")
    assert user is not None
    # An admin holds every power (researcher pages, labeling); the other roles hold only their own.
    assert user_roles(user) == (list(RoleName) if role is RoleName.ADMIN else [role])
    assert user.is_staff is (role is RoleName.ADMIN)


def test_add_user_refuses_an_existing_user_unless_updating():
    call_command("add_user", "sam", "--role", "labeler", "--password", "pw-one-1")
    with pytest.raises(CommandError, match="already exists"):
        call_command("add_user", "sam", "--role", "admin", "--password", "pw-two-2")
    call_command("add_user", "sam", "--role", "researcher", "--password", "pw-two-2", "--update")
    assert user_roles(authenticate(username="sam", password="pw-two-2")) == [RoleName.RESEARCHER]


def test_add_user_rejects_invalid_usernames():
    with pytest.raises(CommandError, match="username"):
        call_command("add_user", "bad name!", "--role", "labeler", "--password", "pw")


def test_load_demo_builds_a_meaningful_project_and_is_safe_to_rerun(capsys):
    call_command("load_demo")
    out = capsys.readouterr().out
    for username in ("labeler", "researcher", "admin"):
        assert f"{username} / {username}-demo" in out
        assert authenticate(username=username, password=f"{username}-demo") is not None
    project = Project.objects.get(slug="demo")
    prompts = Message.objects.filter(project=project, role="user", anchored_tasks__isnull=False).distinct()
    assert prompts.count() >= 40
    assert all(p.children.count() == 4 for p in prompts)
    anchors = Message.objects.filter(project=project, anchored_tasks__isnull=False).distinct()
    categories = Counter(m.metadata.get("category") for m in anchors)
    expected = {
        "generation",
        "open_qa",
        "brainstorming",
        "chat",
        "rewrite",
        "summarization",
        "classification",
        "extraction",
        "closed_qa",
    }
    assert expected <= set(categories)
    assert set(Task.objects.filter(project=project).values_list("kind", flat=True)) == {
        "demonstrate",
        "rank",
        "compare",
        "rate",
    }
    before = (Message.objects.count(), Task.objects.count())
    call_command("load_demo")
    assert (Message.objects.count(), Task.objects.count()) == before


def test_demo_file_has_four_distinct_replies_per_prompt():
    from annotate.management.commands.load_demo import DEMO_DIR

    rows = [json.loads(line) for line in (DEMO_DIR / "demo_prompts.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) >= 40
    assert all(len(set(r["completions"])) == 4 for r in rows)
