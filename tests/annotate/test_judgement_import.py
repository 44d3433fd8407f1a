"""Importing datasets with their judgements: what is stored (judgements with an import source instead of a
labeler, their tasks, provenance), all or nothing with streamed chunks, open tasks for the team, the quality page's
dataset-versus-team agreement, the export round trip and the command and API."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotate import exports, quality, services
from annotate.formats import ImportFormatError
from annotate.judgement_import import judgements_import
from annotate.models import Comparison, ImportSource, Message, Ranking, Task
from annotate.roles import RoleName
from tests.annotate.api.conftest import token_client
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db


def hh(question: str, good: str, bad: str) -> dict:
    return {
        "chosen": f"\n\nHuman: {question}\n\nAssistant: {good}",
        "rejected": f"\n\nHuman: {question}\n\nAssistant: {bad}",
    }


def lines(*rows) -> list[bytes]:
    return jsonl(*rows).splitlines(keepends=True)


def do(project, rows, format="hh", **kwargs):
    return judgements_import(project=project, lines=lines(*rows), filename="data.jsonl", format=format, **kwargs)


def test_hh_pairs_become_comparisons_with_the_file_as_their_source(project):
    result = do(project, [hh("Q1?", "Good one.", "Bad one."), hh("Q2?", "Fine.", "Rude.")])
    assert result.rows == 2 and result.judgements == {"compare": 2} and result.tasks_created == 2
    source = result.source
    assert (source.format, source.name, source.row_count) == ("hh", "data.jsonl", 2) and len(source.sha256) == 64
    first = Comparison.objects.order_by("id").first()
    assert first.labeler is None and first.assignment is None and first.import_source == source
    assert (first.candidate_a.text, first.candidate_b.text, first.choice) == ("Good one.", "Bad one.", -3)
    assert first.client_token == f"import-{source.pk}-1-0"  # the row number is in the provenance
    assert not Task.objects.filter(is_active=True).exists()  # not served to the project's labelers
    assert first.candidate_a.author_import == source


def test_a_bad_line_imports_nothing_and_names_every_bad_line_across_chunks(project):
    rows = [hh(f"Q{i}?", "Yes.", "No.") for i in range(7)]
    rows[4] = {"chosen": "no transcript"}
    data = [*lines(*rows), b"{not json\n"]
    with pytest.raises(ImportFormatError) as error:
        judgements_import(project=project, lines=data, filename="bad.jsonl", format="hh", chunk_lines=2)
    assert [p.line for p in error.value.problems] == [5, 8]
    assert "line 5, field 'chosen'" in str(error.value)
    assert not ImportSource.objects.exists() and not Message.objects.exists() and not Comparison.objects.exists()


def test_chunks_keep_line_numbers_and_reuse_prompts_the_project_has(project):
    services.prompts_import(project=project, data=jsonl({"prompt": "Q3?", "completions": ["Yes."]}), filename="p")
    result = judgements_import(
        project=project,
        lines=lines(*[hh(f"Q{i}?", "Yes.", "No.") for i in range(6)]),
        filename="d.jsonl",
        format="hh",
        chunk_lines=4,
    )
    assert result.rows == 6 and result.prompts_created == 5 and result.replies_created == 11
    tokens = sorted(Comparison.objects.values_list("client_token", flat=True))
    assert tokens[-1].startswith(f"import-{result.source.pk}-6-")


def test_oasst_rankings_keep_their_tiers(project):
    tree = {
        "message_tree_id": "t1",
        "prompt": {
            "message_id": "p",
            "role": "prompter",
            "text": "Name a fruit.",
            "replies": [
                {"message_id": "a", "role": "assistant", "text": "Apple.", "rank": 0, "replies": []},
                {"message_id": "b", "role": "assistant", "text": "Pear.", "rank": 1, "replies": []},
                {"message_id": "c", "role": "assistant", "text": "Plum.", "rank": 1, "replies": []},
            ],
        },
    }
    result = do(project, [tree], format="oasst")
    assert result.judgements == {"rank": 1}
    ranking = Ranking.objects.get()
    texts = [[Message.objects.get(pk=m).text for m in tier] for tier in ranking.tiers]
    assert texts[0] == ["Apple."] and sorted(texts[1]) == ["Pear.", "Plum."]


def test_arena_battles_keep_the_models_and_ties(project):
    def battle(winner, a="A says hi.", b="B says hello."):
        return {
            "model_a": "model-x",
            "model_b": "model-y",
            "winner": winner,
            "conversation_a": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": a}],
            "conversation_b": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": b}],
        }

    do(project, [battle("model_b"), battle("tie (bothbad)", "A2.", "B2.")], format="arena")
    won, tie = Comparison.objects.order_by("id")
    assert won.choice == 3 and won.candidate_a.metadata == {"model": "model-x"}
    assert abs(tie.choice) == 1 and tie.both_bad


def test_trl_round_trip_gives_the_same_pairs(project):
    rows = [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.", "margin": 1.5},
        {"prompt": "2+2?", "chosen": "4.", "rejected": "5.", "margin": 0.25},
    ]
    do(project, rows, format="trl")
    options = exports.ExportOptions(imported="only")
    out = [(r["prompt"], r["chosen"], r["rejected"], r["margin"]) for r in exports.preference_rows(project, options)]
    assert out == [(r["prompt"], r["chosen"], r["rejected"], r["margin"]) for r in rows]
    assert list(exports.preference_rows(project, exports.ExportOptions(imported="exclude"))) == []


def test_open_tasks_let_the_team_judge_the_pairs_and_the_quality_page_compares(project, make_user):
    project.overlap_compare = 2
    project.save()
    result = do(project, [hh("Q?", "Good.", "Bad."), hh("R?", "Nice.", "Mean.")], open_tasks=True)
    assert result.tasks_opened == 2 and Task.objects.filter(is_active=True, required_labelers=2).count() == 2
    for labeler, agree in ((make_user(RoleName.LABELER), True), (make_user(RoleName.LABELER), False)):
        for _ in range(2):
            lease = services.task_lease_next(labeler=labeler, project=project)
            imported = Comparison.objects.get(task=lease.task, import_source__isnull=False)
            dataset_winner_shown_as_a = _shown_a(lease.task, labeler) == imported.candidate_a_id
            choice = -3 if dataset_winner_shown_as_a == agree else 3
            services.comparison_submit(
                labeler=labeler, assignment_id=lease.pk, choice=choice, client_token=f"{labeler.pk}-{lease.pk}"
            )
    report = quality.quality_report(project=project)
    [dataset] = report.datasets
    assert (dataset.judgements, dataset.pairs_shared, dataset.team_votes, dataset.agreeing) == (2, 2, 4, 2)
    assert dataset.share == 0.5
    assert len(report.labelers) == 2  # the dataset is not in the labelers' table


def _shown_a(task, labeler) -> int:
    from annotate.selectors import candidate_order_for

    ids = list(task.task_candidates.order_by("position").values_list("message_id", flat=True))
    return candidate_order_for(task=task, labeler=labeler, candidate_ids=ids)[0]


def test_imported_judgements_are_not_a_labelers_work(project, labeler):
    do(project, [hh("Q?", "Good.", "Bad.")])
    report = quality.quality_report(project=project)
    assert report.labelers == [] and report.total == 0
    assert [d.judgements for d in report.datasets] == [1]  # reported apart


def test_the_command_imports_and_reports_bad_lines(project, tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl(hh("Q?", "Good.", "Bad.")))
    call_command("import_judgements", project.slug, str(good), "--format", "hh")
    assert "1 rows: judgements 1 compare" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl({"prompt": "Q?", "chosen": "A.", "rejected": "A."}))
    with pytest.raises(CommandError, match="line 1"):
        call_command("import_judgements", project.slug, str(bad), "--format", "trl")


def test_the_api_imports_a_multipart_upload_and_refuses_a_bad_file(project, make_user):
    client = token_client(make_user(RoleName.RESEARCHER))
    url = f"/api/projects/{project.slug}/judgements/import/"
    upload = SimpleUploadedFile("pairs.jsonl", jsonl(hh("Q?", "Good.", "Bad.")))
    response = client.post(url, {"file": upload, "format": "hh", "open_tasks": "true"}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["rows"] == 1 and body["tasks_opened"] == 1 and body["import_source"]["format"] == "hh"
    bad = SimpleUploadedFile("bad.jsonl", b'{"chosen": 1}\n')
    response = client.post(url, {"file": bad, "format": "hh"}, format="multipart")
    assert response.status_code == 400
    assert [(p["line"], p["field"]) for p in response.json()["error"]["problems"]] == [(1, "chosen")]
    assert ImportSource.objects.count() == 1  # only the first upload's


def test_a_chunk_without_judgements_is_not_an_error_but_a_file_without_any_is(project):
    def tree(tree_id: str, ranks: list) -> dict:
        replies = [
            {"message_id": f"{tree_id}{i}", "role": "assistant", "text": f"Reply {tree_id}{i}.", "rank": rank}
            for i, rank in enumerate(ranks)
        ]
        return {
            "message_tree_id": tree_id,
            "prompt": {"message_id": tree_id, "role": "prompter", "text": f"Prompt {tree_id}?", "replies": replies},
        }

    unranked, ranked = tree("u", [None, None]), tree("r", [1, 0])
    result = judgements_import(
        project=project, lines=lines(unranked, ranked), filename="t.jsonl", format="oasst", chunk_lines=1
    )
    assert result.judgements == {"rank": 1}
    with pytest.raises(ImportFormatError, match="no judgements in the file"):
        judgements_import(project=project, lines=lines(unranked), filename="u.jsonl", format="oasst")


def test_rated_completions_become_pairs_with_the_score_difference_as_margin(project):
    row = {"prompt": "Rate these.", "completions": [{"text": "A.", "score": 9}, {"text": "B.", "score": 4}]}
    do(project, [row], format="rated")
    comparison = Comparison.objects.get()
    assert (comparison.candidate_a.text, comparison.margin, comparison.choice) == ("A.", 5.0, -3)
    [exported] = exports.preference_rows(project, exports.ExportOptions())
    assert (exported["chosen"], exported["margin"]) == ("A.", 5.0)
