"""Prompt import: messages and tasks per the project's settings, all or nothing, no duplicates."""

import doctest

import pytest

from annotate import services
from annotate.formats import ImportFormatError
from annotate.models import ImportSource, Message, Task, TaskKind
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db

ROWS = [
    {
        "prompt": "Explain the moon landing to a 6 year old.",
        "completions": ["A rocket went up.", "No.", "The moon is cheese.", "Astronauts flew there."],
    },
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell me a joke"},
        ],
        "completions": ["Why did the chicken…", "No jokes today."],
    },
    {
        "chosen": "\n\nHuman: Capital of France?\n\nAssistant: Paris.",
        "rejected": "\n\nHuman: Capital of France?\n\nAssistant: Lyon.",
    },
    {"prompt": "Write a haiku about tea."},
]


def test_import_creates_the_conversation_tree_candidates_and_tasks(project):
    result = services.prompts_import(project=project, data=jsonl(*ROWS), filename="p.jsonl")
    assert (result.rows, result.prompts_created, result.prompts_existing, result.candidates_created) == (4, 4, 0, 8)
    # 4 user prompts + 1 earlier user turn + 1 assistant history turn + 8 candidates
    assert Message.objects.filter(project=project).count() == 14
    joke = Message.objects.get(text="Tell me a joke")
    assert [m.role for m in (joke.parent.parent, joke.parent, joke)] == ["user", "assistant", "user"]
    assert joke.depth == 2
    assert sorted(joke.children.values_list("text", flat=True)) == ["No jokes today.", "Why did the chicken…"]
    assert all(m.author_import == result.source for m in Message.objects.filter(project=project))
    assert result.tasks_created == {"demonstrate": 4, "rank": 3, "compare": 4, "rate": 8}


def test_tasks_follow_project_settings_for_overlap_k_and_kinds(project):
    project.import_task_kinds = ["rank"]
    project.ranking_k = 3
    project.overlap_rank = 5
    project.save()
    services.prompts_import(project=project, data=jsonl(ROWS[0]), filename="p.jsonl")
    tasks = list(Task.objects.filter(project=project).prefetch_related("task_candidates"))
    # 4 candidates with K = 3 are split into two rankings of 2, never one of 1.
    assert [t.task_candidates.count() for t in tasks] == [2, 2]
    assert {t.kind for t in tasks} == {TaskKind.RANK}
    assert {t.required_labelers for t in tasks} == {5}
    assert {t.anchor.text for t in tasks} == {"Explain the moon landing to a 6 year old."}


def test_candidates_keep_their_order_within_a_task(project):
    services.prompts_import(project=project, data=jsonl(ROWS[0]), filename="p.jsonl")
    rank = Task.objects.get(project=project, kind="rank")
    texts = [tc.message.text for tc in rank.task_candidates.select_related("message").order_by("position")]
    assert texts == ROWS[0]["completions"]


def test_reimporting_the_same_file_duplicates_nothing(project):
    data = jsonl(*ROWS)
    services.prompts_import(project=project, data=data, filename="p.jsonl")
    before = (Message.objects.count(), Task.objects.count())
    again = services.prompts_import(project=project, data=data, filename="p.jsonl")
    assert (Message.objects.count(), Task.objects.count()) == before
    assert (again.prompts_created, again.prompts_existing, again.candidates_created) == (0, 4, 0)
    assert sum(again.tasks_created.values()) == 0
    assert ImportSource.objects.filter(project=project).count() == 2  # every import is recorded


def test_a_new_completion_for_a_known_prompt_is_added_under_the_same_prompt(project):
    services.prompts_import(project=project, data=jsonl({"prompt": "Q", "completions": ["a", "b"]}), filename="1.jsonl")
    result = services.prompts_import(
        project=project, data=jsonl({"prompt": "Q", "completions": ["a", "c"]}), filename="2.jsonl"
    )
    assert (result.prompts_created, result.candidates_created) == (0, 1)
    assert Message.objects.filter(project=project, role="user").count() == 1
    assert sorted(Message.objects.get(text="Q").children.values_list("text", flat=True)) == ["a", "b", "c"]


def test_the_same_prompt_in_two_projects_is_two_prompts(project):
    other = services.project_create(name="Other")
    services.prompts_import(project=project, data=jsonl(ROWS[3]), filename="p.jsonl")
    services.prompts_import(project=other, data=jsonl(ROWS[3]), filename="p.jsonl")
    assert Message.objects.filter(text="Write a haiku about tea.").count() == 2


def test_a_prompt_repeated_within_one_file_is_imported_once(project):
    result = services.prompts_import(project=project, data=jsonl(ROWS[3], ROWS[3]), filename="p.jsonl")
    assert result.prompts_created == 1
    assert Task.objects.filter(project=project, kind="demonstrate").count() == 1


def test_a_bad_last_line_imports_nothing_at_all(project):
    data = jsonl(*ROWS, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    with pytest.raises(ImportFormatError) as info:
        services.prompts_import(project=project, data=data, filename="p.jsonl")
    assert [(p.line, p.field) for p in info.value.problems] == [(5, "messages[1].role")]
    assert Message.objects.count() == 0
    assert Task.objects.count() == 0
    assert ImportSource.objects.count() == 0


def test_a_database_failure_midway_rolls_back_everything(project, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "_create_import_tasks", explode)
    with pytest.raises(RuntimeError):
        services.prompts_import(project=project, data=jsonl(*ROWS), filename="p.jsonl")
    assert (Message.objects.count(), Task.objects.count(), ImportSource.objects.count()) == (0, 0, 0)


def test_anchor_keeps_row_metadata_and_line(project):
    services.prompts_import(project=project, data=jsonl({"prompt": "P", "category": "open_qa"}), filename="p.jsonl")
    assert Message.objects.get(text="P").metadata == {"category": "open_qa", "import_line": 1}


def test_grouping_helpers_doctests():
    failures, tried = doctest.testmod(services)
    assert tried >= 2 and failures == 0


@pytest.mark.parametrize(
    ("n", "k", "sizes"),
    [(2, 4, [2]), (4, 4, [4]), (5, 4, [3, 2]), (9, 4, [3, 3, 3]), (1, 4, []), (10, 9, [5, 5]), (7, 2, [2, 2, 2, 2])],
)
def test_split_for_ranking_never_makes_a_ranking_of_one_or_more_than_k(n, k, sizes):
    groups = services.split_for_ranking(list(range(n)), k)
    assert [len(g) for g in groups] == sizes
    assert {c for g in groups for c in g} == (set(range(n)) if n >= 2 else set())
