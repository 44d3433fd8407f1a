"""The permission matrix: every API route and method, called by every role, gives the status in this table.

The cases come from the URLconf, so a new route (or a new method on a route) without a row here fails."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate import services
from annotate.exports import ExportOptions
from annotate.models import Task
from annotate.roles import RoleName
from rewardlab.api_urls import urlpatterns
from tests.annotate.api.conftest import token_client
from tests.conftest import jsonl
from training.models import TrainingRun
from training.services import snapshot_freeze

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "labeler", "researcher", "admin"]
METHODS = ["get", "post", "put", "patch", "delete"]


def row(anonymous: int, labeler: int, researcher: int, admin: int) -> dict[str, int]:
    return dict(zip(ROLES, [anonymous, labeler, researcher, admin], strict=True))


# (route name, method) -> (path kwargs, body, expected status by role). Bodies are valid where the role may call
# the operation, so "allowed" shows as the operation's own status; submit and skip target another labeler's
# lease, so a role that passes the gate gets the service's 409 rather than 403.
MATRIX = {
    ("token", "post"): ({}, {}, row(400, 400, 400, 400)),
    ("me", "get"): ({}, None, row(401, 200, 200, 200)),
    ("project-list", "get"): ({}, None, row(401, 200, 200, 200)),
    ("project-detail", "get"): ({"slug": "{project}"}, None, row(401, 403, 200, 200)),
    ("prompt-import", "post"): ({"slug": "{project}"}, "jsonl", row(401, 403, 403, 201)),
    ("judgement-import", "post"): ({"slug": "{project}"}, "judgements", row(401, 403, 201, 201)),
    ("task-list", "get"): ({"slug": "{project}"}, None, row(401, 403, 200, 200)),
    ("task-priority-bulk", "post"): (
        {"slug": "{project}"},
        {"priorities": [{"task": "{task}", "priority": 2.0}]},
        row(401, 403, 403, 200),
    ),
    ("annotation-list", "get"): ({"slug": "{project}"}, None, row(401, 200, 200, 200)),
    ("export", "get"): ({"slug": "{project}"}, None, row(401, 403, 200, 200)),
    ("snapshot-list", "get"): ({"slug": "{project}"}, None, row(401, 403, 200, 200)),
    ("snapshot-list", "post"): ({"slug": "{project}"}, {"name": "matrix"}, row(401, 403, 201, 201)),
    ("snapshot-detail", "get"): ({"slug": "{project}", "snapshot_id": "{snapshot}"}, None, row(401, 403, 200, 200)),
    ("snapshot-download", "get"): (
        {"slug": "{project}", "snapshot_id": "{snapshot}"},
        None,
        row(401, 403, 200, 200),
    ),
    ("task-detail", "get"): ({"task_id": "{task}"}, None, row(401, 403, 200, 200)),
    ("task-priority", "patch"): ({"task_id": "{task}"}, {"priority": 3.5}, row(401, 403, 403, 200)),
    ("lease", "post"): ({"slug": "{project}"}, {}, row(401, 200, 403, 200)),
    ("assignment-submit", "post"): (
        {"assignment_id": "{assignment}"},
        {"client_token": "t-1", "text": "A reply."},
        row(401, 409, 403, 409),
    ),
    ("assignment-skip", "post"): ({"assignment_id": "{assignment}"}, {"reason": "unclear"}, row(401, 409, 403, 409)),
    ("user-list", "get"): ({}, None, row(401, 403, 403, 200)),
    ("user-roles", "put"): ({"user_id": "{other}"}, {"roles": ["researcher"]}, row(401, 403, 403, 200)),
    ("user-deactivate", "post"): ({"user_id": "{other}"}, {"requeue": True}, row(401, 403, 403, 200)),
    ("lineage", "get"): ({"kind": "task", "object_id": "{task}"}, None, row(401, 403, 200, 200)),
    ("cycle-list", "get"): ({"slug": "{project}"}, None, row(401, 403, 200, 200)),
    ("cycle-list", "post"): ({"slug": "{project}"}, {}, row(401, 403, 403, 400)),  # 400: nothing new to train on
    ("leaderboard", "get"): ({"slug": "{project}"}, None, row(401, 403, 200, 200)),
    ("run-list", "get"): ({"slug": "{project}"}, None, row(401, 403, 200, 200)),
    # 400 for the admin: the matrix project has no judgements, so a reward model has nothing to train on.
    ("run-list", "post"): ({"slug": "{project}"}, {"kind": "reward"}, row(401, 403, 403, 400)),
    ("run-detail", "get"): ({"run_id": "{run}"}, None, row(401, 403, 200, 200)),
    ("run-cancel", "post"): ({"run_id": "{run}"}, {}, row(401, 403, 403, 200)),
    ("schema", "get"): ({}, None, row(200, 200, 200, 200)),
    ("docs", "get"): ({}, None, row(200, 200, 200, 200)),
    **{("not-found", method): ({}, None, row(404, 404, 404, 404)) for method in METHODS},
}


def routes() -> list[tuple[str, str]]:
    """(route name, method) for every route of the API's URLconf and every method its view handles."""
    found = []
    for pattern in urlpatterns:
        view_class = pattern.callback.view_class
        found += [(pattern.name, method) for method in METHODS if hasattr(view_class, method)]
    return found


def test_every_matrix_row_is_a_route():
    assert set(MATRIX) <= set(routes()), sorted(set(MATRIX) - set(routes()))


@pytest.fixture
def world(imported, make_user, labeler, researcher, admin_user):
    """A project with tasks, the three role users, and another labeler holding a lease."""
    other = make_user(RoleName.LABELER, "olga")
    assignment = services.task_lease_next(labeler=other, project=imported, kinds=["demonstrate"])
    snapshot = snapshot_freeze(project=imported, options=ExportOptions(dataset="sft"), name="frozen").snapshot
    values = {
        "project": imported.slug,
        "snapshot": snapshot.pk,
        "task": Task.objects.filter(project=imported).order_by("id").values_list("id", flat=True).first(),
        "assignment": assignment.pk,
        "other": other.pk,
        "run": TrainingRun.objects.create(project=imported, kind="reward", snapshot=snapshot).pk,
    }
    users = {"anonymous": None, "labeler": labeler, "researcher": researcher, "admin": admin_user}
    return values, users


def fill(template, values: dict):
    """Put the world's ids into a row's kwargs or body ("{task}" -> 12)."""
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return values[template[1:-1]]
    return template


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method"), routes(), ids=lambda value: value)
def test_permission_matrix(world, role, name, method):
    if (name, method) not in MATRIX:
        pytest.fail(f"api:{name} {method.upper()} has no row in the permission matrix")
    kwargs, body, expected = MATRIX[(name, method)]
    values, users = world
    client = token_client(users[role])
    url = "/api/no-such-endpoint/" if name == "not-found" else reverse(f"api:{name}", kwargs=fill(kwargs, values))
    if body == "jsonl":
        data = jsonl({"prompt": "One more question?", "completions": ["Yes.", "No."]})
        response = client.generic(method.upper(), url, data, content_type="application/jsonl")
    elif body == "judgements":
        data = jsonl({"chosen": "\n\nHuman: Q?\n\nAssistant: Yes.", "rejected": "\n\nHuman: Q?\n\nAssistant: No."})
        response = client.generic(method.upper(), url + "?format=hh", data, content_type="application/jsonl")
    elif body is None:
        response = getattr(client, method)(url)
    else:
        response = getattr(client, method)(url, fill(body, values), format="json")
    assert response.status_code == expected[role], response.content[:400]
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}
