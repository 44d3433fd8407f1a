"""Lineage: from a judgement to the snapshot, run and version it fed, and back; from a version to the replies it
wrote and the tasks showing them; from a sampling run to the tasks it created. The page and the API."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate import services as annotate_services
from annotate.models import Comparison, Message, Ranking, Task, TaskKind
from annotate.roles import RoleName
from tests.annotate.api.conftest import token_client
from training import datasets, lineage, services
from training.lineage import LineageNotFound
from training.models import CandidateScore, DatasetSnapshot, ModelVersion, RetrainCycle, RunKind, TrainingRun

pytestmark = pytest.mark.django_db


def register(run: TrainingRun, tmp_path, name: str) -> ModelVersion:
    """A run's version, registered as a worker would (no training)."""
    services.run_claim(run_id=run.pk, worker="w")
    checkpoint = tmp_path / name
    checkpoint.mkdir()
    return services.model_version_register(run=run, checkpoint=checkpoint, metrics={}, history=[])


@dataclass
class Chain:
    project: object
    snapshot: DatasetSnapshot  # the reward model's preference pairs
    reward_run: TrainingRun
    reward: ModelVersion
    prompts: DatasetSnapshot
    ppo_run: TrainingRun
    policy: ModelVersion
    sample_run: TrainingRun
    reply: Message  # written by the policy during the sampling run
    task: Task  # the A/B task the sampling run created
    comparison: Comparison  # a labeler's judgement of it


@pytest.fixture
def chain(judged, tmp_path, make_user) -> Chain:
    """judgements -> snapshot -> reward run -> reward-v1 -> PPO run (prompts) -> policy-v1 -> sampling run ->
    a reply and an A/B task -> a comparison."""
    snapshot = services.snapshot_freeze(project=judged, options=datasets.REWARD_DATASET, name="pairs").snapshot
    reward_run = TrainingRun.objects.create(
        project=judged, kind=RunKind.REWARD, snapshot=snapshot, config={"base_model": "tiny"}
    )
    reward = register(reward_run, tmp_path, "reward")
    prompts = services.snapshot_freeze(project=judged, options=datasets.PROMPT_DATASET, name="prompts").snapshot
    ppo_run = TrainingRun.objects.create(
        project=judged, kind=RunKind.PPO, snapshot=prompts, reward_version=reward, config={"base_model": "embedded"}
    )
    policy = register(ppo_run, tmp_path, "policy")
    sample_run = TrainingRun.objects.create(
        project=judged,
        kind=RunKind.SAMPLE,
        base_version=policy,
        config=services.config_clean(RunKind.SAMPLE, {"compare_previous": False}),
    )
    services.run_claim(run_id=sample_run.pk, worker="w")
    anchor = Task.objects.filter(project=judged).order_by("id").first().anchor
    sampled = services.SampledPrompt(anchor_id=anchor.pk, replies=["A sampled reply.", "Another sampled reply."])
    services.sampled_tasks_create(run=sample_run, sampled=[sampled], metrics={})
    reply = Message.objects.get(author_model=policy, text="A sampled reply.")
    task = Task.objects.get(origin_run=sample_run, kind=TaskKind.COMPARE)
    annotate_services.tasks_set_priority(priorities={task.pk: 100.0})  # the next A/B task served
    labeler = make_user(RoleName.LABELER)
    assignment = annotate_services.task_lease_next(labeler=labeler, project=judged, kinds=["compare"])
    assert assignment.task_id == task.pk
    annotate_services.comparison_submit(labeler=labeler, assignment_id=assignment.pk, choice=-2, client_token="c")
    comparison = Comparison.objects.get(task=task)
    return Chain(judged, snapshot, reward_run, reward, prompts, ppo_run, policy, sample_run, reply, task, comparison)


def links(groups, relation: str) -> set[tuple[str, int]]:
    """(kind, id) of the nodes in the group with this relation (empty when there is none)."""
    for group in groups:
        if group.relation == relation:
            return {(node.kind, node.id) for node in group.nodes}
    return set()


def group(groups, relation: str):
    return next(g for g in groups if g.relation == relation)


def test_a_judgement_leads_to_its_snapshot_run_and_version(chain):
    comparison_id = chain.snapshot.annotation_ids["comparisons"][0]
    comparison = Comparison.objects.get(pk=comparison_id)
    found = lineage.lineage("comparison", comparison_id)
    assert (found.node.kind, found.node.id) == ("comparison", comparison_id)
    assert found.node.url == reverse("rewardlab:lineage", args=["comparison", comparison_id])
    assert found.project.label == chain.project.name
    down = found.downstream
    assert ("snapshot", chain.snapshot.pk) in links(down, "in snapshot")
    assert ("snapshot", chain.prompts.pk) not in links(down, "in snapshot")
    assert links(down, "used by run") == {("run", chain.reward_run.pk)}
    assert links(down, "produced version") == {("version", chain.reward.pk)}
    up = found.upstream
    assert links(up, "on task") == {("task", comparison.task_id)}
    assert links(up, "by labeler") == {("user", comparison.labeler_id)}
    assert links(up, "judged") == {("message", comparison.candidate_a_id), ("message", comparison.candidate_b_id)}
    places = {n.id: n.detail.split(" · ")[0] for n in group(up, "judged").nodes}
    assert places == {comparison.candidate_a_id: "A", comparison.candidate_b_id: "B"}
    assert {kind for kind, _ in links(up, "written by")} == {"import"}


def test_a_version_leads_back_to_its_run_snapshot_and_judgements(chain):
    found = lineage.lineage("version", chain.reward.pk)
    assert links(found.upstream, "trained by run") == {("run", chain.reward_run.pk)}
    assert links(found.upstream, "trained on") == {("snapshot", chain.snapshot.pk)}
    assert links(found.downstream, "scored run") == {("run", chain.ppo_run.pk)}

    run = lineage.lineage("run", chain.reward_run.pk)
    assert links(run.upstream, "trained on") == {("snapshot", chain.snapshot.pk)}
    assert links(run.downstream, "produced version") == {("version", chain.reward.pk)}

    snapshot = lineage.lineage("snapshot", chain.snapshot.pk)
    held = group(snapshot.upstream, "holds comparisons")
    ids = chain.snapshot.annotation_ids["comparisons"]
    assert held.total == len(ids) and {n.id for n in held.nodes} <= set(ids)
    assert ("ranking", chain.snapshot.annotation_ids["rankings"][0]) in links(snapshot.upstream, "holds rankings")
    assert links(snapshot.upstream, "of project") == {("project", chain.project.pk)}
    assert links(snapshot.downstream, "used by run") == {("run", chain.reward_run.pk)}
    assert links(snapshot.downstream, "produced version") == {("version", chain.reward.pk)}


def test_a_policy_shows_its_data_its_reward_model_and_the_replies_it_wrote(chain):
    found = lineage.lineage("version", chain.policy.pk)
    assert links(found.upstream, "trained by run") == {("run", chain.ppo_run.pk)}
    assert links(found.upstream, "trained on") == {("snapshot", chain.prompts.pk)}
    assert links(found.upstream, "scored by") == {("version", chain.reward.pk)}
    assert links(found.downstream, "started run") == {("run", chain.sample_run.pk)}
    wrote = Message.objects.filter(author_model=chain.policy)
    assert links(found.downstream, "wrote") == {("message", pk) for pk in wrote.values_list("pk", flat=True)}
    assert ("message", chain.reply.pk) in links(found.downstream, "wrote")
    sampled_tasks = {("task", task.pk) for task in Task.objects.filter(origin_run=chain.sample_run)}
    assert len(sampled_tasks) == 2  # a ranking of the two new replies, and an A/B task of them
    assert links(found.downstream, "tasks showing its replies") == sampled_tasks

    prompts = lineage.lineage("snapshot", chain.prompts.pk)
    assert chain.task.anchor_id in {n.id for n in group(prompts.upstream, "holds prompts").nodes}


def test_a_sampling_run_leads_to_the_tasks_it_created(chain):
    found = lineage.lineage("run", chain.sample_run.pk)
    assert links(found.upstream, "started from") == {("version", chain.policy.pk)}
    created = {("task", task.pk) for task in Task.objects.filter(origin_run=chain.sample_run)}
    assert links(found.downstream, "created task") == created and ("task", chain.task.pk) in created
    sampled = group(found.downstream, "replies in its tasks")
    assert [(n.kind, n.id, n.detail) for n in sampled.nodes] == [("version", chain.policy.pk, "2 replies")]

    task = lineage.lineage("task", chain.task.pk)
    assert links(task.upstream, "created by run") == {("run", chain.sample_run.pk)}
    assert links(task.upstream, "prompt") == {("message", chain.task.anchor_id)}
    assert ("message", chain.reply.pk) in links(task.upstream, "candidate")
    assert links(task.upstream, "written by") == {("version", chain.policy.pk)}
    assert links(task.downstream, "judged in") == {("comparison", chain.comparison.pk)}
    # The task's prompt is in the PPO run's prompt snapshot.
    assert ("snapshot", chain.prompts.pk) in links(task.downstream, "in snapshot")


def test_a_reply_leads_to_its_author_tasks_and_judgements(chain):
    found = lineage.lineage("message", chain.reply.pk)
    assert links(found.upstream, "written by") == {("version", chain.policy.pk)}
    assert links(found.upstream, "written during run") == {("run", chain.sample_run.pk)}
    assert links(found.upstream, "in reply to") == {("message", chain.task.anchor_id)}
    assert ("task", chain.task.pk) in links(found.downstream, "candidate in task")
    assert len(links(found.downstream, "candidate in task")) == 2  # the A/B task and the ranking
    assert links(found.downstream, "judged in") == {("comparison", chain.comparison.pk)}
    comparison = lineage.lineage("comparison", chain.comparison.pk)
    assert ("version", chain.policy.pk) in links(comparison.upstream, "written by")

    CandidateScore.objects.create(model_version=chain.reward, message=chain.reply, score=0.25)
    scored = lineage.lineage("message", chain.reply.pk)
    assert [n.detail for n in group(scored.downstream, "scored by").nodes] == ["score 0.250"]
    assert group(lineage.lineage("version", chain.reward.pk).downstream, "scored candidates").total == 1

    anchor = lineage.lineage("message", chain.task.anchor_id)
    assert ("message", chain.reply.pk) in links(anchor.downstream, "replies")
    assert ("task", chain.task.pk) in links(anchor.downstream, "prompt of task")
    assert ("snapshot", chain.prompts.pk) in links(anchor.downstream, "in snapshot")


def test_a_discarded_judgement_is_still_listed_and_marked(chain):
    Comparison.objects.filter(pk=chain.comparison.pk).update(discarded_at=timezone.now())
    judged = group(lineage.lineage("task", chain.task.pk).downstream, "judged in")
    assert judged.total == 1 and "discarded" in judged.nodes[0].detail


def test_a_demonstration_leads_to_the_reply_it_wrote(taught):
    snapshot = services.snapshot_freeze(project=taught, options=datasets.SFT_DATASET).snapshot
    demonstration_id = snapshot.annotation_ids["demonstrations"][0]
    found = lineage.lineage("demonstration", demonstration_id)
    (wrote,) = links(found.downstream, "wrote")
    assert links(found.downstream, "in snapshot") == {("snapshot", snapshot.pk)}
    reply = lineage.lineage("message", wrote[1])
    assert links(reply.upstream, "written as") == {("demonstration", demonstration_id)}
    assert {kind for kind, _ in links(reply.upstream, "written by")} == {"user"}
    assert ("snapshot", snapshot.pk) in links(reply.downstream, "in snapshot")


def test_lists_are_bounded_and_counted(chain, monkeypatch):
    monkeypatch.setattr(lineage, "LIMIT", 3)
    found = lineage.lineage("snapshot", chain.snapshot.pk)
    held = group(found.upstream, "holds comparisons")
    assert len(held.nodes) == 3 and held.total == len(chain.snapshot.annotation_ids["comparisons"]) > 3
    assert held.more == held.total - 3
    imported = lineage.lineage("message", chain.task.anchor_id)
    tasks = group(imported.downstream, "prompt of task")
    assert len(tasks.nodes) == min(3, tasks.total)
    assert tasks.total == Task.objects.filter(anchor_id=chain.task.anchor_id).count()


@pytest.mark.parametrize("kind", ["comparison", "ranking", "snapshot", "run", "version", "task", "message"])
def test_a_lineage_takes_a_bounded_number_of_queries(chain, kind, django_assert_max_num_queries):
    pk = {
        "comparison": chain.comparison.pk,
        "ranking": Ranking.objects.filter(task__project=chain.project).values_list("pk", flat=True).first(),
        "snapshot": chain.snapshot.pk,
        "run": chain.ppo_run.pk,
        "version": chain.policy.pk,
        "task": chain.task.pk,
        "message": chain.task.anchor_id,
    }[kind]
    with django_assert_max_num_queries(16):
        lineage.lineage(kind, pk)


def test_a_run_shows_the_cycle_that_started_it(chain):
    cycle = RetrainCycle.objects.create(project=chain.project, stages=["reward", "ppo", "sample"])
    TrainingRun.objects.filter(pk=chain.sample_run.pk).update(cycle=cycle)
    found = lineage.lineage("run", chain.sample_run.pk)
    assert links(found.upstream, "part of cycle") == {("cycle", cycle.pk)}


def test_unknown_kinds_and_ids_are_not_found(chain):
    with pytest.raises(LineageNotFound):
        lineage.lineage("project", chain.project.pk)
    with pytest.raises(LineageNotFound):
        lineage.lineage("run", 10**9)


# --- the page and the API ---------------------------------------------------------------------------------------


def test_the_page_is_for_researchers(client, chain, labeler, researcher):
    url = reverse("rewardlab:lineage", args=["run", chain.reward_run.pk])
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(labeler)
    assert client.get(url).status_code == 403
    client.force_login(researcher)
    page = client.get(url)
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-node="run:{chain.reward_run.pk}"' in html
    assert reverse("rewardlab:lineage", args=["snapshot", chain.snapshot.pk]) in html
    assert reverse("rewardlab:lineage", args=["version", chain.reward.pk]) in html
    assert 'data-side="upstream"' in html and 'data-side="downstream"' in html


def test_the_page_is_not_found_for_an_unknown_kind_or_id(client, chain, researcher):
    client.force_login(researcher)
    assert client.get(reverse("rewardlab:lineage", args=["project", chain.project.pk])).status_code == 404
    assert client.get(reverse("rewardlab:lineage", args=["task", 10**9])).status_code == 404


def test_run_and_model_pages_link_to_lineage(client, chain, researcher):
    client.force_login(researcher)
    run_page = client.get(reverse("rewardlab:run_detail", args=[chain.reward_run.pk])).content.decode()
    assert reverse("rewardlab:lineage", args=["run", chain.reward_run.pk]) in run_page
    models = client.get(reverse("rewardlab:model_list", args=[chain.project.slug])).content.decode()
    assert reverse("rewardlab:lineage", args=["version", chain.reward.pk]) in models
    assert reverse("rewardlab:lineage", args=["version", chain.policy.pk]) in models


def test_model_text_on_the_page_is_escaped(client, chain, researcher):
    Message.objects.filter(pk=chain.reply.pk).update(text="<script>alert(1)</script>")
    client.force_login(researcher)
    html = client.get(reverse("rewardlab:lineage", args=["message", chain.reply.pk])).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_the_api_returns_the_same_links(chain, researcher, labeler):
    url = reverse("api:lineage", args=["version", chain.policy.pk])
    assert token_client(labeler).get(url).status_code == 403
    response = token_client(researcher).get(url)
    assert response.status_code == 200
    data = response.json()
    found = lineage.lineage("version", chain.policy.pk)
    assert data["node"] == {
        "kind": "version",
        "id": chain.policy.pk,
        "label": found.node.label,
        "detail": found.node.detail,
        "url": found.node.url,
        "api": url,
        "page": found.node.page,
    }
    for side in ("upstream", "downstream"):
        api = {g["relation"]: {(n["kind"], n["id"]) for n in g["nodes"]} for g in data[side]}
        assert api == {g.relation: {(n.kind, n.id) for n in g.nodes} for g in getattr(found, side)}
    wrote = next(g for g in data["downstream"] if g["relation"] == "wrote")
    assert wrote["total"] == 2 and wrote["more"] == 0
    assert reverse("api:lineage", args=["message", chain.reply.pk]) in {n["api"] for n in wrote["nodes"]}
    user = token_client(researcher).get(reverse("api:lineage", args=["comparison", chain.comparison.pk])).json()
    labeler_node = next(g for g in user["upstream"] if g["relation"] == "by labeler")["nodes"][0]
    assert labeler_node["url"] is None and labeler_node["api"] is None


def test_the_api_is_not_found_for_an_unknown_kind_or_id(chain, researcher):
    client = token_client(researcher)
    for kind, pk in (("project", chain.project.pk), ("run", 10**9)):
        response = client.get(reverse("api:lineage", args=[kind, pk]))
        assert response.status_code == 404 and set(response.json()) == {"error"}


def test_a_cycle_leads_to_its_runs_and_their_versions(project, admin_user, tmp_path):
    from training.models import CycleStatus, RetrainCycle

    cycle = RetrainCycle.objects.create(
        project=project, stages=["reward"], status=CycleStatus.RUNNING, started_by=admin_user, reason="Started by hand"
    )
    run = TrainingRun.objects.create(project=project, kind="reward", cycle=cycle)
    found = lineage.lineage("cycle", cycle.pk)
    assert found.node.page.endswith(f"#cycle-{cycle.pk}")
    assert [(n.kind, n.id) for g in found.downstream for n in g.nodes] == [("run", run.pk)]
    assert found.upstream[0].note == "Started by hand"
    assert ("cycle", cycle.pk) in {(n.kind, n.id) for g in lineage.lineage("run", run.pk).upstream for n in g.nodes}
