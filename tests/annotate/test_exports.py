"""Exports on hand-built cases: pairs, weights, margins, ties, aggregation, filters, formats, pseudonyms."""

import json

import pytest

from annotate import exports, services
from annotate.exports import ExportError, ExportOptions
from annotate.models import Task
from annotate.roles import RoleName
from annotate.selectors import candidate_order_for
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db

A, B, C, D = 1, 2, 3, 4


def test_a_ranking_with_a_tie_gives_five_pairs_of_weight_one_fifth():
    pairs = exports.ranking_pairs([[D], [C], [A, B]], ties="drop")
    assert {(p.chosen, p.rejected) for p in pairs} == {(D, C), (D, A), (D, B), (C, A), (C, B)}
    assert [p.weight for p in pairs] == [pytest.approx(1 / 5)] * 5 and not any(p.tie for p in pairs)


def test_labelled_ties_come_with_the_pairs_and_share_the_weight():
    pairs = exports.ranking_pairs([[D], [C], [A, B]], ties="label")
    assert len(pairs) == 6 and [(p.chosen, p.rejected) for p in pairs if p.tie] == [(A, B)]
    assert [p.weight for p in pairs] == [pytest.approx(1 / 6)] * 6


def test_comparison_strength_becomes_the_margin_and_the_middle_is_a_tie():
    assert exports.comparison_pair(A, B, -4, ties="drop") == exports.Pair(A, B, 1.0, False, 3.0)
    assert exports.comparison_pair(A, B, 2, ties="drop") == exports.Pair(B, A, 1.0, False, 1.0)
    assert exports.comparison_pair(A, B, 1, ties="drop") is None
    assert exports.comparison_pair(A, B, -1, ties="label") == exports.Pair(A, B, 1.0, True, 0.0)


def test_bad_options_name_the_option():
    with pytest.raises(ExportError, match="style must be one of") as error:
        ExportOptions(style="fancy")
    assert error.value.field == "style"
    with pytest.raises(ExportError, match="preference data only"):
        ExportOptions(dataset="sft", aggregation="majority")
    with pytest.raises(ExportError, match="between 0 and 1"):
        ExportOptions(min_agreement=2)


def test_options_survive_the_round_trip_through_a_snapshot_filter():
    from datetime import date

    options = ExportOptions(dataset="hh", date_from=date(2026, 1, 2), labelers=(3, 4), kinds=("rank",))
    assert ExportOptions.from_filter(json.loads(json.dumps(options.as_filter()))) == options


# --- over the database ----------------------------------------------------------------------------------------

ROW = {"prompt": "Name a primary colour.", "completions": ["Red.", "Blue.", "Banana.", "Purple."]}


@pytest.fixture
def ranked(make_user):
    """One labeler ranked Red > Blue > Banana = Purple; another compared two replies; a third wrote a demo."""
    project = services.project_create(
        name="Colours", slug="colours", import_task_kinds=["demonstrate", "rank", "compare"], ranking_k=4
    )
    services.prompts_import(project=project, data=jsonl(ROW), filename="p.jsonl")
    by_text = dict(project.messages.filter(role="assistant").values_list("text", "id"))
    ranker, comparer, writer = (make_user(RoleName.LABELER, name) for name in ("rina", "cato", "wes"))
    rank = services.task_lease_next(labeler=ranker, project=project, kinds=["rank"])
    tiers = [[by_text["Red."]], [by_text["Blue."]], [by_text["Banana."], by_text["Purple."]]]
    services.ranking_submit(labeler=ranker, assignment_id=rank.pk, tiers=tiers, client_token="r")
    compare = services.task_lease_next(labeler=comparer, project=project, kinds=["compare"])
    task = compare.task
    ids = list(task.task_candidates.order_by("position").values_list("message_id", flat=True))
    shown_a, _ = candidate_order_for(task=task, labeler=comparer, candidate_ids=ids)
    better = min(
        ids, key=lambda m: ["Red.", "Blue.", "Banana.", "Purple."].index(next(t for t, i in by_text.items() if i == m))
    )
    choice = -3 if shown_a == better else 3  # "better" by a clear margin
    services.comparison_submit(labeler=comparer, assignment_id=compare.pk, choice=choice, client_token="c")
    demo = services.task_lease_next(labeler=writer, project=project, kinds=["demonstrate"])
    services.demonstration_submit(labeler=writer, assignment_id=demo.pk, text="Red is one.", client_token="d")
    return project, by_text, {"ranker": ranker, "comparer": comparer, "writer": writer}, better


def rows(project, **options):
    return [exports.plain_row(row) for row in exports.export_rows(project, ExportOptions(**options))]


def test_preference_rows_in_the_standard_format(ranked):
    project, _, people, better = ranked
    ranking = [r for r in rows(project, kinds=("rank",))]
    assert len(ranking) == 5
    first = ranking[0]
    assert first["prompt"] == "Name a primary colour."
    assert {(r["chosen"], r["rejected"]) for r in ranking} == {
        ("Red.", "Blue."),
        ("Red.", "Banana."),
        ("Red.", "Purple."),
        ("Blue.", "Banana."),
        ("Blue.", "Purple."),
    }
    assert [r["weight"] for r in ranking] == [pytest.approx(0.2)] * 5
    assert first["labeler"] == exports.labeler_pseudonym(project.pk, people["ranker"].pk)
    assert first["labeler"] != exports.labeler_pseudonym(project.pk + 1, people["ranker"].pk)  # per project
    assert people["ranker"].username not in json.dumps(ranking)
    assert first["source"] == "ranking" and len(first["shown_order"]) == 4 and "time_spent_ms" in first
    [comparison] = rows(project, kinds=("compare",))
    assert comparison["margin"] == 2.0 and comparison["chosen_id"] == better


def test_conversational_and_hh_rows(ranked):
    project, *_ = ranked
    [row, *_] = rows(project, kinds=("rank",), style="conversational")
    assert row["prompt"] == [{"role": "user", "content": "Name a primary colour."}]
    assert row["chosen"] == [{"role": "assistant", "content": "Red."}]
    [hh, *_] = rows(project, dataset="hh", kinds=("rank",))
    assert hh["chosen"] == "\n\nHuman: Name a primary colour.\n\nAssistant: Red."


def test_sft_rows_and_trees(ranked):
    project, *_ = ranked
    [demo] = rows(project, dataset="sft")
    assert demo["messages"] == [
        {"role": "user", "content": "Name a primary colour."},
        {"role": "assistant", "content": "Red is one."},
    ]
    [tree] = rows(project, dataset="trees")
    assert tree["role"] == "user" and len(tree["children"]) == 5  # four imported replies and the demonstration
    assert {child["author"] for child in tree["children"]} == {"import", "human"}


def test_aggregated_rows_by_majority_and_bradley_terry(ranked):
    project, *_ = ranked
    majority = rows(project, aggregation="majority")
    red_blue = next(r for r in majority if {r["chosen"], r["rejected"]} == {"Red.", "Blue."})
    assert red_blue["chosen"] == "Red." and red_blue["source"] == "majority" and red_blue["votes"] >= 1
    fitted = rows(project, aggregation="bradley_terry")
    top = next(r for r in fitted if {r["chosen"], r["rejected"]} == {"Red.", "Banana."})
    assert top["chosen"] == "Red." and top["margin"] > 0 and 0.5 < top["p_chosen"] < 1


def test_filters_by_labeler_and_date(ranked):
    from datetime import date, timedelta

    project, _, people, _ = ranked
    assert {r["source"] for r in rows(project, labelers=(people["comparer"].pk,))} == {"comparison"}
    tomorrow = date.today() + timedelta(days=1)
    assert rows(project, date_from=tomorrow) == []


def test_discarded_judgements_are_not_exported(ranked):
    project, _, people, _ = ranked
    services.labeler_deactivate(labeler=people["ranker"], requeue=True)
    assert {r["source"] for r in rows(project)} == {"comparison"}


def test_jsonl_and_parquet_load_with_datasets(ranked, tmp_path):
    from datasets import load_dataset

    project, *_ = ranked
    for fmt, builder in (("jsonl", "json"), ("parquet", "parquet")):
        options = ExportOptions(format=fmt, kinds=("rank",))
        path = tmp_path / f"prefs.{fmt}"
        path.write_bytes(b"".join(exports.export_chunks(exports.export_rows(project, options), fmt)))
        dataset = load_dataset(builder, data_files=str(path), split="train")
        assert dataset.num_rows == 5 and dataset[0]["chosen"] == "Red."
        assert set(dataset.column_names) >= {"prompt", "chosen", "rejected", "margin", "weight", "labeler"}


def test_an_empty_export_is_a_valid_file(project, tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "empty.parquet"
    path.write_bytes(b"".join(exports.export_chunks(exports.export_rows(project, ExportOptions()), "parquet")))
    assert pq.read_table(path).num_rows == 0
    assert b"".join(exports.export_chunks(iter([]), "jsonl")) == b""


def test_rows_are_streamed_not_built_in_memory(ranked):
    project, *_ = ranked
    stream = exports.export_rows(project, ExportOptions())
    assert iter(stream) is stream  # a generator: rows are produced as they are written
    assert Task.objects.exists()
